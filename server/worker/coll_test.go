package worker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/server/backend"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

// collCluster is a set of workers, each on a host backend of its own (as
// on separate servers), with a client connected to each.
type collCluster struct {
	workers []*running
	clients []*workertest.Client
	tokens  []string
	hostOf  []int             // worker of each logical device
	streams map[uint32]uint64 // the stream of each device's copies and operations; absent: the legacy stream
}

// newCollCluster starts one worker per entry of perWorker, with that many
// devices; logical devices are numbered across the workers in order.
func newCollCluster(t testing.TB, perWorker ...int) *collCluster {
	t.Helper()
	return newCollClusterOn(t, func(t testing.TB, n int) backend.Backend { return newHost(t, n) }, func(k int) int { return k }, perWorker...)
}

// newCollClusterOn is newCollCluster with the backend of each worker from
// mk (given its device count) and device k of a worker on physical device
// phys(k).
func newCollClusterOn(t testing.TB, mk func(t testing.TB, n int) backend.Backend, phys func(k int) int, perWorker ...int) *collCluster {
	t.Helper()
	cl := &collCluster{}
	next := uint32(0)
	for i, n := range perWorker {
		var devs []DeviceConfig
		for k := range n {
			devs = append(devs, devCfg(next, phys(k)))
			cl.hostOf = append(cl.hostOf, i)
			next++
		}
		cfg := testConfig(devs...)
		cfg.SessionID = fmt.Sprintf("s-coll-%d", i)
		cfg.Token = fmt.Sprintf("coll-token-%02d-0123456789abcdef", i)
		r := start(t, cfg, mk(t, n))
		cl.workers = append(cl.workers, r)
		cl.tokens = append(cl.tokens, cfg.Token)
		cl.clients = append(cl.clients, dial(t, r, cfg.Token))
	}
	return cl
}

// client returns the client of the worker that holds logical device dev.
func (cl *collCluster) client(dev uint32) *workertest.Client { return cl.clients[cl.hostOf[dev]] }

// table returns the CommInit table of a communicator whose rank r is
// logical device devs[r], and the index of each worker in it (-1: none).
func (cl *collCluster) table(devs []uint32, opts calls.CommOptions) (calls.CommInit, []int) {
	ci := calls.CommInit{Options: opts}
	idx := make([]int, len(cl.workers))
	for i := range idx {
		idx[i] = -1
	}
	for _, d := range devs {
		h := cl.hostOf[d]
		if idx[h] < 0 {
			idx[h] = len(ci.Workers)
			r := cl.workers[h]
			ci.Workers = append(ci.Workers, calls.CommWorker{Addr: r.ready.Address, Token: cl.tokens[h], Pin: r.ready.CertSHA256, Host: fmt.Sprintf("server-%d", h)})
		}
		ci.Ranks = append(ci.Ranks, calls.CommRank{Dev: d, Worker: uint32(idx[h])})
	}
	return ci, idx
}

func newCommID(t testing.TB) uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// commInit creates a communicator over devs on every worker concerned, at
// once, and returns the status of each worker's CommInit.
func (cl *collCluster) commInit(t testing.TB, id uint64, devs []uint32, opts calls.CommOptions) []error {
	t.Helper()
	ci, idx := cl.table(devs, opts)
	var e wire.Enc
	if err := ci.Encode(&e); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(cl.workers))
	var wg sync.WaitGroup
	for h, i := range idx {
		if i < 0 {
			continue
		}
		wg.Go(func() {
			_, errs[h] = cl.clients[h].Call(testCtx(t), calls.OpCommInit, calls.Call{Aux: id, Aux2: uint64(i), Data: e.B})
		})
	}
	wg.Wait()
	return errs
}

func (cl *collCluster) mustCommInit(t testing.TB, devs []uint32, opts calls.CommOptions) uint64 {
	t.Helper()
	id := newCommID(t)
	for h, err := range cl.commInit(t, id, devs, opts) {
		if err != nil {
			t.Fatalf("CommInit on worker %d: %v", h, err)
		}
	}
	return id
}

// op is one rank's part of a collective.
type collOp struct {
	kind       calls.CollKind
	dt         collective.DType
	redOp      collective.Op
	peer       int
	count      uint64
	send, recv uint64
	stream     uint64
}

func (cl *collCluster) issue(t testing.TB, id uint64, devs []uint32, rank int, o collOp) {
	t.Helper()
	call := calls.Call{Dev: devs[rank], Dev2: uint32(rank), Stream: o.stream, Src: o.send, Dst: o.recv, N: o.count, Aux: id,
		Aux2: calls.PackColl(o.kind, uint8(o.dt), uint8(o.redOp), uint32(o.peer))}
	if err := cl.client(devs[rank]).Send(calls.OpCollective, call); err != nil {
		t.Fatalf("Collective on rank %d: %v", rank, err)
	}
}

