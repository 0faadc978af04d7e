//go:build cgo

package cuda

import (
	"sync"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// testFakeAttributes runs in TestFakeDriver's child: the attributes come
// from the fake's cuDeviceGetAttribute, which answers 1..147 except 92.
func testFakeAttributes(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	b := newBackend(t)
	defer b.Close()
	infos, err := b.Devices()
	if err != nil || len(infos) < 2 {
		t.Fatalf("Devices = %d, %v; want two", len(infos), err)
	}
	open := func(index, slot int) backend.Device {
		t.Helper()
		d, err := b.Open(backend.DeviceSpec{Index: index, WindowBase: backendtest.WindowBase + uint64(slot)*backendtest.WindowSize,
			WindowSize: backendtest.WindowSize, MemoryQuota: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d0, d1 := open(0, 0), open(1, 1)
	defer d1.Close()

	// Concurrent first calls read once and agree.
	sets := make([]*backend.DeviceAttrs, 4)
	var wg sync.WaitGroup
	for i := range sets {
		wg.Go(func() {
			s, err := d0.(backend.Attributes).DeviceAttributes()
			if err != nil {
				t.Error(err)
			}
			sets[i] = s
		})
	}
	wg.Wait()
	for _, s := range sets[1:] {
		if s != sets[0] {
			t.Fatal("concurrent first calls read the attributes more than once")
		}
	}
	s := sets[0]
	tests := []struct {
		name    string
		attr    int
		want    int32
		present bool
	}{
		{name: "SM count", attr: int(AttrMultiprocessorCount), want: int32(infos[0].Multiprocessors), present: true},
		{name: "compute major", attr: int(AttrComputeCapabilityMajor), want: int32(infos[0].ComputeMajor), present: true},
		{name: "negative value", attr: 131, want: -1, present: true},
		{name: "PCI bus", attr: int(AttrPCIBusID), want: 0x18, present: true},
		{name: "last known", attr: 147, want: 1, present: true},
		{name: "refused: retired", attr: 92},
		{name: "refused: unknown", attr: 148},
		{name: "refused: largest", attr: backend.MaxDeviceAttr - 1},
		{name: "no attribute 0", attr: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := s.Get(tt.attr)
			if ok != tt.present || v != tt.want {
				t.Fatalf("attribute %d = %d (present %v), want %d (present %v)", tt.attr, v, ok, tt.want, tt.present)
			}
		})
	}
	if n := s.Len(); n != 146 {
		t.Errorf("%d attributes, want 146", n)
	}

	// Another physical device has its own; a later Device of the same
	// one gets the set already read.
	s1, err := d1.(backend.Attributes).DeviceAttributes()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s1.Get(int(AttrPCIBusID)); v != 0x38 || s1 == s {
		t.Errorf("device 1: PCI bus %#x, shared set %v", v, s1 == s)
	}
	if err := d0.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d0.(backend.Attributes).DeviceAttributes(); !cudaerr.Is(err, cudaerr.ContextIsDestroyed) {
		t.Errorf("after Close: %v, want cudaErrorContextIsDestroyed", err)
	}
	d2 := open(0, 2)
	defer d2.Close()
	if again, err := d2.(backend.Attributes).DeviceAttributes(); err != nil || again != s {
		t.Errorf("a new Device on device 0: %v, same set %v", err, again == s)
	}
}
