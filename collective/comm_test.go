package collective

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNumbering(t *testing.T) {
	// ncclDataType_t and ncclRedOp_t, from nccl.h.
	dts := []struct {
		dt   DType
		nccl int
		size int
		name string
	}{
		{I8, 0, 1, "i8"}, {U8, 1, 1, "u8"}, {I32, 2, 4, "i32"}, {U32, 3, 4, "u32"}, {I64, 4, 8, "i64"},
		{U64, 5, 8, "u64"}, {F16, 6, 2, "f16"}, {F32, 7, 4, "f32"}, {F64, 8, 8, "f64"}, {BF16, 9, 2, "bf16"},
	}
	for _, tt := range dts {
		t.Run(tt.name, func(t *testing.T) {
			if int(tt.dt) != tt.nccl || tt.dt.Size() != tt.size || tt.dt.String() != tt.name || !tt.dt.Valid() {
				t.Fatalf("%v: value %d size %d", tt.dt, int(tt.dt), tt.dt.Size())
			}
			if got, err := ParseDType(strings.ToUpper(tt.name)); err != nil || got != tt.dt {
				t.Fatalf("ParseDType(%q) = %v, %v", tt.name, got, err)
			}
		})
	}
	ops := []struct {
		op   Op
		nccl int
		name string
	}{{Sum, 0, "sum"}, {Prod, 1, "prod"}, {Max, 2, "max"}, {Min, 3, "min"}, {Avg, 4, "avg"}}
	for _, tt := range ops {
		if int(tt.op) != tt.nccl || tt.op.String() != tt.name || !tt.op.Valid() {
			t.Errorf("%v: value %d", tt.op, int(tt.op))
		}
	}
	for _, bad := range []DType{-1, 10, 11} {
		if bad.Valid() || bad.Size() != 0 || !strings.HasPrefix(bad.String(), "DType(") {
			t.Errorf("DType(%d) accepted", int(bad))
		}
	}
	if Op(5).Valid() || Op(-1).Valid() {
		t.Error("Op(5) or Op(-1) accepted")
	}
	if _, err := ParseDType("fp8"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseDType(fp8): %v", err)
	}
}

func TestParseAlgo(t *testing.T) {
	tests := []struct {
		in   string
		want Algo
		ok   bool
	}{
		{"", Auto, true}, {"auto", Auto, true}, {"Ring", Ring, true}, {"TREE", Tree, true},
		{"hierarchical", Hierarchical, true}, {" hier ", Hierarchical, true}, {"nvls", Auto, false}, {"ring,tree", Auto, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAlgo(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseAlgo(%q) = %v, %v", tt.in, got, err)
			}
			if err != nil && !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			if tt.ok && tt.in != "" && tt.in != " hier " && !strings.EqualFold(got.String(), tt.in) {
				t.Fatalf("String() = %q", got.String())
			}
		})
	}
}

func TestNew(t *testing.T) {
	net := NewLocalNetwork([]string{"a", "a"})
	tests := []struct {
		name  string
		rank  int
		size  int
		tr    Transport
		opts  Options
		env   string
		want  Algo
		error bool
	}{
		{"defaults", 0, 2, net.Transport(0), Options{}, "", Auto, false},
		{"env forces", 0, 2, net.Transport(0), Options{}, "tree", Tree, false},
		{"options beat env", 0, 2, net.Transport(0), Options{Algo: Ring}, "tree", Ring, false},
		{"bad env", 0, 2, net.Transport(0), Options{}, "fastest", Auto, true},
		{"rank out of range", 2, 2, net.Transport(0), Options{}, "", Auto, true},
		{"negative rank", -1, 2, net.Transport(0), Options{}, "", Auto, true},
		{"no ranks", 0, 0, net.Transport(0), Options{}, "", Auto, true},
		{"nil transport", 0, 2, nil, Options{}, "", Auto, true},
		{"negative chunk", 0, 2, net.Transport(0), Options{ChunkSize: -1}, "", Auto, true},
		{"negative pipeline", 0, 2, net.Transport(0), Options{Pipeline: -1}, "", Auto, true},
		{"bad algo", 0, 2, net.Transport(0), Options{Algo: 9}, "", Auto, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvAlgo, tt.env)
			c, err := New(tt.rank, tt.size, tt.tr, nil, tt.opts)
			if tt.error {
				if !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("New: %v, want ErrInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Algo() != tt.want || c.Rank() != tt.rank || c.Size() != tt.size || c.Hosts() != 1 {
				t.Fatalf("Algo %v rank %d size %d hosts %d", c.Algo(), c.Rank(), c.Size(), c.Hosts())
			}
			if c.opts.ChunkSize != DefaultChunkSize || c.opts.Pipeline != DefaultPipeline || c.opts.Timeout != DefaultTimeout || c.opts.TreeThreshold != DefaultTreeThreshold {
				t.Fatalf("defaults not applied: %+v", c.opts)
			}
		})
	}
}

