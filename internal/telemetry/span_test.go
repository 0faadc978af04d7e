package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
)

// memExporter keeps every span exported to it, also after Shutdown (unlike
// tracetest.InMemoryExporter, which forgets them then).
type memExporter struct {
	mu       sync.Mutex // guards the fields below
	spans    []sdktrace.ReadOnlySpan
	shutdown bool
}

func (e *memExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, spans...)
	return nil
}

func (e *memExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shutdown = true
	return nil
}

func (e *memExporter) Spans() []sdktrace.ReadOnlySpan {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), e.spans...)
}

// startMem runs Setup with cfg and a memExporter. The returned stop ends
// tracing, flushing every span into the exporter; it also runs at cleanup.
func startMem(t *testing.T, cfg Config) (exp *memExporter, stop func()) {
	t.Helper()
	clearEnv(t, nil)
	exp = &memExporter{}
	cfg.Exporter = exp
	shutdown, err := Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	stop = func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)
	return exp, stop
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestOffPath(t *testing.T) {
	clearEnv(t, nil)
	if Enabled() {
		t.Fatal("Enabled() = true before any Setup")
	}
	ctx := context.Background()
	tests := []struct {
		name  string
		start func() (context.Context, trace.Span)
	}{
		{"StartCall", func() (context.Context, trace.Span) { return StartCall(ctx, "Malloc", 0, "h", 1, 0) }},
		{"StartServerCall", func() (context.Context, trace.Span) {
			return StartServerCall(ctx, wire.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Flags: 1}, "Malloc", 0, "h", 1, 0)
		}},
		{"Start", func() (context.Context, trace.Span) { return Start(ctx, "stage") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, span := tt.start()
			if got != ctx {
				t.Error("returned a new context while tracing is off")
			}
			if span.IsRecording() || span.SpanContext().IsValid() {
				t.Error("returned a live span while tracing is off")
			}
			if _, ok := ToWire(got); ok {
				t.Error("ToWire reported a trace context while tracing is off")
			}
			End(span, errors.New("x"))
			if n := testing.AllocsPerRun(100, func() {
				c, s := tt.start()
				_, _ = ToWire(c)
				End(s, nil)
			}); n != 0 {
				t.Errorf("off path allocates %v times per call, want 0", n)
			}
		})
	}

	// Setup with nothing configured stays off.
	shutdown, err := Setup(ctx, Config{})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if Enabled() {
		t.Error("Enabled() = true after Setup with no endpoint")
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestCallSpansLinkThroughWire(t *testing.T) {
	exp, stop := startMem(t, Config{Sampler: SamplerAlwaysOn, ServiceName: "svc", Component: "test"})
	if !Enabled() {
		t.Fatal("Enabled() = false after Setup")
	}

	// Client: one span per call; the frame carries its context.
	cctx, client := StartCall(context.Background(), "MemcpyHtoD", 3, "gpu-host:7000", 1<<20, 7)
	tc, ok := ToWire(cctx)
	if !ok || !tc.Valid() || tc.Flags&1 == 0 {
		t.Fatalf("ToWire = %+v, %v; want a valid sampled context", tc, ok)
	}

	// Worker: the server span is a child of the client span.
	sctx, server := StartServerCall(context.Background(), tc, "MemcpyHtoD", 3, "", 1<<20, 7)
	_, inner := Start(sctx, "staging")
	inner.End()
	EndStatus(server, cudaerr.InvalidValue)
	End(client, fmt.Errorf("memcpy: %w", cudaerr.InvalidValue))
	stop()
	if Enabled() {
		t.Error("Enabled() = true after shutdown")
	}

	spans := exp.Spans()
	if len(spans) != 3 {
		t.Fatalf("exported %d spans, want 3", len(spans))
	}
	byKind := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byKind[s.SpanKind()] = s
	}
	c, s, in := byKind[trace.SpanKindClient], byKind[trace.SpanKindServer], byKind[trace.SpanKindInternal]
	if c == nil || s == nil || in == nil {
		t.Fatalf("want one client, one server and one internal span, got %v", spans)
	}
	if c.SpanContext().TraceID() != s.SpanContext().TraceID() || s.SpanContext().TraceID() != in.SpanContext().TraceID() {
		t.Error("spans are in different traces")
	}
	if s.Parent().SpanID() != c.SpanContext().SpanID() || !s.Parent().IsRemote() {
		t.Errorf("server parent = %v, want the client span %v as a remote parent", s.Parent(), c.SpanContext().SpanID())
	}
	if in.Parent().SpanID() != s.SpanContext().SpanID() {
		t.Errorf("internal span's parent = %v, want the server span", in.Parent().SpanID())
	}
	if c.Parent().IsValid() {
		t.Errorf("client span has parent %v, want a root", c.Parent())
	}
	if c.Name() != "MemcpyHtoD" || s.Name() != "MemcpyHtoD" || in.Name() != "staging" {
		t.Errorf("names %q %q %q", c.Name(), s.Name(), in.Name())
	}

	tests := []struct {
		name string
		span sdktrace.ReadOnlySpan
		want map[attribute.Key]attribute.Value
	}{
		{"client", c, map[attribute.Key]attribute.Value{
			KeyAPI: attribute.StringValue("MemcpyHtoD"), KeyDevice: attribute.IntValue(3),
			KeyHost: attribute.StringValue("gpu-host:7000"), KeyBytes: attribute.Int64Value(1 << 20),
			KeyStream: attribute.Int64Value(7), KeyResult: attribute.StringValue("cudaErrorInvalidValue"),
		}},
		{"server (no host)", s, map[attribute.Key]attribute.Value{
			KeyAPI: attribute.StringValue("MemcpyHtoD"), KeyDevice: attribute.IntValue(3),
			KeyBytes: attribute.Int64Value(1 << 20), KeyStream: attribute.Int64Value(7),
			KeyResult: attribute.StringValue("cudaErrorInvalidValue"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := attrs(tt.span)
			if len(got) != len(tt.want) {
				t.Errorf("attributes %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k].Emit(), v.Emit())
				}
			}
			if tt.span.Status().Code != codes.Error {
				t.Errorf("status %v, want Error", tt.span.Status())
			}
		})
	}

	res := map[attribute.Key]string{}
	for _, kv := range c.Resource().Attributes() {
		res[kv.Key] = kv.Value.Emit()
	}
	if res["service.name"] != "svc" || res[KeyComponent] != "test" {
		t.Errorf("resource %v, want service.name svc and xgpu.component test", res)
	}
	if c.InstrumentationScope().Name != ScopeName {
		t.Errorf("scope %q, want %q", c.InstrumentationScope().Name, ScopeName)
	}
}

func TestEndResults(t *testing.T) {
	exp, stop := startMem(t, Config{Sampler: SamplerAlwaysOn})
	tests := []struct {
		name       string
		end        func(trace.Span)
		wantResult string
		wantError  bool
	}{
		{"nil error", func(s trace.Span) { End(s, nil) }, "cudaSuccess", false},
		{"wrapped cuda error", func(s trace.Span) { End(s, fmt.Errorf("op: %w", cudaerr.MemoryAllocation)) }, "cudaErrorMemoryAllocation", true},
		{"other error", func(s trace.Span) { End(s, errors.New("connection lost")) }, "cudaErrorUnknown", true},
		{"status success", func(s trace.Span) { EndStatus(s, cudaerr.Success) }, "cudaSuccess", false},
		{"status failure", func(s trace.Span) { EndStatus(s, cudaerr.InvalidDevice) }, "cudaErrorInvalidDevice", true},
	}
	for _, tt := range tests {
		_, span := StartCall(context.Background(), tt.name, 0, "", 0, 0)
		tt.end(span)
	}
	stop()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range exp.Spans() {
		byName[s.Name()] = s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := byName[tt.name]
			if s == nil {
				t.Fatal("span not exported")
			}
			if got := attrs(s)[KeyResult].AsString(); got != tt.wantResult {
				t.Errorf("xgpu.result = %q, want %q", got, tt.wantResult)
			}
			if got := s.Status().Code == codes.Error; got != tt.wantError {
				t.Errorf("status %v, want error %v", s.Status(), tt.wantError)
			}
		})
	}
}

