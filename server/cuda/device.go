//go:build cgo

package cuda

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// DeviceContext is one open context of the cuda backend: a vGPU on a physical
// device, with its window, quota, allocations, streams and events.
// Backend.Open creates it; it implements backend.Device and adds the module
// and kernel calls the Device interface does not cover.
//
// All Devices on one physical device share its primary context and its
// Executor. Calls that only queue work (copies, memsets, host functions,
// event records and waits, launches) are checked at once and queued on the
// Executor without waiting for it; an error the driver reports when such
// work is issued is returned by the Device's next synchronizing or querying
// call. Calls that return a value wait for the Executor. Waits (the
// Synchronize methods, and Free, which synchronizes the context as cudaFree
// does) block on other threads, so they never hold up the Executor.
type DeviceContext struct {
	b    *Backend
	g    *gpu
	drv  *Driver
	id   uint64
	spec backend.DeviceSpec

	// mu guards closed and streams. Every call holds it for reading from its
	// checks until its work is queued, so that StreamDestroy, EventDestroy
	// and Close (which take it for writing) are ordered after work queued
	// with the handles they release.
	mu         sync.RWMutex
	closed     bool
	streams    map[backend.Stream]*stream
	legacy     *stream
	nextStream atomic.Uint64
	gone       atomic.Bool // closed, for the lock-free Owns

	memMu sync.Mutex // serializes Malloc, Free and Close's release; guards the fields below
	arena *arena
	used  uint64 // quota charged: allocation sizes rounded up to backend.Alignment
	live  map[uint64]*allocation
	// index is the sorted list of live allocations, copy-on-write under
	// memMu, so that Owns (on every copy and memset) takes no lock.
	index atomic.Pointer[[]*allocation]

	errMu    sync.Mutex // guards deferred
	deferred error      // the first error of queued work, reported by the next synchronizing call

	kernMu    sync.RWMutex // guards modules and functions
	modules   map[Module]struct{}
	functions map[Function]Module
	// globals are the module globals handed out by ModuleGlobal, which
	// the driver places outside the window; Owns accepts them like
	// allocations until their module is unloaded. Copy-on-write under
	// kernMu.
	globals atomic.Pointer[[]moduleGlobal]

	waiters sync.WaitGroup // waits running on other threads
}

var _ backend.Device = (*DeviceContext)(nil)

// stream is one stream handle of a Device.
type stream struct {
	cu   Stream    // the CUDA stream; 0 for the legacy stream
	slot *hostSlot // host-function slot; used on the executor only
}

// allocation is one Malloc.
type allocation struct {
	base, size uint64
	charged    uint64 // quota charged
	pl         placement
}

// stream handles carry the Device id above streamIDShift, so that a handle
// names its Device and no two Devices share one.
const streamIDShift = 32

// eventBase is added to event counters: event handles never collide with
// small integers a caller might pass by mistake.
const eventBase = 1 << 48

func openDevice(b *Backend, g *gpu, spec backend.DeviceSpec) (*DeviceContext, error) {
	const op = "Open"
	base, size := DevicePtr(spec.WindowBase), spec.WindowSize
	var placed DevicePtr
	err := g.exec.Do(func() error {
		p, err := g.drv.MemAddressReserve(size, 0, base)
		if err != nil {
			return err
		}
		if p != base {
			g.drv.MemAddressFree(p, size)
			placed = p
		}
		return nil
	})
	if err != nil {
		return nil, &backend.OpError{Backend: name, Op: op, Err: err}
	}
	if placed != 0 {
		return nil, backend.Errorf(name, op, cudaerr.MemoryAllocation,
			"the driver reserved the window at %#x instead of %#x (the address range is taken in this process)", uint64(placed), uint64(base))
	}
	d := &DeviceContext{
		b:         b,
		g:         g,
		drv:       b.drv,
		id:        b.nextDev.Add(1),
		spec:      spec,
		streams:   make(map[backend.Stream]*stream),
		legacy:    &stream{},
		live:      make(map[uint64]*allocation),
		modules:   make(map[Module]struct{}),
		functions: make(map[Function]Module),
	}
	d.arena = newArena(spec.WindowBase, spec.WindowSize, g.gran, vmm{g})
	d.index.Store(&[]*allocation{})
	return d, nil
}

// vmm backs window ranges with the VMM API.
type vmm struct{ g *gpu }

// back runs on the executor.
func (v vmm) back(p, size uint64) (MemHandle, error) {
	drv := v.g.drv
	h, err := drv.MemCreate(size, v.g.dev)
	if err != nil {
		return 0, err
	}
	if err := drv.MemMap(DevicePtr(p), size, 0, h); err != nil {
		drv.MemRelease(h)
		return 0, err
	}
	err = drv.MemSetAccess(DevicePtr(p), size, v.g.access...)
	if err != nil && len(v.g.access) > 1 {
		// A peer refused the mapping: keep this device's own access, and
		// stop asking for peers (peer copies still work through
		// cuMemcpyPeerAsync).
		if drv.MemSetAccess(DevicePtr(p), size, v.g.access[0]) == nil {
			v.g.access = v.g.access[:1]
			v.g.peersMapped.Store(false)
			err = nil
		}
	}
	if err != nil {
		drv.MemUnmap(DevicePtr(p), size)
		drv.MemRelease(h)
		return 0, err
	}
	return h, nil
}