// value is the input element i of rank r: a small integer, so that every
// sum, product, minimum and maximum is exact in every type.
func value(r, i int) int64 { return int64((r*7+i*13)%7) - 3 }

func encodeInts(dt collective.DType, vs []int64) []byte {
	out := make([]byte, len(vs)*dt.Size())
	for i, v := range vs {
		switch dt {
		case collective.F32:
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(v)))
		case collective.I32:
			binary.LittleEndian.PutUint32(out[4*i:], uint32(int32(v)))
		default:
			panic("encodeInts: type " + dt.String())
		}
	}
	return out
}

// reduceRef reduces the inputs of n ranks, elements [off, off+count), as
// the operator does in C.
func reduceRef(n, off, count int, op collective.Op) []int64 {
	out := make([]int64, count)
	for i := range out {
		acc := value(0, off+i)
		for r := 1; r < n; r++ {
			v := value(r, off+i)
			switch op {
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
		if op == collective.Avg {
			acc /= int64(n)
		}
		out[i] = acc
	}
	return out
}

func inputs(r, off, count int) []int64 {
	out := make([]int64, count)
	for i := range out {
		out[i] = value(r, off+i)
	}
	return out
}

// runColl runs one operation on every rank of a communicator over devs
// and checks each rank's receive buffer against the reference.
func runColl(t *testing.T, cl *collCluster, id uint64, devs []uint32, kind calls.CollKind, dt collective.DType, op collective.Op, count int, inPlace bool) {
	t.Helper()
	n := len(devs)
	es := dt.Size()
	nb := count * es
	root := n - 1
	type rankBufs struct{ base, send, recv uint64 }
	bufs := make([]rankBufs, n)
	for r, d := range devs {
		c := cl.client(d)
		base := mustMalloc(t, c, d, uint64(2*n*nb+64))
		b := rankBufs{base: base, send: base, recv: base + uint64(n*nb) + 64}
		var in []byte
		switch kind {
		case calls.CollReduceScatter, calls.CollAllToAll:
			in = encodeInts(dt, inputs(r, 0, n*count))
			if inPlace {
				b.recv = base
				if kind == calls.CollReduceScatter {
					b.recv = base + uint64(r*nb)
				}
			}
		case calls.CollAllGather:
			in = encodeInts(dt, inputs(r, 0, count))
			if inPlace {
				b.recv, b.send = base, base+uint64(r*nb)
			}
		default:
			in = encodeInts(dt, inputs(r, 0, count))
			if inPlace {
				b.recv = base
			}
		}
		if err := c.MemcpyHtoD(testCtx(t), d, b.send, in, cl.streams[d]); err != nil {
			t.Fatal(err)
		}
		bufs[r] = b
	}
	for r := range n {
		o := collOp{kind: kind, dt: dt, redOp: op, peer: root, count: uint64(count), send: bufs[r].send, recv: bufs[r].recv, stream: cl.streams[devs[r]]}
		if kind == calls.CollSend || kind == calls.CollRecv {
			// Rank r sends to r+1 (mod n), so every rank receives once.
			o.kind, o.peer = calls.CollSend, (r+1)%n
			if r%2 == 1 {
				o.kind, o.peer = calls.CollRecv, (r-1+n)%n
			}
		}
		cl.issue(t, id, devs, r, o)
		if kind == calls.CollSend || kind == calls.CollRecv {
			o2 := o
			if o.kind == calls.CollSend {
				o2.kind, o2.peer = calls.CollRecv, (r-1+n)%n
			} else {
				o2.kind, o2.peer = calls.CollSend, (r+1)%n
			}
			cl.issue(t, id, devs, r, o2)
		}
	}
	for r, d := range devs {
		if err := cl.client(d).Sync(testCtx(t), d, cl.streams[d]); err != nil {
			t.Fatalf("rank %d: sync: %v", r, err)
		}
	}
	for r, d := range devs {
		var want []int64
		switch kind {
		case calls.CollAllReduce:
			want = reduceRef(n, 0, count, op)
		case calls.CollReduceScatter:
			want = reduceRef(n, r*count, count, op)
		case calls.CollAllGather:
			for q := range n {
				want = append(want, inputs(q, 0, count)...)
			}
		case calls.CollBroadcast:
			want = inputs(root, 0, count)
		case calls.CollReduce:
			if r != root {
				continue
			}
			want = reduceRef(n, 0, count, op)
		case calls.CollAllToAll:
			for q := range n {
				want = append(want, inputs(q, r*count, count)...)
			}
		case calls.CollSend, calls.CollRecv:
			want = inputs((r-1+n)%n, 0, count)
		}
		got := make([]byte, len(want)*es)
		if err := cl.client(d).MemcpyDtoH(testCtx(t), d, bufs[r].recv, got, cl.streams[d]); err != nil {
			t.Fatalf("rank %d: MemcpyDtoH: %v", r, err)
		}
		checkEqual(t, fmt.Sprintf("rank %d", r), got, encodeInts(dt, want))
	}
}

func TestCollectiveOperations(t *testing.T) {
	cl := newCollCluster(t, 2, 1, 1)
	devs := []uint32{0, 1, 2, 3} // ranks 0 and 1 share worker 0
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	ops := []struct {
		kind calls.CollKind
		op   collective.Op
	}{
		{calls.CollAllReduce, collective.Sum},
		{calls.CollReduceScatter, collective.Max},
		{calls.CollAllGather, collective.Sum},
		{calls.CollBroadcast, collective.Sum},
		{calls.CollReduce, collective.Prod},
		{calls.CollAllToAll, collective.Sum},
		{calls.CollSend, collective.Sum},
	}
	counts := []int{1, 7, 1023}
	if !testing.Short() {
		counts = append(counts, 70_001) // messages above the inline limit
	}
	for _, o := range ops {
		for _, dt := range []collective.DType{collective.F32, collective.I32} {
			for _, count := range counts {
				for _, inPlace := range []bool{false, true} {
					if inPlace && o.kind == calls.CollSend {
						continue
					}
					name := fmt.Sprintf("%v/%v/%v/%d/inplace=%v", o.kind, dt, o.op, count, inPlace)
					t.Run(name, func(t *testing.T) {
						runColl(t, cl, id, devs, o.kind, dt, o.op, count, inPlace)
					})
				}
			}
		}
	}
	t.Run("algorithms", func(t *testing.T) {
		for _, algo := range []collective.Algo{collective.Ring, collective.Tree, collective.Hierarchical} {
			id := cl.mustCommInit(t, devs, calls.CommOptions{Algo: uint8(algo), ChunkSize: 64 << 10})
			for _, op := range []collective.Op{collective.Sum, collective.Avg, collective.Min} {
				runColl(t, cl, id, devs, calls.CollAllReduce, collective.I32, op, 50_000, false)
			}
		}
	})
	st := cl.workers[0].w.CollectiveStats()
	if st.BytesSent == 0 || st.BytesReceived == 0 || st.Links != 2 {
		t.Errorf("worker 0 stats %+v: want traffic on two links", st)
	}
}

// TestCollectiveBypassesClient checks that the payload of an all-reduce
// goes worker to worker: the clients send only small calls.
func TestCollectiveBypassesClient(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	const count = 1 << 20
	var ptrs [2]uint64
	for r, d := range devs {
		ptrs[r] = mustMalloc(t, cl.client(d), d, count*4)
	}
	var before [2]workertest.Stats
	for r := range devs {
		before[r] = cl.clients[r].Stats()
	}
	sent0 := cl.workers[0].w.CollectiveStats().BytesSent
	for r := range devs {
		cl.issue(t, id, devs, r, collOp{kind: calls.CollAllReduce, dt: collective.F32, redOp: collective.Sum, count: count, send: ptrs[r], recv: ptrs[r]})
	}
	for r, d := range devs {
		mustSync(t, cl.clients[r], d)
		after := cl.clients[r].Stats()
		if d := after.FrameBytesSent - before[r].FrameBytesSent; d > 1024 {
			t.Errorf("client %d sent %d frame bytes for a 4 MiB all-reduce", r, d)
		}
		if after.BulkBytesSent != before[r].BulkBytesSent || after.BulkBytesReceived != before[r].BulkBytesReceived {
			t.Errorf("client %d moved bulk data", r)
		}
	}
	if d := cl.workers[0].w.CollectiveStats().BytesSent - sent0; d < count*4/2 {
		t.Errorf("worker 0 sent %d bytes to worker 1, want at least %d", d, count*4/2)
	}
}

// TestCollectiveReducesOnDevice checks that the reductions of large
// messages run on the rank's device (its Reducer kernels, in place on
// mapped host memory) and that small ones stay on the CPU.
func TestCollectiveReducesOnDevice(t *testing.T) {
	testReducesOnDevice(t, newCollCluster(t, 1, 1), []uint32{0, 1})
}

func testReducesOnDevice(t *testing.T, cl *collCluster, devs []uint32) {
	stats := func() (dev, host uint64) {
		for _, w := range cl.workers {
			st := w.w.CollectiveStats()
			dev += st.DeviceReductions
			host += st.HostReductions
		}
		return dev, host
	}
	id := cl.mustCommInit(t, devs, calls.CommOptions{Algo: uint8(collective.Ring)})
	dev0, host0 := stats()
	for _, op := range []collective.Op{collective.Sum, collective.Avg, collective.Max} {
		runColl(t, cl, id, devs, calls.CollAllReduce, collective.F32, op, 1<<18, false)
	}
	runColl(t, cl, id, devs, calls.CollReduceScatter, collective.I32, collective.Sum, 1<<17, false)
	dev1, host1 := stats()
	if dev1 == dev0 || host1 != host0 {
		t.Errorf("1 MiB operations: %d reductions on the devices, %d on the CPU; want some on the devices and none on the CPU", dev1-dev0, host1-host0)
	}
	runColl(t, cl, id, devs, calls.CollAllReduce, collective.F32, collective.Sum, 8, false)
	if dev2, host2 := stats(); dev2 != dev1 || host2 == host1 {
		t.Errorf("a 32-byte all-reduce: %d reductions on the devices, %d on the CPU; want them on the CPU", dev2-dev1, host2-host1)
	}
}

func TestCommInitRefused(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	c := cl.clients[0]
	ci, _ := cl.table([]uint32{0, 1}, calls.CommOptions{})
	encode := func(ci calls.CommInit) []byte {
		var e wire.Enc
		if err := ci.Encode(&e); err != nil {
			t.Fatal(err)
		}
		return e.B
	}
	good := encode(ci)
	otherDev := ci
	otherDev.Ranks = []calls.CommRank{{Dev: 1, Worker: 0}, {Dev: 1, Worker: 1}}
	twice := ci
	twice.Ranks = []calls.CommRank{{Dev: 0, Worker: 0}, {Dev: 0, Worker: 0}, {Dev: 1, Worker: 1}}
	unreachable := ci
	unreachable.Workers = append([]calls.CommWorker(nil), ci.Workers...)
	unreachable.Workers[1].Addr = "127.0.0.1:1"
	unreachable.Workers[1].Pin = "ff" // a key above worker 0's: worker 0 dials it
	for unreachable.Workers[1].Key() < unreachable.Workers[0].Key() {
		unreachable.Workers[1].Addr = "z" + unreachable.Workers[1].Addr
	}
	unreachable.Options.InitTimeout = int64(300 * time.Millisecond)
	tests := []struct {
		name string
		call calls.Call
		want cudaerr.Error
	}{
		{"malformed table", calls.Call{Aux: 7, Data: []byte{1, 2, 3}}, cudaerr.InvalidValue},
		{"id zero", calls.Call{Aux: 0, Data: good}, cudaerr.InvalidValue},
		{"worker index out of range", calls.Call{Aux: 8, Aux2: 2, Data: good}, cudaerr.InvalidValue},
		{"device of another worker", calls.Call{Aux: 9, Aux2: 0, Data: encode(otherDev)}, cudaerr.InvalidDevice},
		{"one device twice", calls.Call{Aux: 10, Aux2: 0, Data: encode(twice)}, cudaerr.InvalidValue},
		{"unreachable worker", calls.Call{Aux: 11, Aux2: 0, Data: encode(unreachable)}, cudaerr.DevicesUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, "CommInit", callStatus(t, c, calls.OpCommInit, tt.call), tt.want)
		})
	}
	if n := cl.workers[0].w.CollectiveStats().Comms; n != 0 {
		t.Errorf("%d communicators left after refusals", n)
	}
	t.Run("id in use", func(t *testing.T) {
		id := cl.mustCommInit(t, []uint32{0, 1}, calls.CommOptions{})
		wantCode(t, "CommInit", callStatus(t, c, calls.OpCommInit, calls.Call{Aux: id, Data: good}), cudaerr.InvalidValue)
	})
}