func TestWireRoundTrip(t *testing.T) {
	_, _ = startMem(t, Config{Sampler: SamplerAlwaysOn})
	tests := []struct {
		name string
		tc   wire.TraceContext
	}{
		{"sampled", wire.TraceContext{TraceID: [16]byte{0: 0xaa, 15: 0x01}, SpanID: [8]byte{7: 0x42}, Flags: 1}},
		{"not sampled", wire.TraceContext{TraceID: [16]byte{1, 2, 3}, SpanID: [8]byte{4, 5, 6}, Flags: 0}},
		{"all ones", wire.TraceContext{
			TraceID: [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			SpanID:  [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Flags: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := FromWire(context.Background(), tt.tc)
			sc := trace.SpanContextFromContext(ctx)
			if !sc.IsRemote() || !sc.IsValid() {
				t.Fatalf("FromWire span context %v: want valid and remote", sc)
			}
			got, ok := ToWire(ctx)
			if !ok || got != tt.tc {
				t.Errorf("ToWire(FromWire(%+v)) = %+v, %v", tt.tc, got, ok)
			}
		})
	}
	t.Run("invalid context is ignored", func(t *testing.T) {
		ctx := context.Background()
		for _, tc := range []wire.TraceContext{{}, {TraceID: [16]byte{1}}, {SpanID: [8]byte{1}, Flags: 1}} {
			if FromWire(ctx, tc) != ctx {
				t.Errorf("FromWire(%+v) changed the context", tc)
			}
			if _, ok := ToWire(FromWire(ctx, tc)); ok {
				t.Errorf("ToWire after FromWire(%+v) reported a context", tc)
			}
		}
	})
}

func TestSamplingFollowsTheCaller(t *testing.T) {
	// The worker's default sampler keeps what the client kept and drops
	// what it dropped, whatever its own ratio.
	exp, stop := startMem(t, Config{Sampler: SamplerParentBasedTraceIDRatio, Ratio: 0.5})
	sampled := wire.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Flags: 1}
	dropped := wire.TraceContext{TraceID: [16]byte{2}, SpanID: [8]byte{2}, Flags: 0}
	for range 50 {
		ctx, s := StartServerCall(context.Background(), sampled, "kept", 0, "", 0, 0)
		if !s.IsRecording() {
			t.Fatal("server span of a sampled call does not record")
		}
		if tc, ok := ToWire(ctx); !ok || tc.Flags&1 == 0 || tc.TraceID != sampled.TraceID {
			t.Fatalf("ToWire under a sampled parent = %+v, %v", tc, ok)
		}
		End(s, nil)
		ctx, s = StartServerCall(context.Background(), dropped, "dropped", 0, "", 0, 0)
		if s.IsRecording() {
			t.Fatal("server span of an unsampled call records")
		}
		// The decision travels on: a peer call made from here stays unsampled.
		if tc, ok := ToWire(ctx); !ok || tc.Flags&1 != 0 || tc.TraceID != dropped.TraceID {
			t.Fatalf("ToWire under an unsampled parent = %+v, %v", tc, ok)
		}
		End(s, nil)
	}
	stop()
	for _, s := range exp.Spans() {
		if s.Name() != "kept" {
			t.Fatalf("exported span %q of an unsampled trace", s.Name())
		}
	}
	if n := len(exp.Spans()); n != 50 {
		t.Errorf("exported %d spans, want 50", n)
	}
}

func TestRatioSampler(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		min, max int // of 4000 root calls
	}{
		{"default ratio 1%", Config{}, 10, 90}, // mean 40
		{"ratio 50%", Config{Ratio: 0.5}, 1800, 2200},
		{"always off", Config{Sampler: SamplerAlwaysOff}, 0, 0},
		{"always on", Config{Sampler: SamplerAlwaysOn}, 4000, 4000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp, stop := startMem(t, tt.cfg)
			for range 4000 {
				ctx, s := StartCall(context.Background(), "Ping", 0, "", 0, 0)
				// The frame carries a sampled context exactly when the call
				// is sampled, so the worker follows the decision (a root
				// call the ratio skips carries none, and gets no span).
				tc, ok := ToWire(ctx)
				if s.SpanContext().IsSampled() != (ok && tc.Flags&1 != 0) {
					t.Fatalf("span sampled %v, but ToWire gives %+v, %v", s.SpanContext().IsSampled(), tc, ok)
				}
				End(s, nil)
			}
			stop()
			if n := len(exp.Spans()); n < tt.min || n > tt.max {
				t.Errorf("sampled %d of 4000, want %d..%d", n, tt.min, tt.max)
			}
		})
	}
}

