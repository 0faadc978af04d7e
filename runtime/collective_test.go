package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/peers"
)

// The reference: every input is a small integer, so that sums, products,
// minima and maxima are exact in every type (products stay within
// +-2^4); integer results wrap as in C, and an average is the sum divided
// once at the end, in the type's arithmetic (float32 for f16 and bf16,
// rounded to nearest even).

// collCase is one operation run on every rank of a communicator.
// kind CollSend stands for a ring of sends and receives: rank r sends to
// r+1 and receives from r-1.
type collCase struct {
	kind    calls.CollKind
	dt      collective.DType
	op      collective.Op
	count   int
	inPlace bool
	root    int
	seed    int
}

func (c collCase) String() string {
	kind := c.kind.String()
	if c.kind == calls.CollSend {
		kind = "send-recv"
	}
	return fmt.Sprintf("%s/%v/%v/count=%d/inplace=%v", kind, c.dt, c.op, c.count, c.inPlace)
}

func unsigned(dt collective.DType) bool {
	return dt == collective.U8 || dt == collective.U32 || dt == collective.U64
}

// input is element i of rank r's input in case c.
func (c collCase) input(r, i int) int64 {
	h := r*31 + i*17 + c.seed*7
	if c.op == collective.Prod && reduces(c.kind) {
		v := int64(1)
		if h%16 == 0 {
			v = 2
		}
		if !unsigned(c.dt) && h%3 == 1 {
			v = -v
		}
		return v
	}
	if unsigned(c.dt) {
		return int64(h % 4)
	}
	return int64(h%7) - 3
}

func reduces(k calls.CollKind) bool {
	return k == calls.CollAllReduce || k == calls.CollReduceScatter || k == calls.CollReduce
}

// inputs returns count elements of rank r's input from element off.
func (c collCase) inputs(r, off, count int) []int64 {
	out := make([]int64, count)
	for i := range out {
		out[i] = c.input(r, off+i)
	}
	return out
}

// wrap is v as the integer type dt holds it.
func wrap(dt collective.DType, v int64) int64 {
	switch dt {
	case collective.I8:
		return int64(int8(v))
	case collective.U8:
		return int64(uint8(v))
	case collective.I32:
		return int64(int32(v))
	case collective.U32:
		return int64(uint32(v))
	}
	return v
}

// reduced returns the encoded reduction over n ranks of elements
// [off, off+count).
func (c collCase) reduced(n, off, count int) []byte {
	es := c.dt.Size()
	out := make([]byte, count*es)
	for i := range count {
		acc := c.input(0, off+i)
		for r := 1; r < n; r++ {
			v := c.input(r, off+i)
			switch c.op {
			case collective.Sum, collective.Avg:
				acc += v
			case collective.Prod:
				acc *= v
			case collective.Max:
				acc = max(acc, v)
			case collective.Min:
				acc = min(acc, v)
			}
		}
		b := out[i*es : (i+1)*es]
		if c.op != collective.Avg {
			putElem(c.dt, b, acc)
			continue
		}
		switch c.dt {
		case collective.F64:
			binary.LittleEndian.PutUint64(b, math.Float64bits(float64(acc)/float64(n)))
		case collective.F32:
			binary.LittleEndian.PutUint32(b, math.Float32bits(float32(acc)/float32(n)))
		case collective.F16:
			binary.LittleEndian.PutUint16(b, f16Bits(float32(acc)/float32(n)))
		case collective.BF16:
			binary.LittleEndian.PutUint16(b, bf16Bits(float32(acc)/float32(n)))
		default:
			putElem(c.dt, b, wrap(c.dt, acc)/int64(n))
		}
	}
	return out
}

// encode encodes integers as elements of c.dt.
func (c collCase) encode(vs []int64) []byte {
	es := c.dt.Size()
	out := make([]byte, len(vs)*es)
	for i, v := range vs {
		putElem(c.dt, out[i*es:(i+1)*es], v)
	}
	return out
}

