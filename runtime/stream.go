package runtime

import (
	"fmt"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
)

// Stream creation flags (cudaStreamDefault, cudaStreamNonBlocking).
const (
	// StreamDefault creates a blocking stream: it synchronizes with the
	// device's legacy default stream.
	StreamDefault uint32 = 0x0
	// StreamNonBlocking creates a stream independent of the legacy
	// default stream.
	StreamNonBlocking uint32 = 0x1
)

// Stream priorities: lower numbers are higher priorities; others are
// clamped to this range.
const (
	StreamPriorityLeast    = 0
	StreamPriorityGreatest = -5
)

// Event creation flags (cudaEventDefault, cudaEventBlockingSync, ...).
const (
	EventDefault       uint32 = 0x0
	EventBlockingSync  uint32 = 0x1
	EventDisableTiming uint32 = 0x2
	EventInterprocess  uint32 = 0x4
)

// Stream is a stream of one logical device: a small value, compared with
// ==. The zero Stream is device 0's legacy default stream; LegacyStream(i)
// is device i's. A legacy stream passed with a pointer of another device
// stands for that device's legacy stream (as the NULL stream does in
// CUDA); any other stream orders work on its own device only.
type Stream struct {
	dev         int
	id          uint64 // the worker's handle; 0: legacy default stream
	nonBlocking bool   // created with StreamNonBlocking
}

// ownLegacy stands for the legacy stream of the device a call's pointer
// names (the synchronous calls' stream).
var ownLegacy = Stream{dev: -1}

// LegacyStream returns the legacy default stream of device dev (the NULL
// stream, cudaStreamLegacy).
func LegacyStream(dev int) Stream { return Stream{dev: dev} }

// Device returns the stream's logical device.
func (s Stream) Device() int { return s.dev }

// Handle returns the worker's handle of the stream; 0 for a legacy stream.
func (s Stream) Handle() uint64 { return s.id }

// IsLegacy reports whether s is a legacy default stream.
func (s Stream) IsLegacy() bool { return s.id == 0 }

func (s Stream) String() string {
	if s.id == 0 {
		return fmt.Sprintf("device %d legacy stream", s.dev)
	}
	return fmt.Sprintf("device %d stream %#x", s.dev, s.id)
}

// Event is an event of one logical device: a small value, compared with
// ==. The zero Event is not a valid event.
type Event struct {
	dev int
	id  uint64 // the worker's handle, never 0
}

// Device returns the event's logical device.
func (e Event) Device() int { return e.dev }

// Handle returns the worker's handle of the event.
func (e Event) Handle() uint64 { return e.id }

func (e Event) String() string { return fmt.Sprintf("device %d event %#x", e.dev, e.id) }

// eventKey names an event in the client's table of records waiting for
// D2H data.
type eventKey = Event

// StreamCreate creates a stream on device dev with flags (StreamDefault or
// StreamNonBlocking) and priority.
func (c *Client) StreamCreate(dev int, flags uint32, priority int) (Stream, error) {
	const op = "cudaStreamCreateWithPriority"
	d, err := c.device(op, dev)
	if err != nil {
		return Stream{}, err
	}
	id, _, err := d.s.roundTrip(calls.OpStreamCreate, &calls.Call{Dev: uint32(dev), Aux: uint64(flags), Aux2: uint64(int64(priority))})
	if err != nil {
		return Stream{}, opErr(op, dev, err)
	}
	if id == 0 {
		return Stream{}, opErr(op, dev, fmt.Errorf("%w (worker returned stream handle 0)", cudaerr.Unknown))
	}
	return Stream{dev: dev, id: id, nonBlocking: flags&StreamNonBlocking != 0}, nil
}

