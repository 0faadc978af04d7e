package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Collectives. The client creates a communicator on every worker that
// holds one of its ranks (OpCommInit, with the whole table of ranks and
// workers), then enqueues each rank's operations on streams of the rank's
// device (OpCollective), as it would any asynchronous call. Each local
// rank has an executor goroutine that runs its operations in the order
// they were issued: an operation's host function holds the stream while
// the executor stages the send buffer into host memory, runs the
// collective.Comm operation (transport: colllink.go, reductions on the
// CPU), and writes the result back, both copies on a private stream of
// the device. Later work on the stream therefore sees the result, work on
// other streams and the call reader go on meanwhile, and a failure is kept
// like any asynchronous one and returned by the next synchronizing call.

// DefaultCommInitTimeout bounds how long OpCommInit waits for the links
// to the other workers of a communicator when the call sets no bound.
const DefaultCommInitTimeout = 30 * time.Second

// CollectiveStats counts a worker's collective traffic. The byte counts
// only grow; Comms and Links are current counts.
type CollectiveStats struct {
	BytesSent     uint64 // message payload sent to other workers
	BytesReceived uint64 // message payload received from other workers
	Comms         int    // communicators alive on this worker
	Links         int    // live links to other workers
	// DeviceReductions counts reductions (and divisions) run by the
	// devices' kernels, HostReductions those run on the CPU: below
	// gpuReduceMin bytes, or on a device that cannot reduce host memory.
	DeviceReductions, HostReductions uint64
}

// collWorker holds a worker's communicators and collective links. The
// zero value is ready: init runs on first use.
type collWorker struct {
	sent, recvd                   atomic.Uint64
	devReductions, hostReductions atomic.Uint64

	mu      sync.Mutex // guards the fields below
	ready   bool
	comms   map[uint64]*commState
	links   map[string]*collLink // by the other worker's key
	byConn  map[*conn]*collLink  // accepted links by their connection
	dialing map[string]bool      // keys being dialed
	changed chan struct{}        // closed and replaced when links change
	pool    *stagingPool         // host buffers of the operations
}

// init makes the maps; cw.mu is held.
func (cw *collWorker) init() {
	if cw.ready {
		return
	}
	cw.ready = true
	cw.comms = make(map[uint64]*commState)
	cw.links = make(map[string]*collLink)
	cw.byConn = make(map[*conn]*collLink)
	cw.dialing = make(map[string]bool)
	cw.changed = make(chan struct{})
	// No budget: an operation stages its buffers only while it runs, and
	// one rank runs one operation at a time. A shared budget could let one
	// rank's operation wait for memory held by another that waits for it.
	cw.pool = newStagingPool(1 << 62)
}

// comm returns communicator id, or nil.
func (cw *collWorker) comm(id uint64) *commState {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return cw.comms[id]
}

// CollectiveStats returns the collective counters.
func (w *Worker) CollectiveStats() CollectiveStats {
	cw := &w.coll
	cw.mu.Lock()
	comms, links := len(cw.comms), len(cw.links)
	cw.mu.Unlock()
	return CollectiveStats{
		BytesSent: cw.sent.Load(), BytesReceived: cw.recvd.Load(), Comms: comms, Links: links,
		DeviceReductions: cw.devReductions.Load(), HostReductions: cw.hostReductions.Load(),
	}
}

// commState is one communicator on this worker: its table, the local
// ranks' executors and the message matching of its transport.
type commState struct {
	w        *Worker
	id       uint64
	size     int
	self     int // this worker's index in workers
	ranks    []calls.CommRank
	workers  []calls.CommWorker
	keys     []string    // per worker: its key (CommWorker.Key)
	hosts    []string    // per rank
	links    []*collLink // per worker; nil for this one; written under mu while connecting, read freely once up
	localNet *collective.LocalNetwork
	execs    map[int]*rankExec // by rank
	up       atomic.Bool       // links are up: operations may run
	live     atomic.Int32      // executors not yet finished

	abortCtx  context.Context // done once the communicator is aborted; the cause says why
	abort     context.CancelCauseFunc
	initCtx   context.Context // bounds connect; ended by destroy
	initEnd   context.CancelCauseFunc
	abortOnce sync.Once
	peerCtx   []context.Context // per remote rank: done once it left; nil for local ranks
	peerLeft  []context.CancelCauseFunc

	mu      sync.Mutex // guards the maps below, and links while connecting
	readies map[msgKey]*readyMsg
	recvs   map[msgKey]*recvMsg

	devLocal bool                   // operations run on the devices alone (colllocal.go)
	lmu      sync.Mutex             // guards lrounds
	lrounds  map[uint64]*localRound // device all-reduces some ranks have reached, by sequence
}

