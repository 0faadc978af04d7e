package worker

import (
	"context"
	"fmt"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/server/backend"
)

// All-reduce among the devices of one worker, on the devices. When every
// rank of a communicator lives on this worker (the GPUs of one server in
// one session), an all-reduce needs no host memory and no transport: each
// rank owns one segment of the buffer, reduces it from every other rank's
// send buffer with its own kernels reading the peers' memory directly
// (backend.PeerReducer: NVLink or PCIe peer loads on the cuda backend),
// then copies the result to every other rank (peer copies). Two phases,
// each ended by synchronizing the ranks' private streams, so that no rank
// reads a segment another is still writing.
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

// localAllReduce runs j, rank ex's part of a device all-reduce, with the
// other local ranks.
func (ex *rankExec) localAllReduce(j *collJob) error {
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
		r.err = runLocalAllReduce(ex.ctx, r)
		cs.w.coll.devReductions.Add(1)
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

// runLocalAllReduce runs the operation of every rank of r.
func runLocalAllReduce(ctx context.Context, r *localRound) error {
	k := len(r.jobs)
	j0 := r.jobs[0]
	for _, j := range r.jobs[1:] {
		if j.count != j0.count || j.dt != j0.dt || j.op != j0.op {
			return fmt.Errorf("%w: ranks disagree on an all-reduce: %d %v %v against %d %v %v",
				collective.ErrMismatch, j.count, j.dt, j.op, j0.count, j0.dt, j0.op)
		}
	}
	es := uint64(j0.dt.Size())
	dt := backend.DType(j0.dt)
	op := backend.RedOp(j0.op)
	if j0.op == collective.Avg {
		op = backend.Sum
	}
	per := (uint64(j0.count) + uint64(k) - 1) / uint64(k) // elements per segment
	segment := func(i int) (off, n uint64) {
		off = uint64(i) * per
		if off >= uint64(j0.count) {
			return 0, 0
		}
		return off * es, min(per, uint64(j0.count)-off)
	}
	syncAll := func() error {
		for _, ex := range r.execs {
			if err := ex.d.dev.StreamSynchronize(ctx, ex.s); err != nil {
				return err
			}
		}
		return nil
	}
	// Phase 1: owner i reduces segment i into its receive buffer.
	for i, ex := range r.execs {
		off, n := segment(i)
		if n == 0 {
			continue
		}
		j, d := r.jobs[i], ex.d.dev
		dst := j.recv + backend.DevicePtr(off)
		if j.send != j.recv {
			if err := d.MemcpyDtoDAsync(dst, j.send+backend.DevicePtr(off), n*es, ex.s); err != nil {
				return err
			}
		}
		pr := d.(backend.PeerReducer)
		for q, other := range r.execs {
			if q == i {
				continue
			}
			if err := pr.ReducePeer(dst, other.d.dev, r.jobs[q].send+backend.DevicePtr(off), n, dt, op, ex.s); err != nil {
				return err
			}
		}
		if j0.op == collective.Avg {
			if err := d.(backend.Reducer).Divide(dst, n, dt, uint64(k), ex.s); err != nil {
				return err
			}
		}
	}
	if err := syncAll(); err != nil {
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
	return syncAll()
}

// isLocalAllReduce reports whether j runs as a device all-reduce.
func (ex *rankExec) isLocalAllReduce(j *collJob) bool {
	return j.kind == calls.CollAllReduce && j.group == nil && ex.cs.devLocal
}
