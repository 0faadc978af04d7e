package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/bench"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/runtime"
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
		{"nccl-python on host", []string{"--nccl-python", "/usr/bin/python3"}, "need --backend cuda"},
		{"nccl-script on host", []string{"--nccl-script", "x.py"}, "need --backend cuda"},
		{"empty nccl-python", []string{"--backend", "cuda", "--native", "/bin/true", "--nccl-python", ""}, "must not be empty"},
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
// two baseline peers and the client, as processes; once as it comes (local
// lanes where the platform has them) and once with XGPU_LOCAL_LANE=0, which
// keeps the sessions, the workers' link and the references on QUIC.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes")
	}
	lanes := goruntime.GOOS == "linux"
	tests := []struct {
		name      string
		env       []string
		cases     string
		wantCases int
		lane      bool // want the references on a local lane
	}{
		{"default", nil, "sync,async,h2d,peer,allreduce", 6, lanes},
		{"XGPU_LOCAL_LANE=0", []string{runtime.EnvLocalLane + "=0"}, "h2d,peer", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jsonPath := filepath.Join(t.TempDir(), "bench.json")
			cmd := exec.Command(xgpuBin, "bench", "--sizes", "128KiB", "--cases", tt.cases,
				"--rounds", "1", "--sync-calls", "5", "--async-calls", "50", "--json", jsonPath)
			cmd.Env = append(os.Environ(), tt.env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("xgpu bench: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
			}
			for _, s := range []string{"h2d/128KiB", "peer/128KiB", "client payload 0 B", "cores"} {
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
			if len(rep.Cases) != tt.wantCases || rep.Backend != "host" || rep.Machine.Cores < 1 {
				t.Fatalf("report: %s", b)
			}
			wantRef, wantPeer := "raw striped QUIC bulk, 8 lanes", "raw striped QUIC bulk between two processes, 8 lanes"
			if tt.lane {
				wantRef, wantPeer = "raw local lane (shared memory)", "raw local lane (shared memory) between two processes"
			}
			for _, c := range rep.Cases {
				if c.XGPU <= 0 || c.Baseline <= 0 || c.Ratio <= 0 {
					t.Errorf("%s: %+v", c.Name, c)
				}
				switch c.Group {
				case bench.GroupPeer:
					if c.ClientPayloadBytes == nil || *c.ClientPayloadBytes != 0 {
						t.Errorf("%s: client payload %v, want 0", c.Name, c.ClientPayloadBytes)
					}
					if c.BaselineName != wantPeer {
						t.Errorf("%s: baseline %q, want %q", c.Name, c.BaselineName, wantPeer)
					}
				case bench.GroupAllReduce:
					// 2 servers x 2 devices: ranks inside a worker and across.
					if c.Name != "allreduce/2x2/128KiB" || c.BaselineName != "link bound: "+wantPeer+", both directions at once" ||
						c.ClientPayloadBytes == nil || *c.ClientPayloadBytes != 0 {
						t.Errorf("%s: %+v", c.Name, c)
					}
				case bench.GroupH2D:
					if c.ReferenceName != wantRef || c.Reference <= 0 {
						t.Errorf("%s: reference %q (%v), want %q", c.Name, c.ReferenceName, c.Reference, wantRef)
					}
				}
			}
		})
	}
}

