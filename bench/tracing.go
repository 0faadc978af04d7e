package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/xgpu/xgpu/internal/telemetry"
)

// GroupTracing is the cost of tracing on the call rate (BENCH.md "tracing
// on, at the default and at full sampling").
const GroupTracing = "tracing"

// dropSpans is a span exporter that drops what it gets: the cost measured
// is the spans' making, sampling, batching and hand-over, not a
// collector's.
type dropSpans struct{}

func (dropSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (dropSpans) Shutdown(context.Context) error                             { return nil }

// tracingGroup measures the asynchronous call rate of the async group with
// the client's tracing on, at the default sampling and at full sampling,
// against tracing off, interleaved round by round. Tracing is set up in
// this process for the rounds that want it and shut down after them,
// outside the timed part. The servers' workers trace only when their own
// environment configures it (xgpu bench sets nothing), so this is the
// client's share; the worker's spans, measured in-process, are in
// docs/observability.md.
func (r *runner) tracingGroup() error {
	const memsetBytes = 256
	n := r.opt.AsyncCalls
	calls := func() error {
		for i := range n {
			if err := r.c.MemsetAsync(r.small, byte(i), memsetBytes, r.stream); err != nil {
				return err
			}
		}
		return r.c.StreamSynchronize(r.stream)
	}
	traced := func(sampler string) rateMethod {
		return func() (float64, error) {
			if sampler != "" {
				shutdown, err := telemetry.Setup(r.ctx, telemetry.Config{
					Exporter: dropSpans{}, Sampler: sampler, Component: "bench",
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				})
				if err != nil {
					return 0, err
				}
				defer shutdown(context.Background())
			}
			t := time.Now()
			if err := calls(); err != nil {
				return 0, err
			}
			return float64(n) / time.Since(t).Seconds(), nil
		}
	}
	rs, err := r.rates(traced(""), traced(telemetry.DefaultSampler), traced(telemetry.SamplerAlwaysOn))
	if err != nil {
		return err
	}
	for i, m := range []struct{ name, sampler string }{
		{"default", fmt.Sprintf("%s, ratio %g", telemetry.DefaultSampler, telemetry.DefaultRatio)},
		{"full", telemetry.SamplerAlwaysOn},
	} {
		r.add(Result{
			Name: "tracing/" + m.name, Group: GroupTracing, Unit: UnitRate,
			XGPU: rs[i+1], XGPUName: fmt.Sprintf("%d cudaMemsetAsync then cudaStreamSynchronize, client tracing at %s, spans dropped", n, m.sampler),
			Baseline: rs[0], BaselineName: "the same calls with tracing off",
			Rounds: r.opt.Rounds, Samples: r.opt.Rounds,
		})
	}
	return nil
}