// TestCollectiveBadArguments: a bad operation fails at the next
// synchronizing call of its session and aborts the communicator, so that
// the other ranks fail too instead of waiting.
func TestCollectiveBadArguments(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	p0 := mustMalloc(t, cl.clients[0], 0, 4096)
	p1 := mustMalloc(t, cl.clients[1], 1, 4096)
	good := collOp{kind: calls.CollAllReduce, dt: collective.F32, redOp: collective.Sum, count: 16, send: p0, recv: p0}
	tests := []struct {
		name   string
		mutate func(*collOp, *calls.Call)
		want   cudaerr.Error
	}{
		{"pointer outside the allocations", func(o *collOp, _ *calls.Call) { o.send, o.recv = p0+4090, p0+4090 }, cudaerr.InvalidValue},
		{"count past the allocation", func(o *collOp, _ *calls.Call) { o.count = 2000 }, cudaerr.InvalidValue},
		{"unknown type", func(o *collOp, _ *calls.Call) { o.dt = 42 }, cudaerr.InvalidValue},
		{"unknown operator", func(o *collOp, _ *calls.Call) { o.redOp = 9 }, cudaerr.InvalidValue},
		{"overlapping buffers", func(o *collOp, _ *calls.Call) { o.recv = p0 + 8 }, cudaerr.InvalidValue},
		{"bad stream", func(o *collOp, _ *calls.Call) { o.stream = 0xdead }, cudaerr.InvalidResourceHandle},
		{"unknown communicator", func(_ *collOp, c *calls.Call) { c.Aux++ }, cudaerr.InvalidResourceHandle},
		{"rank of another device", func(_ *collOp, c *calls.Call) { c.Dev2 = 1 }, cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := cl.mustCommInit(t, devs, calls.CommOptions{})
			o := good
			call := calls.Call{Dev: 0, Dev2: 0, Aux: id}
			tt.mutate(&o, &call)
			call.Stream, call.Src, call.Dst, call.N = o.stream, o.send, o.recv, o.count
			call.Aux2 = calls.PackColl(o.kind, uint8(o.dt), uint8(o.redOp), uint32(o.peer))
			if err := cl.clients[0].Send(calls.OpCollective, call); err != nil {
				t.Fatal(err)
			}
			wantCode(t, "sync of the bad rank", cl.clients[0].Sync(testCtx(t), 0, 0), tt.want)
			if call.Aux != id || call.Dev2 != 0 {
				return // no rank of the communicator was named
			}
			// The other rank's all-reduce fails instead of waiting.
			cl.issue(t, id, devs, 1, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: 16, send: p1, recv: p1})
			wantCode(t, "sync of the other rank", cl.clients[1].Sync(testCtx(t), 1, 0), cudaerr.DevicesUnavailable)
		})
	}
}

