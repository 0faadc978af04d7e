package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/internal/telemetry/metrics"
)

// ComponentName is the xgpu.component of a worker's spans, and the suffix
// of its default service name (xgpu-worker).
const ComponentName = "worker"

// TracingConfig is the tracing setup a supervisor hands its workers: the
// command-line flags it was given. Each zero field falls back to the
// OTEL_* environment variable the worker inherits, then to the default,
// as telemetry.Config documents. Tracing is off unless an endpoint is
// configured.
type TracingConfig struct {
	// Endpoint is the OTLP collector (URL or host:port). Zero:
	// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, else tracing is off.
	Endpoint string `json:"endpoint,omitempty"`
	// Protocol is "grpc" or "http/protobuf". Zero: OTEL_* or
	// http/protobuf.
	Protocol string `json:"protocol,omitempty"`
	// Insecure makes a bare host:port endpoint plain HTTP. Zero:
	// OTEL_EXPORTER_OTLP_INSECURE, else TLS.
	Insecure bool `json:"insecure,omitempty"`
	// Sampler is an OTEL_TRACES_SAMPLER name. Zero: OTEL_TRACES_SAMPLER,
	// else parentbased_traceidratio. Workers start no trace of their own
	// (they continue the client's), so only the parent-based samplers'
	// parent rule matters in practice.
	Sampler string `json:"sampler,omitempty"`
	// Ratio is the ratio samplers' fraction, in (0, 1]. Zero:
	// OTEL_TRACES_SAMPLER_ARG, else telemetry.DefaultRatio.
	Ratio float64 `json:"ratio,omitempty"`
	// ServiceName is the spans' service.name. Zero: OTEL_SERVICE_NAME,
	// else "xgpu-worker".
	ServiceName string `json:"service_name,omitempty"`
}

// Telemetry returns the telemetry.Config of t for a worker.
func (t TracingConfig) Telemetry(log *slog.Logger) telemetry.Config {
	return telemetry.Config{
		Endpoint: t.Endpoint, Protocol: t.Protocol, Insecure: t.Insecure,
		Sampler: t.Sampler, Ratio: t.Ratio, ServiceName: t.ServiceName,
		Component: ComponentName, Logger: log,
	}
}

// tracingFlushTimeout bounds the flush of the last spans when a worker
// process ends.
const tracingFlushTimeout = 5 * time.Second

// startTracing sets up the process's tracing from cfg.Tracing and returns
// what stops it (flushing the spans still queued). A process that already
// traces (a worker run inside another xgpu process) keeps its setup.
func startTracing(ctx context.Context, cfg Config, log *slog.Logger) (stop func(), err error) {
	shutdown, err := telemetry.Setup(ctx, cfg.Tracing.Telemetry(log))
	switch {
	case errors.Is(err, telemetry.ErrAlreadySetUp):
		return func() {}, nil
	case err != nil:
		return nil, fmt.Errorf("worker: tracing: %w", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("worker: spans not flushed", "err", err)
		}
	}, nil
}

// Metrics of a worker process. A worker counts into metrics.Default() of
// its process: calls by API, failed calls, payload bytes, and per device
// (labelled with its vGPU id) the memory allocated and the queue depth
// (staged copies and synchronizing calls not yet complete). A worker run
// by Run, in a process of its own, reports those metrics to its
// supervisor as Report lines on stdout, after the Ready line: about every
// ReportInterval while they change, and once more when the session ends.
// The supervisor adds them to its own /metrics (see server.Server.Gather).
// A worker inside the supervisor's process (server.InProcessLauncher)
// counts into the supervisor's metrics directly and prints nothing.

// ReportInterval is how often a worker process reports changed metrics.
const ReportInterval = time.Second

// reportedMetrics are the metric families a worker reports.
var reportedMetrics = map[string]bool{
	metrics.MetricCalls:      true,
	metrics.MetricCallErrors: true,
	metrics.MetricBytes:      true,
	metrics.MetricVGPUMemory: true,
	metrics.MetricQueueDepth: true,
}

// Report is one line a worker process prints on stdout after Ready: the
// current values of its metrics. Counters only grow over a worker's life;
// a supervisor adds the last report of a worker that has exited to its
// totals.
type Report struct {
	Metrics []Sample `json:"metrics"`
}

// Sample is one series of a Report. Counters at zero are left out.
type Sample struct {
	// Name is the metric's name (one of the metrics.Metric* constants).
	Name string `json:"name"`
	// Labels are the series' label pairs.
	Labels map[string]string `json:"labels,omitempty"`
	// Value is the series' value.
	Value float64 `json:"value"`
	// Counter is true for a counter, false for a gauge.
	Counter bool `json:"counter,omitempty"`
}

// snapshot reads the reported metrics out of m.
func snapshot(m *metrics.Metrics) (Report, error) {
	fams, err := m.Registry().Gather()
	var rep Report
	for _, f := range fams {
		if !reportedMetrics[f.GetName()] {
			continue
		}
		counter := f.GetType() == dto.MetricType_COUNTER
		for _, s := range f.GetMetric() {
			v := s.GetGauge().GetValue()
			if counter {
				v = s.GetCounter().GetValue()
				if v == 0 {
					continue
				}
			}
			smp := Sample{Name: f.GetName(), Value: v, Counter: counter}
			if len(s.GetLabel()) > 0 {
				smp.Labels = make(map[string]string, len(s.GetLabel()))
				for _, l := range s.GetLabel() {
					smp.Labels[l.GetName()] = l.GetValue()
				}
			}
			rep.Metrics = append(rep.Metrics, smp)
		}
	}
	sort.SliceStable(rep.Metrics, func(i, j int) bool { return rep.Metrics[i].Name < rep.Metrics[j].Name })
	return rep, err
}

// reporter prints Report lines to out.
type reporter struct {
	m    *metrics.Metrics
	out  io.Writer
	last []byte // the last line printed
	log  *slog.Logger
}

// report prints a Report unless it equals the last one.
func (r *reporter) report() {
	rep, err := snapshot(r.m)
	if err != nil {
		r.log.Debug("worker: metrics incomplete", "err", err)
	}
	line, err := json.Marshal(rep)
	if err != nil || bytes.Equal(line, r.last) {
		return
	}
	r.last = line
	if _, err := r.out.Write(append(line, '\n')); err != nil {
		r.log.Debug("worker: metrics not reported", "err", err)
	}
}

// loop reports every ReportInterval until stop is closed, then once more.
func (r *reporter) loop(stop <-chan struct{}) {
	t := time.NewTicker(ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			r.report()
			return
		case <-t.C:
			r.report()
		}
	}
}
