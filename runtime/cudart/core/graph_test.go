package core

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// dag builds nodes 0..n-1 with edges[i] = {from, to}.
func dag(n int, edges [][2]int) []*node {
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = &node{handle: uint64(i)}
	}
	for _, e := range edges {
		a, b := nodes[e[0]], nodes[e[1]]
		b.deps = append(b.deps, a)
		a.outs = append(a.outs, b)
	}
	return nodes
}

func TestTopoOrder(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		edges [][2]int
		want  []uint64 // nil: a cycle
	}{
		{"empty", 0, nil, []uint64{}},
		{"independent nodes keep creation order", 3, nil, []uint64{0, 1, 2}},
		{"chain", 3, [][2]int{{0, 1}, {1, 2}}, []uint64{0, 1, 2}},
		{"reversed chain", 3, [][2]int{{2, 1}, {1, 0}}, []uint64{2, 1, 0}},
		{"diamond", 4, [][2]int{{0, 1}, {0, 2}, {1, 3}, {2, 3}}, []uint64{0, 1, 2, 3}},
		{"late root goes before its dependent", 3, [][2]int{{2, 0}}, []uint64{1, 2, 0}},
		{"fork and join", 5, [][2]int{{0, 1}, {0, 3}, {1, 2}, {3, 4}, {2, 4}}, []uint64{0, 1, 2, 3, 4}},
		{"cycle", 3, [][2]int{{0, 1}, {1, 2}, {2, 0}}, nil},
		{"self-contained cycle beside a root", 3, [][2]int{{1, 2}, {2, 1}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order, err := topoOrder(dag(tt.n, tt.edges))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("order %v of a cyclic graph, want an error", order)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []uint64{}
			for _, n := range order {
				got = append(got, n.handle)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("order %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAncestors(t *testing.T) {
	nodes := dag(5, [][2]int{{0, 1}, {1, 2}, {3, 4}})
	got := ancestors([]*node{nodes[2]})
	for i, want := range []bool{true, true, true, false, false} {
		if got[nodes[i]] != want {
			t.Errorf("node %d: ancestor %v, want %v", i, got[nodes[i]], want)
		}
	}
}

// TestGraphEdges checks the hand-built graph calls: edges that exist,
// cross graphs or close a cycle are refused and change nothing; removal;
// node destruction; instantiation copies the nodes.
func TestGraphEdges(t *testing.T) {
	s := newShim(t)
	g, err := s.GraphCreate(0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := s.GraphCreate(0)
	a, _ := s.GraphAddEmpty(g, nil)
	b, _ := s.GraphAddEmpty(g, []uint64{a})
	c, _ := s.GraphAddEmpty(g, nil)
	x, _ := s.GraphAddEmpty(other, nil)
	if _, err := s.GraphCreate(1); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("graph flags 1: %v", err)
	}
	if _, err := s.GraphAddEmpty(g, []uint64{a, a}); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("a dependency twice: %v", err)
	}
	tests := []struct {
		name     string
		from, to []uint64
		want     cudaerr.Error
	}{
		{"existing edge", []uint64{a}, []uint64{b}, cudaerr.InvalidValue},
		{"node of another graph", []uint64{x}, []uint64{c}, cudaerr.InvalidValue},
		{"self edge", []uint64{c}, []uint64{c}, cudaerr.InvalidValue},
		{"cycle", []uint64{a, b}, []uint64{c, a}, cudaerr.InvalidValue},
		{"lengths differ", []uint64{a}, nil, cudaerr.InvalidValue},
		{"new edges", []uint64{b, a}, []uint64{c, c}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _, _ := s.GraphEdges(g)
			err := s.GraphAddDependencies(g, tt.from, tt.to)
			if got := cudaerr.Code(err); got != tt.want {
				t.Fatalf("GraphAddDependencies = %v, want %v", err, tt.want)
			}
			after, _, _ := s.GraphEdges(g)
			if tt.want != 0 && len(after) != len(before) {
				t.Fatalf("a refused change left %d edges, had %d", len(after), len(before))
			}
		})
	}
	deps, _ := s.NodeDependencies(c, false)
	if !slices.Equal(deps, []uint64{b, a}) {
		t.Errorf("dependencies of c %v, want [b a]", deps)
	}
	roots, _ := s.GraphNodes(g, true)
	if !slices.Equal(roots, []uint64{a}) {
		t.Errorf("roots %v, want [a]", roots)
	}
	exec, err := s.GraphInstantiate(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.GraphRemoveDependencies(g, []uint64{a}, []uint64{c}); err != nil {
		t.Fatal(err)
	}
	if err := s.GraphRemoveDependencies(g, []uint64{a}, []uint64{c}); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("removing a missing edge: %v", err)
	}
	if err := s.GraphDestroyNode(b); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.GraphNodes(g, false); !slices.Equal(n, []uint64{a, c}) {
		t.Errorf("nodes after destroying b: %v", n)
	}
	if deps, _ := s.NodeDependencies(c, false); len(deps) != 0 {
		t.Errorf("c still depends on %v", deps)
	}
	x2 := s.graphs.execs.m[exec]
	if got := len(*x2.order.Load()); got != 3 {
		t.Errorf("the executable graph has %d nodes, want the 3 it was made with", got)
	}
	if _, err := s.GraphInstantiate(g, 1<<20); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("unknown instantiate flag: %v", err)
	}
	if err := s.GraphDestroy(g); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeType(a); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("a node outlived its graph: %v", err)
	}
	if err := s.GraphExecDestroy(exec); err != nil {
		t.Fatal(err)
	}
	if err := s.GraphExecDestroy(exec); cudaerr.Code(err) != cudaerr.InvalidValue {
		t.Errorf("second destroy: %v", err)
	}
}

