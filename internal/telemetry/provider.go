package telemetry

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerProvider returns a trace.TracerProvider that follows Setup: its
// tracers start spans of the running Setup's provider, and non-recording
// spans that carry the parent's span context while tracing is off (so a
// process that does not trace still passes the trace on). Setup installs it
// as the OpenTelemetry global, so instrumentation made before Setup runs,
// or across several Setups, traces as the current one says.
func TracerProvider() trace.TracerProvider { return followProvider{} }

type followProvider struct{ embedded.TracerProvider }

func (followProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return &followTracer{name: name, opts: opts}
}

// followTracer forwards Start to a tracer of the running provider, made
// once per Setup and cached.
type followTracer struct {
	embedded.Tracer
	name  string
	opts  []trace.TracerOption
	cache atomic.Pointer[followCache]
}

type followCache struct {
	a      *active
	tracer trace.Tracer
}

var offTracer = noop.NewTracerProvider().Tracer("")

func (t *followTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	a := cur.Load()
	if a == nil {
		return offTracer.Start(ctx, name, opts...)
	}
	c := t.cache.Load()
	if c == nil || c.a != a {
		c = &followCache{a: a, tracer: a.tp.Tracer(t.name, t.opts...)}
		t.cache.Store(c)
	}
	return c.tracer.Start(ctx, name, opts...)
}
