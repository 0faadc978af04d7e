package worker

import (
	"context"
	"fmt"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/server/backend"
)

// Collectives among the devices of one worker, on the devices. When every
// rank of a communicator lives on this worker (the GPUs of one server in
// one session), the operations need no host memory and no transport. An
// all-reduce: each rank owns one segment of the buffer, reduces it from
// every other rank's send buffer with its own kernels reading the peers'
// memory directly (backend.PeerReducer: NVLink or PCIe peer loads on the
// cuda backend), then copies the result to every other rank (peer
// copies); two phases, each ended by synchronizing the ranks' private
// streams, so that no rank reads a segment another is still writing. A
// reduce-scatter is the first phase alone, a reduce the root's part of it;
// a broadcast and an all-gather are peer copies. All-to-all and
// point-to-point operations take the staged path.
//
// The ranks' executors meet per operation: each arrives with its job when
// its stream has reached it; the last to arrive runs the operation for
// all of them and the others wait for it. Other operations, and
// communicators with ranks on other workers, take the staged path
// (exec).

// localRound is one device all-reduce of a communicator's local ranks.
type localRound struct {
	jobs  []*collJob
	execs []*rankExec
	n     int // ranks arrived
	done  chan struct{}
	err   error // set before done closes
}

// deviceLocal reports whether cs runs its all-reduces on the devices: all
// its ranks (two or more) are here, on devices that reduce from their
// peers' memory, and no network algorithm was forced.
func (cs *commState) deviceLocal(opts collective.Options) bool {
	if cs.size < 2 || len(cs.execs) != cs.size {
		return false
	}
	if opts.Algo != collective.Auto && opts.Algo != collective.Hierarchical {
		return false
	}
	for _, ex := range cs.execs {
		pr, ok := ex.d.dev.(backend.PeerReducer)
		if !ok {
			return false
		}
		if _, ok := ex.d.dev.(backend.Reducer); !ok {
			return false
		}
		for _, other := range cs.execs {
			if other != ex && !pr.CanReducePeer(other.d.dev) {
				return false // GPUs without peer access: the staged path
			}
		}
	}
	return true
}

// localOp runs j, rank ex's part of an operation on the devices, with the
// other local ranks.
func (ex *rankExec) localOp(j *collJob) error {
	cs := ex.cs
	seq := ex.lseq
	ex.lseq++
	cs.lmu.Lock()
	if cs.lrounds == nil {
		cs.lrounds = make(map[uint64]*localRound)
	}
	r := cs.lrounds[seq]
	if r == nil {
		r = &localRound{jobs: make([]*collJob, cs.size), execs: make([]*rankExec, cs.size), done: make(chan struct{})}
		cs.lrounds[seq] = r
	}
	r.jobs[ex.rank], r.execs[ex.rank] = j, ex
	r.n++
	last := r.n == cs.size
	if last {
		delete(cs.lrounds, seq)
	}
	cs.lmu.Unlock()
	if last {
		r.err = runLocal(ex.ctx, r)
		if reduces(j.kind) {
			cs.w.coll.devReductions.Add(1)
		}
		close(r.done)
		return r.err
	}
	select {
	case <-r.done:
		return r.err
	case <-ex.ctx.Done():
		return context.Cause(ex.ctx)
	}
}

// reduces reports whether kind combines the ranks' data.
func reduces(kind calls.CollKind) bool {
	return kind == calls.CollAllReduce || kind == calls.CollReduceScatter || kind == calls.CollReduce
}

// runLocal runs the operation of every rank of r.
func runLocal(ctx context.Context, r *localRound) error {
	j0 := r.jobs[0]
	for _, j := range r.jobs[1:] {
		if j.kind != j0.kind || j.count != j0.count || j.dt != j0.dt || (reduces(j.kind) && j.op != j0.op) ||
			((j.kind == calls.CollReduce || j.kind == calls.CollBroadcast) && j.peer != j0.peer) {
			return fmt.Errorf("%w: ranks disagree on a %v: %d %v %v root %d against %d %v %v root %d",
				collective.ErrMismatch, j0.kind, j.count, j.dt, j.op, j.peer, j0.count, j0.dt, j0.op, j0.peer)
		}
	}
	switch j0.kind {
	case calls.CollAllReduce:
		return runLocalAllReduce(ctx, r)
	case calls.CollReduceScatter:
		return runLocalReduceScatter(ctx, r)
	case calls.CollReduce:
		return runLocalReduce(ctx, r)
	default:
		return runLocalCopies(ctx, r)
	}
}

// syncLocal waits for the private streams of every rank of r.
func syncLocal(ctx context.Context, r *localRound) error {
	for _, ex := range r.execs {
		if err := ex.d.dev.StreamSynchronize(ctx, ex.s); err != nil {
			return err
		}
	}
	return nil
}

