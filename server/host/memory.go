package host

import (
	"math"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// allocation is one Malloc: size bytes of host memory standing for
// [base, base+size), with reserved bytes of the window and the quota.
type allocation struct {
	base     uint64
	size     uint64 // as requested; accesses beyond it are rejected
	reserved uint64 // size rounded up to backend.Alignment
	mem      []byte
}

// find returns the allocation of list that contains p, or nil. list is
// sorted by base and its allocations do not overlap.
func find(list []*allocation, p uint64) *allocation {
	lo, hi := 0, len(list)
	for lo < hi { // first index whose base is > p
		m := int(uint(lo+hi) >> 1)
		if list[m].base <= p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return nil
	}
	if a := list[lo-1]; p-a.base < a.size {
		return a
	}
	return nil
}

// lookup returns the host memory standing for [p, p+n), n > 0, if that range
// lies inside one live allocation.
func (d *Device) lookup(p backend.DevicePtr, n uint64) ([]byte, bool) {
	a := find(*d.allocs.Load(), uint64(p))
	if a == nil {
		return nil, false
	}
	off := uint64(p) - a.base
	if n > a.size-off {
		return nil, false
	}
	return a.mem[off : off+n : off+n], true
}

// resolve is lookup with the error a copy or memset gets for a bad range.
func (d *Device) resolve(op, what string, p backend.DevicePtr, n uint64) ([]byte, error) {
	if b, ok := d.lookup(p, n); ok {
		return b, nil
	}
	return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "%s range [%#x, +%d) is not inside one allocation of this device", what, uint64(p), n)
}

// Owns reports whether [p, p+n) lies inside one live allocation.
func (d *Device) Owns(p backend.DevicePtr, n uint64) bool {
	if n == 0 {
		return find(*d.allocs.Load(), uint64(p)) != nil
	}
	_, ok := d.lookup(p, n)
	return ok
}

// Malloc allocates size bytes at the lowest free address of the window
// that fits them (first fit).
func (d *Device) Malloc(size uint64) (backend.DevicePtr, error) {
	const op = "Malloc"
	if err := d.check(op); err != nil {
		return 0, err
	}
	if size == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "size is zero")
	}
	if size > d.quota || size > math.MaxUint64-backend.Alignment {
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "%d bytes exceed the quota of %d", size, d.quota)
	}
	reserved := (size + backend.Alignment - 1) &^ (backend.Alignment - 1)

	d.memMu.Lock()
	defer d.memMu.Unlock()
	if d.closed.Load() {
		return 0, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	if reserved > d.quota-d.used {
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "%d bytes requested, %d of the quota of %d free", size, d.quota-d.used, d.quota)
	}
	list := *d.allocs.Load()
	base, at, ok := d.place(list, reserved)
	if !ok {
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "no %d-byte gap left in the address window", reserved)
	}
	if !d.phys.reserve(reserved) {
		return 0, backend.Errorf(name, op, cudaerr.MemoryAllocation, "device %d's memory is exhausted by its contexts", d.spec.Index)
	}
	a := &allocation{base: base, size: size, reserved: reserved, mem: make([]byte, size)}
	next := make([]*allocation, len(list)+1)
	copy(next, list[:at])
	next[at] = a
	copy(next[at+1:], list[at:])
	d.allocs.Store(&next)
	d.used += reserved
	return backend.DevicePtr(base), nil
}

// place finds the lowest address of the window where n bytes fit between
// the allocations of list, and the index the new allocation takes in list.
func (d *Device) place(list []*allocation, n uint64) (base uint64, at int, ok bool) {
	cur, end := d.spec.WindowBase, d.spec.WindowEnd()
	for i, a := range list {
		if a.base-cur >= n {
			return cur, i, true
		}
		cur = a.base + a.reserved
	}
	if end-cur >= n {
		return cur, len(list), true
	}
	return 0, 0, false
}

// Free releases the allocation that starts at p. Work already enqueued
// keeps its own reference to the memory, so Free need not wait for it: that
// work completes as though the memory were still allocated, and a later
// allocation at the same address gets fresh memory.
func (d *Device) Free(p backend.DevicePtr) error {
	const op = "Free"
	if err := d.check(op); err != nil {
		return err
	}
	if p == 0 {
		return nil
	}
	d.memMu.Lock()
	defer d.memMu.Unlock()
	list := *d.allocs.Load()
	a := find(list, uint64(p))
	switch {
	case a == nil:
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%#x is not an allocation of this device", uint64(p))
	case a.base != uint64(p):
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%#x lies inside the allocation at %#x, not at its start", uint64(p), a.base)
	}
	next := make([]*allocation, 0, len(list)-1)
	for _, o := range list {
		if o != a {
			next = append(next, o)
		}
	}
	d.allocs.Store(&next)
	d.used -= a.reserved
	d.phys.release(a.reserved)
	return nil
}

// MemGetInfo returns the bytes the Device can still allocate (the smaller
// of what its quota and its physical device have left) and its quota.
func (d *Device) MemGetInfo() (free, total uint64, err error) {
	if err := d.check("MemGetInfo"); err != nil {
		return 0, 0, err
	}
	d.memMu.Lock()
	free = d.quota - d.used
	d.memMu.Unlock()
	if u := d.phys.used.Load(); u <= d.phys.total {
		free = min(free, d.phys.total-u)
	}
	return free, d.quota, nil
}
