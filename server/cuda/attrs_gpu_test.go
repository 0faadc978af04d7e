//go:build cuda && cgo

package cuda

import (
	"testing"

	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// TestDeviceAttributesOnGPU checks every attribute a Device reports
// against the driver's own answer, on every GPU.
func TestDeviceAttributesOnGPU(t *testing.T) {
	drv := requireGPU(t)
	b := newGPUBackend(t)
	defer b.Close()
	infos, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		d, err := b.Open(backend.DeviceSpec{Index: i, WindowBase: backendtest.WindowBase + uint64(i)*backendtest.WindowSize,
			WindowSize: backendtest.WindowSize, MemoryQuota: 64 << 20})
		if err != nil {
			t.Fatalf("Open(%d): %v", i, err)
		}
		s, err := d.(backend.Attributes).DeviceAttributes()
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		for a := 1; a < backend.MaxDeviceAttr; a++ {
			v, err := drv.DeviceAttribute(b.devs[i], DeviceAttribute(a))
			got, ok := s.Get(a)
			if ok != (err == nil) || (ok && got != int32(v)) {
				t.Errorf("device %d attribute %d = %d (present %v); the driver answers %d, %v", i, a, got, ok, v, err)
			}
		}
		if sm, _ := s.Get(int(AttrMultiprocessorCount)); int(sm) != info.Multiprocessors {
			t.Errorf("device %d: SM count %d, Info says %d", i, sm, info.Multiprocessors)
		}
		t.Logf("device %d (%s): %d attributes", i, info.Name, s.Len())
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