func TestSetupLifecycle(t *testing.T) {
	clearEnv(t, nil)
	ctx := context.Background()
	exp := &memExporter{}
	shutdown, err := Setup(ctx, Config{Exporter: exp})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if _, err := Setup(ctx, Config{Exporter: &memExporter{}}); !errors.Is(err, ErrAlreadySetUp) {
		t.Errorf("second Setup error = %v, want ErrAlreadySetUp", err)
	}
	if _, err := Setup(ctx, Config{Sampler: "nope"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Setup with a bad sampler: error = %v, want ErrInvalidConfig", err)
	}
	if !Enabled() {
		t.Error("a failed Setup turned tracing off")
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	if Enabled() || !exp.shutdown {
		t.Errorf("after shutdown: Enabled %v, exporter shut down %v", Enabled(), exp.shutdown)
	}
	// Setup again after shutdown.
	exp2, stop := startMem(t, Config{Sampler: SamplerAlwaysOn})
	_, s := StartCall(ctx, "Ping", 0, "", 0, 0)
	End(s, nil)
	stop()
	if len(exp2.Spans()) != 1 {
		t.Errorf("second Setup exported %d spans, want 1", len(exp2.Spans()))
	}
}

func TestTracerProviderFollowsSetup(t *testing.T) {
	clearEnv(t, nil)
	// A tracer made before Setup, as instrumentation libraries make them.
	tr := TracerProvider().Tracer("early")
	global := otel.GetTracerProvider().Tracer("global")

	parent := FromWire(context.Background(), wire.TraceContext{TraceID: [16]byte{9}, SpanID: [8]byte{9}, Flags: 1})
	ctx, s := tr.Start(parent, "off")
	if s.IsRecording() {
		t.Error("span records while tracing is off")
	}
	if got := trace.SpanContextFromContext(ctx).TraceID(); got != ([16]byte{9}) {
		t.Errorf("tracing off lost the parent's trace id: %v", got)
	}
	s.End()

	for round := range 2 {
		exp, stop := startMem(t, Config{Sampler: SamplerAlwaysOn})
		if _, err := Setup(context.Background(), Config{Exporter: exp}); !errors.Is(err, ErrAlreadySetUp) {
			t.Fatalf("nested Setup: %v", err)
		}
		_, s = tr.Start(context.Background(), "early")
		s.End()
		_, s = global.Start(context.Background(), "global")
		s.End()
		stop()
		if n := len(exp.Spans()); n != 2 {
			t.Errorf("round %d: %d spans exported through the followed provider, want 2", round, n)
		}
	}
}