// unback runs on the executor.
func (v vmm) unback(p, size uint64, h MemHandle) error {
	return errors.Join(v.g.drv.MemUnmap(DevicePtr(p), size), v.g.drv.MemRelease(h))
}

// opErr wraps a driver error as op's *backend.OpError.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var oe *backend.OpError
	if errors.As(err, &oe) {
		return err
	}
	switch {
	case errors.Is(err, ErrExecutorClosed):
		return backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	case errors.As(err, new(*SymbolError)):
		return &backend.OpError{Backend: name, Op: op, Err: &detail{err: err, code: cudaerr.NotSupported}}
	}
	return &backend.OpError{Backend: name, Op: op, Err: err}
}

// detail gives an error that carries no CUDA code one.
type detail struct {
	err  error
	code cudaerr.Error
}

func (e *detail) Error() string   { return e.err.Error() + ": " + e.code.Error() }
func (e *detail) Unwrap() []error { return []error{e.err, e.code} }

// enter checks that the Device may be used and holds mu for reading; the
// caller calls d.mu.RUnlock when its work is queued.
func (d *DeviceContext) enter(op string) error {
	d.mu.RLock()
	if err := d.checkLocked(op); err != nil {
		d.mu.RUnlock()
		return err
	}
	return nil
}

func (d *DeviceContext) checkLocked(op string) error {
	if d.closed {
		return backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	}
	return d.stickyErr(op)
}

// stickyErr returns the error that poisoned the context, as op's error.
func (d *DeviceContext) stickyErr(op string) error {
	if c := d.g.sticky.Load(); c != 0 {
		return &backend.OpError{Backend: name, Op: op, Err: &detail{
			err:  errors.New("the context was lost to an earlier asynchronous error"),
			code: Result(c).Runtime(),
		}}
	}
	return nil
}

// streamLocked returns the stream of handle h; the caller holds mu.
func (d *DeviceContext) streamLocked(op string, h backend.Stream) (*stream, error) {
	if h == backend.LegacyStream {
		return d.legacy, nil
	}
	if s := d.streams[h]; s != nil {
		return s, nil
	}
	return nil, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "stream %#x is not a live stream of this device", uint64(h))
}

// submit queues fn on the executor without waiting; an error fn returns is
// kept for the next synchronizing call.
func (d *DeviceContext) submit(op string, fn func() error) error {
	err := d.g.exec.Go(func() {
		if err := fn(); err != nil {
			d.fail(err)
		}
	})
	return opErr(op, err)
}

// do runs fn on the executor and waits for it.
func (d *DeviceContext) do(op string, fn func() error) error {
	err := d.g.exec.Do(fn)
	if err != nil {
		d.g.poison(err)
	}
	return opErr(op, err)
}

// fail records the error of queued work.
func (d *DeviceContext) fail(err error) {
	d.g.poison(err)
	d.errMu.Lock()
	if d.deferred == nil {
		d.deferred = err
	}
	d.errMu.Unlock()
}

// reported returns, as op's error, the sticky error or else the first error
// of queued work (which it clears); nil if there is none.
func (d *DeviceContext) reported(op string) error {
	if err := d.stickyErr(op); err != nil {
		return err
	}
	d.errMu.Lock()
	err := d.deferred
	d.deferred = nil
	d.errMu.Unlock()
	return opErr(op, err)
}

// startWait runs fn on a new goroutine whose thread has the context
// current. The caller holds mu for reading, so that Close waits for it.
func (d *DeviceContext) startWait(fn func() error) <-chan error {
	ch := make(chan error, 1) // buffered: the waiter never blocks on an abandoned wait
	d.waiters.Add(1)
	go func() {
		defer d.waiters.Done()
		err := d.g.onThread(fn)
		d.g.acquire() // what host functions before the wait wrote happens before the caller goes on
		ch <- err
	}()
	return ch
}

