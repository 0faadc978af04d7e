package host

import (
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

func TestDeviceAttributes(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		index int
		want  map[int]int32 // beside the profile's values
	}{
		{name: "defaults", cfg: Config{HostID: "h"}, index: 0,
			want: map[int]int32{attrMultiprocessorCount: 132, attrComputeMajor: 9, attrComputeMinor: 0,
				attrPCIDomainID: 0, attrPCIBusID: 0x10, attrPCIDeviceID: 0, attrMultiGPUBoardGroupID: 0}},
		{name: "configured facts", cfg: Config{HostID: "h", Devices: 3, Multiprocessors: 78, ComputeMajor: 8, ComputeMinor: 6}, index: 2,
			want: map[int]int32{attrMultiprocessorCount: 78, attrComputeMajor: 8, attrComputeMinor: 6,
				attrPCIBusID: 0x12, attrPCIDeviceID: 0, attrMultiGPUBoardGroupID: 2, attrIsMultiGPUBoard: 0}},
		{name: "second PCI domain", cfg: Config{HostID: "h", Devices: 242}, index: 241,
			want: map[int]int32{attrPCIDomainID: 1, attrPCIBusID: 0x11, attrPCIDeviceID: 0, attrMultiGPUBoardGroupID: 241}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, tt.cfg)
			d := openDevice(t, b, tt.index, 0, 0)
			defer d.Close()
			got, err := d.DeviceAttributes()
			if err != nil {
				t.Fatal(err)
			}
			profile := H200Attributes()
			if got.Len() != len(profile) {
				t.Fatalf("%d attributes, want the profile's %d", got.Len(), len(profile))
			}
			for a, v := range profile {
				if w, ok := tt.want[a]; ok {
					v = w
				}
				if g, ok := got.Get(a); !ok || g != v {
					t.Errorf("attribute %d = %d (present %v), want %d", a, g, ok, v)
				}
			}
			for a := range tt.want {
				if _, ok := profile[a]; !ok {
					t.Errorf("attribute %d is not in the profile", a)
				}
			}
			// The PCI location agrees with Info's bus id.
			infos, _ := b.Devices()
			dom, _ := got.Get(attrPCIDomainID)
			bus, _ := got.Get(attrPCIBusID)
			if want := infos[tt.index].PCIBusID; want[:8] != fmtHex(8, dom) || want[9:11] != fmtHex(2, bus) {
				t.Errorf("PCI attributes %x:%x disagree with Info's %s", dom, bus, want)
			}
			for _, a := range []int{0, 148, 200, 255, -1, 256} {
				if _, ok := got.Get(a); ok {
					t.Errorf("attribute %d present; an H200 refused it", a)
				}
			}
		})
	}
}

func fmtHex(width int, v int32) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b)
}

func TestDeviceAttributesLifecycle(t *testing.T) {
	b := newBackend(t, Config{HostID: "h", Memory: 64 << 20})
	d := openDevice(t, b, 0, 0, 0)
	var _ backend.Attributes = d
	if err := d.InjectFault(cudaerr.IllegalAddress); err != nil {
		t.Fatal(err)
	}
	if a, err := d.DeviceAttributes(); err != nil || a.Len() == 0 {
		t.Fatalf("after a sticky fault: %v", err)
	}
	a, _ := d.DeviceAttributes()
	a.Value[attrMultiprocessorCount] = 1 // a caller's copy: the next answer is whole
	if err := d.Close(); err != nil && !cudaerr.Is(err, cudaerr.IllegalAddress) {
		t.Fatal(err)
	}
	if _, err := d.DeviceAttributes(); !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
		t.Fatalf("after Close: %v, want cudaErrorContextIsDestroyed", err)
	}
	d2 := openDevice(t, b, 0, 1, 0)
	defer d2.Close()
	if a, _ := d2.DeviceAttributes(); a.Value[attrMultiprocessorCount] != DefaultMultiprocessors {
		t.Fatalf("SM count %d after a caller modified an earlier answer", a.Value[attrMultiprocessorCount])
	}
}