func putElem(dt collective.DType, b []byte, v int64) {
	switch dt {
	case collective.I8, collective.U8:
		b[0] = byte(v)
	case collective.I32, collective.U32:
		binary.LittleEndian.PutUint32(b, uint32(v))
	case collective.I64, collective.U64:
		binary.LittleEndian.PutUint64(b, uint64(v))
	case collective.F16:
		binary.LittleEndian.PutUint16(b, f16Bits(float32(v)))
	case collective.BF16:
		binary.LittleEndian.PutUint16(b, bf16Bits(float32(v)))
	case collective.F32:
		binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
	case collective.F64:
		binary.LittleEndian.PutUint64(b, math.Float64bits(float64(v)))
	default:
		panic("putElem: " + dt.String())
	}
}

// f16Bits rounds a normal float32 (or zero) to IEEE binary16, to nearest
// even.
func f16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	if b&0x7fffffff == 0 {
		return sign
	}
	exp := int(b>>23&0xff) - 127 + 15
	if exp <= 0 || exp >= 31 {
		panic(fmt.Sprintf("f16Bits: %v outside the normal range of the test", f))
	}
	m := b & 0x7fffff
	r, rest := m>>13, m&0x1fff
	if rest > 0x1000 || (rest == 0x1000 && r&1 == 1) {
		r++
		if r == 0x400 {
			r = 0
			exp++
		}
	}
	return sign | uint16(exp)<<10 | uint16(r)
}

// bf16Bits rounds a finite float32 to bfloat16, to nearest even.
func bf16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

func TestReferenceRounding(t *testing.T) {
	tests := []struct {
		name string
		f    float32
		f16  uint16
		bf16 uint16
	}{
		{"one", 1, 0x3c00, 0x3f80},
		{"minus three", -3, 0xc200, 0xc040},
		{"a third", 1.0 / 3, 0x3555, 0x3eab},
		{"a sixty-fourth", 1.0 / 64, 0x2400, 0x3c80},
		{"192", 192, 0x5a00, 0x4340},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f16Bits(tt.f); got != tt.f16 {
				t.Errorf("f16Bits = %#04x, want %#04x", got, tt.f16)
			}
			if got := bf16Bits(tt.f); got != tt.bf16 {
				t.Errorf("bf16Bits = %#04x, want %#04x", got, tt.bf16)
			}
		})
	}
}

// collRig is a communicator under test with a device buffer per rank.
type collRig struct {
	c    *Client
	comm *Comm
	devs []int
	bufs []uint64 // per rank, bufSize bytes
	size uint64
}

func newCollRig(t *testing.T, c *Client, devs []int, bufSize uint64, opts CommOptions) *collRig {
	t.Helper()
	comm, err := c.CommInit(devs, opts)
	if err != nil {
		t.Fatalf("CommInit(%v): %v", devs, err)
	}
	t.Cleanup(func() { _ = comm.Destroy() })
	g := &collRig{c: c, comm: comm, devs: devs, size: bufSize}
	for _, d := range devs {
		p := mustMalloc(t, c, d, bufSize)
		g.bufs = append(g.bufs, p)
		t.Cleanup(func() { _ = c.Free(p) })
	}
	return g
}

// layout is where case c puts rank r's buffers (offsets into its
// buffer), where its input goes and how many bytes of input it has.
func (g *collRig) layout(c collCase, r int) (send, recv, in uint64, inputs []int64) {
	n := len(g.devs)
	nb := uint64(c.count * c.dt.Size())
	recvOff := (uint64(n)*nb+255)/256*256 + 256
	send, recv, in = 0, recvOff, 0
	switch c.kind {
	case calls.CollReduceScatter, calls.CollAllToAll:
		inputs = c.inputs(r, 0, n*c.count)
		if c.inPlace {
			recv = 0
			if c.kind == calls.CollReduceScatter {
				recv = uint64(r) * nb
			}
		}
	case calls.CollAllGather:
		inputs = c.inputs(r, 0, c.count)
		if c.inPlace {
			recv, send, in = 0, uint64(r)*nb, uint64(r)*nb
		}
	default:
		inputs = c.inputs(r, 0, c.count)
		if c.inPlace {
			recv = 0
		}
	}
	return send, recv, in, inputs
}

