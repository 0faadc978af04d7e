// Package telemetry is xgpu's observability: OpenTelemetry tracing of
// forwarded calls exported over OTLP (to Jaeger or any collector),
// Prometheus metrics, and the hooks that trace the gRPC control plane.
//
// # Tracing
//
// Setup starts tracing from a Config that flags fill, then the standard
// OTEL_* environment variables, then defaults (see Config). Tracing is off
// unless an OTLP endpoint is configured; when on, the default sampler is
// parentbased_traceidratio at 1%. Each forwarded call is a client span in
// the runtime and a server span in the worker, linked through the trace
// context of the call's frame:
//
//	shutdown, err := telemetry.Setup(ctx, telemetry.Config{Endpoint: flagEndpoint, Component: "runtime"})
//	if err != nil { ... }
//	defer shutdown(context.Background())
//
//	// client side, per call
//	ctx, span := telemetry.StartCall(ctx, "MemcpyHtoD", dev, host, n, stream)
//	h := wire.Header{Op: calls.OpMemcpyHtoD}
//	if tc, ok := telemetry.ToWire(ctx); ok {
//		h.Flags |= wire.FlagTrace
//		h.Trace = tc
//	}
//	... send, wait if sync ...
//	telemetry.End(span, err)
//
//	// worker side, per frame (h.Trace is zero without wire.FlagTrace)
//	ctx, span := telemetry.StartServerCall(ctx, h.Trace, calls.Name(h.Op), dev, host, n, stream)
//	... execute ...
//	telemetry.EndStatus(span, status)
//
// While tracing is off, StartCall, StartServerCall, Start and ToWire cost
// one atomic load and allocate nothing; an unsampled call sets no
// attribute. Span attributes live under the xgpu. namespace: xgpu.api,
// xgpu.device, xgpu.host, xgpu.bytes, xgpu.stream and xgpu.result (see the
// Key* constants).
//
// # Metrics
//
// Prometheus metrics live in the subpackage metrics, so that client
// processes, which trace but serve no /metrics, do not link Prometheus.
//
// # gRPC
//
// GRPCServerOptions and GRPCDialOptions return otelgrpc stats handlers for
// the aggregator, servers and clients. They follow Setup whenever it runs,
// before or after the options were made, and record RPC metrics into
// metrics.Default when the process made it.
//
// Setup, GRPCServerOptions and GRPCDialOptions install process-wide
// OpenTelemetry globals: the W3C trace context and baggage propagators, a
// tracer provider that follows Setup (TracerProvider), and an error
// handler that logs through Config.Logger.
//
// Concurrency: every function and method of this package is safe for
// concurrent use. One Setup runs at a time; its shutdown may be called from
// any goroutine.
package telemetry