func (cs *commState) local(r int) bool {
	return r >= 0 && r < cs.size && int(cs.ranks[r].Worker) == cs.self
}

// behind reports whether rank r lives on the worker at the other end of l.
func (cs *commState) behind(r int, l *collLink) bool {
	return r >= 0 && r < cs.size && int(cs.ranks[r].Worker) != cs.self && cs.keys[cs.ranks[r].Worker] == l.key
}

func (cs *commState) linkOf(r int) *collLink { return cs.links[cs.ranks[r].Worker] }

func (cs *commState) peerDone(r int) <-chan struct{} {
	if p := cs.peerCtx[r]; p != nil {
		return p.Done()
	}
	return nil
}

// abortAll aborts the communicator on this worker: every pending and
// later transport call of its local ranks fails with cause. With tell set
// the other workers are told (OpCommPeerDown), so that theirs fail too.
func (cs *commState) abortAll(cause error, rank int, tell bool) {
	cs.abortOnce.Do(func() {
		cs.abort(cause)
		for r := range cs.execs {
			cs.localNet.Kill(r)
		}
		if tell {
			cs.broadcast(rank, true)
		}
	})
}

// broadcast tells every other worker that rank is gone: failed (abort)
// or left.
func (cs *commState) broadcast(rank int, abort bool) {
	var n uint64
	if abort {
		n = 1
	}
	call := calls.Call{Aux: cs.id, Dev: uint32(rank), N: n}
	cs.mu.Lock()
	links := append([]*collLink(nil), cs.links...)
	cs.mu.Unlock()
	cs.w.spawn(func() {
		for i, l := range links {
			if i != cs.self && l != nil && l.ctx.Err() == nil {
				c := call
				_ = l.send(calls.OpCommPeerDown, &c)
			}
		}
	})
}

// peerDown handles OpCommPeerDown for remote rank r.
func (cs *commState) peerDown(r int, aborted bool) {
	if aborted {
		cs.abortAll(fmt.Errorf("%w: rank %d failed and aborted the communicator", collective.ErrPeerLost, r), r, false)
		return
	}
	if cancel := cs.peerLeft[r]; cancel != nil {
		cancel(fmt.Errorf("%w: rank %d left the communicator", collective.ErrPeerLost, r))
	}
}

// commInit handles OpCommInit.
func (c *conn) commInit(r req, call *calls.Call) {
	var ci calls.CommInit
	if err := ci.Decode(call.Data); err != nil {
		c.w.log.Debug("worker: bad CommInit", "err", err)
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	}
	cs, err := c.w.newComm(call.Aux, call.Aux2, &ci)
	if err != nil {
		c.w.log.Debug("worker: CommInit refused", "comm", call.Aux, "err", err)
		c.done(r, err, 0, 0)
		return
	}
	timeout := DefaultCommInitTimeout
	if ci.Options.InitTimeout > 0 {
		timeout = time.Duration(ci.Options.InitTimeout)
	}
	c.w.spawn(func() {
		err := cs.connect(timeout)
		if err != nil {
			c.w.log.Warn("worker: communicator has no links", "comm", cs.id, "err", err)
			cs.destroy(true)
			// Gone before the reply, so that the id is free again for the
			// client's next CommInit; the executors finish on their own.
			cs.forget()
			err = fmt.Errorf("%w: %w", cudaerr.DevicesUnavailable, err)
		}
		if r.noReply {
			c.done(r, err, 0, 0)
			return
		}
		c.reply(r, statusOf(err), 0, 0, nil, true)
	})
}