// await waits for a wait started by startWait, or for ctx.
func (d *DeviceContext) await(ctx context.Context, op string, ch <-chan error) error {
	select {
	case err := <-ch:
		if err != nil {
			d.g.poison(err)
			if se := d.stickyErr(op); se != nil {
				return se
			}
			return opErr(op, err)
		}
		return d.reported(op)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// barrier returns once every function queued on the executor before it has
// run, so that work queued by earlier calls has reached the driver.
func (d *DeviceContext) barrier(op string) error {
	return d.do(op, func() error { return nil })
}

// Owns reports whether [p, p+n) lies inside one live allocation (n == 0:
// whether p does). It takes no lock.
func (d *DeviceContext) Owns(p backend.DevicePtr, n uint64) bool {
	if d.gone.Load() {
		return false
	}
	list := *d.index.Load()
	i := sort.Search(len(list), func(i int) bool { return list[i].base > uint64(p) })
	if i > 0 {
		a := list[i-1]
		if off := uint64(p) - a.base; off < a.size {
			return n <= a.size-off
		}
	}
	if gl := d.globals.Load(); gl != nil {
		for _, g := range *gl {
			if off := uint64(p) - g.base; uint64(p) >= g.base && off < g.size {
				return n <= g.size-off
			}
		}
	}
	return false
}

// moduleGlobal is a module global variable's device memory.
type moduleGlobal struct {
	mod        Module
	base, size uint64
}

// indexAddLocked publishes a new Owns index with a added; the caller holds
// memMu. The published slice is never modified: a copy replaces it.
func (d *DeviceContext) indexAddLocked(a *allocation) {
	old := *d.index.Load()
	i := sort.Search(len(old), func(i int) bool { return old[i].base > a.base })
	list := make([]*allocation, len(old)+1)
	copy(list, old[:i])
	list[i] = a
	copy(list[i+1:], old[i:])
	d.index.Store(&list)
}

// indexRemoveLocked publishes a new Owns index without a; the caller holds
// memMu.
func (d *DeviceContext) indexRemoveLocked(a *allocation) {
	old := *d.index.Load()
	i := sort.Search(len(old), func(i int) bool { return old[i].base >= a.base })
	if i == len(old) || old[i] != a {
		return
	}
	list := make([]*allocation, 0, len(old)-1)
	list = append(list, old[:i]...)
	list = append(list, old[i+1:]...)
	d.index.Store(&list)
}

// Malloc allocates size bytes in the window: with cuMemCreate, cuMemMap and
// cuMemSetAccess, granule-aligned for large allocations, and packed into
// shared granules for small ones (see arena). The quota counts sizes
// rounded up to backend.Alignment.
func (d *DeviceContext) Malloc(size uint64) (backend.DevicePtr, error) {
	const op = "Malloc"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	if size == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "size is zero")
	}
	charged, ok := roundUp(size, backend.Alignment)
	d.memMu.Lock()
	defer d.memMu.Unlock()
	if !ok || charged > d.spec.MemoryQuota-d.used {
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "%d bytes exceed the %d bytes left of the quota", size, d.spec.MemoryQuota-d.used)
	}
	var pl placement
	err := d.g.exec.Do(func() error {
		var err error
		pl, err = d.arena.alloc(size)
		return err
	})
	switch {
	case errors.Is(err, errWindowFull):
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "no room for %d bytes in the window", size)
	case err != nil:
		d.g.poison(err)
		return 0, opErr(op, err)
	}
	d.used += charged
	a := &allocation{base: pl.base, size: size, charged: charged, pl: pl}
	d.live[pl.base] = a
	d.indexAddLocked(a)
	return backend.DevicePtr(pl.base), nil
}

// Free releases the allocation at p. Like cudaFree it first waits for the
// context's work to complete (on another thread, so the executor keeps
// running), then unmaps the memory or returns it to its slab.
func (d *DeviceContext) Free(p backend.DevicePtr) error {
	const op = "Free"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if p == 0 {
		return nil
	}
	d.memMu.Lock()
	defer d.memMu.Unlock()
	a := d.live[uint64(p)]
	if a == nil {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%#x is not the start of a live allocation of this device", uint64(p))
	}
	delete(d.live, a.base)
	d.indexRemoveLocked(a)
	err := d.barrier(op)
	if err == nil {
		err = <-d.startWait(d.drv.CtxSynchronize)
		d.g.poison(err)
	}
	if rerr := d.g.exec.Do(func() error { return d.arena.release(a.pl) }); rerr != nil && err == nil {
		err = rerr
	}
	d.used -= a.charged
	if err != nil {
		if se := d.stickyErr(op); se != nil {
			return se
		}
		return opErr(op, err)
	}
	return nil
}

// MemGetInfo returns the bytes left of the quota and the quota.
func (d *DeviceContext) MemGetInfo() (free, total uint64, err error) {
	const op = "MemGetInfo"
	if err := d.enter(op); err != nil {
		return 0, 0, err
	}
	defer d.mu.RUnlock()
	d.memMu.Lock()
	defer d.memMu.Unlock()
	return d.spec.MemoryQuota - d.used, d.spec.MemoryQuota, nil
}

func (d *DeviceContext) checkRange(op, what string, p backend.DevicePtr, n uint64) error {
	if d.Owns(p, n) {
		return nil
	}
	return backend.Errorf(name, op, cudaerr.InvalidValue, "%s range [%#x, +%d) is not inside one allocation of this device", what, uint64(p), n)
}

