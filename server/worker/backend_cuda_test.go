//go:build cuda && cgo

package worker

import (
	"testing"

	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/cuda"
)

// With the cuda tag, on a machine whose driver sees a GPU, the tests
// written for any backend run on the cuda backend.
func init() {
	drv, err := cuda.Open("")
	if err != nil || drv.Init() != nil {
		return
	}
	if n, err := drv.DeviceCount(); err != nil || n == 0 {
		return
	}
	gpuBackend = func(t testing.TB) backend.Backend {
		t.Helper()
		b, err := cuda.New(cuda.Config{})
		if err != nil {
			t.Fatalf("cuda.New: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
}

// TestBackendUnderTest names the backend the run used.
func TestBackendUnderTest(t *testing.T) {
	if !onGPU() {
		t.Skip("no GPU: the tests ran on the host backend")
	}
	b := newBackend(t, 1)
	infos, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worker tests on the %s backend: %d device(s), %s", b.Name(), len(infos), infos[0].Name)
}
