package host

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// Device is one context on an emulated device: allocations in host memory
// at addresses of its window, streams run by goroutines, events. Backend.Open
// creates it; it implements backend.Device.
type Device struct {
	b     *Backend
	id    uint32
	spec  backend.DeviceSpec // MemoryQuota resolved to bytes
	phys  *physical
	quota uint64

	closed atomic.Bool
	sticky atomic.Int32 // the cudaerr.Error of a sticky fault, 0 while healthy

	nextHandle atomic.Uint64 // local part of stream and event handles

	// allocs is the sorted allocation index. Copy-on-write under memMu, so
	// pointer lookups (every copy and memset) take no lock.
	allocs atomic.Pointer[[]*allocation]
	memMu  sync.Mutex // guards used and writes of allocs
	used   uint64     // bytes reserved against quota

	// legacyMu serializes enqueues on the legacy stream and the blocking
	// streams, so that the dependencies the legacy stream's implicit
	// synchronization adds follow one total order (and so never form a
	// cycle). It guards blocking, and is the enqueue lock of those streams.
	legacyMu sync.Mutex
	blocking []*stream // blocking streams whose worker runs, draining ones included
	legacy   *stream

	// streams maps live created streams' handles to them. Copy-on-write
	// under streamsMu, so lookups take no lock.
	streams   atomic.Pointer[map[backend.Stream]*stream]
	streamsMu sync.Mutex           // guards all and writes of streams
	all       map[*stream]struct{} // every stream whose worker runs
	workers   sync.WaitGroup       // one per stream worker

	eventsMu sync.RWMutex // guards events
	events   map[backend.Event]*event

	kern kernelTable // modules and functions (kernels.go)

	mapMu  sync.Mutex  // guards mapped
	mapped []mappedBuf // HostAlloc buffers, by base (mapped.go)
}

var _ backend.Device = (*Device)(nil)

func newDevice(b *Backend, id uint32, spec backend.DeviceSpec, phys *physical) *Device {
	d := &Device{
		b:      b,
		id:     id,
		spec:   spec,
		phys:   phys,
		quota:  spec.MemoryQuota,
		all:    make(map[*stream]struct{}),
		events: make(map[backend.Event]*event),
		kern:   kernelTable{modules: make(map[backend.Module]*module), funcs: make(map[backend.Function]*function)},
	}
	d.allocs.Store(&[]*allocation{})
	d.streams.Store(&map[backend.Stream]*stream{})
	d.legacy = newStream(d, backend.LegacyStream, true, backend.StreamPriorityLeast)
	d.all[d.legacy] = struct{}{}
	d.workers.Add(1)
	go d.legacy.run()
	return d
}

// handle returns a fresh stream or event handle: the device id in the top
// bits, so that a handle names its Device, and a counter below.
func (d *Device) handle() uint64 {
	return uint64(d.id)<<handleShift | d.nextHandle.Add(1)&(1<<handleShift-1)
}

// check returns the error every call but Owns and Close gets on a closed or
// faulted Device.
func (d *Device) check(op string) error {
	if d.closed.Load() {
		return backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	if c := d.sticky.Load(); c != 0 {
		return backend.Errorf(name, op, cudaerr.Error(c), "an earlier asynchronous operation failed")
	}
	return nil
}

// stickyErr returns the sticky fault as op's error, or nil: synchronizing
// calls report a fault that happened while they waited.
func (d *Device) stickyErr(op string) error {
	if c := d.sticky.Load(); c != 0 {
		return backend.Errorf(name, op, cudaerr.Error(c), "an earlier asynchronous operation failed")
	}
	return nil
}

// InjectFault makes the Device behave as a GPU context after a kernel
// faulted with code, which must be cudaerr.Sticky: queued work is dropped
// (host functions included) and every later call but Owns and Close fails
// with code. It exists so that the layers above can test how they handle a
// lost context without a GPU. Only the first fault is kept.
func (d *Device) InjectFault(code cudaerr.Error) error {
	if !cudaerr.Sticky(code) {
		return backend.Errorf(name, "InjectFault", cudaerr.InvalidValue, "%v does not poison a context", code.String())
	}
	if d.closed.Load() {
		return backend.Errorf(name, "InjectFault", cudaerr.ContextIsDestroyed, "")
	}
	d.sticky.CompareAndSwap(0, int32(code))
	return nil
}

// Spec returns the spec the Device was opened with, MemoryQuota resolved.
func (d *Device) Spec() backend.DeviceSpec { return d.spec }

// Synchronize waits for all work enqueued on the Device before the call.
func (d *Device) Synchronize(ctx context.Context) error {
	const op = "Synchronize"
	if err := d.check(op); err != nil {
		return err
	}
	type mark struct {
		s   *stream
		seq uint64
	}
	d.streamsMu.Lock()
	marks := make([]mark, 0, len(d.all))
	for s := range d.all {
		marks = append(marks, mark{s, s.enq.Load()})
	}
	d.streamsMu.Unlock()
	for _, m := range marks {
		if err := m.s.waitDone(ctx, m.seq); err != nil {
			return err
		}
	}
	return d.stickyErr(op)
}

// Close drains the work already enqueued, then releases every stream,
// event and allocation of the Device.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return backend.Errorf(name, "Close", cudaerr.ContextIsDestroyed, "device already closed")
	}
	// Calls that passed check before closed was set may still be running.
	// Stream creation rechecks closed under streamsMu, enqueues recheck the
	// stream's closed flag under its lock, and Malloc rechecks under memMu,
	// so after the three steps below nothing new can start.
	d.streamsMu.Lock()
	streams := make([]*stream, 0, len(d.all))
	for s := range d.all {
		streams = append(streams, s)
	}
	d.streams.Store(&map[backend.Stream]*stream{})
	d.streamsMu.Unlock()
	for _, s := range streams {
		s.shut()
	}
	d.workers.Wait()

	d.memMu.Lock()
	d.phys.release(d.used)
	d.used = 0
	d.allocs.Store(&[]*allocation{})
	d.memMu.Unlock()

	d.eventsMu.Lock()
	clear(d.events)
	d.eventsMu.Unlock()

	d.kern.mu.Lock()
	clear(d.kern.modules)
	clear(d.kern.funcs)
	d.kern.mu.Unlock()
	d.dropMapped()

	d.b.forget(d)
	return nil
}