// TestCaptureAndReplay captures copies, a memset and a host function on a
// stream, checks that none ran, and replays the graph.
func TestCaptureAndReplay(t *testing.T) {
	s := newShim(t)
	var calls int
	s.SetHostCaller(func(fn, arg unsafe.Pointer) { calls++ })
	st, err := s.StreamCreate(0, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Malloc(0, 64)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 64)
	out := make([]byte, 64)
	if err := s.BeginCapture(0, st, CaptureModeGlobal, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if s.graphs.active.Load() != 1 {
		t.Fatalf("%d captures active, want 1", s.graphs.active.Load())
	}
	steps := []func() error{
		func() error { return s.Memset(d, 7, 64, 0, st, true) },
		func() error {
			return s.Memcpy(devPtr(d+32), unsafe.Pointer(&in[0]), 32, HostToDevice, 0, st, true)
		},
		func() error { return s.Memcpy(unsafe.Pointer(&out[0]), devPtr(d), 64, DeviceToHost, 0, st, true) },
		func() error {
			captured, err := s.HostFunc(0, st, unsafe.Pointer(&calls), nil)
			if err == nil && !captured {
				t.Error("host function not captured")
			}
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	info, err := s.CaptureInfo(0, st, nil)
	if err != nil || info.Status != CaptureStatusActive || len(info.Deps) != 1 {
		t.Fatalf("capture info %+v, %v", info, err)
	}
	g, err := s.EndCapture(st, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s.graphs.active.Load() != 0 {
		t.Fatal("capture still counted after its end")
	}
	if err := s.StreamSynchronize(0, st); err != nil {
		t.Fatal(err)
	}
	if out[0] != 0 || calls != 0 {
		t.Fatalf("captured work ran: out[0]=%d calls=%d", out[0], calls)
	}
	nodes, _ := s.GraphNodes(g, false)
	if len(nodes) != 4 {
		t.Fatalf("%d nodes, want 4", len(nodes))
	}
	x, err := s.GraphInstantiate(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	for it := range 3 {
		for i := range in {
			in[i] = byte(it + 1)
		}
		if err := s.GraphLaunch(x, 0, st); err != nil {
			t.Fatal(err)
		}
		if err := s.StreamSynchronize(0, st); err != nil {
			t.Fatal(err)
		}
		if out[0] != 7 || out[63] != byte(it+1) || calls != it+1 {
			t.Fatalf("launch %d: out[0]=%d out[63]=%d calls=%d", it, out[0], out[63], calls)
		}
	}
}

// TestCaptureErrors checks the documented failures and that they leave
// the capture invalidated, then ended.
func TestCaptureErrors(t *testing.T) {
	s := newShim(t)
	st, _ := s.StreamCreate(0, 1, 0)
	st2, _ := s.StreamCreate(0, 1, 0)
	ev, _ := s.EventCreate(0, 0)
	d, _ := s.Malloc(0, 64)
	tests := []struct {
		name string
		run  func() error // inside a capture on st by thread 1
		want cudaerr.Error
		end  cudaerr.Error // of EndCapture afterwards
	}{
		{"stream sync", func() error { return s.StreamSynchronize(0, st) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"stream query", func() error { return s.StreamQuery(0, st) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"device sync", func() error { return s.Synchronize(0) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"unsafe call, same thread", func() error { return s.CheckUnsafe("cudaMalloc", 1, CaptureModeGlobal) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"unsafe call, relaxed", func() error { return s.CheckUnsafe("cudaMalloc", 1, CaptureModeRelaxed) }, 0, 0},
		{"unsafe call, other global thread", func() error { return s.CheckUnsafe("cudaMalloc", 2, CaptureModeGlobal) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"unsafe call, other thread-local thread", func() error { return s.CheckUnsafe("cudaMalloc", 2, CaptureModeThreadLocal) }, 0, 0},
		{"wait for an event from outside", func() error { return s.StreamWaitEvent(0, st, ev) }, cudaerr.StreamCaptureIsolation, cudaerr.StreamCaptureInvalidated},
		{"external wait", func() error { return s.StreamWaitEventFlags(0, st, ev, EventWaitExternal) }, 0, 0},
		{"captured event query", func() error {
			if err := s.EventRecord(ev, 0, st); err != nil {
				return err
			}
			return s.EventQuery(ev)
		}, cudaerr.CapturedEvent, cudaerr.StreamCaptureInvalidated},
		{"unjoined fork", func() error {
			if err := s.EventRecord(ev, 0, st); err != nil {
				return err
			}
			if err := s.StreamWaitEvent(0, st2, ev); err != nil {
				return err
			}
			return s.Memset(d, 1, 8, 0, st2, true)
		}, 0, cudaerr.StreamCaptureUnjoined},
		{"end on the forked stream", func() error {
			if err := s.EventRecord(ev, 0, st); err != nil {
				return err
			}
			if err := s.StreamWaitEvent(0, st2, ev); err != nil {
				return err
			}
			_, err := s.EndCapture(st2, 1)
			return err
		}, cudaerr.StreamCaptureUnmatched, cudaerr.StreamCaptureInvalidated},
		{"peer copy", func() error { return s.MemcpyPeer(d, 0, d, 0, 8, st, true) }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
		{"stream-ordered allocation", func() error { _, err := s.MallocAsync(0, 0, 64, st); return err }, cudaerr.StreamCaptureUnsupported, cudaerr.StreamCaptureInvalidated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.BeginCapture(0, st, CaptureModeGlobal, 1, 0, nil); err != nil {
				t.Fatal(err)
			}
			if got := cudaerr.Code(tt.run()); got != tt.want {
				t.Errorf("call: %v, want %v", got, tt.want)
			}
			g, err := s.EndCapture(st, 1)
			if got := cudaerr.Code(err); got != tt.end {
				t.Errorf("EndCapture: %v, want %v", err, tt.end)
			}
			if err == nil {
				_ = s.GraphDestroy(g)
			} else if g != 0 {
				t.Errorf("graph %#x from a failed capture", g)
			}
			if n := s.graphs.active.Load(); n != 0 {
				t.Errorf("%d captures still active", n)
			}
			if info, err := s.CaptureInfo(0, st2, nil); err != nil || info.Status != CaptureStatusNone {
				t.Errorf("forked stream after the end: %+v, %v", info, err)
			}
		})
	}
	t.Run("wrong thread", func(t *testing.T) {
		if err := s.BeginCapture(0, st, CaptureModeThreadLocal, 1, 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.EndCapture(st, 2); cudaerr.Code(err) != cudaerr.StreamCaptureWrongThread {
			t.Errorf("end by another thread: %v", err)
		}
		g, err := s.EndCapture(st, 1)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.GraphDestroy(g)
	})
	t.Run("destroying the origin stream ends its capture", func(t *testing.T) {
		tmp, _ := s.StreamCreate(0, 1, 0)
		if err := s.BeginCapture(0, tmp, CaptureModeRelaxed, 1, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.StreamDestroy(tmp); err != nil {
			t.Fatal(err)
		}
		if n := s.graphs.active.Load(); n != 0 {
			t.Errorf("%d captures active after the stream went", n)
		}
	})
}

// TestConcurrentCaptures captures and replays on several streams from
// several goroutines at once, beside ordinary work (run with -race).
func TestConcurrentCaptures(t *testing.T) {
	s := newShim(t)
	const workers = 4
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				st, err := s.StreamCreate(0, 1, 0)
				if err != nil {
					return err
				}
				d, err := s.Malloc(0, 64)
				if err != nil {
					return err
				}
				out := make([]byte, 64)
				for range 5 {
					if err := s.BeginCapture(0, st, CaptureModeThreadLocal, uint64(w+1), 0, nil); err != nil {
						return err
					}
					if err := s.Memset(d, w+1, 64, 0, st, true); err != nil {
						return err
					}
					if err := s.Memcpy(unsafe.Pointer(&out[0]), devPtr(d), 64, DeviceToHost, 0, st, true); err != nil {
						return err
					}
					g, err := s.EndCapture(st, uint64(w+1))
					if err != nil {
						return err
					}
					x, err := s.GraphInstantiate(g, 0)
					if err != nil {
						return err
					}
					if err := s.GraphLaunch(x, 0, st); err != nil {
						return err
					}
					if err := s.StreamSynchronize(0, st); err != nil {
						return err
					}
					if out[0] != byte(w+1) {
						t.Errorf("worker %d: out[0] = %d", w, out[0])
					}
					_ = s.GraphExecDestroy(x)
					_ = s.GraphDestroy(g)
				}
				return s.StreamDestroy(st)
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
