package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
)

// nativeEnv makes the test binary act as the native program in serve
// mode, with the behaviour its value names (see fakeNativeMain).
const nativeEnv = "XGPU_BENCH_TEST_NATIVE"

// fakeFigures are the figures a fake native program answers cmd with:
// the right names, units and number, made-up values.
func fakeFigures(cmd NativeCommand) []Figure {
	unit := NativeUnit(cmd.Op)
	switch unit {
	case "count":
		return []Figure{{Name: "devices", Value: 2, Unit: unit}}
	case UnitMicros:
		out := make([]Figure, cmd.Count)
		for i := range out {
			out[i] = Figure{Name: cmd.Op, Value: float64(i%7) + 1.5, Unit: unit}
		}
		return out
	case UnitRate:
		return []Figure{{Name: cmd.Op, Value: 250000, Unit: unit}}
	default:
		return []Figure{{Name: cmd.Op, Value: 12.5 + float64(cmd.Bytes>>20), Unit: unit}}
	}
}

// parseCommand reads "op count bytes dev peer" as the fake program does.
func parseCommand(line string) (NativeCommand, error) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return NativeCommand{}, fmt.Errorf("want 5 fields, got %d", len(f))
	}
	var n [4]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return NativeCommand{}, err
		}
		n[i] = v
	}
	return NativeCommand{Op: f[0], Count: int(n[0]), Bytes: n[1], Dev: int(n[2]), Peer: int(n[3])}, nil
}

// fakeNativeMain is the native program's serve mode, faked. Modes: ok
// (answers every command; refuses devices above 1), crash (dies at the
// first measurement, as a CUDA error ends the real one), hang (never
// answers a measurement), garbage (answers with a malformed line).
func fakeNativeMain(mode string, in io.Reader, out, errw io.Writer) int {
	sc := bufio.NewScanner(in)
	w := bufio.NewWriter(out)
	for sc.Scan() {
		cmd, err := parseCommand(sc.Text())
		switch {
		case err != nil:
			fmt.Fprintf(w, "error %v\n", err)
		case cmd.Op == NativeInfo:
			fmt.Fprintln(w, "devices 2 count")
			fmt.Fprintln(w, "ok")
		case mode == "crash":
			fmt.Fprintln(errw, "cudabench.cu:120: cudaMemcpy failed: cudaErrorIllegalAddress")
			return 1
		case mode == "hang":
			w.Flush()
			time.Sleep(time.Hour)
		case mode == "garbage":
			fmt.Fprintln(w, "this is not a figure")
		case cmd.Dev > 1 || cmd.Peer > 1:
			fmt.Fprintf(w, "error device %d outside 0..1\n", max(cmd.Dev, cmd.Peer))
		default:
			fmt.Fprintln(w, "# a comment the parser skips")
			for _, f := range fakeFigures(cmd) {
				fmt.Fprintf(w, "%s %.3f %s\n", f.Name, f.Value, f.Unit)
			}
			fmt.Fprintln(w, "ok")
		}
		w.Flush()
	}
	return 0
}

// fakeNative is an in-process Native: it records the commands and answers
// with fakeFigures, or fails the operation fail.
type fakeNative struct {
	fail string

	mu   sync.Mutex // guards cmds
	cmds []NativeCommand
}

func (f *fakeNative) Measure(ctx context.Context, cmd NativeCommand) ([]Figure, error) {
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.cmds = append(f.cmds, cmd)
	f.mu.Unlock()
	if cmd.Op == f.fail {
		return nil, &NativeError{Cmd: cmd, Msg: "injected failure"}
	}
	return fakeFigures(cmd), nil
}

// count returns how many commands of op were measured.
func (f *fakeNative) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.cmds {
		if c.Op == op {
			n++
		}
	}
	return n
}

