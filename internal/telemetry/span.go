package telemetry

import (
	"context"
	"math/rand/v2"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
)

// Attribute keys of call spans. They are part of what users query in
// Jaeger; rename none.
const (
	// KeyAPI is the forwarded API, e.g. "Malloc" or "MemcpyHtoD" (the
	// span's name too).
	KeyAPI = attribute.Key("xgpu.api")
	// KeyDevice is the logical device index of the client's device map.
	KeyDevice = attribute.Key("xgpu.device")
	// KeyHost is the server (host:port or host name) that owns the device;
	// absent when the caller passes "".
	KeyHost = attribute.Key("xgpu.host")
	// KeyBytes is the payload size of the call in bytes (the copy or
	// memset size, the allocation size); 0 when the call moves none.
	KeyBytes = attribute.Key("xgpu.bytes")
	// KeyStream is the stream handle of the call (0: the device's default
	// stream).
	KeyStream = attribute.Key("xgpu.stream")
	// KeyResult is the call's outcome as a cudaError_t name, e.g.
	// "cudaSuccess" or "cudaErrorInvalidValue", set by End and EndStatus.
	KeyResult = attribute.Key("xgpu.result")
	// KeyComponent is a resource attribute: the part of xgpu a process is
	// (Config.Component).
	KeyComponent = attribute.Key("xgpu.component")
)

var (
	// offSpan is what the helpers return while tracing is off. Converted to
	// an interface once here, so returning it allocates nothing.
	offSpan trace.Span = noop.Span{}

	clientKind   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	serverKind   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	internalKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
)

// Enabled reports whether tracing is on: one atomic load. Code that builds
// something only for a span (a name, an attribute) checks it first.
func Enabled() bool { return cur.Load() != nil }

// StartCall starts the client span of one forwarded call, named api, as a
// child of the span in ctx. While tracing is off it returns ctx and a
// no-op span at the cost of one atomic load, with no allocation. The
// attributes are set only on a span that records (one that was sampled),
// so an unsampled call pays for no attribute. End the span with End or
// EndStatus; put ToWire(ctx) of the returned ctx into the call's frame.
func StartCall(ctx context.Context, api string, dev int, host string, bytes int64, stream uint64) (context.Context, trace.Span) {
	if a := cur.Load(); a != nil {
		if a.rootRatio > 0 && !trace.SpanContextFromContext(ctx).IsValid() {
			// A root call: sample it here, with the configured ratio, so
			// that the unsampled ones cost no SDK span.
			if rand.Float64() >= a.rootRatio {
				return ctx, offSpan
			}
			ctx = context.WithValue(ctx, presampledKey{}, true)
		}
		return a.startCall(ctx, clientKind, api, dev, host, bytes, stream)
	}
	return ctx, offSpan
}

// startCall is the path of StartCall and StartServerCall while tracing is
// on, kept out of line so that the off path stays short.
func (a *active) startCall(ctx context.Context, kind []trace.SpanStartOption, api string, dev int, host string, bytes int64, stream uint64) (context.Context, trace.Span) {
	ctx, span := a.tracer.Start(ctx, api, kind...)
	if span.IsRecording() {
		setCallAttributes(span, api, dev, host, bytes, stream)
	}
	return ctx, span
}

// StartServerCall starts the server span of one received call, named api.
// Its parent is the sender's span that parent names (the frame's trace
// context, see FromWire) when parent is valid, otherwise the span in ctx.
// With the default parent-based sampler the sender's sampling decision
// holds here too. While tracing is off it returns ctx and a no-op span at
// the cost of one atomic load, with no allocation.
func StartServerCall(ctx context.Context, parent wire.TraceContext, api string, dev int, host string, bytes int64, stream uint64) (context.Context, trace.Span) {
	if a := cur.Load(); a != nil {
		return a.startServerCall(ctx, &parent, api, dev, host, bytes, stream)
	}
	return ctx, offSpan
}

func (a *active) startServerCall(ctx context.Context, parent *wire.TraceContext, api string, dev int, host string, bytes int64, stream uint64) (context.Context, trace.Span) {
	if parent.Valid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, spanContextOf(*parent))
	}
	return a.startCall(ctx, serverKind, api, dev, host, bytes, stream)
}

// Start starts an internal span named name as a child of the span in ctx,
// for work inside a process that is worth its own span (a peer transfer, a
// staging copy). While tracing is off it returns ctx and a no-op span with
// no allocation. Set attributes only when span.IsRecording().
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	if a := cur.Load(); a != nil {
		return a.tracer.Start(ctx, name, internalKind...)
	}
	return ctx, offSpan
}

func setCallAttributes(span trace.Span, api string, dev int, host string, bytes int64, stream uint64) {
	attrs := [5]attribute.KeyValue{
		KeyAPI.String(api),
		KeyDevice.Int(dev),
		KeyHost.String(host),
		KeyBytes.Int64(bytes),
		KeyStream.Int64(int64(stream)),
	}
	n := len(attrs)
	if host == "" {
		attrs[2] = attrs[4]
		n--
	}
	span.SetAttributes(attrs[:n]...)
}

// End sets xgpu.result from err (cudaSuccess for nil, the cudaError_t
// that err wraps, cudaErrorUnknown for any other error), marks the span
// failed when err is not nil, and ends the span. It costs nothing beyond
// the End call on a span that does not record, and nothing at all while
// tracing is off (a span of a pipeline already shut down exports nowhere).
func End(span trace.Span, err error) {
	if cur.Load() != nil {
		end(span, err)
	}
}

func end(span trace.Span, err error) {
	if span.IsRecording() {
		code := cudaerr.Code(err)
		span.SetAttributes(KeyResult.String(code.String()))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// EndStatus is End for a cudaError_t status as the worker sends it in a
// reply: Success (0) is a success, any other value a failure.
func EndStatus(span trace.Span, status cudaerr.Error) {
	if cur.Load() != nil {
		endStatus(span, status)
	}
}

func endStatus(span trace.Span, status cudaerr.Error) {
	if span.IsRecording() {
		span.SetAttributes(KeyResult.String(status.String()))
		if status != cudaerr.Success {
			span.SetStatus(codes.Error, status.Error())
		}
	}
	span.End()
}

// ToWire returns the trace context to put into a call's frame
// (wire.FlagTrace with Header.Trace): the span context of the span in ctx,
// its sampled flag included, so that the receiver follows the sender's
// sampling decision. It reports false, at the cost of one atomic load,
// while tracing is off or when ctx holds no valid span context; the frame
// then carries no trace context.
func ToWire(ctx context.Context) (wire.TraceContext, bool) {
	if cur.Load() != nil {
		return toWire(ctx)
	}
	return wire.TraceContext{}, false
}

func toWire(ctx context.Context) (wire.TraceContext, bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return wire.TraceContext{}, false
	}
	return wire.TraceContext{
		TraceID: sc.TraceID(),
		SpanID:  sc.SpanID(),
		Flags:   uint8(sc.TraceFlags()),
	}, true
}

// FromWire returns ctx with tc as its remote parent span context, so that
// a span started from the result is a child of the sender's span. It
// returns ctx unchanged when tc is not valid (all-zero ids).
// StartServerCall does this itself; FromWire is for other receivers.
func FromWire(ctx context.Context, tc wire.TraceContext) context.Context {
	if !tc.Valid() {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, spanContextOf(tc))
}

func spanContextOf(tc wire.TraceContext) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tc.TraceID,
		SpanID:     tc.SpanID,
		TraceFlags: trace.TraceFlags(tc.Flags),
		Remote:     true,
	})
}
