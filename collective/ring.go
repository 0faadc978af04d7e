package collective

import "fmt"

// Ring and chain algorithms. A group is a list of ranks in ring order and
// me is this rank's index in it. The data is cut into columns of at most
// one chunk per segment; every column runs the whole algorithm on its own,
// and Options.Pipeline columns run at once, so that the messages and
// reductions of different columns overlap: while one column's chunk is on
// the wire another's is being reduced.

// A segment is cut into at least splitCols columns where chunks can stay
// at least minChunk bytes. Both are fixed (not Options.Pipeline, which
// ranks may set differently) because every rank must cut alike.
const (
	splitCols = 4
	minChunk  = 64 << 10
)

// ringCols returns the columns for segments of up to maxSeg elements,
// checking that steps messages per column fit the tag's index field.
// Chunks are ChunkSize, or smaller (down to minChunk) so that a segment
// makes at least splitCols columns to pipeline.
func (o *task) ringCols(maxSeg, steps int) (ncols, chunk int, err error) {
	chunk = o.c.chunkElems(o.es)
	want := max(minChunk/o.es, (maxSeg+splitCols-1)/splitCols)
	chunk = max(1, min(chunk, want))
	ncols = (maxSeg + chunk - 1) / chunk
	if ncols > 0 && steps > 0 && ncols > (maxChunks-1)/steps {
		return 0, 0, fmt.Errorf("%w: %d chunks of %d elements in one operation; raise ChunkSize", ErrInvalidArgument, ncols*steps, chunk)
	}
	return ncols, chunk, nil
}

// ringAllReduce is reduce-scatter then all-gather around the ring. The
// count elements are cut into len(group) nearly equal segments; after
// n-1 reduce steps position me holds segment me fully reduced (divided by
// div when div > 1), and n-1 gather steps spread the segments.
//
// Out of place, partial sums are received straight into recv and reduced
// with send; in place they land in a scratch chunk and are reduced into
// recv. Either way no pass copies the data.
func (o *task) ringAllReduce(group []int, me int, send, recv []byte, count, div int, phRS, phAG uint64) error {
	n := len(group)
	if n == 1 {
		if err := o.copy(recv, send); err != nil {
			return err
		}
		return o.divide(recv, div)
	}
	next, prev := group[mod(me+1, n)], group[mod(me-1, n)]
	ncols, chunk, err := o.ringCols((count+n-1)/n, n-1)
	if err != nil {
		return err
	}
	return o.columns(ncols, chunk*o.es, func(col int, tmp *[2][]byte) error {
		seg := func(b []byte, i int) []byte { return o.bytesOf(b, colOf(split(count, n, i), col, chunk)) }
		for s := range n - 1 {
			sseg, rseg := mod(me-s-1, n), mod(me-s-2, n)
			out := seg(recv, sseg) // reduced in the previous step
			if s == 0 {
				out = seg(send, sseg)
			}
			tag := collTag(o.seq, phRS, s*ncols+col)
			p := o.goSend(next, tag, out)
			err := o.recvReduce(prev, tag, seg(recv, rseg), seg(send, rseg), tmp[s%2])
			if err := o.join(p, err); err != nil {
				return err
			}
		}
		if err := o.divide(seg(recv, me), div); err != nil {
			return err
		}
		for s := range n - 1 {
			tag := collTag(o.seq, phAG, s*ncols+col)
			p := o.goSend(next, tag, seg(recv, mod(me-s, n)))
			err := o.recv(prev, tag, seg(recv, mod(me-s-1, n)))
			if err := o.join(p, err); err != nil {
				return err
			}
		}
		return nil
	})
}

// ringReduceScatter leaves block group[me] of the reduction in recv. The
// segments are the ranks' blocks of send, which is only read: partial sums
// travel through the two scratch chunks of each column (one being sent
// while the next arrives), and the last step lands in recv.
func (o *task) ringReduceScatter(group []int, me int, send, recv []byte, blockCount, div int) error {
	n := len(group)
	if n == 1 {
		return o.copy(recv, send)
	}
	next, prev := group[mod(me+1, n)], group[mod(me-1, n)]
	ncols, chunk, err := o.ringCols(blockCount, n-1)
	if err != nil {
		return err
	}
	return o.columns(ncols, chunk*o.es, func(col int, tmp *[2][]byte) error {
		cs := colOf(span{0, blockCount}, col, chunk)
		mine := func(i int) []byte {
			return o.bytesOf(send, span{group[i]*blockCount + cs.off, cs.n})
		}
		var last []byte // the partial sum made in the previous step
		for s := range n - 1 {
			sseg, rseg := mod(me-s-1, n), mod(me-s-2, n)
			out := last
			if s == 0 {
				out = mine(sseg)
			}
			into := tmp[s%2][:cs.n*o.es]
			if s == n-2 {
				into = o.bytesOf(recv, cs) // rseg == me
			}
			tag := collTag(o.seq, phRingRS, s*ncols+col)
			p := o.goSend(next, tag, out)
			err := o.recvReduce(prev, tag, into, mine(rseg), tmp[s%2])
			if err := o.join(p, err); err != nil {
				return err
			}
			last = into
		}
		return o.divide(last, div)
	})
}