// memset validates and queues a memset of n elements of elem bytes.
func (d *DeviceContext) memset(op string, dst backend.DevicePtr, n, elem uint64, s backend.Stream, issue func(cu Stream) error) error {
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil || n == 0 {
		return err
	}
	if uint64(dst)%elem != 0 {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "destination %#x is not %d-byte aligned", uint64(dst), elem)
	}
	if n > ^uint64(0)/elem {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d elements of %d bytes overflow", n, elem)
	}
	if err := d.checkRange(op, "destination", dst, n*elem); err != nil {
		return err
	}
	cu := st.cu
	return d.submit(op, func() error { return issue(cu) })
}

// MemsetD8Async sets n bytes at dst to v.
func (d *DeviceContext) MemsetD8Async(dst backend.DevicePtr, v uint8, n uint64, s backend.Stream) error {
	return d.memset("MemsetD8Async", dst, n, 1, s, func(cu Stream) error {
		return d.drv.MemsetD8Async(DevicePtr(dst), v, n, cu)
	})
}

// MemsetD16Async sets n 16-bit values at dst to v.
func (d *DeviceContext) MemsetD16Async(dst backend.DevicePtr, v uint16, n uint64, s backend.Stream) error {
	return d.memset("MemsetD16Async", dst, n, 2, s, func(cu Stream) error {
		return d.drv.MemsetD16Async(DevicePtr(dst), v, n, cu)
	})
}

// MemsetD32Async sets n 32-bit values at dst to v.
func (d *DeviceContext) MemsetD32Async(dst backend.DevicePtr, v uint32, n uint64, s backend.Stream) error {
	return d.memset("MemsetD32Async", dst, n, 4, s, func(cu Stream) error {
		return d.drv.MemsetD32Async(DevicePtr(dst), v, n, cu)
	})
}

// parallelStageMin is the copy size from which staging copies use several
// goroutines: one core's memmove is slower than a pinned DMA.
const parallelStageMin = 32 << 20