// reduceInto queues, on rank i's stream, dst (on rank i) = own, plus
// every other rank q's src(q), n elements each: a copy when own is
// elsewhere, then peer reductions and, for avg, the division.
func reduceInto(r *localRound, i int, dst, own backend.DevicePtr, src func(q int) backend.DevicePtr, n uint64) error {
	j0 := r.jobs[0]
	ex := r.execs[i]
	d := ex.d.dev
	es := uint64(j0.dt.Size())
	dt := backend.DType(j0.dt)
	op := backend.RedOp(j0.op)
	if j0.op == collective.Avg {
		op = backend.Sum
	}
	if own != dst {
		if err := d.MemcpyDtoDAsync(dst, own, n*es, ex.s); err != nil {
			return err
		}
	}
	pr := d.(backend.PeerReducer)
	for q, other := range r.execs {
		if q == i {
			continue
		}
		if err := pr.ReducePeer(dst, other.d.dev, src(q), n, dt, op, ex.s); err != nil {
			return err
		}
	}
	if j0.op == collective.Avg {
		return d.(backend.Reducer).Divide(dst, n, dt, uint64(len(r.execs)), ex.s)
	}
	return nil
}

// runLocalReduceScatter: rank i reduces block i of every send buffer
// into its receive buffer.
func runLocalReduceScatter(ctx context.Context, r *localRound) error {
	nb := uint64(r.jobs[0].count) * uint64(r.jobs[0].dt.Size())
	for i := range r.execs {
		off := backend.DevicePtr(uint64(i) * nb)
		err := reduceInto(r, i, r.jobs[i].recv, r.jobs[i].send+off,
			func(q int) backend.DevicePtr { return r.jobs[q].send + off }, uint64(r.jobs[0].count))
		if err != nil {
			return err
		}
	}
	return syncLocal(ctx, r)
}

// runLocalReduce: the root reduces every send buffer into its receive
// buffer.
func runLocalReduce(ctx context.Context, r *localRound) error {
	root := r.jobs[0].peer
	err := reduceInto(r, root, r.jobs[root].recv, r.jobs[root].send,
		func(q int) backend.DevicePtr { return r.jobs[q].send }, uint64(r.jobs[0].count))
	if err != nil {
		return err
	}
	return syncLocal(ctx, r)
}

// runLocalCopies runs a broadcast (the root's send buffer to every
// receive buffer) or an all-gather (rank i's send buffer to block i of
// every receive buffer) with peer copies from the source's stream.
func runLocalCopies(ctx context.Context, r *localRound) error {
	j0 := r.jobs[0]
	nb := uint64(j0.count) * uint64(j0.dt.Size())
	copyTo := func(i, q int, dst, src backend.DevicePtr) error {
		ex := r.execs[i]
		if q == i {
			if dst == src {
				return nil
			}
			return ex.d.dev.MemcpyDtoDAsync(dst, src, nb, ex.s)
		}
		return ex.d.dev.MemcpyPeerAsync(dst, r.execs[q].d.dev, src, nb, ex.s)
	}
	for i := range r.execs {
		if j0.kind == calls.CollBroadcast && i != j0.peer {
			continue
		}
		for q := range r.execs {
			dst := r.jobs[q].recv
			if j0.kind == calls.CollAllGather {
				dst += backend.DevicePtr(uint64(i) * nb)
			}
			if err := copyTo(i, q, dst, r.jobs[i].send); err != nil {
				return err
			}
		}
	}
	return syncLocal(ctx, r)
}

// runLocalAllReduce runs an all-reduce of every rank of r.
func runLocalAllReduce(ctx context.Context, r *localRound) error {
	k := len(r.jobs)
	j0 := r.jobs[0]
	es := uint64(j0.dt.Size())
	per := (uint64(j0.count) + uint64(k) - 1) / uint64(k) // elements per segment
	segment := func(i int) (off, n uint64) {
		off = uint64(i) * per
		if off >= uint64(j0.count) {
			return 0, 0
		}
		return off * es, min(per, uint64(j0.count)-off)
	}
	// Phase 1: owner i reduces segment i into its receive buffer.
	for i := range r.execs {
		off, n := segment(i)
		if n == 0 {
			continue
		}
		at := backend.DevicePtr(off)
		err := reduceInto(r, i, r.jobs[i].recv+at, r.jobs[i].send+at,
			func(q int) backend.DevicePtr { return r.jobs[q].send + at }, n)
		if err != nil {
			return err
		}
	}
	if err := syncLocal(ctx, r); err != nil {
		return err
	}
	// Phase 2: owner i copies its reduced segment to every other rank.
	for i, ex := range r.execs {
		off, n := segment(i)
		if n == 0 {
			continue
		}
		src := r.jobs[i].recv + backend.DevicePtr(off)
		for q, other := range r.execs {
			if q == i {
				continue
			}
			if err := ex.d.dev.MemcpyPeerAsync(r.jobs[q].recv+backend.DevicePtr(off), other.d.dev, src, n*es, ex.s); err != nil {
				return err
			}
		}
	}
	return syncLocal(ctx, r)
}

// isLocalOp reports whether j runs on the devices alone.
func (ex *rankExec) isLocalOp(j *collJob) bool {
	if j.group != nil || !ex.cs.devLocal {
		return false
	}
	switch j.kind {
	case calls.CollAllReduce, calls.CollReduceScatter, calls.CollReduce, calls.CollBroadcast, calls.CollAllGather:
		return true
	}
	return false
}
