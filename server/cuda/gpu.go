//go:build cgo

package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// gpu is one physical device while Devices are open on it: its retained
// primary context, the Executor whose thread keeps that context current,
// and what the Devices on it share (the legacy stream, staging memory,
// pooled events, host-function slots). The first Open on a device starts
// it, the last Device's Close stops it and releases the primary context, so
// that a context lost to a sticky error is not reused by later Devices.
type gpu struct {
	drv    *Driver
	index  int
	dev    Device
	ctx    Context
	exec   *Executor
	gran   uint64       // VMM allocation granularity
	access []AccessDesc // read-write access for this device, then its peers
	// peersMapped lists the peers access granted when the gpu started
	// (fixed), and stays true while new allocations are still mapped for
	// them (vmm.back stops asking after a refusal): what ReducePeer may
	// rely on.
	peerDevs    []Device
	peersMapped atomic.Bool

	// waitValue is set when host functions run off the driver's callback
	// thread: the stream is held by a stream memory wait until the function
	// returns (see hostfunc.go). Cleared if the driver refuses such a wait.
	waitValue atomic.Bool

	sticky atomic.Int32 // the Result that poisoned the context; 0 while healthy

	// hostSync mirrors, for Go's memory model, the ordering the GPU gives:
	// every host function releases it when it returns and acquires it when
	// it starts, and every completed wait acquires it, so that what a host
	// function wrote (a copied-out destination, a test's variables) happens
	// before what runs after it in stream order. The driver's own
	// synchronization already orders the memory; this makes the order
	// visible to the race detector.
	hostSync atomic.Uint64
	// running counts host functions started on their own goroutine and not
	// yet returned; their slot pages are not freed while any runs.
	running atomic.Int64

	staging *stagingPool
	events  eventPool
	slots   slotPool // used on the executor only

	// syncStream is an internal non-blocking stream for fences: a wait on
	// a caller's event is turned into a wait on a pooled event recorded
	// here after cuStreamWaitEvent, so that the caller's event may be
	// destroyed while the wait goes on. Used on the executor only.
	syncStream Stream

	// red is the element-wise kernels (reduce.go), loaded at start; set
	// before the gpu is used and not changed after.
	red *reducer

	refs int // open Devices on this gpu; guarded by Backend.mu
}

// startGPU retains the primary context of device index and starts its
// executor.
func startGPU(drv *Driver, index int, dev Device, peers []Device, cfg Config) (*gpu, error) {
	ctx, err := drv.PrimaryCtxRetain(dev)
	if err != nil {
		return nil, err
	}
	g := &gpu{drv: drv, index: index, dev: dev, ctx: ctx, red: &reducer{err: errNoReducer}}
	g.staging = newStagingPool(g, cfg.StagingRetain)
	g.events.g = g
	g.exec, err = NewExecutor(cfg.QueueLength,
		func() error { return drv.CtxSetCurrent(ctx) },
		func() { drv.CtxSetCurrent(0) })
	if err != nil {
		drv.PrimaryCtxRelease(dev)
		return nil, err
	}
	err = g.exec.Do(func() error {
		gran, err := drv.MemGetAllocationGranularity(dev, GranularityMinimum)
		if err != nil {
			return err
		}
		if gran == 0 || gran&(gran-1) != 0 || gran > 2<<20 {
			return fmt.Errorf("cuda: unsupported VMM allocation granularity %d", gran)
		}
		g.gran = gran
		g.access = []AccessDesc{{Device: dev, Flags: AccessReadWrite}}
		for _, p := range peers {
			if ok, err := drv.DeviceCanAccessPeer(dev, p); err == nil && ok {
				g.access = append(g.access, AccessDesc{Device: p, Flags: AccessReadWrite})
				g.peerDevs = append(g.peerDevs, p)
			}
		}
		g.peersMapped.Store(len(g.peerDevs) > 0)
		g.waitValue.Store(g.probeWaitValue())
		if g.syncStream, err = drv.StreamCreate(StreamNonBlocking, 0); err != nil {
			return err
		}
		if err := g.staging.prefill(); err != nil {
			return err
		}
		g.red = loadReducer(drv, dev, reduceImage)
		return nil
	})
	if err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// probeWaitValue checks, on the executor, that the driver can hold a
// stream on a word of pinned host memory.
func (g *gpu) probeWaitValue() bool {
	if !g.drv.Has("cuStreamWaitValue32_v2") && !g.drv.Has("cuStreamWaitValue32") {
		return false
	}
	slot, err := g.slots.get(g.drv)
	if err != nil {
		return false
	}
	defer g.slots.put(slot)
	s, err := g.drv.StreamCreate(StreamNonBlocking, 0)
	if err != nil {
		return false
	}
	defer g.drv.StreamDestroy(s)
	slot.seq++
	atomic.StoreUint32(slot.word, slot.seq) // satisfied before the wait is queued
	if err := g.drv.StreamWaitValue32(s, slot.addr, slot.seq, StreamWaitValueGEQ); err != nil {
		return false
	}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		switch err := g.drv.StreamQuery(s); {
		case err == nil:
			return true
		case !errors.Is(err, ErrNotReady):
			return false
		}
	}
	return false
}

