package host

import (
	"context"
	"sync"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// event captures a point of one stream: its most recent record is "the
// stream's first seq operations", complete once the stream's done reaches
// seq, and timestamped when the stream runs the record operation.
type event struct {
	handle backend.Event
	flags  uint32

	mu  sync.Mutex // guards the fields below
	s   *stream    // stream of the most recent record; nil: never recorded
	seq uint64     // number of the record operation in s
	ts  int64      // ns since the Backend's epoch, once the record ran
}

// setRecord makes the record operation seq of s the event's most recent
// record. It runs before that operation is queued.
func (e *event) setRecord(s *stream, seq uint64) {
	e.mu.Lock()
	e.s, e.seq, e.ts = s, seq, 0
	e.mu.Unlock()
}

// record returns the most recent record; s is nil if there is none.
func (e *event) record() (s *stream, seq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.s, e.seq
}

// stamp stores the time at which record operation seq of s ran, unless the
// event has been recorded again since.
func (e *event) stamp(s *stream, seq uint64, now int64) {
	e.mu.Lock()
	if e.s == s && e.seq == seq {
		e.ts = now
	}
	e.mu.Unlock()
}

// state returns whether the event was ever recorded, whether its record has
// completed and, if so, its timestamp. The worker stamps before it counts
// the record done, so a completed record is always stamped.
func (e *event) state() (recorded, complete bool, ts int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.s == nil {
		return false, false, 0
	}
	if e.s.done.Load() < e.seq {
		return true, false, 0
	}
	return true, true, e.ts
}

// event returns the live event h of any open Device of b, or nil.
func (b *Backend) event(h backend.Event) *event {
	d := b.device(uint32(uint64(h) >> handleShift))
	if d == nil {
		return nil
	}
	return d.lookupEvent(h)
}

func (d *Device) lookupEvent(h backend.Event) *event {
	d.eventsMu.RLock()
	defer d.eventsMu.RUnlock()
	return d.events[h]
}

// event returns the live event h of this Device.
func (d *Device) event(op string, h backend.Event) (*event, error) {
	if e := d.lookupEvent(h); e != nil {
		return e, nil
	}
	return nil, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not an event of this device", uint64(h))
}

// EventCreate creates an event.
func (d *Device) EventCreate(flags uint32) (backend.Event, error) {
	const op = "EventCreate"
	if err := d.check(op); err != nil {
		return 0, err
	}
	const known = backend.EventBlockingSync | backend.EventDisableTiming | backend.EventInterprocess
	if flags&^known != 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "unknown event flags %#x", flags)
	}
	if flags&backend.EventInterprocess != 0 && flags&backend.EventDisableTiming == 0 {
		return 0, backend.Errorf(name, op, cudaerr.InvalidValue, "an interprocess event must disable timing")
	}
	e := &event{handle: backend.Event(d.handle()), flags: flags}
	d.eventsMu.Lock()
	defer d.eventsMu.Unlock()
	if d.closed.Load() {
		return 0, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "")
	}
	d.events[e.handle] = e
	return e.handle, nil
}

// EventDestroy destroys h; pending records of it still complete.
func (d *Device) EventDestroy(h backend.Event) error {
	const op = "EventDestroy"
	if err := d.check(op); err != nil {
		return err
	}
	d.eventsMu.Lock()
	defer d.eventsMu.Unlock()
	if d.events[h] == nil {
		return backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "%#x is not an event of this device", uint64(h))
	}
	delete(d.events, h)
	return nil
}

// EventRecord captures in h the work enqueued on stream sh so far.
func (d *Device) EventRecord(h backend.Event, sh backend.Stream) error {
	const op = "EventRecord"
	s, err := d.stream(op, sh)
	if err != nil {
		return err
	}
	e, err := d.event(op, h)
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opRecord, ev: e})
}

// EventQuery reports whether the work h captured has completed.
func (d *Device) EventQuery(h backend.Event) error {
	const op = "EventQuery"
	if err := d.check(op); err != nil {
		return err
	}
	e, err := d.event(op, h)
	if err != nil {
		return err
	}
	if recorded, complete, _ := e.state(); recorded && !complete {
		return backend.Errorf(name, op, cudaerr.NotReady, "")
	}
	return d.stickyErr(op)
}

// EventSynchronize waits until the work h captured has completed.
func (d *Device) EventSynchronize(ctx context.Context, h backend.Event) error {
	const op = "EventSynchronize"
	if err := d.check(op); err != nil {
		return err
	}
	e, err := d.event(op, h)
	if err != nil {
		return err
	}
	if s, seq := e.record(); s != nil {
		if err := s.waitDone(ctx, seq); err != nil {
			return err
		}
	}
	return d.stickyErr(op)
}

// EventElapsedTime returns the milliseconds from start's record to end's.
func (d *Device) EventElapsedTime(start, end backend.Event) (float32, error) {
	const op = "EventElapsedTime"
	if err := d.check(op); err != nil {
		return 0, err
	}
	var ts [2]int64
	notReady := false
	for i, h := range [2]backend.Event{start, end} {
		e, err := d.event(op, h)
		if err != nil {
			return 0, err
		}
		if e.flags&backend.EventDisableTiming != 0 {
			return 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "event %#x was created with timing disabled", uint64(h))
		}
		recorded, complete, t := e.state()
		if !recorded {
			return 0, backend.Errorf(name, op, cudaerr.InvalidResourceHandle, "event %#x was never recorded", uint64(h))
		}
		notReady = notReady || !complete
		ts[i] = t
	}
	if notReady {
		return 0, backend.Errorf(name, op, cudaerr.NotReady, "")
	}
	if err := d.stickyErr(op); err != nil {
		return 0, err
	}
	return float32(float64(ts[1]-ts[0]) / 1e6), nil
}
