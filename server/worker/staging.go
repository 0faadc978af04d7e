package worker

import (
	"context"
	"math/bits"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Staging buffers hold payloads between the network and a device: the
// bytes of a host-to-device copy until the stream reaches it, of a
// device-to-host copy until they are sent, of a peer copy on its way.
// Buffers come from per-size-class free lists (powers of two from 4 KiB to
// 64 MiB), so that the hot path allocates nothing once warm; larger ones
// are made for the call and left to the garbage collector. A weighted
// semaphore bounds the bytes staged at once (Config.StagingLimit).

const (
	minClassShift = 12 // 4 KiB
	maxClassShift = 26 // 64 MiB
	numClasses    = maxClassShift - minClassShift + 1
)

// buffer is one staging buffer. b has the class's full length; callers
// use b[:n].
type buffer struct {
	b      []byte
	class  int   // -1: not pooled
	weight int64 // budget held while the buffer is out
}

// stagingPool hands out buffers within a byte budget.
type stagingPool struct {
	classes [numClasses]sync.Pool // of *buffer
	budget  *semaphore.Weighted
	limit   int64
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
	if c >= 0 {
		if v, ok := p.classes[c].Get().(*buffer); ok {
			b = v
		} else {
			b = &buffer{b: make([]byte, 1<<(c+minClassShift)), class: c}
		}
	} else {
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
	if b.class >= 0 {
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
}
