//go:build cgo

package cuda

import (
	"sort"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

var _ backend.HostMapper = (*DeviceContext)(nil)

// maxMapped bounds one HostAlloc (1 TiB), so that a bad size fails
// cleanly instead of asking the driver to pin the machine's memory.
const maxMapped = 1 << 40

// mappedBuf is one HostAlloc buffer: page-locked, portable and mapped
// into every context's address space (with unified addressing the
// device address equals the host one, but the driver is asked).
type mappedBuf struct {
	ptr DevicePtr
	mem []byte
}

// HostAlloc allocates n bytes of page-locked host memory mapped into the
// GPU's address space, for Reduce and Divide to work on in place.
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
		m = mappedBuf{ptr: p, mem: mem[:n:n]}
		return nil
	})
	if err != nil {
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.MemoryAllocation, "%d bytes of mapped host memory: %v", n, err)
	}
	d.mapMu.Lock()
	if d.gone.Load() {
		d.mapMu.Unlock()
		d.g.onThread(func() error { return d.drv.MemFreeHost(m.mem) })
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	}
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].ptr > m.ptr })
	d.mapped = append(d.mapped, mappedBuf{})
	copy(d.mapped[i+1:], d.mapped[i:])
	d.mapped[i] = m
	d.mapMu.Unlock()
	return backend.HostBuffer{Bytes: m.mem, Ptr: backend.DevicePtr(m.ptr)}, nil
}

// HostFree forgets b and frees it in the background once the context
// has drained, so that reductions queued before still find it mapped.
func (d *DeviceContext) HostFree(b backend.HostBuffer) error {
	d.mapMu.Lock()
	i, ok := d.mappedIndexLocked(DevicePtr(b.Ptr))
	if !ok {
		d.mapMu.Unlock()
		return backend.Errorf(name, "HostFree", cudaerr.InvalidValue, "%#x is not a mapped host buffer of this device", uint64(b.Ptr))
	}
	m := d.mapped[i]
	d.mapped = append(d.mapped[:i], d.mapped[i+1:]...)
	d.mapMu.Unlock()
	d.g.staging.freeLater([][]byte{m.mem}, true)
	return nil
}

func (d *DeviceContext) mappedIndexLocked(p DevicePtr) (int, bool) {
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].ptr >= p })
	return i, p != 0 && i < len(d.mapped) && d.mapped[i].ptr == p
}

// inMapped reports whether [p, p+n), n > 0, lies inside one mapped buffer.
func (d *DeviceContext) inMapped(p backend.DevicePtr, n uint64) bool {
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].ptr > DevicePtr(p) })
	if i == 0 {
		return false
	}
	m := d.mapped[i-1]
	off := uint64(p) - uint64(m.ptr)
	return off < uint64(len(m.mem)) && n <= uint64(len(m.mem))-off
}

// freeMapped frees every buffer still mapped; Close calls it after the
// context drained, on the executor.
func (d *DeviceContext) freeMappedOnThread() {
	d.mapMu.Lock()
	bufs := d.mapped
	d.mapped = nil
	d.mapMu.Unlock()
	for _, m := range bufs {
		d.drv.MemFreeHost(m.mem)
	}
}
