//go:build cgo

package cuda

import (
	"errors"
	"math/bits"
	"sync"
)

// Host-device copies stage through pinned host memory. The backend's
// contract lets the device read a source slice (or write a destination
// slice) only when the stream reaches the copy, which may be long after the
// call returns; the driver may not keep a Go pointer that long, and a copy
// from pageable memory may block the calling thread until the stream
// drains, which would hold up every other call of the device. So a
// host-to-device copy moves the bytes into pinned buffers at once (the
// caller may not change them before the copy completes, so reading them
// early is the same) and queues DMA from there; a device-to-host copy
// queues DMA into pinned buffers and a host function that moves the bytes
// into the destination, in stream order. Copies larger than stagingChunk go
// in chunks.
const (
	stagingMinShift   = 12 // 4 KiB: the smallest buffer
	stagingChunkShift = 23 // 8 MiB: the largest buffer, and the chunk size
	stagingChunk      = 1 << stagingChunkShift
	stagingClasses    = stagingChunkShift - stagingMinShift + 1
)

// stagingPool recycles pinned buffers of power-of-two sizes.
//
// Pinned memory is allocated on the calling goroutine (never on the
// executor) and freed on a background goroutine: cuMemFreeHost may wait for
// the device to go idle, which must not hold up the executor.
type stagingPool struct {
	g     *gpu
	limit uint64

	mu       sync.Mutex // guards the fields below
	free     [stagingClasses][][]byte
	retained uint64
	pending  []staged // buffers still read by queued host-to-device copies

	bg sync.WaitGroup // background frees
}

// staged is a set of buffers queued copies read; they are free again once
// ev has completed.
type staged struct {
	ev   Event
	bufs [][]byte
}

func newStagingPool(g *gpu, limit uint64) *stagingPool {
	if limit == 0 {
		limit = DefaultStagingRetain
	}
	return &stagingPool{g: g, limit: limit}
}

func stagingClass(n int) int {
	if n <= 1<<stagingMinShift {
		return 0
	}
	return bits.Len(uint(n-1)) - stagingMinShift
}

// prefill allocates a few buffers of every class, so that the common
// copies find pinned memory ready. On a thread with the context current.
func (p *stagingPool) prefill() error {
	for c := range stagingClasses {
		n := 2
		if c >= stagingClasses-3 {
			n = 1
		}
		for range n {
			b, err := p.g.drv.MemHostAlloc(1<<(c+stagingMinShift), HostAllocPortable)
			if err != nil {
				return err
			}
			p.put(b)
		}
	}
	return nil
}

// takeLocked pops a free buffer of class c; the caller holds mu.
func (p *stagingPool) takeLocked(c int) []byte {
	l := len(p.free[c])
	if l == 0 {
		return nil
	}
	b := p.free[c][l-1]
	p.free[c] = p.free[c][:l-1]
	p.retained -= uint64(len(b))
	return b
}

// get returns a pinned buffer of at least n bytes (0 < n <= stagingChunk).
// It may be called on any goroutine.
func (p *stagingPool) get(n int) ([]byte, error) {
	c := stagingClass(n)
	p.mu.Lock()
	b := p.takeLocked(c)
	havePending := len(p.pending) > 0
	p.mu.Unlock()
	if b != nil {
		return b, nil
	}
	err := p.g.onThread(func() error {
		if havePending {
			p.reapOnThread()
			p.mu.Lock()
			b = p.takeLocked(c)
			p.mu.Unlock()
			if b != nil {
				return nil
			}
		}
		var err error
		b, err = p.g.drv.MemHostAlloc(1<<(c+stagingMinShift), HostAllocPortable)
		return err
	})
	return b, err
}

// put gives b back for reuse. Safe on any thread, including the driver's
// callback thread (it makes no driver call).
func (p *stagingPool) put(b []byte) {
	c := stagingClass(len(b))
	p.mu.Lock()
	p.free[c] = append(p.free[c], b)
	p.retained += uint64(len(b))
	p.mu.Unlock()
}

// getChunks returns buffers for n bytes in chunks of at most stagingChunk.
func (p *stagingPool) getChunks(n int) ([][]byte, error) {
	bufs := make([][]byte, 0, (n+stagingChunk-1)/stagingChunk)
	for off := 0; off < n; off += stagingChunk {
		b, err := p.get(min(stagingChunk, n-off))
		if err != nil {
			for _, b := range bufs {
				p.put(b)
			}
			return nil, err
		}
		bufs = append(bufs, b)
	}
	return bufs, nil
}

// track records that bufs are read by the work queued so far on s, and
// are free once it completes. On the executor.
func (p *stagingPool) track(s Stream, bufs [][]byte) error {
	ev, err := p.g.events.get()
	if err == nil {
		if err = p.g.drv.EventRecord(ev, s); err != nil {
			p.g.drv.EventDestroy(ev)
		}
	}
	if err != nil {
		// Without a fence the buffers cannot be reused safely: free them
		// once the context has drained.
		p.freeLater(bufs, true)
		return err
	}
	p.mu.Lock()
	p.pending = append(p.pending, staged{ev: ev, bufs: bufs})
	p.mu.Unlock()
	return nil
}

// reap frees the buffers of completed copies and trims the pool to its
// limit. On the executor.
func (p *stagingPool) reap() {
	p.reapOnThread()
	p.mu.Lock()
	var trim [][]byte
	for c := stagingClasses - 1; c >= 0 && p.retained > p.limit; c-- {
		for p.retained > p.limit {
			b := p.takeLocked(c)
			if b == nil {
				break
			}
			trim = append(trim, b)
		}
	}
	p.mu.Unlock()
	if len(trim) > 0 {
		p.freeLater(trim, false)
	}
}

// reapScan bounds the pending copies reap looks at past the first one
// still running: copies mostly complete in the order they were queued, so
// the scan stays short however many are in flight.
const reapScan = 16

// reapOnThread moves the buffers of completed copies to the free lists. On
// a thread with the context current.
func (p *stagingPool) reapOnThread() {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.pending[:0]
	running := 0
	for i, st := range p.pending {
		if running >= reapScan {
			kept = append(kept, p.pending[i:]...)
			break
		}
		if err := p.g.drv.EventQuery(st.ev); err != nil {
			running++
			if !errors.Is(err, ErrNotReady) {
				p.g.poison(err) // a lost context: freeAll cleans up
			}
			kept = append(kept, st)
			continue
		}
		p.g.events.put(st.ev)
		for _, b := range st.bufs {
			p.free[stagingClass(len(b))] = append(p.free[stagingClass(len(b))], b)
			p.retained += uint64(len(b))
		}
	}
	clear(p.pending[len(kept):])
	p.pending = kept
}

// freeLater frees bufs on a background goroutine (after synchronizing the
// context first when sync is set).
func (p *stagingPool) freeLater(bufs [][]byte, sync bool) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.g.onThread(func() error {
			if sync {
				p.g.drv.CtxSynchronize()
			}
			for _, b := range bufs {
				p.g.drv.MemFreeHost(b)
			}
			return nil
		})
	}()
}

// freeAll frees every buffer after the context has been synchronized. On
// the executor, once no Device is open.
func (p *stagingPool) freeAll() {
	p.bg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.pending {
		p.g.drv.EventDestroy(st.ev)
		for _, b := range st.bufs {
			p.g.drv.MemFreeHost(b)
		}
	}
	p.pending = nil
	for c := range p.free {
		for _, b := range p.free[c] {
			p.g.drv.MemFreeHost(b)
		}
		p.free[c] = nil
	}
	p.retained = 0
}
