package worker

import (
	"context"
	"fmt"
	"sync"
	"unsafe"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/server/backend"
)

// Reductions of the collectives run on the rank's device: its Reducer
// kernels (the cuda backend's PTX kernels; the host backend's CPU loops)
// work in place on page-locked host memory the device has mapped
// (backend.HostMapper). The operation's staging buffer and the Comm's
// scratch buffers, into which messages from other workers arrive, are
// such memory, so a message is reduced where it landed: no copy to device
// memory and back, and no CPU time spent on the arithmetic, which on a
// busy worker competes with the transport.
//
// Below gpuReduceMin bytes a kernel launch and its synchronization cost
// more than the arithmetic, so the CPU reduces (the memory is host
// memory either way).
const gpuReduceMin = 64 << 10

// devReducer is a rank's collective.Reducer and ScratchAllocator over its
// device. Safe for concurrent use: the Comm's pipeline reduces several
// chunks at once.
type devReducer struct {
	dev backend.Device
	red backend.Reducer
	hm  backend.HostMapper
	s   backend.Stream // the rank's private stream
	ctx context.Context
	cw  *collWorker // counters

	mu    sync.Mutex           // guards the fields below
	bufs  []backend.HostBuffer // every live mapped buffer of this rank
	stage backend.HostBuffer   // the staging buffer kept between operations; Ptr 0 when none
}

var (
	_ collective.Reducer          = (*devReducer)(nil)
	_ collective.ScratchAllocator = (*devReducer)(nil)
)

// newDevReducer returns the device reducer of a rank on dev, or nil when
// dev cannot reduce mapped host memory (the Comm then reduces on the CPU).
func newDevReducer(ctx context.Context, cw *collWorker, dev backend.Device, s backend.Stream) *devReducer {
	red, ok1 := dev.(backend.Reducer)
	hm, ok2 := dev.(backend.HostMapper)
	if !ok1 || !ok2 {
		return nil
	}
	return &devReducer{dev: dev, red: red, hm: hm, s: s, ctx: ctx, cw: cw}
}

// keepStage is the largest staging buffer a rank keeps between
// operations; larger ones are freed after their operation.
const keepStage = 64 << 20

// staging returns a mapped buffer of at least n bytes (n > 0) for one
// operation; release gives it back.
func (r *devReducer) staging(n uint64) ([]byte, error) {
	r.mu.Lock()
	st := r.stage
	r.stage = backend.HostBuffer{}
	r.mu.Unlock()
	if st.Ptr != 0 && uint64(len(st.Bytes)) >= n {
		return st.Bytes[:n:n], nil
	}
	if st.Ptr != 0 {
		r.free(st)
	}
	size := n
	if n <= keepStage {
		size = max(n, 1<<20) // small operations share one buffer
	}
	b, err := r.alloc(size)
	if err != nil {
		return nil, err
	}
	return b.Bytes[:n:n], nil
}

// release gives back a buffer staging returned.
func (r *devReducer) release(b []byte) {
	hb, ok := r.find(b, true)
	if !ok {
		return
	}
	if len(hb.Bytes) > keepStage {
		r.free(hb)
		return
	}
	r.mu.Lock()
	old := r.stage
	r.stage = hb
	r.mu.Unlock()
	if old.Ptr != 0 {
		r.free(old)
	}
}

func (r *devReducer) alloc(n uint64) (backend.HostBuffer, error) {
	b, err := r.hm.HostAlloc(n)
	if err != nil {
		return backend.HostBuffer{}, err
	}
	r.mu.Lock()
	r.bufs = append(r.bufs, b)
	r.mu.Unlock()
	return b, nil
}

func (r *devReducer) free(b backend.HostBuffer) {
	r.mu.Lock()
	for i, x := range r.bufs {
		if x.Ptr == b.Ptr {
			r.bufs = append(r.bufs[:i], r.bufs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	_ = r.hm.HostFree(b)
}

// close frees every buffer; the rank's operations are over.
func (r *devReducer) close() {
	r.mu.Lock()
	bufs := r.bufs
	r.bufs, r.stage = nil, backend.HostBuffer{}
	r.mu.Unlock()
	for _, b := range bufs {
		_ = r.hm.HostFree(b)
	}
}

// find returns the mapped buffer holding b; whole: b must start it.
func (r *devReducer) find(b []byte, whole bool) (backend.HostBuffer, bool) {
	if len(b) == 0 {
		return backend.HostBuffer{}, false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.bufs {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(x.Bytes)))
		if whole {
			if p == base {
				return x, true
			}
			continue
		}
		if p >= base && p-base+uintptr(len(b)) <= uintptr(len(x.Bytes)) {
			return backend.HostBuffer{Bytes: b, Ptr: x.Ptr + backend.DevicePtr(p-base)}, true
		}
	}
	return backend.HostBuffer{}, false
}

// AllocScratch implements collective.ScratchAllocator.
func (r *devReducer) AllocScratch(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("worker: scratch of %d bytes", n)
	}
	b, err := r.alloc(uint64(n))
	if err != nil {
		return nil, err
	}
	return b.Bytes, nil
}

// FreeScratch implements collective.ScratchAllocator.
func (r *devReducer) FreeScratch(b []byte) {
	if hb, ok := r.find(b, true); ok {
		r.free(hb)
	}
}

// Reduce implements collective.Reducer: on the device for mapped buffers
// of gpuReduceMin bytes or more, on the CPU otherwise.
func (r *devReducer) Reduce(dst, src []byte, dt collective.DType, op collective.Op) error {
	if len(dst) >= gpuReduceMin && len(dst) == len(src) && dt.Valid() && op.Valid() && len(dst)%dt.Size() == 0 {
		d, ok1 := r.find(dst, false)
		s, ok2 := r.find(src, false)
		if ok1 && ok2 {
			if op == collective.Avg {
				op = collective.Sum // the Comm divides at the end
			}
			n := uint64(len(dst) / dt.Size())
			if err := r.red.Reduce(d.Ptr, s.Ptr, n, backend.DType(dt), backend.RedOp(op), r.s); err != nil {
				return err
			}
			r.cw.devReductions.Add(1)
			return r.dev.StreamSynchronize(r.ctx, r.s)
		}
	}
	r.cw.hostReductions.Add(1)
	return collective.CPUReducer{}.Reduce(dst, src, dt, op)
}

// Divide implements collective.Reducer.
func (r *devReducer) Divide(buf []byte, dt collective.DType, n int) error {
	if len(buf) >= gpuReduceMin && dt.Valid() && n >= 1 && len(buf)%dt.Size() == 0 {
		if b, ok := r.find(buf, false); ok {
			if err := r.red.Divide(b.Ptr, uint64(len(buf)/dt.Size()), backend.DType(dt), uint64(n), r.s); err != nil {
				return err
			}
			r.cw.devReductions.Add(1)
			return r.dev.StreamSynchronize(r.ctx, r.s)
		}
	}
	r.cw.hostReductions.Add(1)
	return collective.CPUReducer{}.Divide(buf, dt, n)
}

// Copy implements collective.Reducer: the buffers are host memory.
func (r *devReducer) Copy(dst, src []byte) error { return collective.CPUReducer{}.Copy(dst, src) }
