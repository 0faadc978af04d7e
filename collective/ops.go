package collective

import (
	"context"
	"fmt"
	"math"
)

// The operations follow NCCL's argument conventions: counts are in
// elements, buffers are byte slices of at least the size the count implies
// (only that prefix is used), and a call is in place when the buffers alias
// as NCCL defines it for that operation. Buffers must not otherwise
// overlap. Every rank passes the same count, type, operator and root. A
// count of 0 returns at once. No buffer is referenced after the call
// returns, on success or failure; after a failure recv holds unspecified
// data.

// AllReduce reduces count elements of send across all ranks with op and
// leaves the result in recv on every rank. In place when send and recv
// start at the same address.
func (c *Comm) AllReduce(ctx context.Context, send, recv []byte, count int, dt DType, op Op) error {
	const name = "all-reduce"
	nb, err := c.checkTypes(count, dt, op, true)
	if err == nil {
		err = checkBuf("send", send, nb)
	}
	if err == nil {
		err = checkBuf("recv", recv, nb)
	}
	if err == nil && !same(send, recv) && overlap(send[:nb], recv[:nb]) {
		err = errOverlap
	}
	if err != nil {
		return c.opErr(name, err)
	}
	return c.run(ctx, name, count, dt, op, func(o *task) error {
		return o.allReduce(send[:nb], recv[:nb], count)
	})
}

// ReduceScatter reduces size*recvCount elements of send across all ranks
// with op and leaves block r (elements [r*recvCount, (r+1)*recvCount)) of
// the result in rank r's recv. In place when recv starts at send's block
// of this rank (recv == send + rank*recvCount elements).
func (c *Comm) ReduceScatter(ctx context.Context, send, recv []byte, recvCount int, dt DType, op Op) error {
	const name = "reduce-scatter"
	nb, err := c.checkTypes(recvCount, dt, op, true)
	if err == nil && nb > math.MaxInt/c.size {
		err = fmt.Errorf("%w: count %d too large", ErrInvalidArgument, recvCount)
	}
	if err == nil {
		err = checkBuf("send", send, nb*c.size)
	}
	if err == nil {
		err = checkBuf("recv", recv, nb)
	}
	if err == nil && nb > 0 && addr(recv) != addr(send)+uintptr(c.rank*nb) && overlap(send[:nb*c.size], recv[:nb]) {
		err = errOverlap
	}
	if err != nil {
		return c.opErr(name, err)
	}
	return c.run(ctx, name, recvCount, dt, op, func(o *task) error {
		return o.ringReduceScatter(c.topo.ring, c.topo.pos[c.rank], send[:nb*c.size], recv[:nb], recvCount, o.avgDiv())
	})
}

// AllGather gathers sendCount elements of send from every rank into recv,
// rank r's at elements [r*sendCount, (r+1)*sendCount). In place when send
// starts at this rank's block of recv (send == recv + rank*sendCount
// elements).
func (c *Comm) AllGather(ctx context.Context, send, recv []byte, sendCount int, dt DType) error {
	const name = "all-gather"
	nb, err := c.checkTypes(sendCount, dt, Sum, false)
	if err == nil && nb > math.MaxInt/c.size {
		err = fmt.Errorf("%w: count %d too large", ErrInvalidArgument, sendCount)
	}
	if err == nil {
		err = checkBuf("send", send, nb)
	}
	if err == nil {
		err = checkBuf("recv", recv, nb*c.size)
	}
	if err == nil && nb > 0 && addr(send) != addr(recv)+uintptr(c.rank*nb) && overlap(send[:nb], recv[:nb*c.size]) {
		err = errOverlap
	}
	if err != nil {
		return c.opErr(name, err)
	}
	return c.run(ctx, name, sendCount, dt, Sum, func(o *task) error {
		return o.ringAllGather(c.topo.ring, c.topo.pos[c.rank], send[:nb], recv[:nb*c.size], sendCount)
	})
}

// Broadcast copies count elements of root's send into recv on every rank.
// Only root reads send (other ranks may pass nil). In place when send and
// recv start at the same address on root.
func (c *Comm) Broadcast(ctx context.Context, send, recv []byte, count int, dt DType, root int) error {
	const name = "broadcast"
	nb, err := c.checkTypes(count, dt, Sum, false)
	if err == nil {
		err = c.checkRoot(root)
	}
	if err == nil && c.rank == root {
		err = checkBuf("send", send, nb)
	}
	if err == nil {
		err = checkBuf("recv", recv, nb)
	}
	if err == nil && c.rank == root && !same(send, recv) && overlap(send[:nb], recv[:nb]) {
		err = errOverlap
	}
	if err != nil {
		return c.opErr(name, err)
	}
	if c.rank == root {
		send = send[:nb]
	}
	return c.run(ctx, name, count, dt, Sum, func(o *task) error {
		return o.broadcast(send, recv[:nb], count, root)
	})
}

// Reduce reduces count elements of send across all ranks with op into
// root's recv. Only root writes recv (other ranks may pass nil). In place
// when send and recv start at the same address on root.
func (c *Comm) Reduce(ctx context.Context, send, recv []byte, count int, dt DType, op Op, root int) error {
	const name = "reduce"
	nb, err := c.checkTypes(count, dt, op, true)
	if err == nil {
		err = c.checkRoot(root)
	}
	if err == nil {
		err = checkBuf("send", send, nb)
	}
	if err == nil && c.rank == root {
		err = checkBuf("recv", recv, nb)
		if err == nil && !same(send, recv) && overlap(send[:nb], recv[:nb]) {
			err = errOverlap
		}
	}
	if err != nil {
		return c.opErr(name, err)
	}
	if c.rank == root {
		recv = recv[:nb]
	}
	return c.run(ctx, name, count, dt, op, func(o *task) error {
		return o.reduceTo(send[:nb], recv, count, root)
	})
}

