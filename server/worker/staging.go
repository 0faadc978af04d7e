package worker

import (
	"context"
	"math/bits"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/xgpu/xgpu/server/backend"
)

// Staging buffers hold payloads between the network and a device: the
// bytes of a host-to-device copy until the stream reaches it, of a
// device-to-host copy until they are sent, of a peer copy on its way.
// Buffers come from per-size-class free lists (powers of two from 4 KiB to
// 64 MiB), so that the hot path allocates nothing once warm; larger ones
// are made for the call and left to the garbage collector. A weighted
// semaphore bounds the bytes staged at once (Config.StagingLimit).
//
// Where the backend maps host memory (backend.HostMapper: the cuda
// backend's page-locked memory), the class buffers are such memory, so
// that the device copies to and from them by DMA with no staging of its
// own. They are kept in free lists of their own (page-locked memory is
// never left to the garbage collector) up to the budget, and come from
// the Go heap when none can be had.

const (
	minClassShift = 12 // 4 KiB
	maxClassShift = 26 // 64 MiB
	numClasses    = maxClassShift - minClassShift + 1
)

// buffer is one staging buffer. b has the class's full length; callers
// use b[:n].
type buffer struct {
	b      []byte
	class  int                // -1: not pooled
	weight int64              // budget held while the buffer is out
	pinned backend.HostBuffer // Ptr != 0: page-locked memory from the pool's mapper
}

// stagingPool hands out buffers within a byte budget.
type stagingPool struct {
	classes [numClasses]sync.Pool // of *buffer
	budget  *semaphore.Weighted
	limit   int64

	pin    backend.HostMapper // nil: Go memory only (setPinned)
	pmu    sync.Mutex         // guards the fields below
	pfree  [numClasses][]*buffer
	pbytes int64 // page-locked bytes held, in use or free
}

// setPinned makes the class buffers page-locked memory from m. Call it
// before the pool is used.
func (p *stagingPool) setPinned(m backend.HostMapper) { p.pin = m }

// getPinned returns a page-locked buffer of class c, or nil.
func (p *stagingPool) getPinned(c int) *buffer {
	p.pmu.Lock()
	if l := len(p.pfree[c]); l > 0 {
		b := p.pfree[c][l-1]
		p.pfree[c] = p.pfree[c][:l-1]
		p.pmu.Unlock()
		return b
	}
	size := int64(1) << (c + minClassShift)
	if p.pbytes+size > p.limit {
		p.pmu.Unlock()
		return nil
	}
	p.pbytes += size
	p.pmu.Unlock()
	hb, err := p.pin.HostAlloc(uint64(size))
	if err != nil {
		p.pmu.Lock()
		p.pbytes -= size
		p.pmu.Unlock()
		return nil
	}
	return &buffer{b: hb.Bytes, class: c, pinned: hb}
}

func newStagingPool(limit uint64) *stagingPool {
	l := int64(min(limit, 1<<62))
	return &stagingPool{budget: semaphore.NewWeighted(l), limit: l}
}

// classOf returns the size class for n bytes, or -1 when n is larger than
// the largest class.
func classOf(n uint64) int {
	if n <= 1<<minClassShift {
		return 0
	}
	shift := bits.Len64(n - 1) // smallest s with 1<<s >= n
	if shift > maxClassShift {
		return -1
	}
	return shift - minClassShift
}

// get returns a buffer of at least n bytes, waiting while the budget is
// spent, until ctx ends.
func (p *stagingPool) get(ctx context.Context, n uint64) (*buffer, error) {
	w := int64(min(n, uint64(p.limit)))
	if w > 0 {
		if err := p.budget.Acquire(ctx, w); err != nil {
			return nil, err
		}
	}
	c := classOf(n)
	var b *buffer
	if c >= 0 && p.pin != nil {
		b = p.getPinned(c)
	}
	switch {
	case b != nil:
	case c >= 0:
		if v, ok := p.classes[c].Get().(*buffer); ok {
			b = v
		} else {
			b = &buffer{b: make([]byte, 1<<(c+minClassShift)), class: c}
		}
	default:
		b = &buffer{b: make([]byte, n), class: -1}
	}
	b.weight = w
	return b, nil
}

// put returns b to its free list and its bytes to the budget.
func (p *stagingPool) put(b *buffer) {
	if b == nil {
		return
	}
	if b.weight > 0 {
		p.budget.Release(b.weight)
		b.weight = 0
	}
	switch {
	case b.pinned.Ptr != 0:
		p.pmu.Lock()
		p.pfree[b.class] = append(p.pfree[b.class], b)
		p.pmu.Unlock()
	case b.class >= 0:
		p.classes[b.class].Put(b)
	}
}

// drop returns b's bytes to the budget but never reuses b: something may
// still write into it (work a faulted device dropped, a copy whose
// completion could not be enqueued).
func (p *stagingPool) drop(b *buffer) {
	if b == nil {
		return
	}
	if b.weight > 0 {
		p.budget.Release(b.weight)
		b.weight = 0
	}
	if b.pinned.Ptr != 0 {
		// The mapper frees it once the work queued before has run.
		if p.pin.HostFree(b.pinned) == nil {
			p.pmu.Lock()
			p.pbytes -= int64(len(b.pinned.Bytes))
			p.pmu.Unlock()
		}
		b.pinned = backend.HostBuffer{}
	}
}

// pinnedBytes returns the page-locked bytes the pool holds.
func (p *stagingPool) pinnedBytes() int64 {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.pbytes
}
