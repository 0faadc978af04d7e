package core

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/xgpu/xgpu/internal/telemetry"
)

// Tracing of a CUDA application: the shim sets it up from the OTEL_*
// environment variables (OTEL_EXPORTER_OTLP_ENDPOINT turns it on; see
// docs/observability.md) when it opens the client, with the component
// "client" (service name xgpu-client unless OTEL_SERVICE_NAME says
// otherwise), and flushes the spans still queued when it closes.

var tracing struct {
	once     sync.Once
	mu       sync.Mutex // guards shutdown
	shutdown func(context.Context) error
}

// startTracing sets up the process's tracing once. A failure is logged:
// an application runs the same without spans. A process that already
// traces (a Go program that called telemetry.Setup) keeps its setup.
func startTracing(log *slog.Logger) {
	tracing.once.Do(func() {
		shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{Component: "client", Logger: log})
		switch {
		case errors.Is(err, telemetry.ErrAlreadySetUp):
		case err != nil:
			log.Warn("tracing off: bad configuration", "err", err)
		default:
			tracing.mu.Lock()
			tracing.shutdown = shutdown
			tracing.mu.Unlock()
		}
	})
}

// stopTracing flushes the spans still queued, within DefaultCloseTimeout,
// and ends tracing.
func stopTracing(log *slog.Logger) {
	tracing.mu.Lock()
	shutdown := tracing.shutdown
	tracing.shutdown = nil
	tracing.mu.Unlock()
	if shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCloseTimeout)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("spans not flushed", "err", err)
	}
}