// stageIn copies src into the staging buffers, chunk by chunk.
func stageIn(bufs [][]byte, src []byte) {
	chunk := func(i int) {
		off := i * stagingChunk
		copy(bufs[i], src[off:min(off+stagingChunk, len(src))])
	}
	if len(src) < parallelStageMin {
		for i := range bufs {
			chunk(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(bufs); i = int(next.Add(1) - 1) {
				chunk(i)
			}
		}()
	}
	wg.Wait()
}

// MemcpyHtoDAsync copies src to dst. As backend.Device requires, src is
// read when the stream reaches the copy, not when it is enqueued (a caller
// may still be filling it, as the worker does with payloads that arrive
// over the network): a host function in stream order stages the bytes into
// pinned memory, then the DMA runs.
func (d *DeviceContext) MemcpyHtoDAsync(dst backend.DevicePtr, src []byte, s backend.Stream) error {
	const op = "MemcpyHtoDAsync"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil || len(src) == 0 {
		return err
	}
	if err := d.checkRange(op, "destination", dst, uint64(len(src))); err != nil {
		return err
	}
	if d.b.mapped.holds(src) {
		// Page-locked already (HostAlloc): DMA straight from it.
		cu := st.cu
		return d.submit(op, func() error { return d.drv.MemcpyHtoDAsync(DevicePtr(dst), src, cu) })
	}
	pool := d.g.staging
	bufs, err := pool.getChunks(len(src))
	if err != nil {
		return opErr(op, err)
	}
	cu, n := st.cu, len(src)
	err = d.submit(op, func() error {
		pool.reap()
		if err := d.drv.LaunchHostFunc(cu, d.g.inline(func() { stageIn(bufs, src) })); err != nil {
			for _, b := range bufs {
				pool.put(b)
			}
			return err
		}
		for i, b := range bufs {
			off := i * stagingChunk
			if err := d.drv.MemcpyHtoDAsync(DevicePtr(dst)+DevicePtr(off), b[:min(stagingChunk, n-off)], cu); err != nil {
				return errors.Join(err, pool.track(cu, bufs))
			}
		}
		return pool.track(cu, bufs)
	})
	if err != nil {
		for _, b := range bufs {
			pool.put(b)
		}
	}
	return err
}

// MemcpyDtoHAsync copies len(dst) bytes from src to dst: DMA into pinned
// memory, then a host function in stream order moves the bytes into dst.
func (d *DeviceContext) MemcpyDtoHAsync(dst []byte, src backend.DevicePtr, s backend.Stream) error {
	const op = "MemcpyDtoHAsync"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil || len(dst) == 0 {
		return err
	}
	if err := d.checkRange(op, "source", src, uint64(len(dst))); err != nil {
		return err
	}
	if d.b.mapped.holds(dst) {
		// Page-locked already (HostAlloc): DMA straight into it.
		cu := st.cu
		return d.submit(op, func() error { return d.drv.MemcpyDtoHAsync(dst, DevicePtr(src), cu) })
	}
	pool := d.g.staging
	bufs, err := pool.getChunks(len(dst))
	if err != nil {
		return opErr(op, err)
	}
	cu := st.cu
	err = d.submit(op, func() error {
		pool.reap()
		return d.issueDtoH(cu, dst, DevicePtr(src), bufs)
	})
	if err != nil {
		for _, b := range bufs {
			pool.put(b)
		}
	}
	return err
}

// issueDtoH queues, on the executor, the chunked device-to-host copy of
// len(dst) bytes at src through bufs.
func (d *DeviceContext) issueDtoH(cu Stream, dst []byte, src DevicePtr, bufs [][]byte) error {
	pool := d.g.staging
	for i, b := range bufs {
		off := i * stagingChunk
		n := min(stagingChunk, len(dst)-off)
		if err := d.drv.MemcpyDtoHAsync(b[:n], src+DevicePtr(off), cu); err != nil {
			return errors.Join(err, pool.track(cu, bufs[i:]))
		}
		out, b := dst[off:off+n], b
		if err := d.drv.LaunchHostFunc(cu, d.g.inline(func() {
			copy(out, b)
			pool.put(b)
		})); err != nil {
			return errors.Join(err, pool.track(cu, bufs[i:]))
		}
	}
	return nil
}

// MemcpyDtoDAsync copies n bytes between two ranges of this Device.
// Overlapping ranges, which a DMA engine does not handle, bounce through
// pinned host memory: every byte is read before any is written.
func (d *DeviceContext) MemcpyDtoDAsync(dst, src backend.DevicePtr, n uint64, s backend.Stream) error {
	const op = "MemcpyDtoDAsync"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil || n == 0 {
		return err
	}
	if err := d.checkRange(op, "source", src, n); err != nil {
		return err
	}
	if err := d.checkRange(op, "destination", dst, n); err != nil {
		return err
	}
	cu := st.cu
	if dst == src {
		return nil
	}
	if dst < src+backend.DevicePtr(n) && src < dst+backend.DevicePtr(n) {
		return d.overlappingCopy(op, DevicePtr(dst), DevicePtr(src), n, cu)
	}
	return d.submit(op, func() error {
		return d.drv.MemcpyDtoDAsync(DevicePtr(dst), DevicePtr(src), n, cu)
	})
}

// overlappingCopy queues a memmove between overlapping device ranges.
func (d *DeviceContext) overlappingCopy(op string, dst, src DevicePtr, n uint64, cu Stream) error {
	pool := d.g.staging
	bufs, err := pool.getChunks(int(n))
	if err != nil {
		return opErr(op, err)
	}
	err = d.submit(op, func() error {
		pool.reap()
		for i, b := range bufs {
			off := uint64(i) * stagingChunk
			if err := d.drv.MemcpyDtoHAsync(b[:min(stagingChunk, n-off)], src+DevicePtr(off), cu); err != nil {
				return errors.Join(err, pool.track(cu, bufs))
			}
		}
		for i, b := range bufs {
			off := uint64(i) * stagingChunk
			if err := d.drv.MemcpyHtoDAsync(dst+DevicePtr(off), b[:min(stagingChunk, n-off)], cu); err != nil {
				return errors.Join(err, pool.track(cu, bufs))
			}
		}
		return pool.track(cu, bufs)
	})
	if err != nil {
		for _, b := range bufs {
			pool.put(b)
		}
	}
	return err
}

// MemcpyPeerAsync copies n bytes from src on this Device to dst on dstDev,
// in stream s of this Device: cuMemcpyPeerAsync between the two primary
// contexts, or a device-to-device copy when both Devices share a GPU.
func (d *DeviceContext) MemcpyPeerAsync(dst backend.DevicePtr, dstDev backend.Device, src backend.DevicePtr, n uint64, s backend.Stream) error {
	const op = "MemcpyPeerAsync"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	dd, ok := dstDev.(*DeviceContext)
	if !ok || dd == nil || dd.b != d.b {
		return backend.Errorf(name, op, cudaerr.InvalidDevice, "the destination is not a device of this backend")
	}
	if dd.gone.Load() {
		return backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "the destination device is closed")
	}
	st, err := d.streamLocked(op, s)
	if err != nil || n == 0 {
		return err
	}
	if err := d.checkRange(op, "source", src, n); err != nil {
		return err
	}
	if !dd.Owns(dst, n) {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "destination range [%#x, +%d) is not inside one allocation of the destination device", uint64(dst), n)
	}
	cu := st.cu
	if dd == d && dst < src+backend.DevicePtr(n) && src < dst+backend.DevicePtr(n) {
		if dst == src {
			return nil
		}
		return d.overlappingCopy(op, DevicePtr(dst), DevicePtr(src), n, cu)
	}
	if dd.g == d.g {
		return d.submit(op, func() error {
			return d.drv.MemcpyDtoDAsync(DevicePtr(dst), DevicePtr(src), n, cu)
		})
	}
	dstCtx, srcCtx := dd.g.ctx, d.g.ctx
	return d.submit(op, func() error {
		return d.drv.MemcpyPeerAsync(DevicePtr(dst), dstCtx, DevicePtr(src), srcCtx, n, cu)
	})
}

