package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/xgpu/xgpu/internal/telemetry"
	"github.com/xgpu/xgpu/server/worker"
)

// telemetryFlags are the tracing and metrics flags of the long-running
// commands (server, aggregator, demo). Each tracing flag left empty falls
// back to its OTEL_* variable, then to the default: flags, then the
// environment, then defaults.
type telemetryFlags struct {
	endpoint    string
	sampler     string
	ratio       float64
	metricsAddr string
}

// addTelemetryFlags registers --otlp-endpoint, --trace-sampler and
// --trace-ratio, and --metrics-addr unless metrics is false.
func addTelemetryFlags(fs *flag.FlagSet, metrics bool) *telemetryFlags {
	f := &telemetryFlags{}
	fs.StringVar(&f.endpoint, "otlp-endpoint", "",
		"OTLP collector to export spans to, e.g. http://127.0.0.1:4318 (Jaeger, OpenTelemetry Collector); "+
			"empty: "+telemetry.EnvEndpoint+", else tracing is off")
	fs.StringVar(&f.sampler, "trace-sampler", "",
		"span sampler: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "+
			"parentbased_traceidratio (empty: "+telemetry.EnvSampler+", else "+telemetry.DefaultSampler+")")
	fs.Float64Var(&f.ratio, "trace-ratio", 0,
		"fraction of new traces the ratio samplers keep, in (0, 1] (0: "+telemetry.EnvSamplerArg+", else "+
			strconv.FormatFloat(telemetry.DefaultRatio, 'g', -1, 64)+")")
	if metrics {
		fs.StringVar(&f.metricsAddr, "metrics-addr", "",
			"serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (empty: no metrics endpoint)")
	}
	return f
}

// config is the telemetry.Config of the flags for one part of xgpu.
func (f *telemetryFlags) config(component string, log *slog.Logger) telemetry.Config {
	return telemetry.Config{Endpoint: f.endpoint, Sampler: f.sampler, Ratio: f.ratio, Component: component, Logger: log}
}

// workers is the tracing setup a server hands its workers: its own flags,
// so that the environment decides for the workers what it decided here.
func (f *telemetryFlags) workers() worker.TracingConfig {
	return worker.TracingConfig{Endpoint: f.endpoint, Sampler: f.sampler, Ratio: f.ratio}
}

// args are the flags to hand a child process, so that it traces as this
// one was told to.
func (f *telemetryFlags) args() []string {
	var a []string
	if f.endpoint != "" {
		a = append(a, "--otlp-endpoint", f.endpoint)
	}
	if f.sampler != "" {
		a = append(a, "--trace-sampler", f.sampler)
	}
	if f.ratio != 0 {
		a = append(a, "--trace-ratio", strconv.FormatFloat(f.ratio, 'g', -1, 64))
	}
	return a
}

// tracingFlushTimeout bounds the flush of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// startTracing sets up the process's tracing for component and logs what
// it resolved to. The returned stop flushes the spans still queued.
func (f *telemetryFlags) startTracing(ctx context.Context, component string, log *slog.Logger) (stop func(), err error) {
	cfg := f.config(component, log)
	s, err := cfg.Resolve()
	if err != nil {
		return nil, flagError(err)
	}
	shutdown, err := telemetry.Setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log.Info(s.String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("spans not flushed", "err", err)
		}
	}, nil
}

// flagOf names the flag that sets each telemetry.Config field.
var flagOf = map[string]string{
	"Config.Endpoint": "--otlp-endpoint",
	"Config.Sampler":  "--trace-sampler",
	"Config.Ratio":    "--trace-ratio",
}

// flagError words a telemetry.ConfigError about a field in terms of the
// flag that set it.
func flagError(err error) error {
	var ce *telemetry.ConfigError
	if errors.As(err, &ce) {
		if name, ok := flagOf[ce.Source]; ok {
			return fmt.Errorf("%s %q: %s", name, ce.Value, ce.Reason)
		}
	}
	return err
}

// serveMetrics serves h at http://addr/metrics until stop is called; an
// empty addr serves nothing.
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint failed", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		<-done
	}, nil
}