// TestCollectiveTimeout: a rank that never joins an operation makes the
// others fail with cudaErrorTimeout once the communicator's timeout
// passes without progress.
func TestCollectiveTimeout(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	const timeout = 300 * time.Millisecond
	id := cl.mustCommInit(t, devs, calls.CommOptions{Timeout: int64(timeout)})
	p := mustMalloc(t, cl.clients[0], 0, 4096)
	start := time.Now()
	cl.issue(t, id, devs, 0, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: 64, send: p, recv: p})
	wantCode(t, "sync", cl.clients[0].Sync(testCtx(t), 0, 0), cudaerr.Timeout)
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Fatalf("timed out after %v, want about %v", d, timeout)
	}
}

// TestCollectiveMemberDies closes a worker while the others wait in an
// all-reduce for its ranks: every other rank's next synchronizing call
// fails within the documented bound (a closed worker: at once).
func TestCollectiveMemberDies(t *testing.T) {
	cl := newCollCluster(t, 2, 1, 1)
	devs := []uint32{0, 1, 2, 3}
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	const count = 1 << 16
	ptrs := make([]uint64, len(devs))
	for r, d := range devs {
		ptrs[r] = mustMalloc(t, cl.client(d), d, count*4)
	}
	// Ranks 0, 1 (worker 0) and 3 (worker 2) enter the all-reduce; worker 1
	// (rank 2) dies instead.
	for _, r := range []int{0, 1, 3} {
		cl.issue(t, id, devs, r, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: count, send: ptrs[r], recv: ptrs[r]})
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cl.workers[1].w.Close()
	// A worker reports an asynchronous failure once, to the first
	// synchronizing call after it: one sync per surviving worker.
	var wg sync.WaitGroup
	for _, r := range []int{0, 3} {
		wg.Go(func() {
			d := devs[r]
			err := cl.client(d).Sync(testCtx(t), d, 0)
			if cudaerr.Code(err) != cudaerr.DevicesUnavailable {
				t.Errorf("rank %d: sync = %v, want cudaErrorDevicesUnavailable", r, err)
			}
		})
	}
	wg.Wait()
	// Rank 1's operation failed too (its stream is free again), whichever
	// of the worker's ranks reported the failure.
	if err := cl.clients[0].Sync(testCtx(t), 1, 0); err != nil && cudaerr.Code(err) != cudaerr.DevicesUnavailable {
		t.Errorf("rank 1: sync = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the other ranks failed %v after the worker closed", d)
	}
	// The communicator is aborted: later operations fail at once.
	cl.issue(t, id, devs, 3, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: count, send: ptrs[3], recv: ptrs[3]})
	wantCode(t, "after the abort", cl.clients[2].Sync(testCtx(t), 3, 0), cudaerr.DevicesUnavailable)
	// A new communicator of the survivors works.
	id2 := cl.mustCommInit(t, []uint32{0, 1, 3}, calls.CommOptions{})
	runColl(t, cl, id2, []uint32{0, 1, 3}, calls.CollAllReduce, collective.I32, collective.Sum, 1000, true)
}

