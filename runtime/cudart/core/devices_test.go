package core

import (
	"bytes"
	"errors"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
	"github.com/xgpu/xgpu/server/host"
)

func TestNewDevice(t *testing.T) {
	m := &devicemap.Map{Devices: []devicemap.Device{{
		GPUUUID: "GPU-2f351d10-ad9d-9be2-a181-942fc6c6671f", GPUIndex: 3, MemoryQuota: 1 << 40, Address: "a:1",
		Properties: devicemap.Properties{Name: "NVIDIA H200", ComputeCapability: "10.3", PCIBusID: "00000001:1A:06.0", MultiprocessorCount: 148},
	}, {Address: "a:1", Properties: devicemap.Properties{ComputeCapability: "junk", PCIBusID: "0:0"}}}}
	d := newDevice(m, 0)
	want := [16]byte{0x2f, 0x35, 0x1d, 0x10, 0xad, 0x9d, 0x9b, 0xe2, 0xa1, 0x81, 0x94, 0x2f, 0xc6, 0xc6, 0x67, 0x1f}
	if d.UUID != want || d.Name != "NVIDIA H200" || d.TotalMem != 1<<40 || d.PCIBusID != "0001:1a:06.0" || d.Server != "a:1" {
		t.Fatalf("device %+v", d)
	}
	if d.Valid != [MaxAttr]bool{} {
		t.Fatal("the map alone gave attributes")
	}
	d = newDevice(m, 1)
	if d.Name != "xgpu device" || d.UUID != [16]byte{} || d.PCIBusID != "" {
		t.Fatalf("device without facts %+v", d)
	}

	// The attributes: the server's, or the fallback's, with the map's
	// facts put in.
	server := attrsOf(map[runtime.DeviceAttr]int{1: 1024, attrMultiProcessorCount: 78, attrComputeMajor: 8, attrComputeMinor: 6,
		attrPciBusID: 0x99, 200: 7, 0: 1, runtime.MaxDeviceAttr: 1})
	tests := []struct {
		name   string
		dev    int
		server bool
		want   map[int]int // -1: absent
	}{
		{name: "server", dev: 0, server: true, want: map[int]int{1: 1024, attrMultiProcessorCount: 78, attrComputeMajor: 8, attrComputeMinor: 6,
			200: 7, attrPciDomainID: 1, attrPciBusID: 0x1a, attrPciDeviceID: 6, attrMultiGpuBoardGroupID: 3, 10: -1, 0: -1}},
		{name: "server, map without PCI location", dev: 1, server: true, want: map[int]int{attrPciBusID: 0x99, attrPciDomainID: -1,
			attrMultiGpuBoardGroupID: 0, 10: -1}},
		{name: "fallback", dev: 0, want: map[int]int{attrMultiProcessorCount: 148, attrComputeMajor: 10, attrComputeMinor: 3, attrPciDomainID: 1,
			attrPciBusID: 0x1a, attrPciDeviceID: 6, attrMultiGpuBoardGroupID: 3, 10: 32, 200: -1}},
		{name: "fallback, map without facts", dev: 1, want: map[int]int{attrComputeMajor: 9, attrMultiProcessorCount: 132, attrMultiGpuBoardGroupID: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(m, tt.dev)
			d.set(3, 5) // replaced, not merged
			if tt.server {
				withServerAttrs(&d, &m.Devices[tt.dev], server)
			} else {
				withFallbackAttrs(&d, &m.Devices[tt.dev])
			}
			for a, v := range tt.want {
				if v < 0 {
					if d.Valid[a] {
						t.Errorf("attribute %d = %d, want absent", a, d.Attrs[a])
					}
				} else if !d.Valid[a] || d.Attrs[a] != v {
					t.Errorf("attribute %d = %d (valid %v), want %d", a, d.Attrs[a], d.Valid[a], v)
				}
			}
			if tt.server && d.Valid[3] {
				t.Error("an attribute set before the server's answer survived")
			}
		})
	}
}

// attrsOf yields vals as a server's answer would be yielded; numbers out
// of range included, which the shim must ignore.
func attrsOf(vals map[runtime.DeviceAttr]int) iter.Seq2[runtime.DeviceAttr, int] {
	return func(yield func(runtime.DeviceAttr, int) bool) {
		for a, v := range vals {
			if !yield(a, v) {
				return
			}
		}
	}
}