// StreamDestroy destroys s. Work already enqueued on it still runs. A bad
// handle is reported at the next synchronising call.
func (c *Client) StreamDestroy(s Stream) error {
	const op = "cudaStreamDestroy"
	d, err := c.device(op, s.dev)
	if err != nil {
		return err
	}
	if s.id == 0 {
		return opErr(op, s.dev, &detailError{code: cudaerr.InvalidResourceHandle, msg: "the legacy stream cannot be destroyed"})
	}
	return opErr(op, s.dev, d.s.async(calls.OpStreamDestroy, &calls.Call{Dev: uint32(s.dev), Stream: s.id}))
}

// StreamSynchronize waits until all work enqueued on s has completed,
// asynchronous D2H data included, and returns the first failure of the
// session's asynchronous calls not yet reported.
func (c *Client) StreamSynchronize(s Stream) error {
	const op = "cudaStreamSynchronize"
	d, err := c.device(op, s.dev)
	if err != nil {
		return err
	}
	return opErr(op, s.dev, c.syncStream(d, s.id))
}

// syncStream synchronizes stream id of d, then waits for its D2H data.
func (c *Client) syncStream(d *device, id uint64) error {
	if _, _, err := d.s.roundTrip(calls.OpStreamSynchronize, &calls.Call{Dev: uint32(d.idx), Stream: id}); err != nil {
		return err
	}
	wait(d.s.pending(d.idx, id, coverageOf(id)))
	return d.s.takeDeferred()
}

// StreamQuery returns nil if all work enqueued on s has completed (its D2H
// data included) and cudaErrorNotReady if not.
func (c *Client) StreamQuery(s Stream) error {
	const op = "cudaStreamQuery"
	d, err := c.device(op, s.dev)
	if err != nil {
		return err
	}
	if _, _, err := d.s.roundTrip(calls.OpStreamQuery, &calls.Call{Dev: uint32(s.dev), Stream: s.id}); err != nil {
		return opErr(op, s.dev, err)
	}
	if !allDone(d.s.pending(d.idx, s.id, coverageOf(s.id))) {
		return opErr(op, s.dev, cudaerr.NotReady)
	}
	return opErr(op, s.dev, d.s.takeDeferred())
}

// StreamWaitEvent makes work enqueued on s after the call wait for the
// work captured by e's latest record. e may belong to another device; if
// that device is served by another server, the call itself waits for the
// event (the host blocks, the order is kept).
func (c *Client) StreamWaitEvent(s Stream, e Event) error {
	const op = "cudaStreamWaitEvent"
	d, err := c.device(op, s.dev)
	if err != nil {
		return err
	}
	ed, err := c.device(op, e.dev)
	if err != nil {
		return err
	}
	if ed.s != d.s {
		return opErr(op, s.dev, c.syncEvent(ed, e))
	}
	return opErr(op, s.dev, d.s.async(calls.OpStreamWaitEvent, &calls.Call{Dev: uint32(s.dev), Dev2: uint32(e.dev), Stream: s.id, Event: e.id}))
}

// EventCreate creates an event on device dev with flags (a combination of
// the Event* flags).
func (c *Client) EventCreate(dev int, flags uint32) (Event, error) {
	const op = "cudaEventCreateWithFlags"
	d, err := c.device(op, dev)
	if err != nil {
		return Event{}, err
	}
	id, _, err := d.s.roundTrip(calls.OpEventCreate, &calls.Call{Dev: uint32(dev), Aux: uint64(flags)})
	if err != nil {
		return Event{}, opErr(op, dev, err)
	}
	if id == 0 {
		return Event{}, opErr(op, dev, fmt.Errorf("%w (worker returned event handle 0)", cudaerr.Unknown))
	}
	return Event{dev: dev, id: id}, nil
}

// EventRecord captures in e the work enqueued on s so far. s must be a
// stream of e's device (a legacy stream stands for that device's).
func (c *Client) EventRecord(e Event, s Stream) error {
	const op = "cudaEventRecord"
	d, err := c.device(op, e.dev)
	if err != nil {
		return err
	}
	st, err := c.streamFor(op, d, s)
	if err != nil {
		return err
	}
	stream := st.id
	// The record also covers the D2H data of s still on its way.
	pend := d.s.pending(d.idx, stream, coverageOf(stream))
	c.evMu.Lock()
	if len(pend) == 0 {
		delete(c.evPend, e)
	} else {
		c.evPend[e] = pend
	}
	c.evMu.Unlock()
	return opErr(op, e.dev, d.s.async(calls.OpEventRecord, &calls.Call{Dev: uint32(e.dev), Event: e.id, Stream: stream}))
}

