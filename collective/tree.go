package collective

import "math/bits"

// Binomial trees over the positions of a group, rooted at rootIdx. With
// v = (me - rootIdx) mod n, the parent of v is v minus its lowest set bit
// and its children are v+m for the powers of two m below that bit (below
// n for the root). A message climbs or descends log2(n) levels, which is
// what small messages need; large ones are cut into columns and pipelined
// like the ring's.

// treeUp reduces one column up the tree. mine is this rank's contribution
// (only read unless acc aliases it), acc is where this rank may accumulate
// its subtree's sum, tmp one scratch chunk. At the root the result is in
// acc when treeUp returns; elsewhere it has gone to the parent.
func (o *task) treeUp(group []int, rootIdx, me int, mine, acc, tmp []byte, tag uint64) error {
	n := len(group)
	v := mod(me-rootIdx, n)
	cur := mine // holds the partial sum so far
	for m := 1; m < n; m <<= 1 {
		if v&m != 0 {
			return o.send(group[mod(v-m+rootIdx, n)], tag, cur)
		}
		if v+m >= n {
			continue
		}
		child := group[mod(v+m+rootIdx, n)]
		if same(cur, mine) {
			if err := o.recvReduce(child, tag, acc, mine, tmp); err != nil {
				return err
			}
			cur = acc
			continue
		}
		t := tmp[:len(cur)]
		if err := o.recv(child, tag, t); err != nil {
			return err
		}
		if err := o.reduce(cur, t); err != nil {
			return err
		}
	}
	return o.copy(acc, cur) // the root without children
}

// treeDown broadcasts one column down the tree: the root sends src (and
// copies it into dst), the others receive into dst; every rank then sends
// to its children at once.
func (o *task) treeDown(group []int, rootIdx, me int, src, dst []byte, tag uint64) error {
	n := len(group)
	v := mod(me-rootIdx, n)
	out, top := dst, 0
	if v == 0 {
		out, top = src, 1<<bits.Len(uint(n-1))
	} else {
		low := v & -v
		if err := o.recv(group[mod(v-low+rootIdx, n)], tag, dst); err != nil {
			return err
		}
		top = low
	}
	var ps [bits.UintSize]pending
	k := 0
	for m := top >> 1; m >= 1; m >>= 1 {
		if v+m < n {
			ps[k] = o.goSend(group[mod(v+m+rootIdx, n)], tag, out)
			k++
		}
	}
	var err error
	if v == 0 {
		err = o.copy(dst, src)
	}
	for _, p := range ps[:k] {
		err = o.join(p, err)
	}
	return err
}

// treeAllReduce reduces each column up the tree to position 0, divides it
// there by div (when div > 1) and broadcasts it back down. Every rank
// accumulates in its own recv, which the broadcast overwrites.
func (o *task) treeAllReduce(group []int, me int, send, recv []byte, count, div int) error {
	if len(group) == 1 {
		if err := o.copy(recv, send); err != nil {
			return err
		}
		return o.divide(recv, div)
	}
	ncols, chunk, err := o.ringCols(count, 1)
	if err != nil {
		return err
	}
	return o.columns(ncols, chunk*o.es, func(col int, tmp *[2][]byte) error {
		cs := colOf(span{0, count}, col, chunk)
		acc := o.bytesOf(recv, cs)
		if err := o.treeUp(group, 0, me, o.bytesOf(send, cs), acc, tmp[0], collTag(o.seq, phTreeUp, col)); err != nil {
			return err
		}
		if me == 0 {
			if err := o.divide(acc, div); err != nil {
				return err
			}
		}
		return o.treeDown(group, 0, me, acc, acc, collTag(o.seq, phTreeDown, col))
	})
}

// treeReduce reduces count elements into recv at group[rootIdx]; other
// ranks accumulate in scratch.
func (o *task) treeReduce(group []int, rootIdx, me int, send, recv []byte, count, div int) error {
	if len(group) == 1 {
		if err := o.copy(recv, send); err != nil {
			return err
		}
		return o.divide(recv, div)
	}
	ncols, chunk, err := o.ringCols(count, 1)
	if err != nil {
		return err
	}
	return o.columns(ncols, chunk*o.es, func(col int, tmp *[2][]byte) error {
		cs := colOf(span{0, count}, col, chunk)
		mine := o.bytesOf(send, cs)
		acc := tmp[0][:len(mine)]
		if me == rootIdx {
			acc = o.bytesOf(recv, cs)
		}
		if err := o.treeUp(group, rootIdx, me, mine, acc, tmp[1], collTag(o.seq, phTreeUp, col)); err != nil {
			return err
		}
		if me == rootIdx {
			return o.divide(acc, div)
		}
		return nil
	})
}

// treeBroadcast broadcasts count elements from group[rootIdx] into recv.
func (o *task) treeBroadcast(group []int, rootIdx, me int, send, recv []byte, count int) error {
	if len(group) == 1 {
		return o.copy(recv, send)
	}
	ncols, chunk, err := o.ringCols(count, 1)
	if err != nil {
		return err
	}
	return o.columns(ncols, 0, func(col int, _ *[2][]byte) error {
		cs := colOf(span{0, count}, col, chunk)
		var src []byte
		if me == rootIdx {
			src = o.bytesOf(send, cs)
		}
		return o.treeDown(group, rootIdx, me, src, o.bytesOf(recv, cs), collTag(o.seq, phTreeDown, col))
	})
}
