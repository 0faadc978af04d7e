//go:build cgo

package cuda

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// skipIfLoaded skips a test of the load failure paths on a machine where
// a driver is already loaded into the test process.
func skipIfLoaded(t *testing.T) {
	t.Helper()
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded != nil {
		t.Skip("a driver is loaded in this process")
	}
}

func TestOpenFailures(t *testing.T) {
	skipIfLoaded(t)
	tests := []struct {
		name       string
		path       string
		wantSymbol string
		wantText   string
	}{
		{"missing library", "libxgpu-no-such-driver.so.1", "", "cannot load libxgpu-no-such-driver.so.1"},
		{"library without the driver API", "libc.so.6", "cuInit", "libc.so.6 lacks cuInit"},
		{"NUL in path", "libcuda\x00.so", "", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.path)
			if d != nil || err == nil {
				t.Fatalf("Open(%q) = %v, %v; want a *LoadError", tt.path, d, err)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Open(%q) error %v (%T) is not a *LoadError", tt.path, err, err)
			}
			if le.Symbol != tt.wantSymbol {
				t.Errorf("Symbol = %q, want %q", le.Symbol, tt.wantSymbol)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.HasPrefix(err.Error(), "cuda: ") {
				t.Errorf("error %q does not start with cuda: and mention %q", err, tt.wantText)
			}
		})
	}
	// A failed load leaves nothing behind: a later Open tries again.
	if _, err := Open("libxgpu-no-such-driver.so.1"); err == nil {
		t.Fatal("second Open of a missing library succeeded")
	}
}

func TestOpenDefaultLibrary(t *testing.T) {
	d, err := Open("")
	if err == nil {
		if d.Path() != DefaultLibrary {
			t.Fatalf("Path() = %q, want %q", d.Path(), DefaultLibrary)
		}
		t.Skip("the CUDA driver is installed here")
	}
	var le *LoadError
	if !errors.As(err, &le) || le.Library != DefaultLibrary {
		t.Fatalf("Open(\"\") = %v, want a *LoadError for %s", err, DefaultLibrary)
	}
}

func TestNewWithoutDriver(t *testing.T) {
	skipIfLoaded(t)
	_, err := New(Config{Library: "libxgpu-no-such-driver.so.1"})
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("New = %v, want a *LoadError", err)
	}
	if _, err := New(Config{QueueLength: -1}); err == nil || errors.As(err, &le) {
		t.Fatalf("New with a bad config = %v, want a config error", err)
	}
}

func TestOpenConcurrent(t *testing.T) {
	skipIfLoaded(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Open("libc.so.6"); err == nil {
				t.Error("Open(libc.so.6) succeeded")
			}
		}()
	}
	wg.Wait()
}

// TestHostFnTrampoline drives the cuLaunchHostFunc trampoline from a
// thread the Go runtime did not create, as the driver does.
func TestHostFnTrampoline(t *testing.T) {
	var ran atomic.Int32
	var tid atomic.Int64
	for range 20 {
		if err := hostFnSelfTest(func() {
			ran.Add(1)
			tid.Store(int64(syscall.Gettid()))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if ran.Load() != 20 {
		t.Fatalf("the function ran %d times, want 20", ran.Load())
	}
	if tid.Load() == int64(syscall.Gettid()) {
		t.Fatal("the function ran on the test's thread, not on a foreign one")
	}
	if n := hostFns.len(); n != 0 {
		t.Fatalf("%d functions left in the table", n)
	}
}

// TestDriverRejectsBadInput checks the argument checks that run before the
// driver is called (they need no driver).
func TestDriverRejectsBadInput(t *testing.T) {
	d := &Driver{}
	tests := []struct {
		name string
		call func() error
	}{
		{"negative ordinal", func() error { _, err := d.DeviceGet(-1); return err }},
		{"empty host allocation", func() error { _, err := d.MemHostAlloc(0, 0); return err }},
		{"huge host allocation", func() error { _, err := d.MemHostAlloc(1<<60, 0); return err }},
		{"free of nothing", func() error { return d.MemFreeHost(nil) }},
		{"no access descriptor", func() error { return d.MemSetAccess(0x1000, 4096) }},
		{"nil host function", func() error { return d.LaunchHostFunc(0, nil) }},
		{"empty module", func() error { _, err := d.ModuleLoadData(nil); return err }},
		{"empty function name", func() error { _, err := d.ModuleGetFunction(1, ""); return err }},
		{"NUL in function name", func() error { _, err := d.ModuleGetFunction(1, "k\x00"); return err }},
		{"NUL in global name", func() error { _, _, err := d.ModuleGetGlobal(1, "g\x00"); return err }},
		{"negative parameter index", func() error { _, err := d.FuncGetParamInfo(1, -1); return err }},
		{"empty device-mapped buffer", func() error { _, err := d.MemHostGetDevicePointer(nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("got %v, want an error matching ErrInvalidValue", err)
			}
			if !strings.HasPrefix(err.Error(), "cuda: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	// Empty copies are no-ops that never reach the driver.
	if err := d.MemcpyHtoDAsync(0x1000, nil, 0); err != nil {
		t.Errorf("empty MemcpyHtoDAsync = %v", err)
	}
	if err := d.MemcpyDtoHAsync(nil, 0x1000, 0); err != nil {
		t.Errorf("empty MemcpyDtoHAsync = %v", err)
	}
}