func TestPick(t *testing.T) {
	tests := []struct {
		name  string
		hosts []string
		algo  Algo
		bytes int
		hier  bool
		want  Algo
	}{
		{"small is tree", hostsOf(2, 2, false), Auto, 1024, true, Tree},
		{"large on several hosts of several ranks is hierarchical", hostsOf(2, 2, false), Auto, 1 << 20, true, Hierarchical},
		{"large on one host is ring", hostsOf(1, 4, false), Auto, 1 << 20, true, Ring},
		{"large on one rank per host is ring", hostsOf(4, 1, false), Auto, 1 << 20, true, Ring},
		{"hierarchical only where it applies", hostsOf(2, 2, false), Auto, 1 << 20, false, Ring},
		{"forced ring stays ring when small", hostsOf(2, 2, false), Ring, 8, true, Ring},
		{"forced tree stays tree when large", hostsOf(2, 2, false), Tree, 1 << 30, true, Tree},
		{"forced hierarchical on one host", hostsOf(1, 2, false), Hierarchical, 8, true, Hierarchical},
		{"threshold is exclusive", hostsOf(2, 2, false), Auto, DefaultTreeThreshold, true, Hierarchical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := NewLocalNetwork(tt.hosts)
			c, err := New(0, len(tt.hosts), net.Transport(0), nil, Options{Algo: tt.algo})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.pick(tt.bytes, tt.hier); got != tt.want {
				t.Fatalf("pick = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("ring groups hosts", func(t *testing.T) {
		net := NewLocalNetwork(hostsOf(2, 3, true)) // hosts a b a b a b
		c, err := New(0, 6, net.Transport(0), nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.topo.ring; !equalInts(got, []int{0, 2, 4, 1, 3, 5}) {
			t.Fatalf("ring = %v", got)
		}
		if got := c.topo.leader; !equalInts(got, []int{0, 1}) {
			t.Fatalf("leaders = %v", got)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestInvalidArguments checks that bad calls fail with ErrInvalidArgument
// before any message moves and leave the communicator usable.
func TestInvalidArguments(t *testing.T) {
	buf := func(n int) []byte { return make([]byte, n) }
	b64 := buf(64)
	tests := []struct {
		name string
		call func(c *Comm) error
	}{
		{"negative count", func(c *Comm) error { return c.AllReduce(bg(), b64, buf(64), -1, F32, Sum) }},
		{"short send", func(c *Comm) error { return c.AllReduce(bg(), buf(8), buf(64), 16, F32, Sum) }},
		{"short recv", func(c *Comm) error { return c.AllReduce(bg(), buf(64), buf(8), 16, F32, Sum) }},
		{"bad type", func(c *Comm) error { return c.AllReduce(bg(), buf(64), buf(64), 1, DType(11), Sum) }},
		{"bad operator", func(c *Comm) error { return c.AllReduce(bg(), buf(64), buf(64), 1, F32, Op(7)) }},
		{"partial overlap", func(c *Comm) error { return c.AllReduce(bg(), b64[:32], b64[4:36], 8, F32, Sum) }},
		{"huge count", func(c *Comm) error { return c.AllReduce(bg(), b64, b64, 1<<62, F64, Sum) }},
		{"reduce-scatter short send", func(c *Comm) error { return c.ReduceScatter(bg(), buf(8), buf(8), 2, F32, Sum) }},
		{"reduce-scatter overlap", func(c *Comm) error { return c.ReduceScatter(bg(), b64[:32], b64[4:12], 2, F32, Sum) }},
		{"all-gather short recv", func(c *Comm) error { return c.AllGather(bg(), buf(8), buf(8), 2, F32) }},
		{"all-gather overlap", func(c *Comm) error { return c.AllGather(bg(), b64[4:12], b64[:16], 2, F32) }},
		{"broadcast bad root", func(c *Comm) error { return c.Broadcast(bg(), buf(8), buf(8), 2, F32, 2) }},
		{"broadcast root without send", func(c *Comm) error { return c.Broadcast(bg(), nil, buf(8), 2, F32, 0) }},
		{"reduce negative root", func(c *Comm) error { return c.Reduce(bg(), buf(8), buf(8), 2, F32, Sum, -1) }},
		{"reduce root without recv", func(c *Comm) error { return c.Reduce(bg(), buf(8), nil, 2, F32, Sum, 0) }},
		{"all-to-all short", func(c *Comm) error { return c.AllToAll(bg(), buf(8), buf(16), 2, F32) }},
		{"send to a rank out of range", func(c *Comm) error { return c.Send(bg(), buf(8), 2, F32, 5) }},
		{"send to self outside a group", func(c *Comm) error { return c.Send(bg(), buf(8), 2, F32, 0) }},
		{"recv short", func(c *Comm) error { return c.Recv(bg(), buf(4), 2, F32, 1) }},
		{"group with unmatched self sizes", func(c *Comm) error {
			return c.Group(bg(), P2P{Peer: 0, Buf: buf(8), Count: 2, DType: F32}, P2P{Recv: true, Peer: 0, Buf: buf(8), Count: 1, DType: F32})
		}},
	}
	cl := newCluster(t, hostsOf(1, 2, false), Options{Timeout: 5 * time.Second})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(cl.comms[0])
			var oe *OpError
			if !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &oe) || oe.Rank != 0 {
				t.Fatalf("got %v, want an *OpError wrapping ErrInvalidArgument", err)
			}
		})
	}
	// Still usable: nothing was sent, so a real operation meets.
	runCase(t, cl, opCase{kind: kAllReduce, dt: F32, op: Sum, count: 5}, 1)
}

// TestZeroCount checks that a count of 0 returns at once and writes
// nothing, even on one rank alone.
func TestZeroCount(t *testing.T) {
	cl := newCluster(t, hostsOf(1, 2, false), Options{})
	c := cl.comms[0]
	b := canaryBuf(0, 8)
	for _, call := range []func() error{
		func() error { return c.AllReduce(bg(), nil, b, 0, F32, Sum) },
		func() error { return c.ReduceScatter(bg(), nil, b, 0, F32, Sum) },
		func() error { return c.AllGather(bg(), nil, b, 0, F32) },
		func() error { return c.Broadcast(bg(), nil, b, 0, F32, 1) },
		func() error { return c.Reduce(bg(), nil, b, 0, F32, Sum, 1) },
		func() error { return c.AllToAll(bg(), nil, b, 0, F32) },
		func() error { return c.Send(bg(), nil, 0, F32, 1) },
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	checkCanary(t, "recv", b)
	// The ranks still agree: a real operation meets.
	runCase(t, cl, opCase{kind: kAllReduce, dt: I32, op: Sum, count: 3}, 1)
}

// TestPointToPoint checks Send and Recv pairing, ordering of several
// messages between one pair, and that point-to-point traffic between some
// ranks does not put the collectives of all of them out of step.
func TestPointToPoint(t *testing.T) {
	cl := newCluster(t, hostsOf(2, 2, false), Options{})
	msgs := [][]byte{[]byte("first..."), []byte("second.."), []byte("third...")}
	mustAll(t, cl.do(func(r int, c *Comm) error {
		switch r {
		case 0:
			for _, m := range msgs {
				if err := c.Send(bg(), m, len(m), U8, 3); err != nil {
					return err
				}
			}
			got := make([]byte, 4)
			if err := c.Recv(bg(), got, 1, I32, 3); err != nil {
				return err
			}
			if string(got) != "back" {
				return errors.New("rank 0 got " + string(got))
			}
		case 3:
			for _, m := range msgs {
				got := make([]byte, len(m))
				if err := c.Recv(bg(), got, len(m), U8, 0); err != nil {
					return err
				}
				if !bytes.Equal(got, m) {
					return errors.New("out of order: " + string(got))
				}
			}
			if err := c.Send(bg(), []byte("back"), 1, I32, 0); err != nil {
				return err
			}
		}
		return nil
	}))
	// Collectives after uneven point-to-point traffic still match.
	runCase(t, cl, opCase{kind: kAllReduce, dt: F64, op: Max, count: 100}, 7)
	// A group with a send to self, a send to the next rank and receives.
	mustAll(t, cl.do(func(r int, c *Comm) error {
		n := c.Size()
		mine, self, fromPrev := []byte{byte(r)}, make([]byte, 1), make([]byte, 1)
		if err := c.Group(bg(),
			P2P{Recv: true, Peer: r, Buf: self, Count: 1, DType: U8},
			P2P{Peer: (r + 1) % n, Buf: mine, Count: 1, DType: U8},
			P2P{Peer: r, Buf: mine, Count: 1, DType: U8},
			P2P{Recv: true, Peer: (r + n - 1) % n, Buf: fromPrev, Count: 1, DType: U8},
		); err != nil {
			return err
		}
		if self[0] != byte(r) || fromPrev[0] != byte((r+n-1)%n) {
			return errors.New("group delivered the wrong bytes")
		}
		return nil
	}))
}

// TestMemberDies kills one rank in the middle of a large all-reduce under
// every algorithm and checks that every other rank fails, with the loss
// of a peer, within the bound: the local transport sees a death at once,
// so the bound is the spread of closes along the algorithm's edges.
func TestMemberDies(t *testing.T) {
	const bound = 2 * time.Second
	for _, algo := range []Algo{Ring, Tree, Hierarchical} {
		t.Run(algo.String(), func(t *testing.T) {
			hosts := hostsOf(3, 2, false)
			n, victim := len(hosts), 3
			cl := newCluster(t, hosts, Options{Algo: algo, ChunkSize: 16 << 10, Timeout: time.Minute})
			const count = 1 << 20 // 4 MiB of f32 per rank
			bufs := make([][]byte, n)
			for r := range bufs {
				bufs[r] = make([]byte, count*4)
			}
			ends := make([]time.Time, n)
			var killed atomic.Int64 // nanoseconds since start at the kill
			start := time.Now()
			go func() {
				for cl.net.BytesMoved() < 256<<10 {
					time.Sleep(100 * time.Microsecond)
				}
				killed.Store(int64(time.Since(start)))
				cl.net.Kill(victim)
			}()
			errs := cl.do(func(r int, c *Comm) error {
				err := c.AllReduce(bg(), bufs[r], bufs[r], count, F32, Sum)
				ends[r] = time.Now()
				return err
			})
			kill := start.Add(time.Duration(killed.Load()))
			var worst time.Duration
			for r, err := range errs {
				if r == victim {
					continue
				}
				if !errors.Is(err, ErrPeerLost) {
					t.Fatalf("rank %d: %v, want ErrPeerLost", r, err)
				}
				worst = max(worst, ends[r].Sub(kill))
			}
			if worst > bound {
				t.Fatalf("the last survivor failed %v after the kill, bound %v", worst, bound)
			}
			t.Logf("%v: every survivor failed within %v of the kill", algo, worst)
			// The communicator is aborted now: later calls fail at once.
			err := cl.comms[0].AllReduce(bg(), bufs[0], bufs[0], 1, F32, Sum)
			if !errors.Is(err, ErrAborted) || !errors.Is(err, ErrPeerLost) {
				t.Fatalf("after the failure: %v, want ErrAborted wrapping ErrPeerLost", err)
			}
		})
	}
}

// TestMemberStalls has one rank never join an operation: the others fail
// with ErrTimeout (or, once a neighbour gave up, ErrPeerLost) within
// Options.Timeout of their last progress. The late rank then fails fast.
func TestMemberStalls(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hosts := hostsOf(2, 2, false)
	cl := newCluster(t, hosts, Options{Timeout: timeout, Algo: Ring})
	const staller = 2
	buf := make([][]byte, len(hosts))
	for r := range buf {
		buf[r] = make([]byte, 4096)
	}
	start := time.Now()
	var timeouts atomic.Int32
	var worst atomic.Int64
	errs := cl.do(func(r int, c *Comm) error {
		if r == staller {
			return nil
		}
		err := c.AllReduce(bg(), buf[r], buf[r], 1024, F32, Sum)
		took := time.Since(start)
		if took > timeout+time.Second {
			t.Errorf("rank %d failed after %v, bound %v", r, took, timeout)
		}
		for w := worst.Load(); int64(took) > w && !worst.CompareAndSwap(w, int64(took)); w = worst.Load() {
		}
		if errors.Is(err, ErrTimeout) {
			timeouts.Add(1)
		}
		return err
	})
	for r, err := range errs {
		if r != staller && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrPeerLost) {
			t.Fatalf("rank %d: %v, want ErrTimeout or ErrPeerLost", r, err)
		}
	}
	if timeouts.Load() == 0 {
		t.Fatal("no rank timed out")
	}
	t.Logf("every other rank failed within %v (Timeout %v)", time.Duration(worst.Load()), timeout)
	late := time.Now()
	err := cl.comms[staller].AllReduce(bg(), buf[staller], buf[staller], 1024, F32, Sum)
	if !errors.Is(err, ErrPeerLost) || time.Since(late) > timeout/2 {
		t.Fatalf("late rank: %v after %v, want ErrPeerLost at once", err, time.Since(late))
	}
}

// slowReducer delays every reduction.
type slowReducer struct {
	CPUReducer
	delay time.Duration
}

func (s slowReducer) Reduce(dst, src []byte, dt DType, op Op) error {
	time.Sleep(s.delay)
	return s.CPUReducer.Reduce(dst, src, dt, op)
}

// TestSlowButSteady checks that Options.Timeout bounds a wait without
// progress, not the operation: one that takes several timeouts but keeps
// moving succeeds.
func TestSlowButSteady(t *testing.T) {
	const timeout = 150 * time.Millisecond
	hosts := hostsOf(1, 2, false)
	net := NewLocalNetwork(hosts)
	comms := make([]*Comm, 2)
	for r := range comms {
		c, err := New(r, 2, net.Transport(r), slowReducer{delay: 20 * time.Millisecond}, Options{Timeout: timeout, ChunkSize: 64, Pipeline: 1, Algo: Ring})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		comms[r] = c
	}
	cl := &cluster{net: net, comms: comms}
	start := time.Now()
	// 40 chunks per segment, reduced one after another: at least 800 ms.
	runCase(t, cl, opCase{kind: kAllReduce, dt: F32, op: Sum, count: 2 * 16 * 40}, 3)
	if took := time.Since(start); took < 4*timeout {
		t.Fatalf("took %v, less than 4 timeouts: the reducer was not slow", took)
	}
}

// TestCancel cancels one rank's context mid-operation: that rank reports
// its context's cause and the others lose it as a peer.
func TestCancel(t *testing.T) {
	cl := newCluster(t, hostsOf(1, 3, false), Options{ChunkSize: 4096})
	const count = 1 << 20
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(bg())
	go func() {
		for cl.net.BytesMoved() < 64<<10 {
			time.Sleep(100 * time.Microsecond)
		}
		cancel(cause)
	}()
	errs := cl.do(func(r int, c *Comm) error {
		b := make([]byte, count*4)
		cx := bg()
		if r == 1 {
			cx = ctx
		}
		return c.AllReduce(cx, b, b, count, F32, Sum)
	})
	if !errors.Is(errs[1], cause) {
		t.Fatalf("rank 1: %v, want its cause", errs[1])
	}
	for _, r := range []int{0, 2} {
		if !errors.Is(errs[r], ErrPeerLost) {
			t.Fatalf("rank %d: %v, want ErrPeerLost", r, errs[r])
		}
	}
}

// TestClose checks that Close fails an operation in progress on every
// rank and later calls with ErrClosed.
func TestClose(t *testing.T) {
	cl := newCluster(t, hostsOf(1, 2, false), Options{})
	errc := make(chan error, 1)
	b := make([]byte, 64)
	go func() { errc <- cl.comms[0].AllReduce(bg(), b, b, 16, F32, Sum) }() // rank 1 never joins
	time.Sleep(20 * time.Millisecond)
	if err := cl.comms[1].Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrPeerLost) {
		t.Fatalf("rank 0: %v, want ErrPeerLost", err)
	}
	if err := cl.comms[1].AllReduce(bg(), b, b, 16, F32, Sum); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if err := cl.comms[1].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// countingAlloc is a Reducer with its own scratch memory.
type countingAlloc struct {
	CPUReducer
	mu           sync.Mutex
	allocs, live int
}

func (a *countingAlloc) AllocScratch(n int) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allocs++
	a.live++
	return make([]byte, n), nil
}

func (a *countingAlloc) FreeScratch([]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.live--
}

func TestScratchAllocator(t *testing.T) {
	net := NewLocalNetwork(hostsOf(1, 2, false))
	allocs := []*countingAlloc{{}, {}}
	comms := make([]*Comm, 2)
	for r := range comms {
		c, err := New(r, 2, net.Transport(r), allocs[r], Options{ChunkSize: 256})
		if err != nil {
			t.Fatal(err)
		}
		comms[r] = c
	}
	cl := &cluster{net: net, comms: comms}
	runCase(t, cl, opCase{kind: kAllReduce, dt: F32, op: Sum, count: 1000, inPlace: true}, 1)
	runCase(t, cl, opCase{kind: kAllToAll, dt: F32, count: 10, inPlace: true}, 2)
	cl.close()
	for r, a := range allocs {
		if a.allocs == 0 || a.live != 0 {
			t.Fatalf("rank %d: %d allocations, %d live after Close", r, a.allocs, a.live)
		}
	}
}

func TestOpErrorMessage(t *testing.T) {
	err := error(&OpError{Op: "all-reduce", Rank: 3, Err: ErrTimeout})
	if got, want := err.Error(), "collective: rank 3: all-reduce: timed out"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	ab := &abortedError{cause: ErrPeerLost}
	if !errors.Is(ab, ErrAborted) || !errors.Is(ab, ErrPeerLost) || !strings.Contains(ab.Error(), "peer lost") {
		t.Fatalf("abortedError %v", ab)
	}
}
