package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/xgpu/xgpu/internal/wire"
)

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// benchCall is what the runtime does per forwarded call: a client span, its
// context for the frame, the end.
func benchCall(ctx context.Context) {
	ctx, span := StartCall(ctx, "MemcpyHtoD", 3, "gpu-host:7000", 4096, 1)
	_, _ = ToWire(ctx)
	End(span, nil)
}

// benchServe is what the worker does per received call.
func benchServe(ctx context.Context, tc wire.TraceContext) {
	_, span := StartServerCall(ctx, tc, "MemcpyHtoD", 3, "", 4096, 1)
	End(span, nil)
}

func BenchmarkTracing(b *testing.B) {
	ctx := context.Background()
	sampled := wire.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Flags: 1}
	unsampled := wire.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{1}, Flags: 0}
	modes := []struct {
		name string
		cfg  *Config // nil: tracing off
	}{
		{"off", nil},
		{"on-default-1pct", &Config{}},
		{"on-always", &Config{Sampler: SamplerAlwaysOn}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			if mode.cfg != nil {
				cfg := *mode.cfg
				cfg.Exporter = discardExporter{}
				shutdown, err := Setup(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = shutdown(ctx) })
			}
			b.Run("Enabled", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_ = Enabled()
				}
			})
			b.Run("client-call", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchCall(ctx)
				}
			})
			b.Run("client-call-parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						benchCall(ctx)
					}
				})
			})
			b.Run("server-call-sampled-parent", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchServe(ctx, sampled)
				}
			})
			b.Run("server-call-unsampled-parent", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchServe(ctx, unsampled)
				}
			})
		})
	}
}