// eventPending returns the D2H pieces e's last record waits for.
func (c *Client) eventPending(e Event) []*waiter {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	ws := c.evPend[e]
	if ws != nil && allDone(ws) {
		delete(c.evPend, e)
		return nil
	}
	return ws
}

// EventQuery returns nil if the work e captured has completed (or e was
// never recorded) and cudaErrorNotReady if not.
func (c *Client) EventQuery(e Event) error {
	const op = "cudaEventQuery"
	d, err := c.device(op, e.dev)
	if err != nil {
		return err
	}
	if _, _, err := d.s.roundTrip(calls.OpEventQuery, &calls.Call{Dev: uint32(e.dev), Event: e.id}); err != nil {
		return opErr(op, e.dev, err)
	}
	if c.eventPending(e) != nil {
		return opErr(op, e.dev, cudaerr.NotReady)
	}
	return opErr(op, e.dev, d.s.takeDeferred())
}

// EventSynchronize waits until the work e captured has completed, D2H data
// included.
func (c *Client) EventSynchronize(e Event) error {
	const op = "cudaEventSynchronize"
	d, err := c.device(op, e.dev)
	if err != nil {
		return err
	}
	return opErr(op, e.dev, c.syncEvent(d, e))
}

func (c *Client) syncEvent(d *device, e Event) error {
	if _, _, err := d.s.roundTrip(calls.OpEventSynchronize, &calls.Call{Dev: uint32(e.dev), Event: e.id}); err != nil {
		return err
	}
	wait(c.eventPending(e))
	return d.s.takeDeferred()
}

// EventElapsedTime returns the milliseconds between the completion of
// start's and end's latest records; both must belong to one device.
func (c *Client) EventElapsedTime(start, end Event) (float32, error) {
	const op = "cudaEventElapsedTime"
	d, err := c.device(op, start.dev)
	if err != nil {
		return 0, err
	}
	if end.dev != start.dev {
		return 0, opErr(op, start.dev, &detailError{code: cudaerr.InvalidResourceHandle,
			msg: fmt.Sprintf("events of devices %d and %d", start.dev, end.dev)})
	}
	v, _, err := d.s.roundTrip(calls.OpEventElapsedTime, &calls.Call{Dev: uint32(start.dev), Event: start.id, Event2: end.id})
	if err != nil {
		return 0, opErr(op, start.dev, err)
	}
	return calls.F32From(v), nil
}

// EventDestroy destroys e. A record still pending completes normally.
func (c *Client) EventDestroy(e Event) error {
	const op = "cudaEventDestroy"
	d, err := c.device(op, e.dev)
	if err != nil {
		return err
	}
	c.evMu.Lock()
	delete(c.evPend, e)
	c.evMu.Unlock()
	return opErr(op, e.dev, d.s.async(calls.OpEventDestroy, &calls.Call{Dev: uint32(e.dev), Event: e.id}))
}

// DeviceSynchronize waits until all work enqueued on device dev has
// completed, D2H data included, and returns the first failure of the
// session's asynchronous calls not yet reported.
func (c *Client) DeviceSynchronize(dev int) error {
	const op = "cudaDeviceSynchronize"
	d, err := c.device(op, dev)
	if err != nil {
		return err
	}
	return opErr(op, dev, c.syncDevice(d))
}

func (c *Client) syncDevice(d *device) error {
	if _, _, err := d.s.roundTrip(calls.OpDeviceSynchronize, &calls.Call{Dev: uint32(d.idx)}); err != nil {
		return err
	}
	wait(d.s.pending(d.idx, 0, coverDevice))
	return d.s.takeDeferred()
}