// newComm checks a communicator's table and creates its local ranks.
func (w *Worker) newComm(id, self uint64, ci *calls.CommInit) (*commState, error) {
	if id == 0 || self >= uint64(len(ci.Workers)) {
		return nil, cudaerr.InvalidValue
	}
	opts := collective.Options{
		Algo:          collective.Algo(ci.Options.Algo),
		ChunkSize:     int(ci.Options.ChunkSize),
		Pipeline:      int(ci.Options.Pipeline),
		TreeThreshold: int(ci.Options.TreeThreshold),
		Timeout:       time.Duration(ci.Options.Timeout),
	}
	if opts.Algo > collective.Hierarchical || opts.Pipeline > 1024 {
		return nil, cudaerr.InvalidValue
	}
	cs := &commState{
		w: w, id: id, size: len(ci.Ranks), self: int(self), ranks: ci.Ranks, workers: ci.Workers,
		hosts: make([]string, len(ci.Ranks)), links: make([]*collLink, len(ci.Workers)),
		execs:   make(map[int]*rankExec),
		peerCtx: make([]context.Context, len(ci.Ranks)), peerLeft: make([]context.CancelCauseFunc, len(ci.Ranks)),
		readies: make(map[msgKey]*readyMsg), recvs: make(map[msgKey]*recvMsg),
	}
	seen := make(map[string]bool, len(ci.Workers))
	for _, wk := range ci.Workers {
		k := wk.Key()
		if wk.Addr == "" || wk.Token == "" || seen[k] {
			return nil, cudaerr.InvalidValue
		}
		seen[k] = true
		cs.keys = append(cs.keys, k)
	}
	devs := make(map[uint32]bool)
	gpus := make(map[int]bool) // physical devices of the local ranks
	for r, rk := range ci.Ranks {
		wk := &ci.Workers[rk.Worker]
		cs.hosts[r] = wk.Host
		if cs.hosts[r] == "" {
			cs.hosts[r] = cs.keys[rk.Worker]
		}
		if !cs.local(r) {
			cs.peerCtx[r], cs.peerLeft[r] = context.WithCancelCause(context.Background())
			continue
		}
		if w.dev(rk.Dev) == nil {
			return nil, cudaerr.InvalidDevice
		}
		if devs[rk.Dev] {
			// One device, one rank, as NCCL requires.
			return nil, cudaerr.InvalidValue
		}
		devs[rk.Dev] = true
		// Nor two ranks on one GPU (two vGPUs of it), which NCCL refuses
		// too ("duplicate GPU"): on the cuda backend the vGPUs of one GPU
		// share the process's context, whose legacy stream would order
		// one rank's operation behind the other's, which waits for it.
		p := w.dev(rk.Dev).cfg.Physical
		if gpus[p] {
			return nil, cudaerr.InvalidValue
		}
		gpus[p] = true
	}
	if len(devs) == 0 {
		return nil, cudaerr.InvalidValue
	}
	cs.localNet = collective.NewLocalNetwork(cs.hosts)
	cs.abortCtx, cs.abort = context.WithCancelCause(context.Background())
	cs.initCtx, cs.initEnd = context.WithCancelCause(w.ctx)
	discard := func() {
		for _, ex := range cs.execs {
			_ = ex.comm.Close()
			if ex.red != nil {
				ex.red.close()
			}
			_ = ex.d.dev.StreamDestroy(ex.s)
			ex.cancel(collective.ErrClosed)
		}
		cs.abort(collective.ErrClosed)
		cs.initEnd(collective.ErrClosed)
	}
	for r, rk := range ci.Ranks {
		if !cs.local(r) {
			continue
		}
		ex, err := cs.newExec(r, w.dev(rk.Dev), opts)
		if err != nil {
			discard()
			return nil, err
		}
		cs.execs[r] = ex
	}
	cs.live.Store(int32(len(cs.execs)))
	cs.devLocal = cs.deviceLocal(opts)

	cw := &w.coll
	cw.mu.Lock()
	cw.init()
	if cw.comms[id] != nil || w.ctx.Err() != nil {
		cw.mu.Unlock()
		discard()
		return nil, cudaerr.InvalidValue
	}
	cw.comms[id] = cs
	cw.mu.Unlock()
	for _, ex := range cs.execs {
		w.spawn(ex.loop)
	}
	return cs, nil
}

