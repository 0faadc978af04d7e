package cudarttest

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/server"
	"github.com/xgpu/xgpu/server/host"
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

// buildShim builds libxgpu.so and libcudart.so.13 into a directory shared
// by the package's tests.
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

// compile builds testdata/src against the facade in dir.
func compile(t *testing.T, dir, src string) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), strings.TrimSuffix(src, ".c"))
	cmd := exec.Command("gcc", "-std=gnu11", "-O1", "-Wall", "-Werror", "-o", exe, filepath.Join("testdata", src),
		filepath.Join(dir, "libcudart.so.13"), "-Wl,-rpath,"+dir, "-lpthread")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, out)
	}
	return exe
}

// startServer serves n emulated devices on the host backend in this
// process and returns the device map of all of them.
func startServer(t *testing.T, n int) *devicemap.Map {
	t.Helper()
	hc := host.Config{Devices: n, Memory: deviceMemory, HostID: "cudarttest", NVLinks: 4}
	b, err := host.New(hc)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := server.BackendGPUs(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{
		ID: "cudarttest", Host: "cudarttest", Backend: server.BackendHost, Source: server.StaticGPUs(gpus),
		Logger: slog.New(slog.DiscardHandler), Worker: &server.InProcessLauncher{}, HostBackend: &hc,
		WorkerListenHost: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1) // Serve's result, read in cleanup
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	inv := s.Inventory()
	var devs []devicemap.Device
	for _, v := range inv.GetVgpus() {
		g := inv.GetGpus()[v.GetGpuIndex()]
		devs = append(devs, devicemap.Device{
			Host: inv.GetHost(), Server: inv.GetServerId(), Address: lis.Addr().String(),
			GPUUUID: v.GetGpuUuid(), GPUIndex: int(v.GetGpuIndex()), VGPU: v.GetId(), Slot: int(v.GetSlot()),
			MemoryQuota: v.GetMemoryBytes(),
			Properties: devicemap.Properties{Name: g.GetName(), TotalMemory: g.GetMemoryBytes(), PCIBusID: g.GetPciBusId(),
				ComputeCapability: fmt.Sprintf("%d.%d", g.GetCcMajor(), g.GetCcMinor()), MultiprocessorCount: int(g.GetMultiprocessors())},
		})
	}
	m, err := devicemap.New(devs, devicemap.WithLeaseID("cudarttest"))
	if err != nil {
		t.Fatal(err)
	}
	return m
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
			[]string{"cudaGraphCreate", "cudaErrorNotSupported"}},
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
			if n := strings.Count(out, "function=cudaGraphCreate"); n > 1 {
				t.Errorf("cudaGraphCreate logged %d times, want once:\n%s", n, out)
			}
		})
	}
}

// TestExports checks that libcudart.so.13 exports exactly the functions
// of NVIDIA's libcudart.so.13 (facade/cudart.names), each with the symbol
// version libcudart.so.13, and nothing else.
func TestExports(t *testing.T) {
	dir := buildShim(t)
	want := map[string]bool{}
	data, err := os.ReadFile("../facade/cudart.names")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			want[f[0]] = true
		}
	}
	f, err := elf.Open(filepath.Join(dir, "libcudart.so.13"))
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
			if s.Version != "libcudart.so.13" {
				t.Errorf("%s has version %q, want libcudart.so.13", s.Name, s.Version)
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
			t.Errorf("%s is exported but not by NVIDIA's libcudart.so.13", n)
		}
	}
	if len(want) != 422 {
		t.Errorf("%d names listed, want 422", len(want))
	}
	soname, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(soname) != 1 || soname[0] != "libcudart.so.13" {
		t.Errorf("soname %v, %v", soname, err)
	}
}
