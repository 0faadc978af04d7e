//go:build cgo

package cuda

import (
	"sort"
	"sync"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

var _ backend.HostMapper = (*DeviceContext)(nil)

// maxMapped bounds one HostAlloc (1 TiB), so that a bad size fails
// cleanly instead of asking the driver to pin the machine's memory.
const maxMapped = 1 << 40

// mappedBuf is one HostAlloc buffer: page-locked, portable (every context
// of the process may use it) and mapped into the GPUs' address space.
// With unified addressing its device address is its host address, but
// the driver is asked.
type mappedBuf struct {
	host  uintptr   // address of mem
	ptr   DevicePtr // its device address
	mem   []byte
	owner *DeviceContext // freed when it closes
}

// mappedSet is a Backend's HostAlloc buffers. Being portable, a buffer
// one Device allocated serves the copies and reductions of every Device.
type mappedSet struct {
	mu     sync.Mutex
	byHost []mappedBuf // sorted by host
	byPtr  []mappedBuf // sorted by ptr
}

func (s *mappedSet) add(m mappedBuf) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.byHost), func(i int) bool { return s.byHost[i].host > m.host })
	s.byHost = append(s.byHost, mappedBuf{})
	copy(s.byHost[i+1:], s.byHost[i:])
	s.byHost[i] = m
	j := sort.Search(len(s.byPtr), func(i int) bool { return s.byPtr[i].ptr > m.ptr })
	s.byPtr = append(s.byPtr, mappedBuf{})
	copy(s.byPtr[j+1:], s.byPtr[j:])
	s.byPtr[j] = m
}

// remove takes out the buffer at device address p; ok false if none.
func (s *mappedSet) remove(p DevicePtr) (mappedBuf, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := sort.Search(len(s.byPtr), func(i int) bool { return s.byPtr[i].ptr >= p })
	if p == 0 || j == len(s.byPtr) || s.byPtr[j].ptr != p {
		return mappedBuf{}, false
	}
	m := s.byPtr[j]
	s.byPtr = append(s.byPtr[:j], s.byPtr[j+1:]...)
	i := sort.Search(len(s.byHost), func(i int) bool { return s.byHost[i].host >= m.host })
	s.byHost = append(s.byHost[:i], s.byHost[i+1:]...)
	return m, true
}

// removeOwned takes out every buffer owner allocated.
func (s *mappedSet) removeOwned(owner *DeviceContext) []mappedBuf {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mappedBuf
	keep := s.byPtr[:0]
	for _, m := range s.byPtr {
		if m.owner == owner {
			out = append(out, m)
		} else {
			keep = append(keep, m)
		}
	}
	s.byPtr = keep
	keepH := s.byHost[:0]
	for _, m := range s.byHost {
		if m.owner != owner {
			keepH = append(keepH, m)
		}
	}
	s.byHost = keepH
	return out
}

// holdsPtr reports whether [p, p+n), n > 0, lies inside one buffer.
func (s *mappedSet) holdsPtr(p backend.DevicePtr, n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := sort.Search(len(s.byPtr), func(i int) bool { return s.byPtr[i].ptr > DevicePtr(p) })
	if j == 0 {
		return false
	}
	m := s.byPtr[j-1]
	off := uint64(p) - uint64(m.ptr)
	return off < uint64(len(m.mem)) && n <= uint64(len(m.mem))-off
}

// holds reports whether b, non-empty, lies inside one buffer: the driver
// may then DMA straight to or from it.
func (s *mappedSet) holds(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	h := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.byHost), func(i int) bool { return s.byHost[i].host > h })
	if i == 0 {
		return false
	}
	m := s.byHost[i-1]
	off := h - m.host
	return off < uintptr(len(m.mem)) && uintptr(len(b)) <= uintptr(len(m.mem))-off
}

// HostAlloc allocates n bytes of page-locked host memory mapped into the
// GPUs' address space: Reduce and Divide work on it in place, and host
// copies to and from it go by DMA with no staging.
func (d *DeviceContext) HostAlloc(n uint64) (backend.HostBuffer, error) {
	const op = "HostAlloc"
	if err := d.enter(op); err != nil {
		return backend.HostBuffer{}, err
	}
	d.mu.RUnlock()
	if n == 0 || n > maxMapped {
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.InvalidValue, "size %d out of range", n)
	}
	var m mappedBuf
	err := d.g.onThread(func() error {
		mem, err := d.drv.MemHostAlloc(n, HostAllocPortable|HostAllocDeviceMap)
		if err != nil {
			return err
		}
		p, err := d.drv.MemHostGetDevicePointer(mem)
		if err != nil {
			d.drv.MemFreeHost(mem)
			return err
		}
		m = mappedBuf{host: uintptr(unsafe.Pointer(unsafe.SliceData(mem))), ptr: p, mem: mem[:n:n], owner: d}
		return nil
	})
	if err != nil {
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.MemoryAllocation, "%d bytes of mapped host memory: %v", n, err)
	}
	d.mu.RLock()
	closed := d.closed
	if !closed {
		d.b.mapped.add(m)
	}
	d.mu.RUnlock()
	if closed {
		d.g.onThread(func() error { return d.drv.MemFreeHost(m.mem) })
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	}
	return backend.HostBuffer{Bytes: m.mem, Ptr: backend.DevicePtr(m.ptr)}, nil
}

// HostFree forgets b and frees it in the background once the context
// has drained, so that work queued before still finds it mapped.
func (d *DeviceContext) HostFree(b backend.HostBuffer) error {
	m, ok := d.b.mapped.remove(DevicePtr(b.Ptr))
	if !ok {
		return backend.Errorf(name, "HostFree", cudaerr.InvalidValue, "%#x is not a mapped host buffer of this backend", uint64(b.Ptr))
	}
	if m.owner != nil && m.owner.g != d.g {
		// Freed through another GPU's Device: drain the owner's context.
		m.owner.g.staging.freeLater([][]byte{m.mem}, true)
		return nil
	}
	d.g.staging.freeLater([][]byte{m.mem}, true)
	return nil
}

// inMapped reports whether [p, p+n), n > 0, lies inside one mapped buffer.
func (d *DeviceContext) inMapped(p backend.DevicePtr, n uint64) bool {
	return d.b.mapped.holdsPtr(p, n)
}

// freeMappedOnThread frees the buffers this Device allocated; Close calls
// it after the context drained, on the executor.
func (d *DeviceContext) freeMappedOnThread() {
	for _, m := range d.b.mapped.removeOwned(d) {
		d.drv.MemFreeHost(m.mem)
	}
}
