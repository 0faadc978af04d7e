package host

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// queueDepth is the number of operations a stream holds before an enqueue
// blocks, as a GPU's push buffer fills: the buffer lets callers run ahead of
// the device, the bound keeps a runaway producer from eating the host.
const queueDepth = 256

// taskKind says what a task does.
type taskKind uint8

const (
	opWait     taskKind = iota // nothing beyond its dependency
	opMemset                   // fill dst with val, elem bytes at a time
	opCopy                     // copy src to dst
	opHostFunc                 // call fn
	opRecord                   // timestamp ev
	opKernel                   // run kern; a non-zero result poisons the Device
)

// dep is a dependency: s has completed seq operations.
type dep struct {
	s   *stream
	seq uint64
}

// task is one queued operation. It is passed by value through the stream's
// channel, so enqueuing allocates nothing.
type task struct {
	kind taskKind
	elem uint8                // opMemset: 1, 2 or 4
	val  uint32               // opMemset
	dst  []byte               // opMemset, opCopy
	src  []byte               // opCopy
	fn   func()               // opHostFunc
	kern func() cudaerr.Error // opKernel
	ev   *event               // opRecord
	dep  dep                  // waited for before the op runs; dep.s nil: none
}

// stream is an ordered queue of operations run by its own goroutine.
//
// Operations are numbered from 1 in enqueue order: enq counts those
// enqueued, done those completed, so "all work enqueued on s before now has
// completed" is s.done >= s.enq (read now).
type stream struct {
	dev      *Device
	handle   backend.Stream
	blocking bool // takes part in the legacy stream's implicit synchronization
	priority int  // clamped; recorded, not used for scheduling

	// lk serializes enqueues and guards closed: the Device's legacyMu for
	// the legacy and blocking streams, mu for non-blocking ones.
	lk     *sync.Mutex
	mu     sync.Mutex
	closed bool // no more enqueues; ch is closed

	ch   chan task
	enq  atomic.Uint64 // written under lk only
	done atomic.Uint64 // written by the worker only

	// Waiters for done: waiters counts them, so that the worker signals only
	// when someone waits; nch, guarded by nmu, is closed at the next
	// completion and replaced.
	waiters atomic.Int32
	nmu     sync.Mutex
	nch     chan struct{}
}

func newStream(d *Device, h backend.Stream, blocking bool, priority int) *stream {
	s := &stream{dev: d, handle: h, blocking: blocking, priority: priority, ch: make(chan task, queueDepth)}
	s.lk = &s.mu
	if blocking {
		s.lk = &d.legacyMu
	}
	return s
}

// run executes the stream's operations until the stream is shut and
// drained. After a sticky fault it drops them, still counting them done so
// that waiters return.
func (s *stream) run() {
	defer s.exit()
	for o := range s.ch {
		if o.dep.s != nil {
			// The dependency is work enqueued earlier, which always
			// completes; without a deadline the wait cannot fail.
			_ = o.dep.s.waitDone(context.Background(), o.dep.seq)
		}
		if s.dev.sticky.Load() == 0 {
			s.exec(&o, s.done.Load()+1)
		}
		s.complete()
	}
}

// exec runs o, the stream's seq-th operation.
func (s *stream) exec(o *task, seq uint64) {
	switch o.kind {
	case opMemset:
		fill(o.dst, o.val, int(o.elem))
	case opCopy:
		copy(o.dst, o.src)
	case opHostFunc:
		o.fn()
	case opRecord:
		o.ev.stamp(s, seq, s.dev.b.now())
	case opKernel:
		if code := o.kern(); code != cudaerr.Success {
			s.dev.sticky.CompareAndSwap(0, int32(code))
		}
	}
}

