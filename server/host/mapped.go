package host

import (
	"sort"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

var _ backend.HostMapper = (*Device)(nil)

// mappedAlign is the alignment of HostAlloc's buffers.
const mappedAlign = 64

// mappedBuf is one HostAlloc buffer: the host backend's device memory is
// host memory, so a kernel reaches a mapped buffer through its address.
type mappedBuf struct {
	base uint64
	mem  []byte
}

// HostAlloc allocates n bytes of host memory that Reduce and Divide
// accept, at its own address. It is not device memory: Owns reports false
// for it.
func (d *Device) HostAlloc(n uint64) (backend.HostBuffer, error) {
	const op = "HostAlloc"
	if err := d.check(op); err != nil {
		return backend.HostBuffer{}, err
	}
	if n == 0 || n > maxMapped {
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.InvalidValue, "size %d out of range", n)
	}
	raw := make([]byte, n+mappedAlign)
	skip := (mappedAlign - uint64(uintptr(unsafe.Pointer(&raw[0])))%mappedAlign) % mappedAlign
	mem := raw[skip : skip+n : skip+n]
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	if d.closed.Load() {
		return backend.HostBuffer{}, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].base > base })
	d.mapped = append(d.mapped, mappedBuf{})
	copy(d.mapped[i+1:], d.mapped[i:])
	d.mapped[i] = mappedBuf{base: base, mem: mem}
	return backend.HostBuffer{Bytes: mem, Ptr: backend.DevicePtr(base)}, nil
}

// maxMapped bounds one HostAlloc (1 TiB), so that sizes from a bad
// caller fail cleanly instead of exhausting memory.
const maxMapped = 1 << 40

// HostFree forgets b. Reductions already queued hold their own slices of
// it, so its memory stays valid for them until they have run.
func (d *Device) HostFree(b backend.HostBuffer) error {
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].base >= uint64(b.Ptr) })
	if b.Ptr == 0 || i == len(d.mapped) || d.mapped[i].base != uint64(b.Ptr) {
		return backend.Errorf(name, "HostFree", cudaerr.InvalidValue, "%#x is not a mapped host buffer of this device", uint64(b.Ptr))
	}
	d.mapped = append(d.mapped[:i], d.mapped[i+1:]...)
	return nil
}

// lookupMapped returns the mapped host memory standing for [p, p+n), n > 0.
func (d *Device) lookupMapped(p backend.DevicePtr, n uint64) ([]byte, bool) {
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	i := sort.Search(len(d.mapped), func(i int) bool { return d.mapped[i].base > uint64(p) })
	if i == 0 {
		return nil, false
	}
	m := d.mapped[i-1]
	off := uint64(p) - m.base
	if off >= uint64(len(m.mem)) || n > uint64(len(m.mem))-off {
		return nil, false
	}
	return m.mem[off : off+n : off+n], true
}

// dropMapped forgets every mapped buffer; Close calls it.
func (d *Device) dropMapped() {
	d.mapMu.Lock()
	d.mapped = nil
	d.mapMu.Unlock()
}
