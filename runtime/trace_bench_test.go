package runtime

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/xgpu/xgpu/internal/telemetry"
)

// discardExporter takes spans and drops them: the cost measured is the
// spans' making, sampling, batching and hand-over, not a collector's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracingOverhead is the call-rate case (asynchronous 4 KiB
// memsets, synchronized every 4096 calls, one device whose worker runs in
// this process) with tracing off, on at the default sampling
// (parentbased_traceidratio at 1%) and on at full sampling (always_on),
// interleaved round by round in one run. Tracing on means client spans in
// the runtime and server spans in the worker, batched for export. It
// reports each mode's calls/s and their ratios to off.
func BenchmarkTracingOverhead(b *testing.B) {
	const batch = 4096
	modes := []struct {
		name    string
		sampler string // "": tracing off
	}{
		{"off", ""},
		{"default", telemetry.DefaultSampler},
		{"full", telemetry.SamplerAlwaysOn},
	}
	c := benchClient(b, nil)
	p, err := c.Malloc(0, 4096)
	if err != nil {
		b.Fatal(err)
	}
	s := LegacyStream(0)
	var elapsed [3]time.Duration
	rounds := 0
	for b.Loop() {
		for i, m := range modes {
			stop := func() {}
			if m.sampler != "" {
				stop = traceTo(b, discardExporter{}, m.sampler, 0)
			}
			t0 := time.Now()
			for k := range batch {
				if err := c.MemsetAsync(p, byte(k), 4096, s); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.StreamSynchronize(s); err != nil {
				b.Fatal(err)
			}
			elapsed[i] += time.Since(t0)
			stop()
		}
		rounds++
	}
	var rate [3]float64
	for i, m := range modes {
		rate[i] = float64(rounds*batch) / elapsed[i].Seconds()
		b.ReportMetric(rate[i], "calls/s-"+m.name)
	}
	b.ReportMetric(rate[1]/rate[0], "default/off")
	b.ReportMetric(rate[2]/rate[0], "full/off")
}