// TestBenchPaths: XGPU_LOCAL_LANE in the bench's environment decides the
// path of the run, and the servers are told explicitly when it is QUIC.
func TestBenchPaths(t *testing.T) {
	tests := []struct {
		name    string
		setting string
		want    bench.Path
		env     []string
	}{
		{"unset", "", bench.PathLocalLane, nil},
		{"on", "1", bench.PathLocalLane, nil},
		{"off", "0", bench.PathQUIC, []string{"XGPU_LOCAL_LANE=0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, env := benchPaths(tt.setting)
			if got != tt.want || !slices.Equal(env, tt.env) {
				t.Errorf("benchPaths(%q) = %v, %q; want %v, %q", tt.setting, got, env, tt.want, tt.env)
			}
			if d := describePaths(got); !strings.Contains(d, "XGPU_LOCAL_LANE=0") {
				t.Errorf("describePaths(%v) = %q", got, d)
			}
		})
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
		groups        []string // requested case groups; none: all
		a, b, visible string
		devices       string // (server, gpu) of each logical device
		devs          [3]int // DevA, DevB, DevA2
		native        bench.NativeDevices
		skip          string
		ranks         string // the allreduce ranks, then their GPUs
		err           string
	}{
		{name: "none", n: 0, err: "no GPU"},
		{name: "one GPU: no peer groups", n: 1, a: "GPU-0", visible: "GPU-0", devices: "[{0 0}]",
			skip: "allreduce needs 2 GPUs; 1 in use, peer needs 2 GPUs; 1 in use, peer-local needs 2 GPUs; 1 in use", ranks: "[] []"},
		{name: "two GPUs: one each for the two servers", n: 2, a: "GPU-0", b: "GPU-1", visible: "GPU-0,GPU-1",
			devices: "[{0 0} {1 0}]", devs: [3]int{0, 1, 1}, native: bench.NativeDevices{A: 0, A2: 1, B: 1},
			skip:  "peer-local needs a third GPU beside the two servers' (--cases peer-local measures it on two)",
			ranks: "[0 1] [GPU-0 GPU-1]"},
		{name: "two GPUs, peer-local asked: the pair on A", n: 2, groups: []string{bench.GroupPeerLocal, bench.GroupSync},
			a: "GPU-0,GPU-1", visible: "GPU-0,GPU-1", devices: "[{0 0} {0 1}]", devs: [3]int{0, 1, 1},
			native: bench.NativeDevices{A: 0, A2: 1, B: 1}, skip: "peer needs a third GPU beside the peer-local pair",
			ranks: "[0 1] [GPU-0 GPU-1]"},
		{name: "three GPUs: B on its own", n: 3, a: "GPU-0,GPU-1", b: "GPU-2", visible: "GPU-0,GPU-1,GPU-2",
			devices: "[{0 0} {1 0} {0 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 2},
			ranks: "[0 2 1] [GPU-0 GPU-1 GPU-2]"},
		{name: "four GPUs: 2 x 2 for the all-reduce", n: 4, a: "GPU-0,GPU-1", b: "GPU-2,GPU-3", visible: "GPU-0,GPU-1,GPU-2,GPU-3",
			devices: "[{0 0} {1 0} {0 1} {1 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 2},
			ranks: "[0 2 1 3] [GPU-0 GPU-1 GPU-2 GPU-3]"},
		{name: "eight GPUs, no all-reduce: three used", n: 8, groups: []string{bench.GroupPeer, bench.GroupPeerLocal},
			a: "GPU-0,GPU-1", b: "GPU-2", visible: "GPU-0,GPU-1,GPU-2",
			devices: "[{0 0} {1 0} {0 1}]", devs: [3]int{0, 1, 2}, native: bench.NativeDevices{A: 0, A2: 1, B: 2},
			ranks: "[0 2 1] [GPU-0 GPU-1 GPU-2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := planGPUs(gpus(tt.n), tt.groups)
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
				fmt.Sprint(l.devices), fmt.Sprint([3]int{l.devA, l.devB, l.devA2}), fmt.Sprint(l.native), strings.Join(skip, ", "),
				fmt.Sprint(l.ranks, l.rankGPUs)}
			want := []string{tt.a, tt.b, tt.visible, tt.devices, fmt.Sprint(tt.devs), fmt.Sprint(tt.native), tt.skip, tt.ranks}
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

// TestHostDevices: a host run's device map keeps devices 0 and 1 on
// servers A and B, and puts the all-reduce's ranks server by server.
func TestHostDevices(t *testing.T) {
	tests := []struct {
		name    string
		devices int
		refs    string
		ranks   string
	}{
		{"one device each", 1, "[{a 0} {b 0}]", "[0 1]"},
		{"two devices each", 2, "[{a 0} {b 0} {a 1} {b 1}]", "[0 2 1 3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs, ranks := hostDevices([]string{"a", "b"}, tt.devices)
			if fmt.Sprint(refs) != tt.refs || fmt.Sprint(ranks) != tt.ranks {
				t.Errorf("hostDevices = %v, %v; want %s, %s", refs, ranks, tt.refs, tt.ranks)
			}
		})
	}
}

// TestStartNCCLSkips: where the NCCL baseline cannot start, the reason
// becomes the allreduce group's skip reason, and nothing is left running.
func TestStartNCCLSkips(t *testing.T) {
	script := filepath.Join(t.TempDir(), "nccl_allreduce.py")
	if err := os.WriteFile(script, []byte("import sys\nfor line in sys.stdin:\n    print('error torch is not available', flush=True)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		python = "/nonexistent/python3"
	}
	tests := []struct {
		name, python, script, want string
	}{
		{"no script", python, filepath.Join(t.TempDir(), "missing.py"), "is not a file"},
		{"no interpreter", "/nonexistent/python3", script, "no NCCL baseline"},
		{"script refuses", python, script, "no NCCL baseline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			p, why := startNCCL(t.Context(), &log, benchConfig{python: tt.python, script: tt.script}, []string{"GPU-0", "GPU-1"})
			if p != nil {
				p.Close()
				t.Fatal("startNCCL succeeded")
			}
			if !strings.Contains(why, tt.want) {
				t.Errorf("reason %q, want %q", why, tt.want)
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