// stop frees what the gpu holds, stops the executor and releases the
// primary context. No Device may be open on it.
func (g *gpu) stop() {
	if g.exec != nil {
		g.exec.Do(func() error {
			g.drv.CtxSynchronize()
			g.red.unload(g.drv)
			if g.syncStream != 0 {
				g.drv.StreamDestroy(g.syncStream)
			}
			g.staging.freeAll()
			g.events.freeAll()
			// A host function's goroutine stores to its slot last; after the
			// synchronization only its count remains. One that still runs
			// (its stream lost to a sticky error) may store later: then the
			// pages are kept.
			for deadline := time.Now().Add(time.Second); g.running.Load() != 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if g.running.Load() == 0 {
				g.slots.freeAll(g.drv)
			}
			return nil
		})
		g.exec.Close()
	}
	g.drv.PrimaryCtxRelease(g.dev)
}

// onThread runs fn on the calling goroutine's OS thread with the gpu's
// context current: for blocking waits, which must not hold up the executor,
// and for pinned allocations made by callers.
func (g *gpu) onThread(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := g.drv.CtxSetCurrent(g.ctx); err != nil {
		return err
	}
	defer g.drv.CtxSetCurrent(0)
	return fn()
}

func (g *gpu) acquire() { g.hostSync.Load() }
func (g *gpu) release() { g.hostSync.Add(1) }

// inline wraps fn to run on the driver's callback thread.
func (g *gpu) inline(fn func()) func() {
	return func() {
		g.acquire()
		fn()
		g.release()
	}
}

// poison records r if it is a sticky error: the context is lost.
func (g *gpu) poison(err error) {
	var r Result
	if errors.As(err, &r) && r.Sticky() {
		g.sticky.CompareAndSwap(0, int32(r))
	}
}

// eventPool recycles events with timing disabled, for internal fences
// (stream synchronization, staging buffer reuse).
type eventPool struct {
	g    *gpu
	mu   sync.Mutex // guards free
	free []Event
}

// get returns an event; a new one is created on the calling thread, which
// must have the context current (the executor, or onThread).
func (p *eventPool) get() (Event, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		e := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return e, nil
	}
	p.mu.Unlock()
	return p.g.drv.EventCreate(EventDisableTiming)
}

// put returns e for reuse; e must have completed. Safe on any thread.
func (p *eventPool) put(e Event) {
	p.mu.Lock()
	p.free = append(p.free, e)
	p.mu.Unlock()
}

func (p *eventPool) freeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.free {
		p.g.drv.EventDestroy(e)
	}
	p.free = nil
}

// hostSlot is a word of pinned host memory that holds one stream at the
// end of each of its host functions (hostfunc.go): the stream waits for the
// word to reach seq, which the function's goroutine stores when it returns.
type hostSlot struct {
	word *uint32   // the word, in pinned host memory
	addr DevicePtr // its device address
	seq  uint32    // the last value a wait was queued for
}

// idle reports whether no queued wait is still waiting on the slot.
func (s *hostSlot) idle() bool { return atomic.LoadUint32(s.word) == s.seq }

// slotPool hands out host slots, carved from pinned pages. Used on the
// executor only.
type slotPool struct {
	pages    [][]byte
	free     []*hostSlot
	draining []*hostSlot // given back while a wait on them may still be queued
}

const (
	slotPage   = 4096
	slotStride = 64 // a cache line per slot
)

func (p *slotPool) get(drv *Driver) (*hostSlot, error) {
	if len(p.free) == 0 {
		kept := p.draining[:0]
		for _, s := range p.draining {
			if s.idle() {
				p.free = append(p.free, s)
			} else {
				kept = append(kept, s)
			}
		}
		p.draining = kept
	}
	if len(p.free) == 0 {
		page, err := drv.MemHostAlloc(slotPage, HostAllocPortable|HostAllocDeviceMap)
		if err != nil {
			return nil, err
		}
		addr, err := drv.MemHostGetDevicePointer(page)
		if err != nil {
			drv.MemFreeHost(page)
			return nil, err
		}
		p.pages = append(p.pages, page)
		for off := 0; off+slotStride <= slotPage; off += slotStride {
			w := (*uint32)(unsafe.Pointer(&page[off]))
			atomic.StoreUint32(w, 0)
			p.free = append(p.free, &hostSlot{word: w, addr: addr + DevicePtr(off)})
		}
	}
	s := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return s, nil
}

// put gives s back; it is reused once its last wait has been released. A
// reused slot continues its sequence, so an old wait can never be released
// by a new function.
func (p *slotPool) put(s *hostSlot) {
	if s.idle() {
		p.free = append(p.free, s)
	} else {
		p.draining = append(p.draining, s)
	}
}

func (p *slotPool) freeAll(drv *Driver) {
	for _, page := range p.pages {
		drv.MemFreeHost(page)
	}
	*p = slotPool{}
}
