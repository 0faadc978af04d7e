package collective

import (
	"context"
	"fmt"
	"math"
)

// allToAll exchanges blocks pairwise: in step k (1..n-1) rank r sends to
// r+k and receives from r-k, so every step is a permutation and no rank
// waits on two peers at once; Options.Pipeline steps run at once.
func (o *task) allToAll(send, recv []byte, count int) error {
	c := o.c
	n, r := c.size, c.rank
	bs := count * o.es
	block := func(b []byte, i int) []byte { return b[i*bs : (i+1)*bs : (i+1)*bs] }
	src := send
	if same(send, recv) {
		staged, err := c.allocBuf(len(send))
		if err != nil {
			return err
		}
		defer c.free(staged)
		if err := o.c.r.Copy(staged, send); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		src = staged
	}
	if err := o.copy(block(recv, r), block(src, r)); err != nil {
		return err
	}
	if n-1 >= maxChunks {
		return fmt.Errorf("%w: %d ranks", ErrInvalidArgument, n)
	}
	return o.columns(n-1, 0, func(col int, _ *[2][]byte) error {
		k := col + 1
		to, from := (r+k)%n, (r-k+n)%n
		tag := collTag(o.seq, phAllToAll, k)
		p := o.goSend(to, tag, block(src, to))
		return o.join(p, o.recv(from, tag, block(recv, from)))
	})
}

// P2P is one send or receive of a Group.
type P2P struct {
	Recv  bool   // receive into Buf; false: send Buf
	Peer  int    // the other rank; may be this rank inside a Group
	Buf   []byte // at least Count elements
	Count int    // elements
	DType DType
}

// Send sends count elements of buf to peer, which receives them with Recv.
// The k-th Send from a to b matches the k-th Recv on b from a. Send may
// wait until peer posts its Recv: two ranks that must send to each other
// use Group, as NCCL programs use ncclGroupStart/End.
func (c *Comm) Send(ctx context.Context, buf []byte, count int, dt DType, peer int) error {
	return c.p2p(ctx, "send", []P2P{{Peer: peer, Buf: buf, Count: count, DType: dt}})
}

// Recv receives count elements from peer into buf (see Send).
func (c *Comm) Recv(ctx context.Context, buf []byte, count int, dt DType, peer int) error {
	return c.p2p(ctx, "recv", []P2P{{Recv: true, Peer: peer, Buf: buf, Count: count, DType: dt}})
}

// Group runs sends and receives together, like calls between
// ncclGroupStart and ncclGroupEnd: all are posted at once and Group returns
// when all are done. A rank may send to itself inside a group: the i-th
// send to self fills the i-th receive from self, and their counts and types
// must agree.
func (c *Comm) Group(ctx context.Context, ops ...P2P) error {
	return c.p2p(ctx, "group", ops)
}

func (c *Comm) p2p(ctx context.Context, name string, ops []P2P) error {
	var selfSend, selfRecv []int
	for i, p := range ops {
		nb, err := c.checkTypes(p.Count, p.DType, Sum, false)
		if err == nil && (p.Peer < 0 || p.Peer >= c.size) {
			err = fmt.Errorf("%w: peer %d of %d ranks", ErrInvalidArgument, p.Peer, c.size)
		}
		if err == nil {
			err = checkBuf("message", p.Buf, nb)
		}
		if err != nil {
			if len(ops) > 1 {
				err = fmt.Errorf("op %d: %w", i, err)
			}
			return c.opErr(name, err)
		}
		if p.Peer == c.rank {
			if p.Recv {
				selfRecv = append(selfRecv, i)
			} else {
				selfSend = append(selfSend, i)
			}
		}
	}
	if len(selfSend) != len(selfRecv) {
		return c.opErr(name, fmt.Errorf("%w: %d sends to self but %d receives from self", ErrInvalidArgument, len(selfSend), len(selfRecv)))
	}
	for k, si := range selfSend {
		s, r := ops[si], ops[selfRecv[k]]
		if s.Count*s.DType.Size() != r.Count*r.DType.Size() {
			return c.opErr(name, fmt.Errorf("%w: send to self of %d bytes meets a receive of %d", ErrInvalidArgument, s.Count*s.DType.Size(), r.Count*r.DType.Size()))
		}
		if overlap(s.Buf[:s.Count*s.DType.Size()], r.Buf[:r.Count*r.DType.Size()]) && !same(s.Buf, r.Buf) {
			return c.opErr(name, errOverlap)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	o, err := c.beginLocked(ctx, U8, Sum, false)
	if err != nil {
		return c.opErr(name, err)
	}
	// Tags come from per-peer sequence numbers: the k-th message from a to
	// b has the same tag on both sides whatever else each of them did.
	tags := make([]uint64, len(ops))
	for i, p := range ops {
		if p.Peer == c.rank || p.Count == 0 {
			continue
		}
		seq := &c.sendSeq[p.Peer]
		if p.Recv {
			seq = &c.recvSeq[p.Peer]
		}
		tags[i] = p2pBit | *seq&math.MaxInt64
		*seq++
	}
	err = o.all(len(ops), func(i int) error {
		p := ops[i]
		b := p.Buf[:p.Count*p.DType.Size()]
		switch {
		case p.Peer == c.rank:
			if !p.Recv {
				return nil
			}
			for k, ri := range selfRecv {
				if ri == i {
					s := ops[selfSend[k]]
					return o.copy(b, s.Buf[:s.Count*s.DType.Size()])
				}
			}
			return nil
		case p.Recv:
			return o.recv(p.Peer, tags[i], b)
		}
		return o.send(p.Peer, tags[i], b)
	})
	return c.opErr(name, o.endLocked(err))
}