// want returns the bytes rank r's receive buffer must hold after c (nil:
// none to check).
func (g *collRig) want(c collCase, r int) []byte {
	n := len(g.devs)
	switch c.kind {
	case calls.CollAllReduce:
		return c.reduced(n, 0, c.count)
	case calls.CollReduceScatter:
		return c.reduced(n, r*c.count, c.count)
	case calls.CollAllGather:
		var all []int64
		for q := range n {
			all = append(all, c.inputs(q, 0, c.count)...)
		}
		return c.encode(all)
	case calls.CollBroadcast:
		return c.encode(c.inputs(c.root, 0, c.count))
	case calls.CollReduce:
		if r != c.root {
			return nil
		}
		return c.reduced(n, 0, c.count)
	case calls.CollAllToAll:
		var all []int64
		for q := range n {
			all = append(all, c.inputs(q, r*c.count, c.count)...)
		}
		return c.encode(all)
	case calls.CollSend:
		return c.encode(c.inputs((r-1+n)%n, 0, c.count))
	}
	return nil
}

// run runs cases one after the other on every rank, in stream order: each
// rank's input goes in, the operation is enqueued and the result comes
// back by asynchronous copies on the rank's legacy stream, and one
// synchronization per rank at the end covers them all. Then every result
// is checked.
func (g *collRig) run(t *testing.T, cases []collCase) {
	t.Helper()
	n := len(g.devs)
	// Large communicators are checked on a sample of ranks: the first and
	// last two (the ends of the ring) and one in the middle.
	checked := func(r int) bool { return n <= 8 || r < 2 || r >= n-2 || r == n/2 }
	got := make([][][]byte, len(cases))
	want := make([][][]byte, len(cases))
	for k, cs := range cases {
		got[k] = make([][]byte, n)
		want[k] = make([][]byte, n)
		if cs.kind == calls.CollSend && n == 1 {
			continue
		}
		for r, d := range g.devs {
			s := LegacyStream(d)
			send, recv, in, inputs := g.layout(cs, r)
			base := g.bufs[r]
			if cs.count > 0 {
				if err := g.c.MemcpyHtoDAsync(base+in, cs.encode(inputs), s); err != nil {
					t.Fatalf("%v: rank %d: input: %v", cs, r, err)
				}
			}
			if err := g.issue(cs, r, base+send, base+recv, s); err != nil {
				t.Fatalf("%v: rank %d: %v", cs, r, err)
			}
			if !checked(r) {
				continue
			}
			if w := g.want(cs, r); len(w) > 0 {
				want[k][r] = w
				got[k][r] = make([]byte, len(w))
				if err := g.c.MemcpyDtoHAsync(got[k][r], base+recv, s); err != nil {
					t.Fatalf("%v: rank %d: result: %v", cs, r, err)
				}
			}
		}
	}
	for r, d := range g.devs {
		if err := g.c.StreamSynchronize(LegacyStream(d)); err != nil {
			t.Fatalf("rank %d (device %d): %v", r, d, err)
		}
	}
	for k, cs := range cases {
		for r := range n {
			if got[k][r] == nil {
				continue
			}
			if w := want[k][r]; !bytes.Equal(got[k][r], w) {
				i := 0
				for i < len(w) && got[k][r][i] == w[i] {
					i++
				}
				t.Errorf("%v: rank %d of %d: %d bytes differ from byte %d (got % x..., want % x...)",
					cs, r, n, len(w), i, got[k][r][i:min(i+8, len(w))], w[i:min(i+8, len(w))])
			}
		}
	}
}