// LaunchHostFunc queues fn on s. Where the driver supports stream memory
// operations, fn runs on a goroutine of its own while the stream waits on a
// word of pinned memory that is set when fn returns, so that a long fn holds
// up its own stream only, not the host functions of other streams (the
// driver runs those on one callback thread). Otherwise fn runs on the
// driver's callback thread.
func (d *DeviceContext) LaunchHostFunc(s backend.Stream, fn func()) error {
	const op = "LaunchHostFunc"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if fn == nil {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "nil function")
	}
	st, err := d.streamLocked(op, s)
	if err != nil {
		return err
	}
	return d.submit(op, func() error { return d.issueHostFunc(st, fn) })
}

// issueHostFunc runs on the executor.
func (d *DeviceContext) issueHostFunc(st *stream, fn func()) error {
	g := d.g
	if !g.waitValue.Load() {
		return d.drv.LaunchHostFunc(st.cu, g.inline(fn))
	}
	if st.slot == nil {
		slot, err := g.slots.get(d.drv)
		if err != nil {
			return err
		}
		st.slot = slot
	}
	slot := st.slot
	target := slot.seq + 1
	word := slot.word
	if err := d.drv.LaunchHostFunc(st.cu, func() {
		g.acquire()
		g.running.Add(1)
		go func() {
			fn()
			g.release()
			atomic.StoreUint32(word, target) // lets the stream go on
			g.running.Add(-1)
		}()
	}); err != nil {
		return err
	}
	slot.seq = target
	if err := d.drv.StreamWaitValue32(st.cu, slot.addr, target, StreamWaitValueGEQ); err != nil {
		// This function is not ordered before later work; later ones run
		// on the driver's callback thread.
		g.waitValue.Store(false)
		return err
	}
	return nil
}

// StreamCreate creates a stream (cuStreamCreateWithPriority).
func (d *DeviceContext) StreamCreate(flags uint32, priority int) (backend.Stream, error) {
	const op = "StreamCreate"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	if flags&^backend.StreamNonBlocking != 0 {
		d.mu.RUnlock()
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "unknown stream flags %#x", flags)
	}
	priority = max(backend.StreamPriorityGreatest, min(backend.StreamPriorityLeast, priority))
	var cu Stream
	err := d.do(op, func() error {
		var err error
		cu, err = d.drv.StreamCreate(flags, priority)
		return err
	})
	d.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.g.exec.Go(func() { d.drv.StreamDestroy(cu) })
		return 0, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	}
	h := backend.Stream(d.id<<streamIDShift | d.nextStream.Add(1)&(1<<streamIDShift-1))
	d.streams[h] = &stream{cu: cu}
	return h, nil
}

// StreamDestroy destroys s; work queued on it still runs.
func (d *DeviceContext) StreamDestroy(s backend.Stream) error {
	const op = "StreamDestroy"
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.checkLocked(op); err != nil {
		return err
	}
	st := d.streams[s]
	if st == nil {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "stream %#x is not a live created stream of this device", uint64(s))
	}
	delete(d.streams, s)
	return d.submit(op, func() error {
		if st.slot != nil {
			d.g.slots.put(st.slot)
		}
		return d.drv.StreamDestroy(st.cu)
	})
}

// StreamSynchronize waits for the work queued on s before the call.
func (d *DeviceContext) StreamSynchronize(ctx context.Context, s backend.Stream) error {
	const op = "StreamSynchronize"
	if err := d.enter(op); err != nil {
		return err
	}
	st, err := d.streamLocked(op, s)
	if err != nil {
		d.mu.RUnlock()
		return err
	}
	if err := ctx.Err(); err != nil {
		d.mu.RUnlock()
		return context.Cause(ctx)
	}
	// A created stream gets a pooled event as its fence, which stays valid
	// if the stream is destroyed meanwhile. The legacy stream is waited on
	// directly: recording on it would make later work of the blocking
	// streams wait for all their earlier work.
	var fence Event
	err = d.do(op, func() error {
		if st.cu == 0 {
			return nil
		}
		ev, err := d.g.events.get()
		if err != nil {
			return err
		}
		if err := d.drv.EventRecord(ev, st.cu); err != nil {
			d.drv.EventDestroy(ev)
			return err
		}
		fence = ev
		return nil
	})
	if err != nil {
		d.mu.RUnlock()
		return err
	}
	ch := d.startWait(func() error {
		if fence == 0 {
			return d.drv.StreamSynchronize(0)
		}
		err := d.drv.EventSynchronize(fence)
		d.g.events.put(fence)
		return err
	})
	d.mu.RUnlock()
	return d.await(ctx, op, ch)
}

