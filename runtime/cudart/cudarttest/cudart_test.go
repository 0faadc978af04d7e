package cudarttest

import (
	"context"
	"debug/elf"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/server/servertest"
)

func TestMain(m *testing.M) {
	// The in-process workers log through the default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if shim.dir != "" {
			os.RemoveAll(shim.dir)
		}
	}))
}

const deviceMemory = 1 << 30

// shim is the shim built once for the package's tests.
var shim struct {
	once sync.Once
	dir  string
	err  error
}

// buildShim builds libxgpu.so, libcudart.so.13 and libcuda.so.1 into a
// directory shared by the package's tests.
func buildShim(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the shim is built for Linux")
	}
	for _, tool := range []string{"gcc", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	shim.once.Do(func() {
		dir, err := os.MkdirTemp("", "xgpu-shim-")
		if err != nil {
			shim.err = err
			return
		}
		shim.dir = dir
		cmd := exec.Command("bash", "../build.sh", dir)
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			shim.err = fmt.Errorf("build.sh: %v\n%s", err, out)
		}
	})
	if shim.err != nil {
		t.Fatal(shim.err)
	}
	return shim.dir
}

// compile builds testdata/src against the facades in dir: libs, by
// default libcudart.so.13.
func compile(t *testing.T, dir, src string, libs ...string) string {
	t.Helper()
	if len(libs) == 0 {
		libs = []string{"libcudart.so.13"}
	}
	exe := filepath.Join(t.TempDir(), strings.TrimSuffix(src, ".c"))
	args := []string{"-std=gnu11", "-O1", "-Wall", "-Werror", "-o", exe, filepath.Join("testdata", src)}
	for _, l := range libs {
		args = append(args, filepath.Join(dir, l))
	}
	args = append(args, "-Wl,-rpath,"+dir, "-lpthread", "-ldl")
	cmd := exec.Command("gcc", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, out)
	}
	return exe
}

// startServer serves n emulated devices on the host backend in this
// process and returns the device map of all of them.
func startServer(t *testing.T, n int) *devicemap.Map {
	t.Helper()
	return servertest.StartHost(t, "cudarttest", n, deviceMemory)
}

func writeMap(t *testing.T, m *devicemap.Map) string {
	t.Helper()
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "map.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs exe with env added to a clean environment and returns its
// output; it fails the test unless the program printed PASS and exited 0.
func run(t *testing.T, exe string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "XGPU_LOG_LEVEL=warn"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nPASS\n") {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(exe), args, err, out)
	}
	t.Logf("%s %v:\n%s", filepath.Base(exe), args, out)
	return string(out)
}

// TestCProgram runs testdata/shim_test.c: devices, properties and
// attributes, per-thread current device and last error, memory, peer and
// unified-addressing copies, pointer attributes, streams, events,
// registration of a fat binary and the launch configuration stack, and a
// function the shim does not serve.
func TestCProgram(t *testing.T) {
	dir := buildShim(t)
	exe := compile(t, dir, "shim_test.c")
	m := startServer(t, 2)
	mapFile := writeMap(t, m)
	tests := []struct {
		name string
		env  []string
		mode string
		want []string // in the output
	}{
		{"all", []string{"XGPU_DEVICE_MAP=" + mapFile}, "all",
			[]string{"function=cudaGraphicsUnregisterResource", "not supported by xgpu"}},
		{"no configuration", nil, "noconfig", []string{"XGPU_DEVICE_MAP"}},
		{"visible devices", []string{"XGPU_DEVICE_MAP=" + mapFile, "CUDA_VISIBLE_DEVICES=1"}, "visible1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, exe, tt.env, tt.mode)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if n := strings.Count(out, "function=cudaGraphicsUnregisterResource"); n > 1 {
				t.Errorf("cudaGraphicsUnregisterResource logged %d times, want once:\n%s", n, out)
			}
		})
	}
}

// TestDriverProgram runs testdata/driver_test.c, which uses libcuda.so.1
// beside libcudart.so.13 as PyTorch does: primary context state before
// and after the runtime uses a device (no cuInit first), the current
// context shared with the runtime's current device, devices, pointer
// queries, memory, modules loaded, looked up and launched through the
// driver (kernel parameters and a packed buffer), a module global, and
// entry points found through cudaGetDriverEntryPointByVersion and
// cuGetProcAddress_v2 by version and stream flags.
func TestDriverProgram(t *testing.T) {
	dir := buildShim(t)
	exe := compile(t, dir, "driver_test.c", "libcuda.so.1", "libcudart.so.13")
	m := startServer(t, 2)
	mapFile := writeMap(t, m)
	moduleFile := filepath.Join(t.TempDir(), "module.txt")
	if err := os.WriteFile(moduleFile, []byte("xgpu-host-module v1\nkernel fill_u32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		args []string
		once []string // logged exactly once
	}{
		{"all", []string{"XGPU_DEVICE_MAP=" + mapFile}, []string{"all", moduleFile},
			[]string{"function=cuLinkCreate_v2", "function=cuMemCreate", `function="cuPointerGetAttribute(attribute 7)"`}},
		{"no configuration", nil, []string{"noconfig"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := run(t, exe, tt.env, tt.args...)
			for _, w := range tt.once {
				if n := strings.Count(out, w); n != 1 {
					t.Errorf("%s logged %d times, want once:\n%s", w, n, out)
				}
			}
		})
	}
}

// readNames returns the names a facade's names file lists.
func readNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			want[f[0]] = true
		}
	}
	return want
}

// TestExports checks that each facade exports exactly the functions of
// NVIDIA's library (its names file) with the library's symbol versions
// (libcudart.so.13 for the runtime, none for the driver), and nothing
// else, under the library's soname, and that it needs libxgpu.so.
func TestExports(t *testing.T) {
	dir := buildShim(t)
	tests := []struct {
		lib, names, version string
		count               int // the number of names NVIDIA's library exports; 0: not checked
	}{
		{"libcudart.so.13", "../facade/cudart.names", "libcudart.so.13", 422},
		{"libcuda.so.1", "../driver/cuda.names", "", 682},
	}
	for _, tt := range tests {
		t.Run(tt.lib, func(t *testing.T) {
			want := readNames(t, tt.names)
			f, err := elf.Open(filepath.Join(dir, tt.lib))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			syms, err := f.DynamicSymbols()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, s := range syms {
				if s.Section == elf.SHN_UNDEF {
					continue
				}
				if elf.ST_TYPE(s.Info) == elf.STT_FUNC {
					if s.Version != tt.version {
						t.Errorf("%s has version %q, want %q", s.Name, s.Version, tt.version)
					}
					got[s.Name] = true
				}
			}
			for n := range want {
				if !got[n] {
					t.Errorf("%s is not exported", n)
				}
			}
			for n := range got {
				if !want[n] {
					t.Errorf("%s is exported but not by NVIDIA's %s", n, tt.lib)
				}
			}
			if tt.count != 0 && len(want) != tt.count {
				t.Errorf("%d names listed, want %d", len(want), tt.count)
			}
			soname, err := f.DynString(elf.DT_SONAME)
			if err != nil || len(soname) != 1 || soname[0] != tt.lib {
				t.Errorf("soname %v, %v", soname, err)
			}
			needed, err := f.ImportedLibraries()
			if err != nil || !slices.Contains(needed, "libxgpu.so") {
				t.Errorf("needs %v (%v), want libxgpu.so among them", needed, err)
			}
		})
	}
}
