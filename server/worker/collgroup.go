package worker

import (
	"math"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// groupEntry is one send or receive of a group job: n bytes at ptr on the
// rank's device, staged at off.
type groupEntry struct {
	recv   bool
	dt     collective.DType
	peer   int
	count  int
	ptr    backend.DevicePtr
	off, n uint64
}

// groupAlign aligns each entry's staging so that elements stay aligned.
const groupAlign = 64

// collGroup handles OpCollGroup: a rank's sends and receives that run as
// one operation (ncclGroupStart ... ncclGroupEnd).
func (c *conn) collGroup(r req, call *calls.Call) {
	if ex := c.rankExecOf(r, call); ex != nil {
		j, err := ex.groupJob(call)
		c.queueJob(r, ex, call, j, err)
	}
}

// groupJob checks an OpCollGroup of this rank; nil when it moves no byte.
// Every check runs before anything is queued, so a bad group changes
// nothing but the communicator, which fails as for any operation that
// could not be enqueued.
func (ex *rankExec) groupJob(call *calls.Call) (*collJob, error) {
	ops, err := calls.DecodeGroup(call.Data, call.N)
	if err != nil {
		return nil, cudaerr.InvalidValue
	}
	entries := make([]groupEntry, len(ops))
	var off, sent, recvd uint64
	var selfSends, selfRecvs []uint64 // bytes, in order
	for i, o := range ops {
		dt := collective.DType(o.DType)
		if !dt.Valid() || o.Count > math.MaxInt {
			return nil, cudaerr.InvalidValue
		}
		n, err := calls.GroupBytes(o, ex.cs.size, uint64(dt.Size()))
		if err != nil || !owns(ex.d, o.Buf, n) || off > math.MaxInt64-n-groupAlign {
			return nil, cudaerr.InvalidValue
		}
		entries[i] = groupEntry{recv: o.Recv, dt: dt, peer: int(o.Peer), count: int(o.Count), ptr: backend.DevicePtr(o.Buf), off: off, n: n}
		off += (n + groupAlign - 1) &^ (groupAlign - 1)
		if o.Recv {
			recvd += n
		} else {
			sent += n
		}
		if int(o.Peer) == ex.rank {
			if o.Recv {
				selfRecvs = append(selfRecvs, n)
			} else {
				selfSends = append(selfSends, n)
			}
		}
	}
	// Sends to self meet receives from self in order, with equal sizes
	// (collective.Comm.Group's rule), checked here so that a bad group
	// fails before it is queued.
	if len(selfSends) != len(selfRecvs) {
		return nil, cudaerr.InvalidValue
	}
	for k := range selfSends {
		if selfSends[k] != selfRecvs[k] {
			return nil, cudaerr.InvalidValue
		}
	}
	if sent+recvd == 0 {
		return nil, nil
	}
	return &collJob{
		group: entries, stage: off, sendBytes: sent, recvBytes: recvd,
		reached: make(chan struct{}), finished: make(chan struct{}),
	}, nil
}

// execGroup runs a group job: every send buffer is staged into host
// memory, the Comm runs the sends and receives together, and each
// received message is copied to its buffer.
func (ex *rankExec) execGroup(j *collJob) error {
	d := ex.d.dev
	b, release, err := ex.stagingBuf(j.stage)
	if err != nil {
		return err
	}
	keep := true
	defer func() { release(keep) }()
	p2p := make([]collective.P2P, len(j.group))
	staged := false
	for i, e := range j.group {
		buf := b[e.off : e.off+e.n : e.off+e.n]
		p2p[i] = collective.P2P{Recv: e.recv, Peer: e.peer, Buf: buf, Count: e.count, DType: e.dt}
		if !e.recv && e.n > 0 {
			if err := d.MemcpyDtoHAsync(buf, e.ptr, ex.s); err != nil {
				keep = false
				ex.fail(err)
				return err
			}
			staged = true
		}
	}
	if staged {
		if err := d.StreamSynchronize(ex.ctx, ex.s); err != nil {
			keep = false
			ex.fail(err)
			return err
		}
	}
	if err := ex.comm.Group(ex.ctx, p2p...); err != nil {
		return err
	}
	copied := false
	for _, e := range j.group {
		if e.recv && e.n > 0 {
			if err := d.MemcpyHtoDAsync(e.ptr, b[e.off:e.off+e.n], ex.s); err != nil {
				keep = false
				return err
			}
			copied = true
		}
	}
	if copied {
		if err := d.StreamSynchronize(ex.ctx, ex.s); err != nil {
			keep = false
			return err
		}
	}
	return nil
}

// name names the job's operation, for spans and logs.
func (j *collJob) name() string {
	if j.group != nil {
		return "group"
	}
	return j.kind.String()
}