func TestParseFigures(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Figure
		err  string
	}{
		{"empty", "", nil, ""},
		{"default run", "d2h_4B_median 10.213 us\nh2d_256MiB_pinned 54.812 GB/s\n",
			[]Figure{{"d2h_4B_median", 10.213, "us"}, {"h2d_256MiB_pinned", 54.812, "GB/s"}}, ""},
		{"comments, blanks and spaces", "# cudabench\n\n  peer 395.1   GB/s  \n", []Figure{{"peer", 395.1, "GB/s"}}, ""},
		{"samples of one name", "d2h-4B 1 us\nd2h-4B 2 us\n", []Figure{{"d2h-4B", 1, "us"}, {"d2h-4B", 2, "us"}}, ""},
		{"no trailing newline", "memset-256B 1e6 calls/s", []Figure{{"memset-256B", 1e6, "calls/s"}}, ""},
		{"two fields", "peer 395.1\n", nil, "line 1"},
		{"four fields", "peer 395.1 GB/s extra\n", nil, "got 4 fields"},
		{"not a number", "ok\npeer fast GB/s\n", nil, "line 1"},
		{"NaN", "peer NaN GB/s\n", nil, "finite"},
		{"infinity", "peer +Inf GB/s\n", nil, "finite"},
		{"negative", "peer -1 GB/s\n", nil, "finite"},
		{"line too long", "peer 1 " + strings.Repeat("x", maxFigureLine) + "\n", nil, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFigures(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "bench: ") {
					t.Fatalf("ParseFigures = %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseFigures = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadResponse(t *testing.T) {
	d2h := NativeCommand{Op: NativeD2H4, Count: 2}
	tests := []struct {
		name   string
		cmd    NativeCommand
		in     string
		want   int    // figures
		err    string // substring of the error
		native bool   // the error is a *NativeError
		rest   string // what the reader still holds
	}{
		{"figures then ok", d2h, "d2h-4B 1 us\nd2h-4B 2 us\nok\nnext\n", 2, "", false, "next\n"},
		{"info names its own figures", NativeCommand{Op: NativeInfo}, "devices 4 count\nok\n", 1, "", false, ""},
		{"comments skipped", d2h, "# warm\nd2h-4B 1 us\n\nok\n", 1, "", false, ""},
		{"refused", d2h, "error device 3 outside 0..1\nnext\n", 0, "device 3 outside", true, "next\n"},
		{"bare error", d2h, "error\n", 0, "refused", true, ""},
		{"another operation's figure", d2h, "peer 1 GB/s\nok\n", 0, `names "peer"`, false, ""},
		{"malformed", d2h, "d2h-4B one us\nok\n", 0, "not a finite number", false, ""},
		{"end of output", d2h, "d2h-4B 1 us\n", 0, "EOF", false, ""},
		{"cut line", d2h, "d2h-4B 1", 0, "unexpected EOF", false, ""},
		{"line too long", d2h, strings.Repeat("x", 2*maxFigureLine), 0, "longer than", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), maxFigureLine)
			got, err := readResponse(r, tt.cmd)
			var ne *NativeError
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("readResponse: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("readResponse = %v, %v; want an error with %q", got, err, tt.err)
			case errors.As(err, &ne) != tt.native:
				t.Fatalf("error %v: *NativeError %v, want %v", err, !tt.native, tt.native)
			case len(got) != tt.want:
				t.Fatalf("%d figures, want %d: %v", len(got), tt.want, got)
			}
			if tt.rest != "" {
				rest, _ := io.ReadAll(r)
				if string(rest) != tt.rest {
					t.Errorf("left %q, want %q", rest, tt.rest)
				}
			}
		})
	}
}