// lyingMap returns a copy of m whose devices claim another SM count and
// compute capability than their GPUs have.
func lyingMap(m *devicemap.Map) *devicemap.Map {
	m = m.Clone()
	for i := range m.Devices {
		m.Devices[i].Properties.MultiprocessorCount = 7
		m.Devices[i].Properties.ComputeCapability = "7.5"
	}
	return m
}

func TestDeviceAttributesFromServer(t *testing.T) {
	m := lyingMap(startServer(t, 2))
	var log bytes.Buffer
	s := New(func() (Config, error) {
		return Config{Map: m, Runtime: runtimeConfig(), Logger: newTestLogger(&log)}, nil
	})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Client(); err != nil {
		t.Fatal(err)
	}
	var fetches [2]atomic.Int32
	s.attrs.fetch = func(c *runtime.Client, dev int) (*runtime.DeviceAttributes, error) {
		fetches[dev].Add(1)
		return c.DeviceAttributes(dev)
	}
	var wg sync.WaitGroup
	devs := make([]*Device, 8)
	for i := range devs {
		wg.Go(func() {
			d, err := s.Device(i % 2)
			if err != nil {
				t.Error(err)
			}
			devs[i] = d
		})
	}
	wg.Wait()
	for i, d := range devs {
		if d != devs[i%2] {
			t.Fatalf("device %d described twice", i%2)
		}
	}
	for dev := range 2 {
		if n := fetches[dev].Load(); n != 1 {
			t.Errorf("device %d: %d fetches, want 1", dev, n)
		}
		d := devs[dev]
		// The server's GPU, not the map's claims.
		for a, v := range map[int]int{attrMultiProcessorCount: host.DefaultMultiprocessors, attrComputeMajor: 9, attrComputeMinor: 0,
			attrMultiGpuBoardGroupID: m.Devices[dev].GPUIndex, attrPciBusID: 0x10 + m.Devices[dev].GPUIndex} {
			if !d.Valid[a] || d.Attrs[a] != v {
				t.Errorf("device %d attribute %d = %d (valid %v), want %d", dev, a, d.Attrs[a], d.Valid[a], v)
			}
		}
		if d.TotalMem != m.Devices[dev].MemoryQuota || d.Name != m.Devices[dev].Properties.Name {
			t.Errorf("device %d: the map's facts lost: %+v", dev, d)
		}
	}
	if strings.Contains(log.String(), "predates") {
		t.Errorf("a fallback was logged:\n%s", log.String())
	}
	_, err := s.Device(2)
	wantCode(t, "device 2", err, cudaerr.InvalidDevice)
}

func TestDeviceAttributesFallback(t *testing.T) {
	m := lyingMap(startServer(t, 2))
	var log bytes.Buffer
	s := New(func() (Config, error) {
		return Config{Map: m, Runtime: runtimeConfig(), Logger: newTestLogger(&log)}, nil
	})
	t.Cleanup(func() { s.Close() })
	if _, err := s.Client(); err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	fail := errors.New("runtime: worker gone")
	s.attrs.fetch = func(c *runtime.Client, dev int) (*runtime.DeviceAttributes, error) {
		switch fetches.Add(1) {
		case 1: // the session is lost: an error, and the next call asks again
			return nil, &InitError{Code: cudaerr.DevicesUnavailable, Err: fail}
		default: // a server that predates the call
			return nil, cudaerr.NotSupported
		}
	}
	_, err := s.Device(0)
	if wantCode(t, "a failed fetch", err, cudaerr.DevicesUnavailable); !errors.Is(err, fail) {
		t.Fatalf("the failure lost its cause: %v", err)
	}
	for dev := range 2 {
		d, err := s.Device(dev)
		if err != nil {
			t.Fatal(err)
		}
		for a, v := range map[int]int{attrMultiProcessorCount: 7, attrComputeMajor: 7, attrComputeMinor: 5, 10: 32, attrMaxSharedMemoryPerBlock: 49152,
			attrMultiGpuBoardGroupID: m.Devices[dev].GPUIndex} {
			if !d.Valid[a] || d.Attrs[a] != v {
				t.Errorf("device %d attribute %d = %d (valid %v), want %d", dev, a, d.Attrs[a], d.Valid[a], v)
			}
		}
	}
	if _, err := s.Device(1); err != nil || fetches.Load() != 3 {
		t.Fatalf("a fallback device asked again: %v, %d fetches", err, fetches.Load())
	}
	if n := strings.Count(log.String(), "predates"); n != 1 || !strings.Contains(log.String(), "level=WARN") {
		t.Fatalf("fallback logged %d times, want once at warn:\n%s", n, log.String())
	}
}
