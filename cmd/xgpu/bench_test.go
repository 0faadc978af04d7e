package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/bench"
	"github.com/xgpu/xgpu/internal/pb"
)

// TestBenchFlags: bad flags fail before any process starts.
func TestBenchFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad size", []string{"--sizes", "1MiB,lots"}, "invalid size"},
		{"zero size", []string{"--sizes", "0"}, "outside"},
		{"huge size", []string{"--sizes", "1TiB"}, "outside"},
		{"unknown case", []string{"--cases", "h2d,kernels"}, `unknown case group "kernels"`},
		{"negative rounds", []string{"--rounds", "-1"}, "negative"},
		{"stray argument", []string{"now"}, "Usage"},
		{"unknown backend", []string{"--backend", "rocm"}, `--backend "rocm": want host or cuda`},
		{"cuda without native", []string{"--backend", "cuda"}, "--backend cuda needs --native"},
		{"native on host", []string{"--native", "/bin/true"}, "need --backend cuda"},
		{"gpus on host", []string{"--gpus", "0,1"}, "need --backend cuda"},
		{"native not a program", []string{"--backend", "cuda", "--native", "/nonexistent/cudabench"}, "not an executable file"},
		{"native a directory", []string{"--backend", "cuda", "--native", "/"}, "not an executable file"},
		{"native group on host", []string{"--cases", "sync,peer-local"}, "peer-local: the group compares with native CUDA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"bench"}, tt.args...), &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want a failure with %q", code, errb.String(), tt.want)
			}
		})
	}
}

// TestBenchCommand runs `xgpu bench` on a tiny configuration: two servers,
// two baseline peers and the client, as processes.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	cmd := exec.Command(xgpuBin, "bench", "--sizes", "128KiB", "--cases", "sync,async,h2d,peer",
		"--rounds", "1", "--sync-calls", "5", "--async-calls", "50", "--json", jsonPath)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("xgpu bench: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, s := range []string{"sync/d2h-4B", "h2d/128KiB", "peer/128KiB", "client payload 0 B", "cores"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	if len(rep.Cases) != 5 || rep.Backend != "host" || rep.Machine.Cores < 1 {
		t.Fatalf("report: %s", b)
	}
	for _, c := range rep.Cases {
		if c.XGPU <= 0 || c.Baseline <= 0 || c.Ratio <= 0 {
			t.Errorf("%s: %+v", c.Name, c)
		}
		if c.Group == bench.GroupPeer && (c.ClientPayloadBytes == nil || *c.ClientPayloadBytes != 0) {
			t.Errorf("%s: client payload %v, want 0", c.Name, c.ClientPayloadBytes)
		}
	}
}

// TestPlanGPUs: how a cuda run spreads over the GPUs it may use.
func TestPlanGPUs(t *testing.T) {
	gpus := func(n int) []*pb.GPU {
		var out []*pb.GPU
		for i := range n {
			out = append(out, &pb.GPU{Index: int32(i), Uuid: fmt.Sprintf("GPU-%d", i)})
		}
		return out
	}
	tests := []struct {
		name          string
		n             int
		a, b, visible string
		devices       string // (server, gpu) of each logical device
		devs          [3]int // DevA, DevB, DevA2
		native        bench.NativeDevices
		skip          string
		err           string
	}{
		{name: "none", n: 0, err: "no GPU"},
		{name: "one GPU: no peer groups", n: 1, a: "GPU-0", visible: "GPU-0", devices: "[{0 0}]",
			skip: "peer needs 2 GPUs; 1 in use, peer-local needs 2 GPUs; 1 in use"},
		{name: "two GPUs: B shares A's second", n: 2, a: "GPU-0,GPU-1", b: "GPU-1", visible: "GPU-0,GPU-1",
			devices: "[{0 0} {1 0} {0 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 1}},
		{name: "three GPUs: B on its own", n: 3, a: "GPU-0,GPU-1", b: "GPU-2", visible: "GPU-0,GPU-1,GPU-2",
			devices: "[{0 0} {1 0} {0 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 2}},
		{name: "four GPUs: three used", n: 4, a: "GPU-0,GPU-1", b: "GPU-2", visible: "GPU-0,GPU-1,GPU-2",
			devices: "[{0 0} {1 0} {0 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := planGPUs(gpus(tt.n))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("planGPUs = %+v, %v; want an error with %q", l, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var skip []string
			for _, g := range bench.Groups {
				if r, ok := l.skip[g]; ok {
					skip = append(skip, g+" "+r)
				}
			}
			slices.Sort(skip)
			got := []string{strings.Join(l.a, ","), strings.Join(l.b, ","), strings.Join(l.visible, ","),
				fmt.Sprint(l.devices), fmt.Sprint([3]int{l.devA, l.devB, l.devA2}), fmt.Sprint(l.native), strings.Join(skip, ", ")}
			want := []string{tt.a, tt.b, tt.visible, tt.devices, fmt.Sprint(tt.devs), fmt.Sprint(tt.native), tt.skip}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("planGPUs:\n got %q\nwant %q", got, want)
			}
			for _, d := range l.devices {
				servers := [][]string{l.a, l.b}
				if d.server > 1 || d.gpu >= len(servers[d.server]) {
					t.Errorf("device %v names no GPU of a started server", d)
				}
			}
		})
	}
}

func TestDescribeGPUs(t *testing.T) {
	tests := []struct {
		name string
		gpus []*pb.GPU
		want string
	}{
		{"none", nil, ""},
		{"same", []*pb.GPU{{Name: "NVIDIA H200"}, {Name: "NVIDIA H200"}}, "2 x NVIDIA H200"},
		{"mixed", []*pb.GPU{{Name: "NVIDIA H200"}, {Name: "NVIDIA A100"}, {Name: "NVIDIA H200"}}, "2 x NVIDIA H200, 1 x NVIDIA A100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeGPUs(tt.gpus); got != tt.want {
				t.Errorf("describeGPUs = %q, want %q", got, tt.want)
			}
		})
	}
}
