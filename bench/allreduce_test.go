package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/runtime"
)

// ncclEnv makes the test binary act as the Python interpreter running
// the NCCL baseline script in serve mode, with the behaviour its value
// names (see fakeNCCLMain).
const ncclEnv = "XGPU_BENCH_TEST_NCCL"

// fakeNCCLMain is `python3 nccl_allreduce.py --nprocs N --port P serve`,
// faked: it checks its command line and environment and answers as the
// script does. Modes: ok; notorch (refuses every command, as the script
// does without torch); ranks+1 (reports one rank more than asked).
func fakeNCCLMain(mode string, args []string, in io.Reader, out io.Writer) int {
	w := bufio.NewWriter(out)
	defer w.Flush()
	why := ""
	nprocs, _ := strconv.Atoi(argAfter(args, "--nprocs"))
	port, _ := strconv.Atoi(argAfter(args, "--port"))
	switch {
	case len(args) != 6 || !strings.HasSuffix(args[0], ".py") || args[5] != "serve":
		why = fmt.Sprintf("bad command line %q", args)
	case nprocs < 2 || port < 1 || port > 65535:
		why = fmt.Sprintf("bad --nprocs or --port in %q", args)
	case os.Getenv("NCCL_NVLS_ENABLE") != "0" || os.Getenv("TORCH_SYMM_MEM_DISABLE_MULTICAST") != "1" || os.Getenv("NVSHMEM_DISABLE_NVLS") != "1":
		why = "NVLink multicast is not off"
	case mode == "notorch":
		why = "torch is not available: No module named 'torch'"
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, err := parseCommand(sc.Text())
		switch {
		case why != "":
			fmt.Fprintf(w, "error %s\n", why)
		case err != nil:
			fmt.Fprintf(w, "error %v\n", err)
		case cmd.Op == NativeInfo:
			ranks := nprocs
			if mode == "ranks+1" {
				ranks++
			}
			fmt.Fprintf(w, "devices 4 count\nranks %d count\nok\n", ranks)
		case cmd.Op == NativeAllReduce:
			fmt.Fprintf(w, "allreduce %.6f GB/s\nok\n", 100+float64(cmd.Bytes>>20))
		default:
			fmt.Fprintf(w, "error unknown operation %q\n", cmd.Op)
		}
		w.Flush()
	}
	return 0
}

// argAfter returns the argument after flag, or "".
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// wantLinkBound is the name of the allreduce group's link bound for
// workers linked by a local lane (lane) or by QUIC.
func wantLinkBound(lane bool) string {
	return "link bound: " + wantPeerBaseline(lane) + ", both directions at once"
}