// TestCommDestroy destroys communicators after their operations and
// with operations pending (abort).
func TestCommDestroy(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	runColl(t, cl, id, devs, calls.CollBroadcast, collective.F32, collective.Sum, 100, false)
	for r, d := range devs {
		if err := cl.client(d).Send(calls.OpCommDestroy, calls.Call{Aux: id}); err != nil {
			t.Fatal(err)
		}
		mustSync(t, cl.clients[r], d)
	}
	waitFor(t, "communicators to go", func() bool {
		return cl.workers[0].w.CollectiveStats().Comms == 0 && cl.workers[1].w.CollectiveStats().Comms == 0
	})
	// Destroying an unknown communicator is an error; aborting one is not
	// (a client aborts everywhere when a creation failed somewhere).
	if err := cl.clients[0].Send(calls.OpCommDestroy, calls.Call{Aux: id, Aux2: 1}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, cl.clients[0], 0)
	if err := cl.clients[0].Send(calls.OpCommDestroy, calls.Call{Aux: id}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "destroy of an unknown communicator", cl.clients[0].Sync(testCtx(t), 0, 0), cudaerr.InvalidResourceHandle)
	// Destroyed: an operation on it fails at the next sync.
	p := mustMalloc(t, cl.clients[0], 0, 64)
	cl.issue(t, id, devs, 0, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: 4, send: p, recv: p})
	wantCode(t, "after destroy", cl.clients[0].Sync(testCtx(t), 0, 0), cudaerr.InvalidResourceHandle)

	// Abort with an operation pending: rank 0 waits for rank 1, which
	// aborts instead; rank 0 fails instead of waiting.
	id = cl.mustCommInit(t, devs, calls.CommOptions{})
	cl.issue(t, id, devs, 0, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: 4, send: p, recv: p})
	if err := cl.clients[1].Send(calls.OpCommDestroy, calls.Call{Aux: id, Aux2: 1}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "pending at the abort", cl.clients[0].Sync(testCtx(t), 0, 0), cudaerr.DevicesUnavailable)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCollectiveFramesFromStrangers: collective frames are accepted only