// ringAllGather gathers every rank's blockCount elements into recv, block
// group[i] from position i, around the ring.
func (o *task) ringAllGather(group []int, me int, send, recv []byte, blockCount int) error {
	n := len(group)
	if n == 1 {
		return o.copy(recv, send)
	}
	next, prev := group[mod(me+1, n)], group[mod(me-1, n)]
	ncols, chunk, err := o.ringCols(blockCount, n-1)
	if err != nil {
		return err
	}
	return o.columns(ncols, 0, func(col int, _ *[2][]byte) error {
		cs := colOf(span{0, blockCount}, col, chunk)
		block := func(i int) []byte {
			return o.bytesOf(recv, span{group[i]*blockCount + cs.off, cs.n})
		}
		own := o.bytesOf(send, cs)
		for s := range n - 1 {
			out := block(mod(me-s, n))
			if s == 0 {
				out = own
			}
			tag := collTag(o.seq, phRingAG, s*ncols+col)
			p := o.goSend(next, tag, out)
			err := o.recv(prev, tag, block(mod(me-s-1, n)))
			if s == 0 && err == nil {
				err = o.copy(block(me), own) // in place: a no-op
			}
			if err := o.join(p, err); err != nil {
				return err
			}
		}
		return nil
	})
}

// chainBroadcast passes count elements from group[rootIdx] along the ring
// to every other position, chunk by chunk. The root sends from src (and
// copies it into dst); the others receive into dst and forward it.
func (o *task) chainBroadcast(group []int, rootIdx, me int, src, dst []byte, count int, ph uint64) error {
	n := len(group)
	q := mod(me-rootIdx, n)
	if n == 1 {
		return o.copy(dst, src)
	}
	next, prev := group[mod(me+1, n)], group[mod(me-1, n)]
	ncols, chunk, err := o.ringCols(count, 1)
	if err != nil {
		return err
	}
	return o.columns(ncols, 0, func(col int, _ *[2][]byte) error {
		cs := colOf(span{0, count}, col, chunk)
		tag := collTag(o.seq, ph, col)
		d := o.bytesOf(dst, cs)
		if q == 0 {
			s := o.bytesOf(src, cs)
			p := o.goSend(next, tag, s)
			return o.join(p, o.copy(d, s))
		}
		if err := o.recv(prev, tag, d); err != nil {
			return err
		}
		if q < n-1 {
			return o.send(next, tag, d)
		}
		return nil
	})
}

// chainReduce reduces count elements along the ring into recv at
// group[rootIdx]: the chain starts after the root and ends at it. The
// middle ranks reduce into a scratch chunk and forward it; send is only
// read. The root divides by div when div > 1.
func (o *task) chainReduce(group []int, rootIdx, me int, send, recv []byte, count, div int, ph uint64) error {
	n := len(group)
	if n == 1 {
		if err := o.copy(recv, send); err != nil {
			return err
		}
		return o.divide(recv, div)
	}
	q := mod(me-rootIdx-1, n) // 0 starts the chain, n-1 is the root
	next, prev := group[mod(me+1, n)], group[mod(me-1, n)]
	ncols, chunk, err := o.ringCols(count, 1)
	if err != nil {
		return err
	}
	return o.columns(ncols, chunk*o.es, func(col int, tmp *[2][]byte) error {
		cs := colOf(span{0, count}, col, chunk)
		tag := collTag(o.seq, ph, col)
		mine := o.bytesOf(send, cs)
		switch {
		case q == 0:
			return o.send(next, tag, mine)
		case q < n-1:
			acc := tmp[0][:len(mine)]
			if err := o.recvReduce(prev, tag, acc, mine, tmp[1]); err != nil {
				return err
			}
			return o.send(next, tag, acc)
		}
		acc := o.bytesOf(recv, cs)
		if err := o.recvReduce(prev, tag, acc, mine, tmp[0]); err != nil {
			return err
		}
		return o.divide(acc, div)
	})
}