// connect sets up the links to the other workers, within timeout.
func (cs *commState) connect(timeout time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(cs.initCtx, timeout, fmt.Errorf("no links within %v", timeout))
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	self := &cs.workers[cs.self]
	for i := range cs.workers {
		if i == cs.self {
			continue
		}
		g.Go(func() error {
			l, err := cs.w.coll.linkTo(gctx, cs.w, self, &cs.workers[i])
			cs.mu.Lock()
			cs.links[i] = l
			cs.mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	cs.up.Store(true)
	return nil
}

// destroy ends the communicator's local ranks: after the operations
// already enqueued, or at once (abort).
func (cs *commState) destroy(abort bool) {
	cs.initEnd(errors.New("the communicator was destroyed"))
	for _, ex := range cs.execs {
		ex.close(abort)
	}
	if len(cs.execs) == 0 {
		cs.forget()
	}
}

// forget removes the communicator from the worker's table.
func (cs *commState) forget() {
	cw := &cs.w.coll
	cw.mu.Lock()
	if cw.comms[cs.id] == cs {
		delete(cw.comms, cs.id)
	}
	cw.mu.Unlock()
	for _, cancel := range cs.peerLeft {
		if cancel != nil {
			cancel(collective.ErrClosed)
		}
	}
	cs.abort(collective.ErrClosed)
	cs.initEnd(collective.ErrClosed)
}

// commDestroy handles OpCommDestroy. Aborting a communicator this worker
// does not have is not an error: the client aborts everywhere when its
// creation failed somewhere.
func (c *conn) commDestroy(r req, call *calls.Call) {
	cs := c.w.coll.comm(call.Aux)
	switch {
	case call.Aux2 > 1:
		c.done(r, cudaerr.InvalidValue, 0, 0)
		return
	case cs == nil && call.Aux2 == 1:
		c.done(r, nil, 0, 0)
		return
	case cs == nil:
		c.done(r, cudaerr.InvalidResourceHandle, 0, 0)
		return
	}
	cs.destroy(call.Aux2 == 1)
	c.done(r, nil, 0, 0)
}

// collJob is one enqueued operation of a rank.
type collJob struct {
	kind       calls.CollKind
	dt         collective.DType
	op         collective.Op
	peer       int
	count      int
	send, recv backend.DevicePtr
	sendBytes  uint64
	recvBytes  uint64
	reached    chan struct{} // closed by the host function when the stream gets there
	finished   chan struct{} // closed by the executor; releases the stream
	span       trace.Span    // the Collective call's span, ended when the job ran; nil untraced
	group      []groupEntry  // a group's sends and receives (OpCollGroup); nil for an OpCollective
	stage      uint64        // a group's staging bytes
}

// hold is the job's host function: it holds the stream until the
// executor has finished the job.
func (j *collJob) hold() {
	close(j.reached)
	<-j.finished
}

// rankExec runs the operations of one local rank, in issue order.
type rankExec struct {
	cs   *commState
	rank int
	d    *device
	comm *collective.Comm
	ep   *endpoint
	s    backend.Stream // private stream of the staging copies and reductions
	lseq uint64         // device all-reduces this rank ran (colllocal.go); its loop only
	red  *devReducer    // reduces on the device; nil: on the CPU, staging from the worker's pool

	ctx    context.Context // done on abort or when the session ends
	cancel context.CancelCauseFunc

	mu      sync.Mutex // guards the fields below
	queue   []*collJob
	closing bool          // no more jobs: close once the queue is empty
	exited  bool          // the loop is done: jobs are released at once
	wake    chan struct{} // capacity 1: one pending wake-up covers every job queued before it
}

func (cs *commState) newExec(rank int, d *device, opts collective.Options) (*rankExec, error) {
	ep := &endpoint{cs: cs, rank: rank}
	ep.ctx, ep.cancel = context.WithCancelCause(context.Background())
	s, err := d.dev.StreamCreate(backend.StreamNonBlocking, backend.StreamPriorityGreatest)
	if err != nil {
		ep.cancel(err)
		return nil, err
	}
	ex := &rankExec{cs: cs, rank: rank, d: d, ep: ep, s: s, wake: make(chan struct{}, 1)}
	ex.ctx, ex.cancel = context.WithCancelCause(cs.w.ctx)
	var red collective.Reducer = collective.CPUReducer{}
	if ex.red = newDevReducer(ex.ctx, &cs.w.coll, d.dev, s); ex.red != nil {
		red = ex.red
	}
	ex.comm, err = collective.New(rank, cs.size, ep, red, opts)
	if err != nil {
		ep.cancel(err)
		ex.cancel(err)
		_ = d.dev.StreamDestroy(s)
		cs.w.log.Debug("worker: communicator options", "err", err)
		return nil, cudaerr.InvalidValue
	}
	return ex, nil
}

// enqueue adds j; the executor runs it when the stream reaches it.
// It fails once the executor has stopped (the communicator is gone); the
// job's host function then lets the stream pass.
func (ex *rankExec) enqueue(j *collJob) error {
	ex.mu.Lock()
	if ex.exited {
		ex.mu.Unlock()
		close(j.finished)
		return cudaerr.InvalidResourceHandle
	}
	ex.queue = append(ex.queue, j)
	ex.mu.Unlock()
	ex.kick()
	return nil
}

func (ex *rankExec) kick() {
	select {
	case ex.wake <- struct{}{}:
	default:
	}
}

// close makes the executor finish: after the queued jobs, or at once.
func (ex *rankExec) close(abort bool) {
	ex.mu.Lock()
	ex.closing = true
	ex.mu.Unlock()
	if abort {
		ex.cancel(fmt.Errorf("%w: the communicator was aborted", collective.ErrClosed))
	}
	ex.kick()
}

// fail aborts the rank's communicator because one of its operations
// could not be enqueued: the ranks would no longer agree on the order of
// operations.
func (ex *rankExec) fail(err error) {
	ex.cs.w.log.Debug("worker: collective not enqueued", "comm", ex.cs.id, "rank", ex.rank, "err", err)
	ex.cs.abortAll(fmt.Errorf("%w: rank %d could not enqueue an operation: %v", collective.ErrPeerLost, ex.rank, err), ex.rank, true)
}

// next returns the next job, or nil once the executor must stop.
func (ex *rankExec) next() *collJob {
	for {
		ex.mu.Lock()
		if len(ex.queue) > 0 && ex.ctx.Err() == nil {
			j := ex.queue[0]
			ex.queue[0] = nil
			ex.queue = ex.queue[1:]
			ex.mu.Unlock()
			return j
		}
		closing := ex.closing
		ex.mu.Unlock()
		if closing || ex.ctx.Err() != nil {
			return nil
		}
		select {
		case <-ex.wake:
		case <-ex.ctx.Done():
		}
	}
}

// loop runs the rank's jobs until the communicator is destroyed.
func (ex *rankExec) loop() {
	for j := ex.next(); j != nil; j = ex.next() {
		ex.run(j)
	}
	ex.mu.Lock()
	ex.closing, ex.exited = true, true
	rest := ex.queue
	ex.queue = nil
	ex.mu.Unlock()
	for _, j := range rest {
		// Never run: the stream passes their host functions at once.
		ex.cs.w.deferErr(cudaerr.DevicesUnavailable)
		endSpan(j.span, cudaerr.DevicesUnavailable)
		close(j.finished)
	}
	aborted := ex.ctx.Err() != nil
	if aborted && ex.cs.w.ctx.Err() == nil {
		// An abort reaches the other ranks as a failure.
		ex.cs.abortAll(context.Cause(ex.ctx), ex.rank, true)
	}
	ex.ep.leaving.Store(!aborted)
	_ = ex.comm.Close()
	if ex.red != nil {
		ex.red.close()
	}
	_ = ex.d.dev.StreamDestroy(ex.s)
	ex.cancel(collective.ErrClosed)
	if ex.cs.live.Add(-1) == 0 {
		ex.cs.forget()
	}
}

// run waits for the stream to reach j, runs it and releases the stream.
func (ex *rankExec) run(j *collJob) {
	defer close(j.finished)
	select {
	case <-j.reached:
	case <-ex.ctx.Done():
		// Aborted before the stream got there: the operation fails.
		ex.cs.w.deferErr(collStatus(context.Cause(ex.ctx)))
		endSpan(j.span, collStatus(context.Cause(ex.ctx)))
		return
	}
	err := ex.exec(j)
	if err != nil {
		ex.cs.w.log.Debug("worker: collective failed", "comm", ex.cs.id, "rank", ex.rank, "op", j.kind, "err", err)
		err = collStatus(err)
		ex.cs.w.deferErr(err)
	}
	endSpan(j.span, err)
}

// exec runs one operation: the send buffer is staged into host memory,
// the Comm operates on the staged buffers in place, and the result is
// copied to the receive buffer.
func (ex *rankExec) exec(j *collJob) error {
	if j.group != nil {
		return ex.execGroup(j)
	}
	if ex.isLocalOp(j) {
		return ex.localOp(j)
	}
	cs, d := ex.cs, ex.d.dev
	es := uint64(j.dt.Size())
	nb := uint64(j.count) * es
	n := uint64(cs.size)
	// Staging layout: one buffer the operation runs in place on, plus the
	// receive side of an all-to-all.
	var size, sendOff, recvOff uint64
	switch j.kind {
	case calls.CollReduceScatter:
		size, recvOff = n*nb, uint64(ex.rank)*nb
	case calls.CollAllGather:
		size, sendOff = n*nb, uint64(ex.rank)*nb
	case calls.CollAllToAll:
		size, recvOff = 2*n*nb, n*nb
	default:
		size = nb
	}
	b, release, err := ex.stagingBuf(size)
	if err != nil {
		return err
	}
	keep := true // the buffer may be reused
	defer func() { release(keep) }()
	if j.sendBytes > 0 {
		if err := d.MemcpyDtoHAsync(b[sendOff:sendOff+j.sendBytes], j.send, ex.s); err != nil {
			ex.fail(err)
			return err
		}
		if err := d.StreamSynchronize(ex.ctx, ex.s); err != nil {
			keep = false
			ex.fail(err)
			return err
		}
	}
	send, recv := b[sendOff:sendOff+j.sendBytes], b[recvOff:recvOff+j.recvBytes]
	ctx, c := ex.ctx, ex.comm
	switch j.kind {
	case calls.CollAllReduce:
		err = c.AllReduce(ctx, send, send, j.count, j.dt, j.op)
	case calls.CollReduceScatter:
		err = c.ReduceScatter(ctx, send, recv, j.count, j.dt, j.op)
	case calls.CollAllGather:
		recv = b[:size]
		err = c.AllGather(ctx, send, recv, j.count, j.dt)
	case calls.CollBroadcast:
		recv = b[:nb]
		err = c.Broadcast(ctx, send, recv, j.count, j.dt, j.peer)
	case calls.CollReduce:
		recv = nil
		if ex.rank == j.peer {
			recv = send
		}
		err = c.Reduce(ctx, send, recv, j.count, j.dt, j.op, j.peer)
	case calls.CollAllToAll:
		err = c.AllToAll(ctx, send, recv, j.count, j.dt)
	case calls.CollSend:
		err = c.Send(ctx, send, j.count, j.dt, j.peer)
	case calls.CollRecv:
		recv = b[:nb]
		err = c.Recv(ctx, recv, j.count, j.dt, j.peer)
	}
	if err != nil {
		return err
	}
	if j.recvBytes == 0 {
		return nil
	}
	if err := d.MemcpyHtoDAsync(j.recv, recv[:j.recvBytes], ex.s); err != nil {
		return err
	}
	if err := d.StreamSynchronize(ex.ctx, ex.s); err != nil {
		keep = false
		return err
	}
	return nil
}

// stagingBuf returns size bytes of host memory for one operation, and the
// function that gives them back (keep false: something may still write
// into them, never reuse them). For a rank that reduces on its device the
// memory is mapped host memory its kernels reduce in place; without that
// (or when pinned memory runs out) ordinary memory from the worker's pool,
// which the CPU reduces.
func (ex *rankExec) stagingBuf(size uint64) ([]byte, func(keep bool), error) {
	if size == 0 {
		return nil, func(bool) {}, nil
	}
	if ex.red != nil {
		mb, err := ex.red.staging(size)
		if err == nil {
			return mb, func(keep bool) {
				if keep {
					ex.red.release(mb)
				} else {
					ex.red.FreeScratch(mb)
				}
			}, nil
		}
		ex.cs.w.log.Debug("worker: no mapped staging memory; reducing on the CPU", "comm", ex.cs.id, "rank", ex.rank, "bytes", size, "err", err)
	}
	pool := ex.cs.w.coll.pool
	buf, err := pool.get(ex.ctx, size)
	if err != nil {
		return nil, nil, err
	}
	return buf.b[:size:size], func(keep bool) {
		if keep {
			pool.put(buf)
		} else {
			pool.drop(buf)
		}
	}, nil
}

// collective handles OpCollective: checks, then the job is queued on the
// rank's executor and its host function on the stream.
func (c *conn) collective(r req, call *calls.Call) {
	if ex := c.rankExecOf(r, call); ex != nil {
		j, err := ex.job(call)
		c.queueJob(r, ex, call, j, err)
	}
}

// rankExecOf returns the executor of the rank an OpCollective or
// OpCollGroup names (communicator Aux, rank Dev2 on device Dev), or
// answers the call with the error and returns nil.
func (c *conn) rankExecOf(r req, call *calls.Call) *rankExec {
	cs := c.w.coll.comm(call.Aux)
	if cs == nil || !cs.up.Load() {
		c.done(r, cudaerr.InvalidResourceHandle, 0, 0)
		return nil
	}
	ex := cs.execs[int(call.Dev2)]
	if call.Dev2 >= uint32(cs.size) || ex == nil || ex.d.cfg.Logical != call.Dev {
		c.done(r, cudaerr.InvalidDevice, 0, 0)
		return nil
	}
	return ex
}

// queueJob queues j (checked by job or groupJob, with err) on the rank's
// executor and its host function on the call's stream, and replies.
func (c *conn) queueJob(r req, ex *rankExec, call *calls.Call, j *collJob, err error) {
	if err == nil && j != nil {
		err = ex.d.dev.LaunchHostFunc(backend.Stream(call.Stream), j.hold)
		if err == nil {
			// The call's span lasts until the job ran.
			j.span = collSpan(r.span, j, ex.rank, ex.cs.size)
			if err = ex.enqueue(j); err == nil {
				r.span = nil
			} else {
				j.span = nil
			}
		}
	}
	if err != nil {
		ex.fail(err)
	}
	c.done(r, err, 0, 0)
}

// job checks an OpCollective of this rank; nil for one with nothing to
// do (count 0).
func (ex *rankExec) job(call *calls.Call) (*collJob, error) {
	kind, dt, op, peer, ok := calls.UnpackColl(call.Aux2)
	d := collective.DType(dt)
	o := collective.Op(op)
	reduces := kind == calls.CollAllReduce || kind == calls.CollReduceScatter || kind == calls.CollReduce
	switch {
	case !ok || !kind.Valid() || !d.Valid() || (reduces && !o.Valid()) || call.N > math.MaxInt:
		return nil, cudaerr.InvalidValue
	}
	sb, rb, err := calls.CollBuffers(kind, ex.rank, ex.cs.size, int(peer), call.N, uint64(d.Size()), call.Src, call.Dst)
	if err != nil {
		return nil, cudaerr.InvalidValue
	}
	if !owns(ex.d, call.Src, sb) || !owns(ex.d, call.Dst, rb) {
		return nil, cudaerr.InvalidValue
	}
	if call.N == 0 {
		return nil, nil
	}
	return &collJob{
		kind: kind, dt: d, op: o, peer: int(peer), count: int(call.N),
		send: backend.DevicePtr(call.Src), recv: backend.DevicePtr(call.Dst), sendBytes: sb, recvBytes: rb,
		reached: make(chan struct{}), finished: make(chan struct{}),
	}, nil
}

// collStatus is the cudaError_t of a failed collective operation:
// cudaErrorInvalidValue for bad arguments or ranks that disagree,
// cudaErrorTimeout for no progress within the communicator's timeout,
// cudaErrorDevicesUnavailable for a lost or failed rank (and every
// operation of an aborted communicator); a failed staging copy keeps its
// own status.
func collStatus(err error) cudaerr.Error {
	switch {
	case errors.Is(err, collective.ErrInvalidArgument), errors.Is(err, collective.ErrMismatch):
		return cudaerr.InvalidValue
	case errors.Is(err, collective.ErrTimeout):
		return cudaerr.Timeout
	case errors.Is(err, collective.ErrPeerLost), errors.Is(err, collective.ErrAborted), errors.Is(err, collective.ErrClosed):
		return cudaerr.DevicesUnavailable
	}
	if code := cudaerr.Code(err); code != cudaerr.Success {
		return code
	}
	return cudaerr.Unknown
}