// fill sets dst to v repeated, v being elem bytes wide (little-endian). It
// writes one element and doubles the filled prefix with copy, which runs at
// memmove speed.
func fill(dst []byte, v uint32, elem int) {
	if len(dst) == 0 {
		return
	}
	switch elem {
	case 1:
		dst[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(dst, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(dst, v)
	}
	for n := elem; n < len(dst); n *= 2 {
		copy(dst[n:], dst[:n])
	}
}

// complete counts one more operation done and wakes the waiters.
func (s *stream) complete() {
	s.done.Add(1)
	if s.waiters.Load() > 0 {
		s.nmu.Lock()
		if s.nch != nil {
			close(s.nch)
			s.nch = nil
		}
		s.nmu.Unlock()
	}
}

// waitDone blocks until s has completed seq operations, or ctx is done.
//
// The waiter counts itself in waiters before it reads done, and complete
// adds to done before it reads waiters, so one of them sees the other: a
// waiter never sleeps through the completion it waits for.
func (s *stream) waitDone(ctx context.Context, seq uint64) error {
	if s.done.Load() >= seq {
		return nil
	}
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	for {
		s.nmu.Lock()
		if s.nch == nil {
			s.nch = make(chan struct{})
		}
		ch := s.nch
		s.nmu.Unlock()
		if s.done.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// idle reports whether every operation enqueued on s has completed.
func (s *stream) idle() bool { return s.done.Load() >= s.enq.Load() }

// push appends o to the queue and returns its number. s.lk must be held.
func (s *stream) push(o task) uint64 {
	seq := s.enq.Add(1)
	s.ch <- o
	return seq
}

// shut stops enqueues on s; its worker drains what is queued and exits.
func (s *stream) shut() {
	s.lk.Lock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
	s.lk.Unlock()
}

// exit unregisters the drained stream from its Device.
func (s *stream) exit() {
	d := s.dev
	if s.blocking && s != d.legacy {
		d.legacyMu.Lock()
		for i, b := range d.blocking {
			if b == s {
				d.blocking = append(d.blocking[:i], d.blocking[i+1:]...)
				break
			}
		}
		d.legacyMu.Unlock()
	}
	d.streamsMu.Lock()
	delete(d.all, s)
	d.streamsMu.Unlock()
	d.workers.Done()
}

// enqueue appends o to s, adding the legacy stream's implicit
// synchronization: on the legacy stream, o waits for the work enqueued so
// far on every blocking stream; on a blocking stream, for the work enqueued
// so far on the legacy stream. Wait operations take no implicit dependency:
// the operations after them do.
func (d *Device) enqueue(opName string, s *stream, o task) error {
	s.lk.Lock()
	defer s.lk.Unlock()
	if s.closed {
		if d.closed.Load() {
			return backend.Errorf(name, opName, cudaerr.ContextIsDestroyed, "")
		}
		return backend.Errorf(name, opName, cudaerr.InvalidResourceHandle, "stream %#x was destroyed", uint64(s.handle))
	}
	if s.blocking && o.kind != opWait {
		if s == d.legacy {
			for _, b := range d.blocking {
				if t := b.enq.Load(); b.done.Load() < t {
					s.push(task{kind: opWait, dep: dep{b, t}})
				}
			}
		} else if l := d.legacy; !l.idle() {
			// Only wait operations carry a dependency of their own.
			o.dep = dep{l, l.enq.Load()}
		}
	}
	if o.kind == opRecord {
		// Publish the record before the worker can reach it.
		o.ev.setRecord(s, s.enq.Load()+1)
	}
	s.push(o)
	return nil
}

// stream returns the live stream h of this Device.
func (d *Device) stream(op string, h backend.Stream) (*stream, error) {
	if err := d.check(op); err != nil {
		return nil, err
	}
	if h == backend.LegacyStream {
		return d.legacy, nil
	}
	if s := (*d.streams.Load())[h]; s != nil {
		return s, nil
	}
	return nil, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a stream of this device", uint64(h))
}

// StreamCreate creates a stream run by its own goroutine.
func (d *Device) StreamCreate(flags uint32, priority int) (backend.Stream, error) {
	const op = "StreamCreate"
	if err := d.check(op); err != nil {
		return 0, err
	}
	if flags&^backend.StreamNonBlocking != 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "unknown stream flags %#x", flags)
	}
	priority = max(backend.StreamPriorityGreatest, min(backend.StreamPriorityLeast, priority))
	blocking := flags&backend.StreamNonBlocking == 0
	s := newStream(d, backend.Stream(d.handle()), blocking, priority)

	d.streamsMu.Lock()
	defer d.streamsMu.Unlock()
	if d.closed.Load() {
		return 0, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	next := make(map[backend.Stream]*stream, len(*d.streams.Load())+1)
	for h, o := range *d.streams.Load() {
		next[h] = o
	}
	next[s.handle] = s
	d.streams.Store(&next)
	d.all[s] = struct{}{}
	if blocking {
		d.legacyMu.Lock()
		d.blocking = append(d.blocking, s)
		d.legacyMu.Unlock()
	}
	d.workers.Add(1)
	go s.run()
	return s.handle, nil
}

// StreamDestroy invalidates h at once; its queued work still runs.
func (d *Device) StreamDestroy(h backend.Stream) error {
	const op = "StreamDestroy"
	if err := d.check(op); err != nil {
		return err
	}
	d.streamsMu.Lock()
	s := (*d.streams.Load())[h]
	if s == nil {
		d.streamsMu.Unlock()
		if h == backend.LegacyStream {
			return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "the legacy default stream cannot be destroyed")
		}
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not a stream of this device", uint64(h))
	}
	next := make(map[backend.Stream]*stream, len(*d.streams.Load()))
	for k, o := range *d.streams.Load() {
		if k != h {
			next[k] = o
		}
	}
	d.streams.Store(&next)
	d.streamsMu.Unlock()
	s.shut()
	return nil
}

// StreamSynchronize waits for the work enqueued on h before the call.
func (d *Device) StreamSynchronize(ctx context.Context, h backend.Stream) error {
	const op = "StreamSynchronize"
	s, err := d.stream(op, h)
	if err != nil {
		return err
	}
	if err := s.waitDone(ctx, s.enq.Load()); err != nil {
		return err
	}
	return d.stickyErr(op)
}

// StreamQuery reports whether all work enqueued on h has completed.
func (d *Device) StreamQuery(h backend.Stream) error {
	const op = "StreamQuery"
	s, err := d.stream(op, h)
	if err != nil {
		return err
	}
	if !s.idle() {
		return backend.Errorf(name, op, cudaerr.NotReady, "")
	}
	return d.stickyErr(op)
}

// StreamWaitEvent makes later work on h wait for e's most recent record.
func (d *Device) StreamWaitEvent(h backend.Stream, e backend.Event) error {
	const op = "StreamWaitEvent"
	s, err := d.stream(op, h)
	if err != nil {
		return err
	}
	ev := d.b.event(e)
	if ev == nil {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not an event of this backend", uint64(e))
	}
	rs, seq := ev.record()
	if rs == nil || rs.done.Load() >= seq {
		return nil // nothing to wait for
	}
	return d.enqueue(op, s, task{kind: opWait, dep: dep{rs, seq}})
}