// StreamQuery returns nil if the work queued on s has completed, and
// cudaErrorNotReady if not.
func (d *DeviceContext) StreamQuery(s backend.Stream) error {
	const op = "StreamQuery"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil {
		return err
	}
	if err := d.reported(op); err != nil {
		return err
	}
	err = d.do(op, func() error { return d.drv.StreamQuery(st.cu) })
	d.g.acquire()
	return err
}

// StreamWaitEvent makes later work on s wait for e's current capture. e may
// belong to any Device of the Backend.
func (d *DeviceContext) StreamWaitEvent(s backend.Stream, e backend.Event) error {
	const op = "StreamWaitEvent"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil {
		return err
	}
	d.b.eventsMu.RLock()
	defer d.b.eventsMu.RUnlock()
	ev := d.b.events[e]
	if ev == nil {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "event %#x is not a live event", uint64(e))
	}
	cu, evcu := st.cu, ev.cu
	if ev.dev.g == d.g {
		// One executor: the wait is queued after the event's records.
		return d.submit(op, func() error { return d.drv.StreamWaitEvent(cu, evcu) })
	}
	// The event's records are queued on another executor: let them reach
	// the driver, then queue the wait before the event can be destroyed
	// (EventDestroy waits for eventsMu).
	if err := ev.dev.barrier(op); err != nil {
		return err
	}
	return d.do(op, func() error { return d.drv.StreamWaitEvent(cu, evcu) })
}

// ownEventLocked returns e if it is a live event of this Device; the caller
// holds eventsMu.
func (d *DeviceContext) ownEventLocked(op string, e backend.Event) (*event, error) {
	ev := d.b.events[e]
	if ev == nil || ev.dev != d {
		return nil, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "event %#x is not a live event of this device", uint64(e))
	}
	return ev, nil
}

// Event flags the driver accepts.
const eventFlags = backend.EventBlockingSync | backend.EventDisableTiming | backend.EventInterprocess

// EventCreate creates an event (cuEventCreate).
func (d *DeviceContext) EventCreate(flags uint32) (backend.Event, error) {
	const op = "EventCreate"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	if flags&^eventFlags != 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "unknown event flags %#x", flags)
	}
	if flags&backend.EventInterprocess != 0 && flags&backend.EventDisableTiming == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "an interprocess event must disable timing")
	}
	var cu Event
	err := d.do(op, func() error {
		var err error
		cu, err = d.drv.EventCreate(flags)
		return err
	})
	if err != nil {
		return 0, err
	}
	h := backend.Event(eventBase + d.b.nextEv.Add(1))
	d.b.eventsMu.Lock()
	d.b.events[h] = &event{dev: d, cu: cu, flags: flags}
	d.b.eventsMu.Unlock()
	return h, nil
}

// EventRecord captures in e the work queued on s so far.
func (d *DeviceContext) EventRecord(e backend.Event, s backend.Stream) error {
	const op = "EventRecord"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil {
		return err
	}
	d.b.eventsMu.RLock()
	defer d.b.eventsMu.RUnlock()
	ev, err := d.ownEventLocked(op, e)
	if err != nil {
		return err
	}
	cu, evcu := st.cu, ev.cu
	return d.submit(op, func() error { return d.drv.EventRecord(evcu, cu) })
}

// EventQuery returns nil if e's capture has completed (or e was never
// recorded), and cudaErrorNotReady if not.
func (d *DeviceContext) EventQuery(e backend.Event) error {
	const op = "EventQuery"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	d.b.eventsMu.RLock()
	defer d.b.eventsMu.RUnlock()
	ev, err := d.ownEventLocked(op, e)
	if err != nil {
		return err
	}
	if err := d.reported(op); err != nil {
		return err
	}
	err = d.do(op, func() error { return d.drv.EventQuery(ev.cu) })
	d.g.acquire()
	return err
}

// EventSynchronize waits for e's capture, or ctx.
func (d *DeviceContext) EventSynchronize(ctx context.Context, e backend.Event) error {
	const op = "EventSynchronize"
	if err := d.enter(op); err != nil {
		return err
	}
	d.b.eventsMu.RLock()
	ev, err := d.ownEventLocked(op, e)
	if err != nil {
		d.b.eventsMu.RUnlock()
		d.mu.RUnlock()
		return err
	}
	if err := ctx.Err(); err != nil {
		d.b.eventsMu.RUnlock()
		d.mu.RUnlock()
		return context.Cause(ctx)
	}
	// The fence captures e's current record (cuStreamWaitEvent holds it at
	// the time of the call), and stays valid if e is destroyed meanwhile.
	var fence Event
	err = d.do(op, func() error {
		f, err := d.g.events.get()
		if err != nil {
			return err
		}
		if err := d.drv.StreamWaitEvent(d.g.syncStream, ev.cu); err != nil {
			d.g.events.put(f)
			return err
		}
		if err := d.drv.EventRecord(f, d.g.syncStream); err != nil {
			d.drv.EventDestroy(f)
			return err
		}
		fence = f
		return nil
	})
	d.b.eventsMu.RUnlock() // held until the fence was queued: EventDestroy waited
	if err != nil {
		d.mu.RUnlock()
		return err
	}
	ch := d.startWait(func() error {
		err := d.drv.EventSynchronize(fence)
		d.g.events.put(fence)
		return err
	})
	d.mu.RUnlock()
	return d.await(ctx, op, ch)
}

