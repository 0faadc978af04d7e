package runtime

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/wire"
)

// Tracing. While internal/telemetry's tracing is on (the process called
// telemetry.Setup with an endpoint), every call frame the client sends is
// a client span named after the call's API (calls.Name), with the logical
// device, the server, the payload bytes and the stream as attributes. A
// sampled span's W3C trace context travels in the frame (wire.FlagTrace),
// so the worker's span of the call is its child; an unsampled call sends
// none, and its worker records nothing for it (the sampling is parent
// based end to end).
//
// An asynchronous call's span ends when its frame is queued, with
// xgpu.result "enqueued": its outcome is known only at a later
// synchronizing call. A call that gets a reply (synchronous calls and
// device-to-host copies, asynchronous ones included) ends its span when
// the reply, and its bulk data, have arrived, with the call's result.

// resultEnqueued is the xgpu.result of an asynchronous call's span.
const resultEnqueued = "enqueued"

// SetTraceParent makes the client spans of the calls that follow, from any
// goroutine, children of the span in ctx, so that a unit of work (a
// training step, a test) shows as one trace; a ctx without a span (or
// context.Background()) makes each call's span a root again. The spans'
// sampling follows the parent's decision under the default parent-based
// sampler. It costs nothing while tracing is off, and the calls' spans
// are not recorded then either.
func (c *Client) SetTraceParent(ctx context.Context) {
	if ctx == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		c.traceParent.Store(nil)
		return
	}
	c.traceParent.Store(&ctx)
}

// parentContext is the context the client spans start from.
func (c *Client) parentContext() context.Context {
	if p := c.traceParent.Load(); p != nil {
		return *p
	}
	return context.Background()
}

// writeTraced is write while tracing is on: the call's client span, its
// trace context in the frame, and the span's end (at once for a call
// without reply; by the waiter of the reply otherwise).
func (s *session) writeTraced(h *wire.Header, c *calls.Call, flush bool) error {
	ctx, span := telemetry.StartCall(s.c.parentContext(), calls.Name(h.Op), int(c.Dev), s.server, callBytes(h.Op, c), c.Stream)
	if span.SpanContext().IsSampled() {
		if tc, ok := telemetry.ToWire(ctx); ok {
			h.Flags |= wire.FlagTrace
			h.Trace = tc
		}
	}
	attached := false
	if h.Flags&wire.FlagNoReply == 0 {
		// Every request with a reply registered its waiter before
		// writing; the waiter ends the span.
		s.pmu.Lock()
		if w := s.waiters[h.ReqID]; w != nil {
			w.span, attached = span, true
		}
		s.pmu.Unlock()
	}
	err := s.writeFrame(h, c, flush)
	switch {
	case attached && err != nil:
		// Take the span back unless the session's failure already
		// completed the waiter (and ended it).
		s.pmu.Lock()
		w := s.waiters[h.ReqID]
		mine := w != nil && w.span == span
		if mine {
			w.span = nil
		}
		s.pmu.Unlock()
		if mine {
			telemetry.End(span, err)
		}
	case attached:
	case err != nil:
		telemetry.End(span, err)
	default:
		if span.IsRecording() {
			span.SetAttributes(telemetry.KeyResult.String(resultEnqueued))
		}
		span.End()
	}
	return err
}

// callBytes is the payload size a call's span reports: the bytes copied
// or set, the allocation or image size, or the inline data.
func callBytes(op wire.Op, c *calls.Call) int64 {
	switch op {
	case calls.OpMemset:
		return int64(c.N * c.Aux2) // elements of Aux2 bytes
	case calls.OpMalloc, calls.OpMemcpyHtoD, calls.OpMemcpyDtoH, calls.OpMemcpyDtoD,
		calls.OpMemcpyPeer, calls.OpPeerSend, calls.OpModuleLoad:
		return int64(c.N)
	}
	return int64(len(c.Data))
}