// issue enqueues rank r's part of c.
func (g *collRig) issue(c collCase, r int, send, recv uint64, s Stream) error {
	m, n := g.comm, len(g.devs)
	switch c.kind {
	case calls.CollAllReduce:
		return m.AllReduce(r, send, recv, c.count, c.dt, c.op, s)
	case calls.CollReduceScatter:
		return m.ReduceScatter(r, send, recv, c.count, c.dt, c.op, s)
	case calls.CollAllGather:
		return m.AllGather(r, send, recv, c.count, c.dt, s)
	case calls.CollBroadcast:
		return m.Broadcast(r, send, recv, c.count, c.dt, c.root, s)
	case calls.CollReduce:
		return m.Reduce(r, send, recv, c.count, c.dt, c.op, c.root, s)
	case calls.CollAllToAll:
		return m.AllToAll(r, send, recv, c.count, c.dt, s)
	}
	// A ring of sends: even ranks send first, odd ones receive first, so
	// that every send meets its receive.
	next, prev := (r+1)%n, (r-1+n)%n
	if r%2 == 0 {
		if err := m.Send(r, send, c.count, c.dt, next, s); err != nil {
			return err
		}
		return m.Recv(r, recv, c.count, c.dt, prev, s)
	}
	if err := m.Recv(r, recv, c.count, c.dt, prev, s); err != nil {
		return err
	}
	return m.Send(r, send, c.count, c.dt, next, s)
}

var allKinds = []calls.CollKind{
	calls.CollAllReduce, calls.CollReduceScatter, calls.CollAllGather, calls.CollBroadcast,
	calls.CollReduce, calls.CollAllToAll, calls.CollSend,
}

// collCounts are the uneven counts every case runs with.
var collCounts = []int{0, 1, 7, 1023}

// casesFor returns the cases of kind for each (type, operator) pair, in
// every count, in place and out of place.
func casesFor(kind calls.CollKind, n int, pairs [][2]int) []collCase {
	var out []collCase
	for _, p := range pairs {
		dt, op := collective.DType(p[0]), collective.Op(p[1])
		for _, count := range collCounts {
			for _, inPlace := range []bool{false, true} {
				if inPlace && kind == calls.CollSend {
					continue
				}
				seed := len(out)
				out = append(out, collCase{kind: kind, dt: dt, op: op, count: count, inPlace: inPlace, root: seed % n, seed: seed})
			}
		}
	}
	return out
}

// collBufSize is enough for every case on n ranks.
func collBufSize(n int) uint64 { return 2*uint64(n)*1023*8 + 1024 }

// topologyDevices returns the devices of the first servers servers, the
// first perServer of each, on a cluster of gpus devices per server.
func topologyDevices(servers, perServer, gpus int) []int {
	var devs []int
	for s := range servers {
		for k := range perServer {
			devs = append(devs, s*gpus+k)
		}
	}
	return devs
}