func TestNativeCommand(t *testing.T) {
	tests := []struct {
		name string
		cmd  NativeCommand
		line string
		err  string
	}{
		{"info", NativeCommand{Op: NativeInfo}, "info 0 0 0 0", ""},
		{"latency", NativeCommand{Op: NativeD2H4, Count: 500, Dev: 1}, "d2h-4B 500 0 1 0", ""},
		{"copy", NativeCommand{Op: NativeH2DPinned, Count: 32, Bytes: 1 << 20}, "h2d-pinned 32 1048576 0 0", ""},
		{"peer", NativeCommand{Op: NativePeer, Count: 4, Bytes: 1 << 30, Dev: 0, Peer: 2}, "peer 4 1073741824 0 2", ""},
		{"unknown", NativeCommand{Op: "h2d", Count: 1}, "", "unknown operation"},
		{"no count", NativeCommand{Op: NativeMemset}, "", "count 0"},
		{"copy without size", NativeCommand{Op: NativeD2HPageable, Count: 1}, "", "needs a size"},
		{"huge copy", NativeCommand{Op: NativeD2HPageable, Count: 1, Bytes: MaxSize + 1}, "", "outside"},
		{"negative device", NativeCommand{Op: NativeLaunch, Count: 1, Dev: -1}, "", "negative device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("Validate = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.cmd.String(); got != tt.line {
				t.Errorf("String = %q, want %q", got, tt.line)
			}
			back, err := parseCommand(tt.cmd.String())
			if err != nil || back != tt.cmd {
				t.Errorf("round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestValues(t *testing.T) {
	figs := []Figure{{"d2h-4B", 1, "us"}, {"d2h-4B", 2, "us"}, {"peer", 3, "GB/s"}}
	tests := []struct {
		name, fig, unit string
		want            int
		err             string
	}{
		{"all samples", "d2h-4B", UnitMicros, 2, ""},
		{"any number", "d2h-4B", UnitMicros, 0, ""},
		{"one", "peer", UnitGBps, 1, ""},
		{"wrong count", "d2h-4B", UnitMicros, 3, "gave 2"},
		{"wrong unit", "peer", UnitMicros, 1, `in "GB/s"`},
		{"missing", "launch-empty", UnitRate, 1, "no figure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := values(figs, tt.fig, tt.unit, tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("values = %v, %v; want an error with %q", vs, err, tt.err)
				}
				return
			}
			if err != nil || (tt.want > 0 && len(vs) != tt.want) {
				t.Errorf("values = %v, %v", vs, err)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	host := Env{DevA: 0, DevB: 1, PeerB: PeerInfo{QUIC: "b"}}
	cuda := host
	cuda.Native, cuda.DevA2 = &fakeNative{}, 2
	oneGPU := Env{DevA: 0, DevB: 0, Native: &fakeNative{},
		Skip: map[string]string{GroupPeer: "needs 2 GPUs", GroupPeerLocal: "needs 2 GPUs", GroupAllReduce: "needs 2 GPUs"}}
	nccl := Env{DevA: 0, DevB: 1, NCCL: &fakeNative{}}
	tests := []struct {
		name    string
		env     Env
		asked   []string
		want    []string
		skipped []string
		err     string
	}{
		{"host, every group", host, nil, []string{"sync", "async", "h2d", "d2h", "peer", "allreduce", "tracing", "transport"}, nil, ""},
		{"host, some groups", host, []string{"peer", "sync"}, []string{"sync", "peer"}, nil, ""},
		{"host, a native group by name", host, []string{"sync", "launch"}, nil, nil, "launch group needs a native baseline"},
		{"cuda, every group", cuda, nil, Groups, nil, ""},
		{"cuda, one GPU", oneGPU, nil, []string{"sync", "async", "launch", "h2d", "d2h", "tracing", "transport"}, []string{"peer-local", "peer", "allreduce"}, ""},
		{"cuda, one GPU, a skipped group by name", oneGPU, []string{"peer", "h2d"}, []string{"h2d"}, []string{"peer"}, ""},
		{"peer without PeerB", Env{DevB: 1}, []string{"peer"}, nil, nil, "needs Env.PeerB"},
		{"peer on one device", Env{PeerB: PeerInfo{QUIC: "b"}}, []string{"peer"}, nil, nil, "needs two devices"},
		{"peer-local on one device", Env{Native: &fakeNative{}}, []string{"peer-local"}, nil, nil, "two devices of one server"},
		{"allreduce, 2x2", Env{Ranks: []int{0, 2, 1, 3}, PeerB: PeerInfo{QUIC: "b"}}, []string{"allreduce"}, []string{"allreduce"}, nil, ""},
		{"allreduce with NCCL, no PeerB", nccl, []string{"allreduce"}, []string{"allreduce"}, nil, ""},
		{"allreduce on one device", Env{Ranks: []int{3}, PeerB: PeerInfo{QUIC: "b"}}, []string{"allreduce"}, nil, nil, "at least two devices"},
		{"allreduce on DevA twice", Env{PeerB: PeerInfo{QUIC: "b"}}, []string{"allreduce"}, nil, nil, "device 0 is rank 0 and rank 1"},
		{"allreduce, a device twice", Env{Ranks: []int{0, 1, 0}, PeerB: PeerInfo{QUIC: "b"}}, []string{"allreduce"}, nil, nil, "device 0 is rank 0 and rank 2"},
		{"allreduce, negative device", Env{Ranks: []int{0, -1}, PeerB: PeerInfo{QUIC: "b"}}, []string{"allreduce"}, nil, nil, "rank 1 on device -1"},
		{"allreduce without PeerB or NCCL", Env{DevB: 1}, []string{"allreduce"}, nil, nil, "needs Env.PeerB (its link bound) or Env.NCCL"},
		{"skip of an unknown group", Env{Skip: map[string]string{"kernels": "x"}}, nil, nil, nil, `unknown group "kernels"`},
		{"unknown worker path", Env{WorkerPath: PathLocalLane + 1}, nil, nil, nil, "WorkerPath Path(3) is not a path"},
		{"negative worker path", Env{WorkerPath: -1}, nil, nil, nil, "is not a path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := plan(tt.env, tt.asked)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("plan = %v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sk []string
			for _, s := range skipped {
				sk = append(sk, s.Group)
				if s.Reason == "" {
					t.Errorf("skipped %s without a reason", s.Group)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || fmt.Sprint(sk) != fmt.Sprint(tt.skipped) {
				t.Errorf("plan = %v, skipped %v; want %v, skipped %v", got, sk, tt.want, tt.skipped)
			}
		})
	}
}

func TestOverlapOf(t *testing.T) {
	tests := []struct {
		name                   string
		xgpu, transport, dma   float64
		bound, serial, ofBound float64
	}{
		{"transport bound", 1.9, 2, 50, 2, 1 / (1/2.0 + 1/50.0), 0.95},
		{"equal stages", 5, 10, 10, 10, 5, 0.5},
		{"DMA bound", 20, 40, 25, 25, 1 / (1/40.0 + 1/25.0), 0.8},
		{"no DMA figure", 1, 2, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := overlapOf(tt.xgpu, tt.transport, tt.dma)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(o.Bound, tt.bound) || !near(o.Serial, tt.serial) || !near(o.OfBound, tt.ofBound) ||
				o.Transport != tt.transport || o.DMA != tt.dma {
				t.Errorf("overlapOf = %+v, want bound %v serial %v of bound %v", o, tt.bound, tt.serial, tt.ofBound)
			}
		})
	}
}

// TestCallBodies: the bodies the baselines send are the runtime's calls,
// encoded as it encodes them.
func TestCallBodies(t *testing.T) {
	one := [3]uint32{1, 1, 1}
	tests := []struct {
		name string
		op   wire.Op
		c    calls.Call
	}{
		{"d2h", calls.OpMemcpyDtoH, calls.Call{Dev: 1, Src: 0x1000, N: 4, Stream: 7}},
		{"stream synchronize", calls.OpStreamSynchronize, calls.Call{Dev: 1, Stream: 7}},
		{"memset", calls.OpMemset, calls.Call{Dev: 1, Dst: 0x1000, Aux2: 1, N: 256, Stream: 7}},
		{"launch", calls.OpLaunchKernel, calls.Call{Dev: 1, Stream: 7, Aux: 9, Grid: one, Block: one}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := callBody(tt.op, &tt.c)
			var back calls.Call
			if err := back.Decode(tt.op, b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if fmt.Sprint(back) != fmt.Sprint(tt.c) {
				t.Errorf("decoded %+v, want %+v", back, tt.c)
			}
		})
	}
}

// startFakeNative starts this test binary as the native program.
func startFakeNative(t *testing.T, mode string, timeout time.Duration, stderr io.Writer) *NativeProgram {
	t.Helper()
	p, err := StartNative(context.Background(), NativeConfig{
		Path: os.Args[0], Env: []string{nativeEnv + "=" + mode}, Timeout: timeout, Stderr: stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// TestNativeProgram drives a fake native program through the serve
// protocol: answers, refusals, crashes, hangs and malformed output.
func TestNativeProgram(t *testing.T) {
	ctx := context.Background()
	t.Run("answers", func(t *testing.T) {
		var stderr bytes.Buffer
		p := startFakeNative(t, "ok", 0, &stderr)
		figs, err := p.Measure(ctx, NativeCommand{Op: NativeInfo})
		if err != nil || len(figs) != 1 || figs[0] != (Figure{"devices", 2, "count"}) {
			t.Fatalf("info = %v, %v", figs, err)
		}
		for op := range nativeOps {
			cmd := NativeCommand{Op: op, Count: 3, Bytes: 1 << 20, Peer: 1}
			if op == NativeInfo {
				continue
			}
			figs, err := p.Measure(ctx, cmd)
			if err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			want := 1
			if NativeUnit(op) == UnitMicros {
				want = 3
			}
			if _, err := values(figs, op, NativeUnit(op), want); err != nil {
				t.Errorf("%s: %v", op, err)
			}
		}
		// A refusal leaves the program usable.
		_, err = p.Measure(ctx, NativeCommand{Op: NativeLaunch, Count: 1, Dev: 5})
		var ne *NativeError
		if !errors.As(err, &ne) || !strings.Contains(ne.Msg, "device 5") {
			t.Fatalf("refused command: %v", err)
		}
		if _, err := p.Measure(ctx, NativeCommand{Op: NativeLaunch, Count: 1}); err != nil {
			t.Fatalf("after a refusal: %v", err)
		}
		// An invalid command never reaches the program.
		if _, err := p.Measure(ctx, NativeCommand{Op: "h2d", Count: 1}); err == nil || !strings.Contains(err.Error(), "unknown operation") {
			t.Fatalf("invalid command: %v", err)
		}
	})
	tests := []struct {
		mode    string
		timeout time.Duration
		want    string
	}{
		{"crash", 0, "cudaErrorIllegalAddress"},
		{"hang", 300 * time.Millisecond, "took longer than"},
		{"garbage", 0, "this is not a figure"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			p := startFakeNative(t, tt.mode, tt.timeout, nil)
			cmd := NativeCommand{Op: NativeMemset, Count: 10}
			_, err := p.Measure(ctx, cmd)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Measure = %v, want an error with %q", err, tt.want)
			}
			if _, err := p.Measure(ctx, cmd); err == nil || !strings.Contains(err.Error(), "stopped") {
				t.Fatalf("Measure after a failure = %v, want the program stopped", err)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		p := startFakeNative(t, "hang", 0, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := p.Measure(ctx, NativeCommand{Op: NativeMemset, Count: 1}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Measure = %v, want the context's error", err)
		}
	})
	t.Run("no program", func(t *testing.T) {
		for _, cfg := range []NativeConfig{{}, {Path: "/nonexistent/cudabench"}, {Path: os.Args[0], Timeout: -1}} {
			if p, err := StartNative(ctx, cfg); err == nil {
				p.Close()
				t.Errorf("StartNative(%+v) succeeded", cfg)
			}
		}
	})
}

// TestWriteTableNative: a cuda run's report shows the extra figures, the
// staging overlap and the skipped groups, in the table and the JSON.
func TestWriteTableNative(t *testing.T) {
	rep := &Report{
		Version: ReportVersion, Machine: DescribeMachine(), Date: "2026-11-29T00:00:00Z", Backend: "cuda",
		GPU: "2 x NVIDIA H200", Setup: "test",
		Cases: []Result{{
			Name: "h2d/64MiB", Group: GroupH2D, Unit: UnitGBps, Bytes: 64 << 20,
			XGPU: 1.9, XGPUName: "xgpu copy", Baseline: 14.7, BaselineName: "native cudaMemcpy from pageable host memory",
			Reference: 2.0, ReferenceName: "raw striped QUIC bulk, 8 lanes", ReferenceRatio: 0.95, Ratio: 1.9 / 14.7,
			Extra:   []Extra{{Name: "native pinned cudaMemcpy", Value: 54.8, Ratio: 1.9 / 54.8}},
			Overlap: overlapOf(1.9, 2.0, 54.8), Rounds: 5, Samples: 5,
		}},
		Skipped: []Skipped{{Group: GroupPeer, Reason: "needs 2 GPUs; 1 in use"}},
	}
	var tab bytes.Buffer
	if err := rep.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"GPUs: 2 x NVIDIA H200", "native pinned cudaMemcpy 54.800 (ratio 0.03)",
		"also: native pinned cudaMemcpy", "staging overlap", "xgpu/bound", "1.900  2.000      54.800",
		"skipped: peer: needs 2 GPUs; 1 in use"} {
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	c := back.Cases[0]
	if back.GPU != rep.GPU || len(back.Skipped) != 1 || len(c.Extra) != 1 || c.Overlap == nil || c.Overlap.Bound != 2.0 {
		t.Errorf("JSON round trip lost data:\n%s", js.String())
	}
}
