package cuda

import (
	"errors"
	"sort"
)

// arena places a Device's allocations in its address window and decides
// which parts of the window are backed by physical memory.
//
// Allocations of at least largeMin bytes get granule-aligned address ranges
// of their own, each backed by one physical allocation. Smaller ones are
// packed, Alignment-aligned, into slabs: one granule mapped at once and
// shared by many allocations, so that a program making thousands of small
// cudaMallocs neither uses a granule (2 MiB) of memory nor of address space
// for each. A slab that empties is unmapped, except for one kept as a spare.
//
// An arena is not safe for concurrent use.
type arena struct {
	base, end uint64 // the window
	gran      uint64 // the driver's allocation granularity, a power of two
	largeMin  uint64
	phys      physMem

	free  []span  // unbacked address ranges, granule-aligned, sorted, coalesced
	slabs []*slab // sorted by base
	spare *slab   // an empty slab kept mapped, not in slabs; nil if none
}

// physMem backs address ranges with physical memory: in the cuda backend,
// cuMemCreate, cuMemMap and cuMemSetAccess, and their inverse.
type physMem interface {
	// back maps fresh physical memory at [p, p+size), granule-aligned, and
	// makes it accessible. On failure nothing stays mapped.
	back(p, size uint64) (MemHandle, error)
	// unback unmaps [p, p+size) and releases h.
	unback(p, size uint64, h MemHandle) error
}

// span is the address range [start, end).
type span struct{ start, end uint64 }

// slab is one granule shared by small allocations.
type slab struct {
	base   uint64
	handle MemHandle
	free   []span // free ranges, Alignment-aligned, sorted, coalesced
	used   uint64 // bytes held by live allocations
}

// placement is where an allocation lies: its reserved range and what backs
// it.
type placement struct {
	base     uint64
	reserved uint64    // the range taken: size rounded to Alignment (small) or to the granule (large)
	slab     *slab     // the slab holding it; nil for a large allocation
	handle   MemHandle // a large allocation's physical memory
}

// errWindowFull is returned when no range of the window fits a request.
var errWindowFull = errors.New("no room left in the address window")

// allocAlignment is the alignment of every allocation (backend.Alignment).
const allocAlignment = 256

func newArena(base, size, gran uint64, phys physMem) *arena {
	largeMin := gran / 2
	if largeMin < allocAlignment {
		largeMin = allocAlignment
	}
	return &arena{
		base: base, end: base + size, gran: gran, largeMin: largeMin, phys: phys,
		free: []span{{base, base + size}},
	}
}

func roundUp(n, to uint64) (uint64, bool) {
	r := (n + to - 1) &^ (to - 1)
	return r, r >= n
}

// alloc places size bytes (size > 0).
func (a *arena) alloc(size uint64) (placement, error) {
	rs, ok := roundUp(size, allocAlignment)
	if !ok {
		return placement{}, errWindowFull
	}
	if rs >= a.largeMin {
		return a.allocLarge(rs)
	}
	return a.allocSmall(rs)
}

func (a *arena) allocLarge(rs uint64) (placement, error) {
	n, ok := roundUp(rs, a.gran)
	if !ok {
		return placement{}, errWindowFull
	}
	p, err := a.takeRange(n)
	if err != nil {
		return placement{}, err
	}
	h, err := a.phys.back(p, n)
	if err != nil {
		a.giveRange(p, n)
		return placement{}, err
	}
	return placement{base: p, reserved: n, handle: h}, nil
}

func (a *arena) allocSmall(rs uint64) (placement, error) {
	for _, s := range a.slabs {
		if p, ok := takeFit(&s.free, rs); ok {
			s.used += rs
			return placement{base: p, reserved: rs, slab: s}, nil
		}
	}
	s := a.spare
	a.spare = nil
	if s == nil {
		p, err := a.takeRange(a.gran)
		if err != nil {
			return placement{}, err
		}
		h, err := a.phys.back(p, a.gran)
		if err != nil {
			a.giveRange(p, a.gran)
			return placement{}, err
		}
		s = &slab{base: p, handle: h, free: []span{{p, p + a.gran}}}
	}
	i := sort.Search(len(a.slabs), func(i int) bool { return a.slabs[i].base > s.base })
	a.slabs = append(a.slabs, nil)
	copy(a.slabs[i+1:], a.slabs[i:])
	a.slabs[i] = s
	p, _ := takeFit(&s.free, rs) // an empty slab fits anything below largeMin
	s.used += rs
	return placement{base: p, reserved: rs, slab: s}, nil
}

// release gives pl back. The memory must no longer be in use by the device.
func (a *arena) release(pl placement) error {
	if pl.slab == nil {
		err := a.phys.unback(pl.base, pl.reserved, pl.handle)
		if err != nil {
			return err // the range stays taken: it may still be mapped
		}
		a.giveRange(pl.base, pl.reserved)
		return nil
	}
	s := pl.slab
	giveFit(&s.free, pl.base, pl.reserved)
	s.used -= pl.reserved
	if s.used != 0 {
		return nil
	}
	i := sort.Search(len(a.slabs), func(i int) bool { return a.slabs[i].base >= s.base })
	a.slabs = append(a.slabs[:i], a.slabs[i+1:]...)
	if a.spare == nil {
		a.spare = s
		return nil
	}
	if err := a.phys.unback(s.base, a.gran, s.handle); err != nil {
		return err
	}
	a.giveRange(s.base, a.gran)
	return nil
}

// releaseAll unmaps every slab and the spare; large allocations are the
// caller's to release first. It returns the first error.
func (a *arena) releaseAll() error {
	var first error
	all := a.slabs
	if a.spare != nil {
		all = append(all, a.spare)
	}
	for _, s := range all {
		if err := a.phys.unback(s.base, a.gran, s.handle); err != nil && first == nil {
			first = err
		}
		a.giveRange(s.base, a.gran)
	}
	a.slabs, a.spare = nil, nil
	return first
}

// takeRange takes n granule-aligned bytes of unbacked window (first fit).
func (a *arena) takeRange(n uint64) (uint64, error) {
	if p, ok := takeFit(&a.free, n); ok {
		return p, nil
	}
	return 0, errWindowFull
}

func (a *arena) giveRange(p, n uint64) { giveFit(&a.free, p, n) }

// takeFit takes n bytes from the first range of list that holds them.
func takeFit(list *[]span, n uint64) (uint64, bool) {
	l := *list
	for i := range l {
		if l[i].end-l[i].start < n {
			continue
		}
		p := l[i].start
		l[i].start += n
		if l[i].start == l[i].end {
			*list = append(l[:i], l[i+1:]...)
		}
		return p, true
	}
	return 0, false
}

// giveFit returns [p, p+n) to list, merging it with its neighbours.
func giveFit(list *[]span, p, n uint64) {
	l := *list
	end := p + n
	i := sort.Search(len(l), func(i int) bool { return l[i].start > p })
	joinPrev := i > 0 && l[i-1].end == p
	joinNext := i < len(l) && l[i].start == end
	switch {
	case joinPrev && joinNext:
		l[i-1].end = l[i].end
		*list = append(l[:i], l[i+1:]...)
	case joinPrev:
		l[i-1].end = end
	case joinNext:
		l[i].start = p
	default:
		l = append(l, span{})
		copy(l[i+1:], l[i:])
		l[i] = span{p, end}
		*list = l
	}
}