// EventElapsedTime returns the milliseconds between two completed records.
func (d *DeviceContext) EventElapsedTime(start, end backend.Event) (float32, error) {
	const op = "EventElapsedTime"
	if err := d.enter(op); err != nil {
		return 0, err
	}
	defer d.mu.RUnlock()
	d.b.eventsMu.RLock()
	defer d.b.eventsMu.RUnlock()
	a, err := d.ownEventLocked(op, start)
	if err != nil {
		return 0, err
	}
	b, err := d.ownEventLocked(op, end)
	if err != nil {
		return 0, err
	}
	if err := d.reported(op); err != nil {
		return 0, err
	}
	var ms float32
	err = d.do(op, func() error {
		var err error
		ms, err = d.drv.EventElapsedTime(a.cu, b.cu)
		return err
	})
	return ms, err
}

// EventDestroy destroys e; its pending records complete.
func (d *DeviceContext) EventDestroy(e backend.Event) error {
	const op = "EventDestroy"
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	d.b.eventsMu.Lock()
	defer d.b.eventsMu.Unlock()
	ev, err := d.ownEventLocked(op, e)
	if err != nil {
		return err
	}
	delete(d.b.events, e)
	cu := ev.cu
	return d.submit(op, func() error { return d.drv.EventDestroy(cu) })
}

// Synchronize waits for the work queued on every stream of the context
// (cuCtxSynchronize: this also waits for other Devices on the same GPU).
func (d *DeviceContext) Synchronize(ctx context.Context) error {
	const op = "Synchronize"
	if err := d.enter(op); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		d.mu.RUnlock()
		return context.Cause(ctx)
	}
	if err := d.barrier(op); err != nil {
		d.mu.RUnlock()
		return err
	}
	ch := d.startWait(d.drv.CtxSynchronize)
	d.mu.RUnlock()
	return d.await(ctx, op, ch)
}

// Close waits for the queued work, then destroys the Device's streams,
// events and modules, frees its memory and window, and releases the GPU's
// context if no other Device uses it.
func (d *DeviceContext) Close() error {
	const op = "Close"
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device already closed")
	}
	d.closed = true
	d.gone.Store(true)
	streams := make([]*stream, 0, len(d.streams))
	for _, st := range d.streams {
		streams = append(streams, st)
	}
	d.streams = nil
	d.mu.Unlock()

	if d.g.exec.Do(func() error { return nil }) == nil && d.g.sticky.Load() == 0 {
		d.g.poison(<-d.startWait(d.drv.CtxSynchronize))
	}
	d.waiters.Wait()

	d.b.eventsMu.Lock()
	var events []Event
	for h, ev := range d.b.events {
		if ev.dev == d {
			events = append(events, ev.cu)
			delete(d.b.events, h)
		}
	}
	d.b.eventsMu.Unlock()

	d.kernMu.Lock()
	modules := d.modules
	d.modules, d.functions = nil, nil
	d.kernMu.Unlock()

	d.memMu.Lock()
	live := d.live
	d.live = nil
	d.index.Store(&[]*allocation{})
	d.used = 0
	d.memMu.Unlock()

	d.g.exec.Do(func() error {
		for _, st := range streams {
			if st.slot != nil {
				d.g.slots.put(st.slot)
			}
			d.drv.StreamDestroy(st.cu)
		}
		if d.legacy.slot != nil {
			d.g.slots.put(d.legacy.slot)
		}
		for _, ev := range events {
			d.drv.EventDestroy(ev)
		}
		for m := range modules {
			d.drv.ModuleUnload(m)
		}
		for _, a := range live {
			if a.pl.slab == nil {
				d.arena.release(a.pl)
			}
		}
		d.arena.releaseAll()
		d.drv.MemAddressFree(DevicePtr(d.spec.WindowBase), d.spec.WindowSize)
		d.g.staging.reap()
		d.freeMappedOnThread()
		return nil
	})
	d.b.forget(d)
	return nil
}

// Spec returns the spec the Device was opened with, MemoryQuota resolved.
func (d *DeviceContext) Spec() backend.DeviceSpec { return d.spec }