func TestLayoutName(t *testing.T) {
	tests := []struct {
		name    string
		servers [][]int
		want    string
	}{
		{"one server", [][]int{{0, 1}}, "1x2"},
		{"two by one", [][]int{{0}, {1}}, "2x1"},
		{"two by two", [][]int{{0, 1}, {2, 3}}, "2x2"},
		{"four by one", [][]int{{0}, {1}, {2}, {3}}, "4x1"},
		{"uneven", [][]int{{0, 1}, {2}}, "2+1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := layoutName(tt.servers); got != tt.want {
				t.Errorf("layoutName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAllReduceSizes(t *testing.T) {
	tests := []struct {
		name           string
		sizes          []int64
		want, tooSmall []int64
	}{
		{"copy sizes", []int64{64 << 20, 1 << 20, 4 << 20}, []int64{1 << 20, 4 << 20, 64 << 20}, nil},
		{"rounded to floats", []int64{1023, 1021}, []int64{1020}, nil},
		{"too small", []int64{3, 4}, []int64{4}, []int64{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, small := allReduceSizes(tt.sizes)
			if !slices.Equal(got, tt.want) || !slices.Equal(small, tt.tooSmall) {
				t.Errorf("allReduceSizes = %v, %v; want %v, %v", got, small, tt.want, tt.tooSmall)
			}
		})
	}
}

func TestBusFactor(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want float64
	}{{2, 1}, {4, 1.5}, {8, 1.75}} {
		if got := busFactor(tt.n); got != tt.want {
			t.Errorf("busFactor(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestAlgoName(t *testing.T) {
	for _, tt := range []struct{ env, want string }{{"", "auto"}, {"ring", "ring"}, {"auto", "auto"}, {"nonsense", "auto"}} {
		t.Setenv("XGPU_ALGO", tt.env)
		if got := algoName(); got != tt.want {
			t.Errorf("XGPU_ALGO=%q: algoName = %q, want %q", tt.env, got, tt.want)
		}
	}
}

// TestRunAllReduce runs the allreduce group on two servers with two
// devices each (2x2: ranks inside one worker and across the two), against
// the link bound, then with an NCCL baseline (a fake), the link bound then
// the reference; and on the two devices of one server, where there is no
// link to bound it.
func TestRunAllReduce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := startServer(t, "bench-ar-a", 2), startServer(t, "bench-ar-b", 2)
	peerA, peerB := startPeer(t), startPeer(t)
	m, err := DeviceMapOf(ctx, []DeviceRef{{Server: a}, {Server: b}, {Server: a, GPU: 1}, {Server: b, GPU: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := runtime.Open(ctx, runtime.Config{Map: m, Client: "bench allreduce test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lanes := goruntime.GOOS == "linux"
	const rounds = 2
	opt := Options{Sizes: []int64{1 << 20, 128 << 10, 2}, Groups: []string{GroupAllReduce}, Rounds: rounds, RoundBytes: 1}
	host := Env{Client: c, DevA: 0, DevB: 1, Ranks: []int{0, 2, 1, 3}, PeerA: peerA, PeerB: peerB}
	nat := &fakeNative{}
	withNCCL := host
	withNCCL.NCCL = nat
	oneServer := withNCCL
	oneServer.Ranks = []int{0, 2}
	tests := []struct {
		name     string
		env      Env
		cases    string
		baseline string
		ref      string
		skipped  string
	}{
		{"host", host, "allreduce/2x2/128KiB allreduce/2x2/1MiB", wantLinkBound(lanes), "", "allreduce/2B"},
		{"nccl", withNCCL, "allreduce/2x2/128KiB allreduce/2x2/1MiB", "NCCL all-reduce", wantLinkBound(lanes), "allreduce/2B"},
		{"nccl, one server", oneServer, "allreduce/1x2/128KiB allreduce/1x2/1MiB", "NCCL all-reduce", "", "allreduce/2B allreduce/link-bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Run(ctx, tt.env, opt)
			if err != nil {
				t.Fatal(err)
			}
			var names, skipped []string
			for _, r := range rep.Cases {
				names = append(names, r.Name)
				if r.XGPU <= 0 || r.Baseline <= 0 || !strings.HasPrefix(r.BaselineName, tt.baseline) || r.ReferenceName != tt.ref ||
					(tt.ref != "" && r.Reference <= 0) || r.Unit != UnitGBps || r.Better != "higher" {
					t.Errorf("%s: %+v", r.Name, r)
				}
				if r.ClientPayloadBytes == nil || *r.ClientPayloadBytes != 0 {
					t.Errorf("%s: client payload %v, want 0", r.Name, r.ClientPayloadBytes)
				}
				if !strings.Contains(r.XGPUName, "f32 sum") || !strings.Contains(r.XGPUName, "auto algorithm") {
					t.Errorf("%s: xgpu %q", r.Name, r.XGPUName)
				}
				if r.Samples != rounds || r.Rounds != rounds {
					t.Errorf("%s: rounds %d, samples %d", r.Name, r.Rounds, r.Samples)
				}
			}
			for _, s := range rep.Skipped {
				skipped = append(skipped, s.Group)
			}
			if got := strings.Join(names, " "); got != tt.cases {
				t.Errorf("cases %q, want %q", got, tt.cases)
			}
			if got := strings.Join(skipped, " "); got != tt.skipped {
				t.Errorf("skipped %q, want %q", got, tt.skipped)
			}
			var tab bytes.Buffer
			if err := rep.WriteTable(&tab); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(tab.String(), "allreduce: xgpu: ncclAllReduce in place") {
				t.Errorf("table lacks the all-reduce legend:\n%s", tab.String())
			}
		})
	}
	// The NCCL baseline ran once untimed, then once per round and size,
	// each all-reduce of a size in bytes, once per run with NCCL.
	if got, want := nat.count(NativeAllReduce), 2*(1+rounds*2); got != want {
		t.Errorf("%d NCCL commands, want %d", got, want)
	}
	for _, cmd := range nat.cmds {
		if cmd.Bytes != 128<<10 && cmd.Bytes != 1<<20 || cmd.Count != 1 {
			t.Errorf("NCCL command %v", cmd)
		}
	}
	// Ranks on one server and no NCCL: nothing to compare with.
	noLink := host
	noLink.Ranks = []int{0, 2}
	if _, err := Run(ctx, noLink, opt); err == nil || !strings.Contains(err.Error(), "needs the ranks on two servers") {
		t.Errorf("Run on one server without NCCL = %v", err)
	}
	// Run freed what it allocated.
	for d := range 4 {
		free, total, err := c.MemGetInfo(d)
		if err != nil {
			t.Fatal(err)
		}
		if free != total {
			t.Errorf("device %d: %d of %d bytes free after Run", d, free, total)
		}
	}
}

// fakeScript is the path of a script the fake interpreter is given; it
// need not exist.
const fakeScript = "examples/bench/nccl_allreduce.py"

// TestStartNCCL drives a fake NCCL baseline (this test binary as the
// interpreter): its command line, its environment, the serve protocol and
// its refusals.
func TestStartNCCL(t *testing.T) {
	ctx := context.Background()
	start := func(mode string, ranks int) (*NativeProgram, error) {
		return StartNCCL(ctx, NCCLConfig{Python: os.Args[0], Script: fakeScript, Ranks: ranks,
			Env: []string{ncclEnv + "=" + mode}, Timeout: time.Minute})
	}
	t.Run("answers", func(t *testing.T) {
		p, err := start("ok", 4)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		figs, err := p.Measure(ctx, NativeCommand{Op: NativeAllReduce, Count: 3, Bytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if vs, err := values(figs, NativeAllReduce, UnitGBps, 1); err != nil || vs[0] != 164 {
			t.Errorf("allreduce = %v, %v; want 164 GB/s", vs, err)
		}
	})
	tests := []struct {
		name   string
		mode   string
		ranks  int
		cfg    *NCCLConfig // instead of the fake
		want   string
		native bool // a *NativeError: the script refused
	}{
		{"no torch", "notorch", 2, nil, "torch is not available", true},
		{"wrong ranks", "ranks+1", 2, nil, "runs 3 ranks, want 2", false},
		{"one rank", "ok", 1, nil, "1 ranks, want at least 2", false},
		{"no script", "", 0, &NCCLConfig{Ranks: 2}, "no script path", false},
		{"bad port", "", 0, &NCCLConfig{Script: fakeScript, Ranks: 2, Port: 70000}, "port 70000", false},
		{"no interpreter", "", 0, &NCCLConfig{Python: "/nonexistent/python3", Script: fakeScript, Ranks: 2}, "no such file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p *NativeProgram
			var err error
			if tt.cfg != nil {
				p, err = StartNCCL(ctx, *tt.cfg)
			} else {
				p, err = start(tt.mode, tt.ranks)
			}
			if err == nil {
				p.Close()
				t.Fatalf("StartNCCL succeeded, want an error with %q", tt.want)
			}
			var ne *NativeError
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bench: nccl: ") || errors.As(err, &ne) != tt.native {
				t.Errorf("StartNCCL = %v; want an error with %q (refusal %v)", err, tt.want, tt.native)
			}
		})
	}
}

// TestNCCLScript runs the real script where python3 is installed: without
// torch (or CUDA, or GPUs) it refuses every command with the reason, and
// its default mode fails with it.
func TestNCCLScript(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	script := filepath.Join("..", fakeScript)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := StartNCCL(ctx, NCCLConfig{Python: python, Script: script, Ranks: 2})
	if err == nil {
		// torch, CUDA, NCCL and two GPUs: it works.
		defer p.Close()
		figs, err := p.Measure(ctx, NativeCommand{Op: NativeAllReduce, Count: 2, Bytes: 1 << 20})
		if _, verr := values(figs, NativeAllReduce, UnitGBps, 1); err != nil || verr != nil {
			t.Fatalf("allreduce = %v, %v, %v", figs, err, verr)
		}
		return
	}
	var ne *NativeError
	if !errors.As(err, &ne) || ne.Msg == "" {
		t.Fatalf("StartNCCL = %v, want the script's refusal", err)
	}
	t.Logf("the script refuses: %s", ne.Msg)
	out, err := exec.CommandContext(ctx, python, script, "--nprocs", "2", "--port", "1").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), ne.Msg) {
		t.Errorf("default mode: %v, %q; want exit 2 with %q", err, out, ne.Msg)
	}
}
