//go:build cuda

package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildCudabench compiles examples/bench/cudabench.cu as make bench does
// (for this machine's GPU) and returns the program; it skips the test
// without a GPU or nvcc.
func buildCudabench(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		t.Skip("no NVIDIA GPU on this machine")
	}
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		if _, serr := os.Stat("/usr/local/cuda/bin/nvcc"); serr != nil {
			t.Skip("no nvcc on this machine")
		}
		nvcc = "/usr/local/cuda/bin/nvcc"
	}
	out := filepath.Join(t.TempDir(), "cudabench")
	cmd := exec.Command(nvcc, "-O2", "-arch=native", "-cudart=shared", "-o", out, "../examples/bench/cudabench.cu")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, msg)
	}
	return out
}

// TestGPUNative runs every operation of the real native program once,
// through the serve protocol, and checks that its figures parse and make
// sense.
func TestGPUNative(t *testing.T) {
	path := buildCudabench(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := StartNative(ctx, NativeConfig{Path: path, Stderr: os.Stderr,
		Env: []string{"NCCL_NVLS_ENABLE=0", "TORCH_SYMM_MEM_DISABLE_MULTICAST=1", "NVSHMEM_DISABLE_NVLS=1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	figs, err := p.Measure(ctx, NativeCommand{Op: NativeInfo})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := values(figs, "devices", "count", 1)
	if err != nil || devs[0] < 1 {
		t.Fatalf("info: %v, %v", figs, err)
	}
	tests := []struct {
		name string
		cmd  NativeCommand
		min  float64 // the least credible figure
	}{
		{"d2h 4 B", NativeCommand{Op: NativeD2H4, Count: 100}, 0.1},
		{"stream synchronize", NativeCommand{Op: NativeStreamSync, Count: 100}, 0.01},
		{"memset", NativeCommand{Op: NativeMemset, Count: 1000}, 1000},
		{"launch", NativeCommand{Op: NativeLaunch, Count: 1000}, 1000},
		{"h2d pageable", NativeCommand{Op: NativeH2DPageable, Count: 4, Bytes: 64 << 20}, 0.5},
		{"h2d pinned", NativeCommand{Op: NativeH2DPinned, Count: 4, Bytes: 64 << 20}, 1},
		{"d2h pageable", NativeCommand{Op: NativeD2HPageable, Count: 4, Bytes: 64 << 20}, 0.5},
		{"d2h pinned", NativeCommand{Op: NativeD2HPinned, Count: 4, Bytes: 64 << 20}, 1},
		{"peer", NativeCommand{Op: NativePeer, Count: 4, Bytes: 256 << 20, Peer: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cmd.Op == NativePeer && devs[0] < 2 {
				t.Skip("one GPU")
			}
			figs, err := p.Measure(ctx, tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if NativeUnit(tt.cmd.Op) == UnitMicros {
				want = tt.cmd.Count
			}
			vs, err := values(figs, tt.cmd.Op, NativeUnit(tt.cmd.Op), want)
			if err != nil {
				t.Fatal(err)
			}
			med := quantile(vs, 0.5)
			t.Logf("%s: %.3f %s", tt.cmd, med, NativeUnit(tt.cmd.Op))
			if med < tt.min {
				t.Errorf("%s: %v %s, below %v", tt.cmd, med, NativeUnit(tt.cmd.Op), tt.min)
			}
		})
	}
	// A malformed command is refused and the program goes on.
	if _, err := p.Measure(ctx, NativeCommand{Op: NativeD2H4, Count: 1, Dev: 99}); err == nil {
		t.Error("device 99 accepted")
	}
	if _, err := p.Measure(ctx, NativeCommand{Op: NativeD2H4, Count: 1}); err != nil {
		t.Errorf("after a refusal: %v", err)
	}
}
