package core

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// Memcpy directions: the values of cudaMemcpyKind.
const (
	HostToHost     = 0
	HostToDevice   = 1
	DeviceToHost   = 2
	DeviceToDevice = 3
	Default        = 4 // inferred from the pointers (unified addressing)
)

// Malloc allocates size bytes on dev.
func (s *Shim) Malloc(dev int, size uint64) (uint64, error) {
	c, err := s.device(dev)
	if err != nil {
		return 0, err
	}
	return c.Malloc(dev, size)
}

// Free frees the allocation at ptr (0: nothing); memory a pool handed out
// (MallocAsync) leaves its pool.
func (s *Shim) Free(ptr uint64) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if ptr != 0 && s.pools.live.Load() != 0 {
		if done, err := s.freePoolBlock(c, ptr); done {
			return err
		}
	}
	return c.Free(ptr)
}

// MemGetInfo returns dev's free and total bytes.
func (s *Shim) MemGetInfo(dev int) (free, total uint64, err error) {
	c, err := s.device(dev)
	if err != nil {
		return 0, 0, err
	}
	return c.MemGetInfo(dev)
}

// stream returns the runtime stream for handle h (0: dev's legacy
// stream).
func (s *Shim) stream(dev int, h uint64) (runtime.Stream, error) {
	if h == 0 {
		return runtime.LegacyStream(dev), nil
	}
	e, ok := s.streams.get(h)
	if !ok {
		return runtime.Stream{}, fmt.Errorf("core: stream handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	return e.st, nil
}

// isDevice reports whether p is device memory: it lies in a device's
// window, or in a device variable whose address the application asked for
// (module globals live outside the windows, where the driver put them).
func (s *Shim) isDevice(p uintptr) bool {
	if _, ok := s.m.DeviceOf(uint64(p)); ok {
		return true
	}
	return s.symbols.contains(p)
}

// hostBytes is the n bytes of host memory at p.
func hostBytes(p unsafe.Pointer, n uint64) []byte {
	return unsafe.Slice((*byte)(p), n)
}

// Memcpy copies n bytes from src to dst in the direction kind (a
// cudaMemcpyKind), on stream (a handle; 0: the legacy stream of dev). A
// synchronous copy (async false) behaves as cudaMemcpy: it returns once
// host memory involved is done with, and, for a copy into host memory,
// once the data is there. An asynchronous one behaves as cudaMemcpyAsync:
// a device-to-host copy writes dst later, once the stream gets to it. On a
// capturing stream the copy becomes a node of the capture's graph.
func (s *Shim) Memcpy(dst, src unsafe.Pointer, n uint64, kind, dev int, stream uint64, async bool) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	if kind < HostToHost || kind > Default {
		return fmt.Errorf("core: memcpy kind %d: %w", kind, cudaerr.InvalidMemcpyDirection)
	}
	if n == 0 {
		return nil
	}
	actual, err := s.copyKind(dst, src, kind)
	if err != nil {
		return err
	}
	st, err := s.stream(dev, stream)
	if err != nil {
		return err
	}
	if s.graphs.active.Load() != 0 {
		if !async {
			if err := s.checkSync("cudaMemcpy", dev, 0); err != nil {
				return err
			}
		} else {
			o := nodeOp{kind: NodeMemcpy, dev: dev, dst: dst, src: src, n: n, copyKind: actual}
			if captured, err := s.captureOp("cudaMemcpyAsync", dev, stream, o); captured || err != nil {
				return err
			}
		}
	}
	return s.copyOn(c, dst, src, n, actual, st, async)
}

// copyKind returns the direction of a copy from src to dst by the
// pointers, checked against kind (a cudaMemcpyKind).
func (s *Shim) copyKind(dst, src unsafe.Pointer, kind int) (int, error) {
	if kind < HostToHost || kind > Default {
		return 0, fmt.Errorf("core: memcpy kind %d: %w", kind, cudaerr.InvalidMemcpyDirection)
	}
	dDev, sDev := s.isDevice(uintptr(dst)), s.isDevice(uintptr(src))
	actual := HostToHost
	switch {
	case dDev && sDev:
		actual = DeviceToDevice
	case dDev:
		actual = HostToDevice
	case sDev:
		actual = DeviceToHost
	}
	if kind != Default && kind != actual {
		// CUDA with unified addressing copies by the pointers' real
		// kinds; a wrong direction would take host memory for a device
		// address or the reverse, so refuse it.
		return 0, fmt.Errorf("core: memcpy kind %d does not match the pointers %p (device %v) and %p (device %v): %w",
			kind, dst, dDev, src, sDev, cudaerr.InvalidValue)
	}
	return actual, nil
}

// copyOn copies n bytes from src to dst in direction kind (as copyKind
// found it) on st.
func (s *Shim) copyOn(c *runtime.Client, dst, src unsafe.Pointer, n uint64, kind int, st runtime.Stream, async bool) error {
	switch kind {
	case HostToHost:
		if async {
			// Ordered with the stream, as CUDA orders it.
			if err := c.StreamSynchronize(st); err != nil {
				return err
			}
		}
		copy(hostBytes(dst, n), hostBytes(src, n))
		return nil
	case HostToDevice:
		if async {
			return c.MemcpyHtoDAsync(uint64(uintptr(dst)), hostBytes(src, n), st)
		}
		return c.MemcpyHtoD(uint64(uintptr(dst)), hostBytes(src, n))
	case DeviceToHost:
		if async {
			return c.MemcpyDtoHAsync(hostBytes(dst, n), uint64(uintptr(src)), st)
		}
		return c.MemcpyDtoH(hostBytes(dst, n), uint64(uintptr(src)))
	default:
		if async {
			return c.MemcpyDtoDAsync(uint64(uintptr(dst)), uint64(uintptr(src)), n, st)
		}
		return c.MemcpyDtoD(uint64(uintptr(dst)), uint64(uintptr(src)), n)
	}
}

// MemcpyPeer copies n bytes from src on srcDev to dst on dstDev.
func (s *Shim) MemcpyPeer(dst uint64, dstDev int, src uint64, srcDev int, n uint64, stream uint64, async bool) error {
	c, err := s.device(srcDev)
	if err != nil {
		return err
	}
	if !async {
		if err := s.checkSync("cudaMemcpyPeer", srcDev, 0); err != nil {
			return err
		}
		return c.MemcpyPeer(dst, dstDev, src, srcDev, n)
	}
	st, err := s.stream(srcDev, stream)
	if err != nil {
		return err
	}
	if err := s.refuseCaptured("cudaMemcpyPeerAsync", srcDev, stream); err != nil {
		return err
	}
	return c.MemcpyPeerAsync(dst, dstDev, src, srcDev, n, st)
}

// Memset sets n bytes at dst to value, on stream (a handle; 0: the legacy
// stream of dst's device, for a synchronous memset of dev's).
func (s *Shim) Memset(dst uint64, value int, n uint64, dev int, stream uint64, async bool) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	if s.graphs.active.Load() != 0 {
		if !async {
			if err := s.checkSync("cudaMemset", dev, 0); err != nil {
				return err
			}
		} else if n > 0 {
			o, err := s.memsetOp(MemsetParams{Dst: dst, Value: uint32(byte(value)), ElementSize: 1, Width: n, Height: 1})
			if err != nil {
				return err
			}
			if captured, err := s.captureOp("cudaMemsetAsync", dev, stream, o); captured || err != nil {
				return err
			}
		}
	}
	if !async || stream == 0 {
		return c.Memset(dst, byte(value), n)
	}
	st, err := s.stream(dev, stream)
	if err != nil {
		return err
	}
	return c.MemsetAsync(dst, byte(value), n, st)
}