// AllToAll sends block j (elements [j*count, (j+1)*count)) of send to rank
// j, which receives it as block r of its recv, r being the sender. In place
// when send and recv start at the same address (it then stages send in a
// scratch buffer of size*count elements).
func (c *Comm) AllToAll(ctx context.Context, send, recv []byte, count int, dt DType) error {
	const name = "all-to-all"
	nb, err := c.checkTypes(count, dt, Sum, false)
	if err == nil && nb > math.MaxInt/c.size {
		err = fmt.Errorf("%w: count %d too large", ErrInvalidArgument, count)
	}
	if err == nil {
		err = checkBuf("send", send, nb*c.size)
	}
	if err == nil {
		err = checkBuf("recv", recv, nb*c.size)
	}
	if err == nil && !same(send, recv) && overlap(send[:nb*c.size], recv[:nb*c.size]) {
		err = errOverlap
	}
	if err != nil {
		return c.opErr(name, err)
	}
	return c.run(ctx, name, count, dt, Sum, func(o *task) error {
		return o.allToAll(send[:nb*c.size], recv[:nb*c.size], count)
	})
}

var errOverlap = fmt.Errorf("%w: send and recv overlap without being in place", ErrInvalidArgument)

// checkTypes validates a count, type and (if withOp) operator and returns
// the byte size of count elements.
func (c *Comm) checkTypes(count int, dt DType, op Op, withOp bool) (int, error) {
	if !dt.Valid() {
		return 0, fmt.Errorf("%w: data type %v", ErrInvalidArgument, dt)
	}
	if withOp && !op.Valid() {
		return 0, fmt.Errorf("%w: operator %v", ErrInvalidArgument, op)
	}
	if count < 0 || count > math.MaxInt/dt.Size() {
		return 0, fmt.Errorf("%w: count %d", ErrInvalidArgument, count)
	}
	return count * dt.Size(), nil
}

func (c *Comm) checkRoot(root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("%w: root %d of %d ranks", ErrInvalidArgument, root, c.size)
	}
	return nil
}

func checkBuf(what string, b []byte, need int) error {
	if len(b) < need {
		return fmt.Errorf("%w: %s buffer holds %d bytes, the count needs %d", ErrInvalidArgument, what, len(b), need)
	}
	return nil
}

func (c *Comm) opErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: name, Rank: c.rank, Err: err}
}

// run runs one collective operation: serialised with the others, watched,
// and aborting the Comm if it fails part-way.
func (c *Comm) run(ctx context.Context, name string, count int, dt DType, redOp Op, body func(o *task) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if count == 0 {
		return c.opErr(name, c.stateLocked())
	}
	o, err := c.beginLocked(ctx, dt, redOp, true)
	if err != nil {
		return c.opErr(name, err)
	}
	return c.opErr(name, o.endLocked(body(o)))
}

// stateLocked returns why no operation may start, or nil.
func (c *Comm) stateLocked() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return c.err
}

// avgDiv returns the divisor Avg needs at the end (0: none).
func (o *task) avgDiv() int {
	if o.redOp == Avg {
		return o.c.size
	}
	return 0
}

// pick returns the algorithm for an operation of nb bytes that can run
// under any algorithm (AllReduce) or, if !hier, under Ring or Tree only.
func (c *Comm) pick(nb int, hier bool) Algo {
	a := c.algo
	if a == Auto {
		switch {
		case c.opts.TreeThreshold > 0 && nb < c.opts.TreeThreshold:
			a = Tree
		case len(c.topo.hosts) > 1 && c.topo.maxLocal() > 1:
			a = Hierarchical
		default:
			a = Ring
		}
	}
	if a == Hierarchical && !hier {
		a = Ring
	}
	return a
}

func (o *task) allReduce(send, recv []byte, count int) error {
	c := o.c
	me := c.topo.pos[c.rank]
	switch c.pick(len(send), true) {
	case Tree:
		return o.treeAllReduce(c.topo.ring, me, send, recv, count, o.avgDiv())
	case Hierarchical:
		return o.hierAllReduce(send, recv, count)
	}
	return o.ringAllReduce(c.topo.ring, me, send, recv, count, o.avgDiv(), phRingRS, phRingAG)
}

func (o *task) broadcast(send, recv []byte, count, root int) error {
	c := o.c
	me, rootIdx := c.topo.pos[c.rank], c.topo.pos[root]
	if c.pick(len(recv), false) == Tree {
		return o.treeBroadcast(c.topo.ring, rootIdx, me, send, recv, count)
	}
	return o.chainBroadcast(c.topo.ring, rootIdx, me, send, recv, count, phChainDown)
}

func (o *task) reduceTo(send, recv []byte, count, root int) error {
	c := o.c
	me, rootIdx := c.topo.pos[c.rank], c.topo.pos[root]
	if c.pick(len(send), false) == Tree {
		return o.treeReduce(c.topo.ring, rootIdx, me, send, recv, count, o.avgDiv())
	}
	return o.chainReduce(c.topo.ring, rootIdx, me, send, recv, count, o.avgDiv(), phChainUp)
}
