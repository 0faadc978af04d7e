//go:build cgo

package cuda

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/backend/backendtest"
)

// fakeEnv names the fake driver library in the child test process.
const fakeEnv = "XGPU_CUDA_FAKE_DRIVER"

// TestFakeDriver runs the backend conformance suite on testdata/fakecuda.c,
// an emulation of the driver API in host memory, in a child process (the
// driver is loaded once per process). It checks the backend's own logic
// (executor, staging, host functions, waits, handles, errors) where no GPU
// is available; the suite runs on the real driver under the cuda tag.
func TestFakeDriver(t *testing.T) {
	if lib := os.Getenv(fakeEnv); lib != "" {
		fakeChild(t, lib)
		return
	}
	if testing.Short() {
		t.Skip("builds and runs a child process")
	}
	cc := strings.Fields(os.Getenv("CC")) // may carry flags, as cgo allows
	if len(cc) == 0 {
		cc = []string{"gcc"}
	}
	if _, err := exec.LookPath(cc[0]); err != nil {
		t.Skipf("no C compiler: %v", err)
	}
	so := filepath.Join(t.TempDir(), "libfakecuda.so")
	build := exec.Command(cc[0], append(cc[1:], "-shared", "-fPIC", "-O1", "-o", so, "testdata/fakecuda.c", "-lpthread")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the fake driver: %v\n%s", err, out)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestFakeDriver$", "-test.v", "-test.timeout=5m")
	child.Env = append(os.Environ(), fakeEnv+"="+so)
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("conformance suite on the fake driver: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestFakeDriver") {
		t.Fatalf("the child ran no suite:\n%s", out)
	}
}

func fakeChild(t *testing.T, lib string) {
	newBackend := func(t *testing.T) backend.Backend {
		b, err := New(Config{Library: lib})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	}
	backendtest.Run(t, newBackend)

	t.Run("FallbackEntryPoints", func(t *testing.T) {
		drv, err := Open(lib)
		if err != nil {
			t.Fatal(err)
		}
		// The fake exports cuEventElapsedTime only: the loader fell back.
		if !drv.Has("cuEventElapsedTime_v2") {
			t.Error("cuEventElapsedTime was not resolved through its fallback name")
		}
		// It lacks cuFuncGetParamInfo, an optional entry point.
		if drv.Has("cuFuncGetParamInfo") {
			t.Error("Has(cuFuncGetParamInfo) = true on a driver without it")
		}
		var se *SymbolError
		if _, err := drv.FuncGetParamInfo(1, 0); !errors.As(err, &se) || se.Symbol != "cuFuncGetParamInfo" {
			t.Errorf("FuncGetParamInfo = %v, want a *SymbolError", err)
		}
		// It lacks cuLaunchCooperativeKernel too: it loads, and only
		// cooperative launches are refused.
		if drv.Has("cuLaunchCooperativeKernel") || drv.CanLaunchCooperative() {
			t.Error("cooperative launches reported on a driver without cuLaunchCooperativeKernel")
		}
		if err := drv.LaunchCooperativeKernel(1, Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 1, Y: 1, Z: 1}, 0, 0, nil); !errors.As(err, &se) || se.Symbol != "cuLaunchCooperativeKernel" {
			t.Errorf("LaunchCooperativeKernel = %v, want a *SymbolError", err)
		}
		if _, err := Open("libother.so"); err == nil || !strings.Contains(err.Error(), "already loaded") {
			t.Errorf("Open of a second library = %v, want an already-loaded error", err)
		}
	})

	t.Run("HostFunctionsOffCallbackThread", func(t *testing.T) {
		b := newBackend(t).(*Backend)
		defer b.Close()
		d, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if !d.(*DeviceContext).g.waitValue.Load() {
			t.Fatal("the stream memory wait probe failed on a driver that has it")
		}
	})

	t.Run("DeviceAttributes", func(t *testing.T) { testFakeAttributes(t, newBackend) })

	t.Run("KernelCallsReportDriverErrors", func(t *testing.T) {
		b := newBackend(t)
		defer b.Close()
		d, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		dc := d.(*DeviceContext)
		if _, err := dc.LoadModule([]byte("not a module")); cudaerr.Code(err) != cudaerr.NotSupported {
			t.Errorf("LoadModule on the fake = %v, want cudaErrorNotSupported", err)
		}
		if _, err := dc.LoadModule(nil); cudaerr.Code(err) != cudaerr.InvalidValue {
			t.Errorf("LoadModule(nil) = %v, want cudaErrorInvalidValue", err)
		}
		if _, err := dc.Function(1, "k"); cudaerr.Code(err) != cudaerr.InvalidResourceHandle {
			t.Errorf("Function of an unknown module = %v, want cudaErrorInvalidResourceHandle", err)
		}
		one := Dim3{X: 1, Y: 1, Z: 1}
		if err := dc.LaunchKernel(1, one, one, 0, backend.LegacyStream, nil); cudaerr.Code(err) != cudaerr.InvalidResourceHandle {
			t.Errorf("LaunchKernel of an unknown function = %v, want cudaErrorInvalidResourceHandle", err)
		}
		if err := dc.LaunchCooperativeKernel(1, one, one, 0, backend.LegacyStream, nil); cudaerr.Code(err) != cudaerr.InvalidResourceHandle {
			t.Errorf("LaunchCooperativeKernel of an unknown function = %v, want cudaErrorInvalidResourceHandle", err)
		}
		// The fake loads no modules, so the reduction kernels are
		// missing: the Device works, and Reduce says why it cannot.
		if dc.ReducerErr() == nil {
			t.Error("ReducerErr on the fake = nil, want the load failure")
		}
		p, err := dc.Malloc(64)
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.Reduce(p, p, 4, backend.F32, backend.Sum, backend.LegacyStream); cudaerr.Code(err) != cudaerr.NotSupported {
			t.Errorf("Reduce without kernels = %v, want cudaErrorNotSupported", err)
		}
	})

	t.Run("LargeCopiesInChunks", func(t *testing.T) {
		b := newBackend(t)
		defer b.Close()
		d, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: backendtest.WindowBase, WindowSize: backendtest.WindowSize, MemoryQuota: 128 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		const n = 3*stagingChunk + 12345 // chunks and a parallel staging copy
		p, err := d.Malloc(2 * n)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 40<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>13)
		}
		data = data[:n]
		big := make([]byte, parallelStageMin+5)
		copy(big, data)
		if err := d.MemcpyHtoDAsync(p, big, backend.LegacyStream); err != nil {
			t.Fatal(err)
		}
		// Overlapping device-to-device copy bounces through the host.
		if err := d.MemcpyDtoDAsync(p+4097, p, n, backend.LegacyStream); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, n+4097)
		if err := d.MemcpyDtoHAsync(out, p, backend.LegacyStream); err != nil {
			t.Fatal(err)
		}
		if err := d.StreamSynchronize(testContext(t), backend.LegacyStream); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if out[4097+i] != data[i] {
				t.Fatalf("byte %d after the overlapping copy = %d, want %d", i, out[4097+i], data[i])
			}
		}
		for i := range 4097 {
			if out[i] != data[i] {
				t.Fatalf("byte %d before the copy's destination = %d, want %d", i, out[i], data[i])
			}
		}
	})
}

func testContext(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}
