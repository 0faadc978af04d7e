package core

import (
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// StreamCreate creates a stream on dev and returns its handle.
func (s *Shim) StreamCreate(dev int, flags uint32, priority int) (uint64, error) {
	c, err := s.device(dev)
	if err != nil {
		return 0, err
	}
	if flags&^runtime.StreamNonBlocking != 0 {
		return 0, fmt.Errorf("core: stream flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	st, err := c.StreamCreate(dev, flags, priority)
	if err != nil {
		return 0, err
	}
	return s.streams.add(streamEntry{st: st, flags: flags, priority: clampPriority(priority)}), nil
}

// streamEntry is a stream the application created.
type streamEntry struct {
	st       runtime.Stream
	flags    uint32
	priority int
}

func clampPriority(p int) int {
	return min(max(p, runtime.StreamPriorityGreatest), runtime.StreamPriorityLeast)
}

// StreamDestroy destroys stream h.
func (s *Shim) StreamDestroy(h uint64) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	e, ok := s.streams.remove(h)
	if !ok {
		return fmt.Errorf("core: stream handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	s.streamDestroyed(h)
	return c.StreamDestroy(e.st)
}

// StreamSynchronize waits for stream h (0: dev's legacy stream). A
// capturing stream cannot be waited for: the call fails and invalidates
// the capture. Memory pools may release memory freed on the stream.
func (s *Shim) StreamSynchronize(dev int, h uint64) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	st, err := s.stream(dev, h)
	if err != nil {
		return err
	}
	if err := s.checkSync("cudaStreamSynchronize", dev, h); err != nil {
		return err
	}
	if err := c.StreamSynchronize(st); err != nil {
		return err
	}
	s.poolsSynchronized(c, st, false)
	return nil
}

// StreamQuery returns nil when stream h is idle, cudaErrorNotReady when
// not.
func (s *Shim) StreamQuery(dev int, h uint64) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	st, err := s.stream(dev, h)
	if err != nil {
		return err
	}
	if err := s.checkSync("cudaStreamQuery", dev, h); err != nil {
		return err
	}
	return c.StreamQuery(st)
}

// StreamWaitEvent makes later work of stream h wait for event e.
func (s *Shim) StreamWaitEvent(dev int, h, e uint64) error {
	return s.StreamWaitEventFlags(dev, h, e, 0)
}

// StreamWaitEventFlags is StreamWaitEvent with cudaStreamWaitEvent's flags
// (EventWaitExternal). An event recorded in a capturing stream makes h
// join that capture, or merges the event's dependencies into h's.
func (s *Shim) StreamWaitEventFlags(dev int, h, e uint64, flags uint32) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	st, err := s.stream(dev, h)
	if err != nil {
		return err
	}
	ev, ok := s.events.get(e)
	if !ok {
		return fmt.Errorf("core: event handle %#x: %w", e, cudaerr.InvalidResourceHandle)
	}
	if flags&^EventWaitExternal != 0 {
		return fmt.Errorf("core: stream wait flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	if s.graphs.active.Load() != 0 {
		if captured, err := s.captureStreamWait(dev, h, e, flags); captured || err != nil {
			return err
		}
	}
	return c.StreamWaitEvent(st, ev)
}

// StreamInfo returns the device, flags and priority of stream h.
func (s *Shim) StreamInfo(h uint64) (dev int, flags uint32, priority int, err error) {
	e, ok := s.streams.get(h)
	if !ok {
		return 0, 0, 0, fmt.Errorf("core: stream handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	return e.st.Device(), e.flags, e.priority, nil
}

// EventCreate creates an event on dev and returns its handle.
func (s *Shim) EventCreate(dev int, flags uint32) (uint64, error) {
	c, err := s.device(dev)
	if err != nil {
		return 0, err
	}
	if flags&^(runtime.EventBlockingSync|runtime.EventDisableTiming|runtime.EventInterprocess) != 0 {
		return 0, fmt.Errorf("core: event flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	ev, err := c.EventCreate(dev, flags)
	if err != nil {
		return 0, err
	}
	return s.events.add(ev), nil
}

func (s *Shim) event(e uint64) (runtime.Event, error) {
	ev, ok := s.events.get(e)
	if !ok {
		return runtime.Event{}, fmt.Errorf("core: event handle %#x: %w", e, cudaerr.InvalidResourceHandle)
	}
	return ev, nil
}

// EventRecord records event e on stream h (0: the legacy stream of dev).
func (s *Shim) EventRecord(e uint64, dev int, h uint64) error {
	return s.EventRecordFlags(e, dev, h, 0)
}

// EventRecordFlags is EventRecord with cudaEventRecordWithFlags' flags
// (EventRecordExternal). In a capturing stream the record is captured: the
// event stands for the stream's work so far in the capture.
func (s *Shim) EventRecordFlags(e uint64, dev int, h uint64, flags uint32) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	ev, err := s.event(e)
	if err != nil {
		return err
	}
	if h == 0 {
		// The NULL stream of the calling thread's device, which CUDA
		// requires to be the event's device.
		dev = ev.Device()
	}
	st, err := s.stream(dev, h)
	if err != nil {
		return err
	}
	if flags&^EventRecordExternal != 0 {
		return fmt.Errorf("core: event record flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	if s.graphs.active.Load() != 0 {
		if captured, err := s.captureEventRecord(e, dev, h, flags); captured || err != nil {
			return err
		}
	}
	return c.EventRecord(ev, st)
}

// EventQuery returns nil once event e's work is done, cudaErrorNotReady
// before.
func (s *Shim) EventQuery(e uint64) error {
	c, ev, err := s.waitable("cudaEventQuery", e)
	if err != nil {
		return err
	}
	return c.EventQuery(ev)
}

// EventSynchronize waits for event e.
func (s *Shim) EventSynchronize(e uint64) error {
	c, ev, err := s.waitable("cudaEventSynchronize", e)
	if err != nil {
		return err
	}
	return c.EventSynchronize(ev)
}

// waitable returns the client and event e for op, a call that waits for
// or queries e: refused for an event last recorded in a capture.
func (s *Shim) waitable(op string, e uint64) (*runtime.Client, runtime.Event, error) {
	c, err := s.Client()
	if err != nil {
		return nil, runtime.Event{}, err
	}
	ev, err := s.event(e)
	if err != nil {
		return nil, runtime.Event{}, err
	}
	if err := s.checkEvent(op, e); err != nil {
		return nil, runtime.Event{}, err
	}
	return c, ev, nil
}

// EventElapsedTime returns the milliseconds between two recorded events.
func (s *Shim) EventElapsedTime(start, end uint64) (float32, error) {
	c, err := s.Client()
	if err != nil {
		return 0, err
	}
	a, err := s.event(start)
	if err != nil {
		return 0, err
	}
	b, err := s.event(end)
	if err != nil {
		return 0, err
	}
	return c.EventElapsedTime(a, b)
}

// EventDestroy destroys event e.
func (s *Shim) EventDestroy(e uint64) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	ev, ok := s.events.remove(e)
	if !ok {
		return fmt.Errorf("core: event handle %#x: %w", e, cudaerr.InvalidResourceHandle)
	}
	s.eventDestroyed(e)
	return c.EventDestroy(ev)
}