// TestCollectives checks every operation against the reference: every
// element type and operator on communicators of two shapes, and every
// topology of 1, 2, 3, 7 and 16 servers with 1 to 4 devices each for a
// float and an integer type, all with uneven counts, in place and out of
// place.
func TestCollectives(t *testing.T) {
	const servers, gpus = 16, 4
	wt := peers.Config{BulkLanes: 1, ListenSockets: 2}
	cl := newCluster(t, servers, gpus, withWorkerTransport(wt))
	cfg := cl.config()
	cfg.dataAddr = nil
	cfg.Transport = &peers.Config{BulkLanes: 1}
	c := cl.open(t, cfg)

	// Under the race detector, which slows the transport tenfold, the
	// largest communicators run the operations of the tree algorithm and
	// point-to-point ones only (not the ring-only ones, n-1 steps each); the
	// rest of the matrix runs without it.
	full := !raceOn || os.Getenv("XGPU_TEST_FULL") == "1"
	t.Run("types", func(t *testing.T) {
		shapes := [][]int{
			{9, 2, 13, 14}, // uneven: one device of two servers, two of a third, in a shuffled order
			{0, 1, 4, 5},   // two servers, two devices each
		}
		if !full {
			shapes = shapes[:1]
		}
		for _, devs := range shapes {
			t.Run(fmt.Sprint(devs), func(t *testing.T) {
				g := newCollRig(t, c, devs, collBufSize(len(devs)), CommOptions{})
				for _, kind := range allKinds {
					var pairs [][2]int
					for _, dt := range collective.DTypes {
						if !reduces(kind) {
							pairs = append(pairs, [2]int{int(dt), int(collective.Sum)})
							continue
						}
						for _, op := range collective.Ops {
							pairs = append(pairs, [2]int{int(dt), int(op)})
						}
					}
					g.run(t, casesFor(kind, len(devs), pairs))
				}
			})
		}
	})

	t.Run("topologies", func(t *testing.T) {
		pairs := [][2]int{{int(collective.F32), int(collective.Sum)}, {int(collective.I64), int(collective.Max)}}
		for _, s := range []int{1, 2, 3, 7, 16} {
			for d := 1; d <= gpus; d++ {
				t.Run(fmt.Sprintf("%dx%d", s, d), func(t *testing.T) {
					devs := topologyDevices(s, d, gpus)
					g := newCollRig(t, c, devs, collBufSize(len(devs)), CommOptions{})
					kinds := allKinds
					if !full && s > 3 {
						kinds = []calls.CollKind{calls.CollAllReduce, calls.CollBroadcast, calls.CollReduce, calls.CollSend}
					}
					var cases []collCase
					for _, kind := range kinds {
						cases = append(cases, casesFor(kind, len(devs), pairs)...)
					}
					g.run(t, cases)
				})
			}
		}
	})

	t.Run("algorithms", func(t *testing.T) {
		devs := topologyDevices(3, 2, gpus)
		for _, algo := range []collective.Algo{collective.Ring, collective.Tree, collective.Hierarchical} {
			t.Run(algo.String(), func(t *testing.T) {
				g := newCollRig(t, c, devs, 1<<20, CommOptions{Algo: algo, ChunkSize: 16 << 10})
				var cases []collCase
				for _, op := range []collective.Op{collective.Sum, collective.Avg, collective.Min} {
					for _, inPlace := range []bool{false, true} {
						cases = append(cases, collCase{kind: calls.CollAllReduce, dt: collective.F32, op: op, count: 30_001, inPlace: inPlace, seed: len(cases)})
					}
				}
				cases = append(cases, collCase{kind: calls.CollBroadcast, dt: collective.U8, count: 100_003, root: 3, seed: 9})
				g.run(t, cases)
			})
		}
	})
}