// on a peer connection that announced itself, and only about ranks of
// the worker that sent them; nothing else panics or reaches a
// communicator.
func TestCollectiveFramesFromStrangers(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	peer := dialNoHello(t, cl.workers[0])
	if err := peer.Hello(testCtx(t), peerHelloPrefix+cl.tokens[0]); err != nil {
		t.Fatal(err)
	}
	bogus := []struct {
		op   wire.Op
		call calls.Call
	}{
		{calls.OpCollReady, calls.Call{Aux: id, Dev: 0, Dev2: 1, N: 4}},           // before CommLink
		{calls.OpCommLink, calls.Call{Text: "stranger|00"}},                       // announces an unknown key
		{calls.OpCollReady, calls.Call{Aux: id, Dev: 0, Dev2: 1, N: 4}},           // ranks of another worker
		{calls.OpCollData, calls.Call{Aux: id, Dev: 1, Dev2: 0, Data: []byte{1}}}, // idem
		{calls.OpCommPeerDown, calls.Call{Aux: id, Dev: 1, N: 1}},                 // idem
		{calls.OpCollData, calls.Call{Aux: id + 1, Dev: 1, Dev2: 0}},              // unknown communicator
	}
	for _, b := range bogus {
		if err := peer.Send(b.op, b.call); err != nil {
			t.Fatal(err)
		}
	}
	// A client may not send worker-to-worker frames.
	wantCode(t, "CommLink from the client", callStatus(t, cl.clients[0], calls.OpCommLink, calls.Call{Text: "x"}), cudaerr.NotPermitted)
	// The communicator still works.
	runColl(t, cl, id, devs, calls.CollAllReduce, collective.I32, collective.Sum, 100, false)
}

func TestCollStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want cudaerr.Error
	}{
		{"invalid argument", fmt.Errorf("x: %w", collective.ErrInvalidArgument), cudaerr.InvalidValue},
		{"mismatch", collective.ErrMismatch, cudaerr.InvalidValue},
		{"timeout", &collective.OpError{Op: "all-reduce", Err: collective.ErrTimeout}, cudaerr.Timeout},
		{"peer lost", collective.ErrPeerLost, cudaerr.DevicesUnavailable},
		{"aborted", collective.ErrAborted, cudaerr.DevicesUnavailable},
		{"staging copy", fmt.Errorf("copy: %w", cudaerr.IllegalAddress), cudaerr.IllegalAddress},
		{"other", errors.New("?"), cudaerr.Unknown},
		{"cancelled", context.Canceled, cudaerr.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := collStatus(tt.err); got != tt.want {
				t.Fatalf("collStatus = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCollectiveMismatch: ranks that disagree about an operation's count
// fail with cudaErrorInvalidValue (the rank that sees the mismatch) or
// cudaErrorDevicesUnavailable (the communicator is aborted), inline and
// bulk messages alike, instead of waiting.
func TestCollectiveMismatch(t *testing.T) {
	cl := newCollCluster(t, 1, 1)
	devs := []uint32{0, 1}
	ptrs := [2]uint64{mustMalloc(t, cl.clients[0], 0, 1<<20), mustMalloc(t, cl.clients[1], 1, 1<<20)}
	for _, counts := range [][2]uint64{{64, 65}, {70_000, 70_001}} {
		t.Run(fmt.Sprint(counts), func(t *testing.T) {
			id := cl.mustCommInit(t, devs, calls.CommOptions{Algo: uint8(collective.Ring), Timeout: int64(10 * time.Second)})
			for r := range devs {
				cl.issue(t, id, devs, r, collOp{kind: calls.CollAllReduce, dt: collective.F32, count: counts[r], send: ptrs[r], recv: ptrs[r]})
			}
			var codes []cudaerr.Error
			for r, d := range devs {
				codes = append(codes, cudaerr.Code(cl.clients[r].Sync(testCtx(t), d, 0)))
			}
			invalid := 0
			for _, c := range codes {
				switch c {
				case cudaerr.InvalidValue:
					invalid++
				case cudaerr.DevicesUnavailable:
				default:
					t.Fatalf("codes %v: want cudaErrorInvalidValue or cudaErrorDevicesUnavailable", codes)
				}
			}
			if invalid == 0 {
				t.Fatalf("codes %v: no rank reported the mismatch", codes)
			}
		})
	}
}

// issueGroup sends rank's group of sends and receives.
func (cl *collCluster) issueGroup(t testing.TB, id uint64, devs []uint32, rank int, ops []calls.GroupOp) {
	t.Helper()
	var e wire.Enc
	if err := calls.EncodeGroup(&e, ops); err != nil {
		t.Fatal(err)
	}
	call := calls.Call{Dev: devs[rank], Dev2: uint32(rank), N: uint64(len(ops)), Aux: id, Data: e.B}
	if err := cl.client(devs[rank]).Send(calls.OpCollGroup, call); err != nil {
		t.Fatalf("CollGroup on rank %d: %v", rank, err)
	}
}

// TestCollectiveGroup: every rank receives from both neighbours first and
// then sends to both, in one group each. Issued as separate operations
// this order would wait forever; in a group the sends and receives
// progress together, as NCCL's grouped ncclSend/ncclRecv do. Each rank
// also sends a block to itself.
func TestCollectiveGroup(t *testing.T) {
	cl := newCollCluster(t, 2, 1, 1)
	devs := []uint32{0, 1, 2, 3}
	n := len(devs)
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	for _, count := range []int{5, 70_001} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			nb := uint64(count * 4)
			// Per rank: send block, then receive blocks from prev, next
			// and self.
			base := make([]uint64, n)
			for r, d := range devs {
				base[r] = mustMalloc(t, cl.client(d), d, 4*nb)
				if err := cl.client(d).MemcpyHtoD(testCtx(t), d, base[r], encodeInts(collective.I32, inputs(r, 0, count)), 0); err != nil {
					t.Fatal(err)
				}
			}
			for r := range n {
				prev, next := uint32((r-1+n)%n), uint32((r+1)%n)
				b := base[r]
				cl.issueGroup(t, id, devs, r, []calls.GroupOp{
					{Recv: true, DType: uint8(collective.I32), Peer: prev, Buf: b + nb, Count: uint64(count)},
					{Recv: true, DType: uint8(collective.I32), Peer: next, Buf: b + 2*nb, Count: uint64(count)},
					{Recv: true, DType: uint8(collective.I32), Peer: uint32(r), Buf: b + 3*nb, Count: uint64(count)},
					{DType: uint8(collective.I32), Peer: next, Buf: b, Count: uint64(count)},
					{DType: uint8(collective.I32), Peer: prev, Buf: b, Count: uint64(count)},
					{DType: uint8(collective.I32), Peer: uint32(r), Buf: b, Count: uint64(count)},
				})
			}
			for r, d := range devs {
				mustSync(t, cl.client(d), d)
				got := readBack(t, cl.client(d), d, base[r]+nb, int(3*nb))
				for k, from := range []int{(r - 1 + n) % n, (r + 1) % n, r} {
					checkEqual(t, fmt.Sprintf("rank %d from %d", r, from), got[uint64(k)*nb:uint64(k+1)*nb], encodeInts(collective.I32, inputs(from, 0, count)))
				}
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		c := cl.client(0)
		p := mustMalloc(t, c, 0, 64)
		good := calls.GroupOp{DType: uint8(collective.F32), Peer: 1, Buf: p, Count: 4}
		encode := func(ops ...calls.GroupOp) []byte {
			var e wire.Enc
			if err := calls.EncodeGroup(&e, ops); err != nil {
				t.Fatal(err)
			}
			return e.B
		}
		bad := func(f func(o *calls.GroupOp)) []byte { o := good; f(&o); return encode(o) }
		tests := []struct {
			name string
			call calls.Call
			want cudaerr.Error
		}{
			{"unknown communicator", calls.Call{Aux: 12345, N: 1, Data: encode(good)}, cudaerr.InvalidResourceHandle},
			{"malformed", calls.Call{Aux: id, N: 1, Data: []byte{1, 2}}, cudaerr.InvalidValue},
			{"count differs", calls.Call{Aux: id, N: 2, Data: encode(good)}, cudaerr.InvalidValue},
			{"peer out of range", calls.Call{Aux: id, N: 1, Data: bad(func(o *calls.GroupOp) { o.Peer = 4 })}, cudaerr.InvalidValue},
			{"buffer past its allocation", calls.Call{Aux: id, N: 1, Data: bad(func(o *calls.GroupOp) { o.Count = 17 })}, cudaerr.InvalidValue},
			{"unknown type", calls.Call{Aux: id, N: 1, Data: bad(func(o *calls.GroupOp) { o.DType = 42 })}, cudaerr.InvalidValue},
			{"send to self unmatched", calls.Call{Aux: id, N: 1, Data: bad(func(o *calls.GroupOp) { o.Peer = 0 })}, cudaerr.InvalidValue},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantCode(t, "CollGroup", callStatus(t, c, calls.OpCollGroup, tt.call), tt.want)
			})
		}
	})
}

// TestWorkerLinksUseLocalLanes: two workers of one host move their
// collective messages through a local lane (shared memory) at both ends
// of their link, and over QUIC when XGPU_LOCAL_LANE=0.
func TestWorkerLinksUseLocalLanes(t *testing.T) {
	for _, quic := range []bool{false, true} {
		t.Run(fmt.Sprintf("quic=%v", quic), func(t *testing.T) {
			if quic {
				t.Setenv(envLocalLane, "0")
			}
			cl := newCollCluster(t, 1, 1)
			devs := []uint32{0, 1}
			id := cl.mustCommInit(t, devs, calls.CommOptions{})
			runColl(t, cl, id, devs, calls.CollAllReduce, collective.F32, collective.Sum, 1<<18, false)
			for i, r := range cl.workers {
				cw := &r.w.coll
				cw.mu.Lock()
				n := 0
				for _, l := range cw.links {
					n++
					lo, ok := l.pc.(interface{ HasLocal() bool })
					if !ok || lo.HasLocal() == quic {
						t.Errorf("worker %d: link to %s: local lane %v, want %v", i, l.key, ok && lo.HasLocal(), !quic)
					}
				}
				cw.mu.Unlock()
				if n != 1 {
					t.Errorf("worker %d has %d links, want 1", i, n)
				}
			}
		})
	}
}

// TestCommInitTwoRanksOneGPU: two vGPUs of one GPU cannot be two ranks of
// one communicator, as NCCL refuses a duplicate GPU.
func TestCommInitTwoRanksOneGPU(t *testing.T) {
	cl := newCollClusterOn(t, func(t testing.TB, n int) backend.Backend { return newHost(t, n) }, func(int) int { return 0 }, 2)
	errs := cl.commInit(t, newCommID(t), []uint32{0, 1}, calls.CommOptions{})
	wantCode(t, "CommInit", errs[0], cudaerr.InvalidValue)
}

// TestCollectiveDeviceAllReduce: a communicator whose ranks are all on one
// worker runs its all-reduces, reduce-scatters, reduces, broadcasts and
// all-gathers on the devices (peer reductions and peer copies), every
// operator, in and out of place, uneven counts; all-to-all and send/recv
// take the staged path; forcing a network algorithm takes the staged path
// for all, with the same results.
func TestCollectiveDeviceAllReduce(t *testing.T) {
	cl := newCollCluster(t, 3)
	devs := []uint32{0, 1, 2}
	w := cl.workers[0].w
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	before := w.CollectiveStats()
	reducing := 0
	for _, kind := range []calls.CollKind{calls.CollAllReduce, calls.CollReduceScatter, calls.CollReduce} {
		for _, op := range collective.Ops {
			for _, count := range []int{1, 7, 70_001} {
				for _, inPlace := range []bool{false, true} {
					t.Run(fmt.Sprintf("%v/%v/%d/inplace=%v", kind, op, count, inPlace), func(t *testing.T) {
						runColl(t, cl, id, devs, kind, collective.I32, op, count, inPlace)
					})
					reducing++
				}
			}
		}
	}
	for _, kind := range []calls.CollKind{calls.CollBroadcast, calls.CollAllGather, calls.CollAllToAll, calls.CollSend} {
		for _, inPlace := range []bool{false, true} {
			if inPlace && kind == calls.CollSend {
				continue
			}
			t.Run(fmt.Sprintf("%v/inplace=%v", kind, inPlace), func(t *testing.T) {
				runColl(t, cl, id, devs, kind, collective.F32, collective.Sum, 4097, inPlace)
			})
		}
	}
	after := w.CollectiveStats()
	if n := after.DeviceReductions - before.DeviceReductions; n != uint64(reducing) {
		t.Errorf("%d reducing operations ran on the devices, want %d", n, reducing)
	}
	if after.HostReductions != before.HostReductions {
		t.Errorf("%d reductions on the CPU", after.HostReductions-before.HostReductions)
	}
	if after.BytesSent != before.BytesSent {
		t.Errorf("%d bytes went over the worker's links", after.BytesSent-before.BytesSent)
	}

	t.Run("ring forced", func(t *testing.T) {
		rid := cl.mustCommInit(t, devs, calls.CommOptions{Algo: uint8(collective.Ring)})
		b := w.CollectiveStats().DeviceReductions
		runColl(t, cl, rid, devs, calls.CollAllReduce, collective.I32, collective.Max, 7001, false)
		if w.CollectiveStats().DeviceReductions != b {
			t.Error("a ring-forced all-reduce ran as a device all-reduce")
		}
	})
}
