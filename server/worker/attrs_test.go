package worker

import (
	"testing"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/host"
)

// plainBackend hides every optional interface of its devices.
type plainBackend struct{ backend.Backend }

type plainDevice struct{ backend.Device }

func (b plainBackend) Open(spec backend.DeviceSpec) (backend.Device, error) {
	d, err := b.Backend.Open(spec)
	if err != nil {
		return nil, err
	}
	return plainDevice{d}, nil
}

func TestDeviceGetAttributes(t *testing.T) {
	hb, err := host.New(host.Config{Devices: 2, Memory: 1 << 30, HostID: "attrs", Multiprocessors: 78, ComputeMajor: 8, ComputeMinor: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	// Logical 3 on physical 0 and logical 0 on physical 1; 1 and 2 are
	// devices of the client that live on other servers.
	r := start(t, testConfig(devCfg(3, 0), devCfg(0, 1)), hb)
	c := dial(t, r, testToken)

	tests := []struct {
		name string
		dev  uint32
		bus  int32 // the physical device's PCI bus
		code cudaerr.Error
	}{
		{name: "logical 0 on physical 1", dev: 0, bus: 0x11},
		{name: "logical 3 on physical 0", dev: 3, bus: 0x10},
		{name: "device of another server", dev: 1, code: cudaerr.InvalidDevice},
		{name: "past the map", dev: 7, code: cudaerr.InvalidDevice},
		{name: "largest index", dev: ^uint32(0), code: cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := c.Call(testCtx(t), calls.OpDeviceGetAttributes, calls.Call{Dev: tt.dev})
			if tt.code != 0 {
				wantCode(t, "DeviceGetAttributes", err, tt.code)
				if len(rep.Data) != 0 {
					t.Fatalf("a refusal carries %d bytes", len(rep.Data))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got calls.Attrs
			if err := calls.DecodeAttrs(rep.Data, &got); err != nil {
				t.Fatal(err)
			}
			if rep.V1 != uint64(got.Len()) || got.Len() != len(host.H200Attributes()) {
				t.Fatalf("V1 %d, %d attributes, want the profile's %d", rep.V1, got.Len(), len(host.H200Attributes()))
			}
			for a, want := range map[int]int32{16: 78, 75: 8, 76: 6, 33: tt.bus, 10: 32, 131: -1} {
				if !got.Valid[a] || got.Value[a] != want {
					t.Errorf("attribute %d = %d (present %v), want %d", a, got.Value[a], got.Valid[a], want)
				}
			}
		})
	}

	t.Run("keeps an asynchronous failure for the next call", func(t *testing.T) {
		if err := c.Send(calls.OpFree, calls.Call{Dev: 0, Dst: 0xdead}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(testCtx(t), calls.OpDeviceGetAttributes, calls.Call{Dev: 0}); err != nil {
			t.Fatalf("attributes after a failed asynchronous call: %v", err)
		}
		wantCode(t, "the next synchronizing call", c.Sync(testCtx(t), 0, 0), cudaerr.InvalidValue)
		mustSync(t, c, 0)
	})

	t.Run("without a reply", func(t *testing.T) {
		if err := c.Send(calls.OpDeviceGetAttributes, calls.Call{Dev: 3}); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(calls.OpDeviceGetAttributes, calls.Call{Dev: 9}); err != nil {
			t.Fatal(err)
		}
		// Asking needs no reply; asking about a device outside the
		// session is an error all the same.
		wantCode(t, "after an asynchronous call on device 9", c.Sync(testCtx(t), 3, 0), cudaerr.InvalidDevice)
		mustSync(t, c, 3)
	})
}

func TestDeviceGetAttributesUnsupported(t *testing.T) {
	r := start(t, testConfig(devCfg(0, 0)), plainBackend{newHost(t, 1)})
	c := dial(t, r, testToken)
	_, err := c.Call(testCtx(t), calls.OpDeviceGetAttributes, calls.Call{Dev: 0})
	wantCode(t, "DeviceGetAttributes on a backend without attributes", err, cudaerr.NotSupported)
	mustSync(t, c, 0)
}
