package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/wire"
)

// Tracing. A call whose frame carries a trace context (wire.FlagTrace) is
// a server span while the process traces (telemetry.Setup, which Run does
// from Config.Tracing): a child of the sender's span, named after the
// call's API, ended by the call's reply (or, for a call without one, once
// it is enqueued, with the status the enqueue gave). A frame without a
// trace context starts nothing: the worker never starts a trace of its
// own, so its sampling is the client's.
//
// A cross-server peer copy adds two spans: the source worker's PeerSend
// server span lasts until the destination acknowledged the bytes, and has
// a client span PeerWrite for the worker-to-worker call, whose trace
// context rides in the OpPeerWrite frame; the destination's PeerWrite
// server span is its child.

// startSpan starts the server span of a call whose frame has FlagTrace;
// nil while tracing is off.
func (c *conn) startSpan(h *wire.Header, call *calls.Call) trace.Span {
	if !telemetry.Enabled() {
		return nil
	}
	_, span := telemetry.StartServerCall(context.Background(), h.Trace, calls.Name(h.Op), int(call.Dev),
		c.w.addr, callBytes(h.Op, call), call.Stream)
	return span
}

// startPeerWrite starts the client span of a worker-to-worker OpPeerWrite
// as a child of parent (the PeerSend's server span) and puts its trace
// context into h. It returns nil, touching nothing, when parent is nil or
// not sampled.
func (l *link) startPeerWrite(parent trace.Span, h *wire.Header, dev uint32, n int) trace.Span {
	if parent == nil || !parent.SpanContext().IsSampled() {
		return nil
	}
	ctx, span := telemetry.StartCall(trace.ContextWithSpan(context.Background(), parent), calls.Name(calls.OpPeerWrite),
		int(dev), l.addr, int64(n), 0)
	if tc, ok := telemetry.ToWire(ctx); ok && span.SpanContext().IsSampled() {
		h.Flags |= wire.FlagTrace
		h.Trace = tc
	}
	return span
}

// endSpan ends span (nil: nothing) with the status of err.
func endSpan(span trace.Span, err error) {
	if span != nil {
		telemetry.EndStatus(span, cudaerr.Error(statusOf(err)))
	}
}

// callBytes is the payload size a call's span reports: the bytes copied
// or set, the allocation or image size, or the inline data.
func callBytes(op wire.Op, c *calls.Call) int64 {
	switch op {
	case calls.OpMemset:
		return int64(c.N * c.Aux2) // elements of Aux2 bytes
	case calls.OpMalloc, calls.OpMemcpyHtoD, calls.OpMemcpyDtoH, calls.OpMemcpyDtoD,
		calls.OpMemcpyPeer, calls.OpPeerSend, calls.OpPeerWrite, calls.OpModuleLoad:
		return int64(c.N)
	}
	return int64(len(c.Data))
}

// collSpan returns span, the Collective call's server span, with the
// operation's attributes: it then lasts until the executor ran the job.
// nil stays nil.
func collSpan(span trace.Span, j *collJob, rank, ranks int) trace.Span {
	if span != nil && span.IsRecording() {
		span.SetAttributes(
			keyCollective.String(j.name()),
			keyRank.Int(rank),
			keyRanks.Int(ranks),
			telemetry.KeyBytes.Int64(int64(max(j.sendBytes, j.recvBytes))),
		)
	}
	return span
}

// Attributes of a Collective call's span, besides the call attributes.
const (
	// keyCollective is the operation, as calls.CollKind names it.
	// (calls.CollKind's name).
	keyCollective = attribute.Key("xgpu.collective")
	// keyRank is the device's rank in its communicator.
	keyRank = attribute.Key("xgpu.rank")
	// keyRanks is the communicator's size.
	keyRanks = attribute.Key("xgpu.ranks")
)
