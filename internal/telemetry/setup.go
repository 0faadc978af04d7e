package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/xgpu/xgpu"

// ErrAlreadySetUp is returned by Setup while the tracing of an earlier
// Setup is still running: call its shutdown first.
var ErrAlreadySetUp = errors.New("telemetry: tracing already set up")

// active is the tracing pipeline of one successful Setup.
type active struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	// rootRatio, when in (0, 1), is the fraction of root calls StartCall
	// samples itself before the SDK sees them (parentbased_traceidratio):
	// an unsampled root call then costs a random draw, not an SDK span.
	// 0 means the SDK's sampler decides every call.
	rootRatio float64
}

var (
	// cur is the running pipeline, nil while tracing is off. The hot-path
	// helpers load it once per call.
	cur atomic.Pointer[active]

	// logger receives OpenTelemetry's errors: the latest Setup's
	// Config.Logger, kept after its shutdown, which reports errors too.
	logger atomic.Pointer[slog.Logger]

	// setupMu serialises Setup and shutdown.
	setupMu sync.Mutex

	globalsOnce sync.Once
)

// installGlobals makes the OpenTelemetry globals follow this package: the
// W3C trace context and baggage propagators, a tracer provider that
// forwards to whatever Setup is running (so instrumentation created before
// Setup, such as gRPC stats handlers, traces once it runs), and an error
// handler that logs through the running Setup's logger.
func installGlobals() {
	globalsOnce.Do(func() {
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{}))
		otel.SetTracerProvider(TracerProvider())
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l := logger.Load()
			if l == nil {
				l = slog.Default()
			}
			l.Warn("telemetry: opentelemetry error", "err", err)
		}))
	})
}

// Setup starts tracing as cfg and the environment say (see Config for the
// precedence) and installs the W3C trace context propagator. When tracing
// resolves to off it starts nothing, and the helpers of this package stay
// on their fast path. The returned shutdown flushes the spans still queued
// and stops the exporter; it is safe to call more than once, and always
// non-nil when err is nil. A second Setup before that shutdown fails with
// ErrAlreadySetUp.
//
// Setup does not wait for the collector: an unreachable endpoint shows up
// as export errors logged to Config.Logger, not as an error here. The
// shutdown is bounded by its context; spans it cannot deliver are logged
// as export errors too.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	s, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	installGlobals()
	if !s.Enabled {
		return func(context.Context) error { return nil }, nil
	}

	setupMu.Lock()
	defer setupMu.Unlock()
	if cur.Load() != nil {
		return nil, ErrAlreadySetUp
	}

	exp := cfg.Exporter
	if exp == nil {
		exp, err = newExporter(ctx, s)
		if err != nil {
			return nil, err
		}
	}
	res, err := newResource(ctx, s, cfg.Component)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, err
	}
	ab := newAbortable(exp)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(ab), // OTEL_BSP_* tune the batching
		sdktrace.WithResource(res),
		sdktrace.WithSampler(newSampler(s)),
	)
	logger.Store(cfg.Logger) // nil: slog.Default()
	a := &active{tp: tp, tracer: tp.Tracer(ScopeName)}
	if s.Sampler == SamplerParentBasedTraceIDRatio && s.Ratio > 0 && s.Ratio < 1 {
		a.rootRatio = s.Ratio
	}
	cur.Store(a)

	var once sync.Once
	var shutdownErr error
	return func(ctx context.Context) error {
		once.Do(func() {
			setupMu.Lock()
			cur.CompareAndSwap(a, nil)
			setupMu.Unlock()
			err := tp.Shutdown(ctx)
			if err != nil && ctx.Err() != nil {
				// ctx ended while the last spans were still being
				// exported: cut that export short rather than leave it
				// running behind our back for the export timeout.
				ab.abort()
				select {
				case <-ab.done:
				case <-time.After(abortGrace):
				}
			}
			ab.abort()
			if err != nil {
				shutdownErr = fmt.Errorf("telemetry: shutdown: %w", err)
			}
		})
		return shutdownErr
	}, nil
}

// abortGrace bounds how long a shutdown whose context ended waits for the
// aborted export to return.
const abortGrace = 5 * time.Second

// abortable wraps a span exporter so that shutdown can cut short an export
// in progress. The batch span processor exports the spans still queued at
// shutdown under a context of its own (OTEL_BSP_EXPORT_TIMEOUT, 30 s), which
// would otherwise outlive a shutdown whose context ended, retrying an
// unreachable collector.
type abortable struct {
	sdktrace.SpanExporter
	ctx   context.Context // ended by abort
	abort context.CancelFunc
	done  chan struct{} // closed when Shutdown has returned
	once  sync.Once
}

func newAbortable(exp sdktrace.SpanExporter) *abortable {
	ctx, cancel := context.WithCancel(context.Background())
	return &abortable{SpanExporter: exp, ctx: ctx, abort: cancel, done: make(chan struct{})}
}

func (e *abortable) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	return e.SpanExporter.ExportSpans(ctx, spans)
}

func (e *abortable) Shutdown(ctx context.Context) error {
	defer e.once.Do(func() { close(e.done) })
	return e.SpanExporter.Shutdown(ctx)
}

func newExporter(ctx context.Context, s Settings) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch s.Protocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(s.Endpoint))
	default:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(s.Endpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: otlp exporter for %s: %w", s.Endpoint, err)
	}
	return exp, nil
}

func newResource(ctx context.Context, s Settings, component string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String(resourceServiceNameAttrib, s.ServiceName)}
	if component != "" {
		attrs = append(attrs, KeyComponent.String(component))
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithFromEnv(),            // OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
		resource.WithAttributes(attrs...), // last: the resolved service name wins
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

func newSampler(s Settings) sdktrace.Sampler {
	switch s.Sampler {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample()
	case SamplerAlwaysOff:
		return sdktrace.NeverSample()
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(s.Ratio)
	case SamplerParentBasedAlwaysOn:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	default:
		return sdktrace.ParentBased(presampled{sdktrace.TraceIDRatioBased(s.Ratio)})
	}
}

// presampledKey marks a context whose root call StartCall has already
// sampled with the configured ratio.
type presampledKey struct{}

// presampled is a root sampler that records what StartCall decided, and
// leaves every other root span (gRPC, internal spans) to next.
type presampled struct{ next sdktrace.Sampler }

func (p presampled) ShouldSample(sp sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if sp.ParentContext != nil && sp.ParentContext.Value(presampledKey{}) != nil {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
			Tracestate: trace.SpanContextFromContext(sp.ParentContext).TraceState()}
	}
	return p.next.ShouldSample(sp)
}

func (p presampled) Description() string { return "Presampled{" + p.next.Description() + "}" }