// TestCollectiveBypassesClient checks that an all-reduce's payload goes
// worker to worker: the client sends one small call per rank.
func TestCollectiveBypassesClient(t *testing.T) {
	cl := newCluster(t, 3, 1)
	c := cl.open(t, cl.config())
	devs := []int{0, 1, 2}
	const count = 1 << 20 // 4 MiB of f32 per rank
	g := newCollRig(t, c, devs, count*4, CommOptions{})
	for r := range devs {
		if err := c.MemsetD32Async(g.bufs[r], math.Float32bits(float32(r+1)), count, LegacyStream(devs[r])); err != nil {
			t.Fatal(err)
		}
	}
	before, relayBefore := c.Stats(), cl.relayBytes()
	for r, d := range devs {
		if err := g.comm.AllReduce(r, g.bufs[r], g.bufs[r], count, collective.F32, collective.Sum, LegacyStream(d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devs {
		if err := c.StreamSynchronize(LegacyStream(d)); err != nil {
			t.Fatal(err)
		}
	}
	after, relayAfter := c.Stats(), cl.relayBytes()
	if d := after.PayloadSent() - before.PayloadSent(); d != 0 {
		t.Errorf("client sent %d payload bytes for the all-reduce", d)
	}
	if d := after.PayloadReceived() - before.PayloadReceived(); d != 0 {
		t.Errorf("client received %d payload bytes for the all-reduce", d)
	}
	if d := relayAfter - relayBefore; d > 64<<10 {
		t.Errorf("%d bytes crossed the client's connections for a 4 MiB all-reduce", d)
	}
	t.Logf("client traffic for a 3-rank 4 MiB all-reduce: %d bytes", relayAfter-relayBefore)
	out := make([]byte, 4096)
	if err := c.MemcpyDtoH(out, g.bufs[1]+4*(count-1024)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(out); i += 4 {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(out[i:])); v != 6 {
			t.Fatalf("element %d = %v, want 6", i/4, v)
		}
	}
}

// TestCollectiveMemberKilled kills the worker process of one rank while
// the others wait for it in an all-reduce: every other rank's next
// synchronizing call fails within the dead-peer bound (the workers' idle
// timeout) plus a margin, and the killed rank's calls fail as its session
// is lost.
func TestCollectiveMemberKilled(t *testing.T) {
	const idle = time.Second
	cl := newCluster(t, 3, 1, withWorkerIdle(idle), withWorkerProcesses())
	cfg := cl.config()
	cfg.dataAddr = nil
	cfg.Transport = &peers.Config{MaxIdleTimeout: idle, KeepAlivePeriod: idle / 4}
	c := cl.open(t, cfg)
	devs := []int{0, 1, 2}
	const count = 1 << 16
	g := newCollRig(t, c, devs, count*4, CommOptions{})
	// A first all-reduce works.
	for r, d := range devs {
		if err := g.comm.AllReduce(r, g.bufs[r], g.bufs[r], count, collective.F32, collective.Sum, LegacyStream(d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range devs {
		if err := c.StreamSynchronize(LegacyStream(d)); err != nil {
			t.Fatal(err)
		}
	}
	// Ranks 0 and 2 enter the second; rank 1's worker dies instead.
	for _, r := range []int{0, 2} {
		if err := g.comm.AllReduce(r, g.bufs[r], g.bufs[r], count, collective.F32, collective.Sum, LegacyStream(devs[r])); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	pid := int(c.Stats().Sessions[1].WorkerPID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bound := idle + 2*time.Second
	errs := make(chan error, 2)
	for _, r := range []int{0, 2} {
		go func() {
			err := c.StreamSynchronize(LegacyStream(devs[r]))
			if cudaerr.Code(err) != cudaerr.DevicesUnavailable {
				err = fmt.Errorf("rank %d: sync = %v, want cudaErrorDevicesUnavailable", r, err)
			} else if d := time.Since(start); d > bound {
				err = fmt.Errorf("rank %d: failed after %v, bound %v", r, d, bound)
			} else {
				t.Logf("rank %d failed %v after the kill: %v", r, d, err)
				err = nil
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	var lost *LostError
	if err := c.StreamSynchronize(LegacyStream(1)); !errors.As(err, &lost) {
		t.Errorf("killed rank: sync = %v, want a LostError", err)
	}
	// The communicator is aborted; one of the survivors works on.
	if err := g.comm.AllReduce(0, g.bufs[0], g.bufs[0], count, collective.F32, collective.Sum, LegacyStream(0)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.StreamSynchronize(LegacyStream(0)), cudaerr.DevicesUnavailable)
	g2 := newCollRig(t, c, []int{0, 2}, collBufSize(2), CommOptions{})
	g2.run(t, casesFor(calls.CollAllReduce, 2, [][2]int{{int(collective.I32), int(collective.Sum)}}))
}

// TestCollectiveArguments: bad calls fail at once with
// cudaErrorInvalidValue (or the error of a bad handle) and send nothing.
func TestCollectiveArguments(t *testing.T) {
	cl := newCluster(t, 2, 2)
	c := cl.open(t, cl.config())
	for _, tt := range []struct {
		name string
		devs []int
		want cudaerr.Error
	}{
		{"no devices", nil, cudaerr.InvalidValue},
		{"a device twice", []int{0, 1, 0}, cudaerr.InvalidValue},
		{"no such device", []int{0, 9}, cudaerr.InvalidDevice},
	} {
		t.Run("CommInit/"+tt.name, func(t *testing.T) {
			_, err := c.CommInit(tt.devs, CommOptions{})
			wantCode(t, err, tt.want)
		})
	}
	t.Run("CommInit/bad XGPU_ALGO", func(t *testing.T) {
		t.Setenv(collective.EnvAlgo, "bubble")
		_, err := c.CommInit([]int{0, 2}, CommOptions{})
		wantCode(t, err, cudaerr.InvalidValue)
	})
	devs := []int{0, 2, 3}
	g := newCollRig(t, c, devs, 4096, CommOptions{})
	other := mustMalloc(t, c, 1, 4096)
	st, err := c.StreamCreate(2, StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, p := g.comm, g.bufs[0]
	f32, sum := collective.F32, collective.Sum
	own := LegacyStream(0)
	tests := []struct {
		name string
		call func() error
		want cudaerr.Error
	}{
		{"rank out of range", func() error { return m.AllReduce(3, p, p, 4, f32, sum, own) }, cudaerr.InvalidValue},
		{"negative count", func() error { return m.AllReduce(0, p, p, -1, f32, sum, own) }, cudaerr.InvalidValue},
		{"bad type", func() error { return m.AllReduce(0, p, p, 4, 77, sum, own) }, cudaerr.InvalidValue},
		{"bad operator", func() error { return m.AllReduce(0, p, p, 4, f32, 9, own) }, cudaerr.InvalidValue},
		{"past the allocation", func() error { return m.AllReduce(0, p, p, 1025, f32, sum, own) }, cudaerr.InvalidValue},
		{"buffer of another device", func() error { return m.AllReduce(0, other, other, 4, f32, sum, own) }, cudaerr.InvalidValue},
		{"overlapping buffers", func() error { return m.AllReduce(0, p, p+4, 4, f32, sum, own) }, cudaerr.InvalidValue},
		{"reduce-scatter too big", func() error { return m.ReduceScatter(0, p, p, 400, f32, sum, own) }, cudaerr.InvalidValue},
		{"root out of range", func() error { return m.Broadcast(0, p, p, 4, f32, 3, own) }, cudaerr.InvalidValue},
		{"send to itself", func() error { return m.Send(0, p, 4, f32, 0, own) }, cudaerr.InvalidValue},
		{"stream of another device", func() error { return m.AllReduce(0, p, p, 4, f32, sum, st) }, cudaerr.InvalidResourceHandle},
		{"host pointer", func() error { return m.Recv(0, 0x1000, 4, f32, 1, own) }, cudaerr.InvalidValue},
	}
	before := c.Stats().Sessions[0].AsyncCalls
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.want) })
	}
	if after := c.Stats().Sessions[0].AsyncCalls; after != before {
		t.Errorf("bad calls sent %d calls", after-before)
	}
	// Count 0 sends nothing and succeeds.
	if err := m.AllReduce(0, p, p, 0, f32, sum, own); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, m.AllReduce(0, p, p, 4, f32, sum, own), cudaerr.InvalidResourceHandle)
	if err := m.Destroy(); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}

// TestCommInitFailsFast: when one worker refuses a communicator (here it
// returns an earlier asynchronous failure instead), the others give up at
// once instead of waiting for its links.
func TestCommInitFailsFast(t *testing.T) {
	cl := newCluster(t, 3, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 1, 64)
	if err := c.MemsetAsync(p, 0, 16, Stream{dev: 1, id: 0xdead}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.CommInit([]int{0, 1, 2}, CommOptions{})
	wantCode(t, err, cudaerr.InvalidResourceHandle)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("CommInit failed after %v", d)
	}
	// The others are clean: a new communicator works.
	g := newCollRig(t, c, []int{0, 1, 2}, collBufSize(3), CommOptions{})
	g.run(t, casesFor(calls.CollAllReduce, 3, [][2]int{{int(collective.F64), int(collective.Avg)}}))
}

// TestCollectiveAbort aborts a communicator while a rank waits in an
// operation: the waiting rank fails instead of hanging.
func TestCollectiveAbort(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c := cl.open(t, cl.config())
	g := newCollRig(t, c, []int{0, 1}, 4096, CommOptions{})
	if err := g.comm.Broadcast(0, g.bufs[0], g.bufs[0], 16, collective.F32, 1, LegacyStream(0)); err != nil {
		t.Fatal(err)
	}
	if err := g.comm.Abort(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.StreamSynchronize(LegacyStream(0)), cudaerr.DevicesUnavailable)
}

// withWorkerTransport sets the workers' transport configuration.
func withWorkerTransport(c peers.Config) clusterOpt {
	return func(o *clusterOptions) { o.workerT = c }
}

// TestCollectiveGroup: an all-to-all written as one group of sends and
// receives per rank (as PyTorch's all_to_all_single does over NCCL),
// receives posted before sends, across servers and inside one, with a
// block to itself; and the group's argument errors.
func TestCollectiveGroup(t *testing.T) {
	cl := newCluster(t, 3, 2)
	c := cl.open(t, cl.config())
	devs := []int{0, 1, 2, 4}
	n := len(devs)
	const count = 40_001 // above the inline message size
	block := uint64(count * 4)
	g := newCollRig(t, c, devs, 2*uint64(n)*block, CommOptions{})
	word := func(r, to, i int) uint32 { return uint32(r<<24 | to<<16 | i&0xffff) }
	for r := range n {
		in := make([]byte, uint64(n)*block)
		for to := range n {
			for i := range count {
				binary.LittleEndian.PutUint32(in[uint64(to)*block+uint64(4*i):], word(r, to, i))
			}
		}
		if err := c.MemcpyHtoD(g.bufs[r], in); err != nil {
			t.Fatal(err)
		}
	}
	for r := range n {
		var ops []P2P
		for from := range n {
			ops = append(ops, P2P{Recv: true, Peer: from, Buf: g.bufs[r] + uint64(n+from)*block, Count: count, DType: collective.U32})
		}
		for to := range n {
			ops = append(ops, P2P{Peer: to, Buf: g.bufs[r] + uint64(to)*block, Count: count, DType: collective.U32})
		}
		if err := g.comm.Group(r, ops, LegacyStream(devs[r])); err != nil {
			t.Fatalf("Group on rank %d: %v", r, err)
		}
	}
	for r := range n {
		out := make([]byte, uint64(n)*block)
		if err := c.MemcpyDtoH(out, g.bufs[r]+uint64(n)*block); err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		for from := range n {
			for i := range count {
				if v := binary.LittleEndian.Uint32(out[uint64(from)*block+uint64(4*i):]); v != word(from, r, i) {
					t.Fatalf("rank %d, block from %d, element %d = %#x, want %#x", r, from, i, v, word(from, r, i))
				}
			}
		}
	}

	p := g.bufs[0]
	other := mustMalloc(t, c, 3, 64)
	own := LegacyStream(0)
	u32 := collective.U32
	tests := []struct {
		name string
		ops  []P2P
	}{
		{"peer out of range", []P2P{{Peer: 4, Buf: p, Count: 1, DType: u32}}},
		{"negative count", []P2P{{Peer: 1, Buf: p, Count: -1, DType: u32}}},
		{"bad type", []P2P{{Peer: 1, Buf: p, Count: 1, DType: 42}}},
		{"past the allocation", []P2P{{Peer: 1, Buf: p, Count: int(2*uint64(n)*block/4) + 1, DType: u32}}},
		{"buffer of another device", []P2P{{Peer: 1, Buf: other, Count: 1, DType: u32}}},
		{"send to self without a receive", []P2P{{Peer: 0, Buf: p, Count: 1, DType: u32}}},
		{"self sizes differ", []P2P{{Peer: 0, Buf: p, Count: 1, DType: u32}, {Recv: true, Peer: 0, Buf: p + 64, Count: 2, DType: u32}}},
		{"too many", make([]P2P, calls.MaxGroupOps+1)},
	}
	before := c.Stats().Sessions[0].AsyncCalls
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, g.comm.Group(0, tt.ops, own), cudaerr.InvalidValue) })
	}
	if after := c.Stats().Sessions[0].AsyncCalls; after != before {
		t.Errorf("bad groups sent %d calls", after-before)
	}
	if err := g.comm.Group(0, nil, own); err != nil {
		t.Errorf("an empty group: %v", err)
	}
}