// rangeTable is a set of disjoint address ranges: the page-locked host
// memory the application got from cudaMallocHost, cudaHostAlloc or
// cudaHostRegister (so that pointer queries report it as host memory, as
// CUDA does), or the device variables it asked the address of.
type rangeTable struct {
	mu    sync.RWMutex // guards bases and sizes
	bases []uintptr    // sorted
	sizes []uint64
}

// add records [p, p+size); it reports false, recording nothing, if the
// range overlaps a recorded one (same reports whether that one is exactly
// [p, p+size)).
func (t *rangeTable) add(p uintptr, size uint64) (ok, same bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, found := slices.BinarySearch(t.bases, p)
	if found {
		return false, t.sizes[i] == size
	}
	if (i > 0 && uint64(t.bases[i-1])+t.sizes[i-1] > uint64(p)) || (i < len(t.bases) && uint64(p)+size > uint64(t.bases[i])) {
		return false, false
	}
	t.bases = slices.Insert(t.bases, i, p)
	t.sizes = slices.Insert(t.sizes, i, size)
	return true, false
}

// remove forgets the range that starts at p.
func (t *rangeTable) remove(p uintptr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := slices.BinarySearch(t.bases, p)
	if !ok {
		return false
	}
	t.bases = slices.Delete(t.bases, i, i+1)
	t.sizes = slices.Delete(t.sizes, i, i+1)
	return true
}

func (t *rangeTable) contains(p uintptr) bool {
	_, _, ok := t.find(p)
	return ok
}

// find returns the recorded range holding p.
func (t *rangeTable) find(p uintptr) (base uintptr, size uint64, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	i, found := slices.BinarySearch(t.bases, p)
	if found {
		return p, t.sizes[i], true
	}
	if i > 0 && uint64(p-t.bases[i-1]) < t.sizes[i-1] {
		return t.bases[i-1], t.sizes[i-1], true
	}
	return 0, 0, false
}

// HostRegister records [p, p+size) as page-locked host memory.
func (s *Shim) HostRegister(p unsafe.Pointer, size uint64) error {
	if p == nil || size == 0 || uint64(uintptr(p))+size < uint64(uintptr(p)) {
		return fmt.Errorf("core: host register of %d bytes at %p: %w", size, p, cudaerr.InvalidValue)
	}
	if ok, _ := s.host.add(uintptr(p), size); !ok {
		return fmt.Errorf("core: host range %p+%d overlaps registered memory: %w", p, size, cudaerr.HostMemoryAlreadyRegistered)
	}
	return nil
}

// HostUnregister forgets the range HostRegister recorded at p.
func (s *Shim) HostUnregister(p unsafe.Pointer) error {
	if !s.host.remove(uintptr(p)) {
		return fmt.Errorf("core: %p is not registered host memory: %w", p, cudaerr.HostMemoryNotRegistered)
	}
	return nil
}

// PointerAttributes describes p as cudaPointerGetAttributes does.
// Page-locked host memory (HostRegister) is cudaMemoryTypeHost on the
// device dev (the caller's current device), other host memory
// cudaMemoryTypeUnregistered.
func (s *Shim) PointerAttributes(p unsafe.Pointer, dev int) (runtime.PointerAttributes, error) {
	c, err := s.Client()
	if err != nil {
		return runtime.PointerAttributes{}, err
	}
	if s.host.contains(uintptr(p)) {
		return runtime.PointerAttributes{Type: runtime.MemoryTypeHost, Device: dev,
			HostPointer: uint64(uintptr(p)), DevicePointer: uint64(uintptr(p))}, nil
	}
	return c.PointerGetAttributes(uint64(uintptr(p)))
}
