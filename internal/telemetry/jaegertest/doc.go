// Package jaegertest runs a real Jaeger (v2, all-in-one, in-memory
// storage) for tests, and reads traces back through Jaeger's query API, so
// that a test can check what an xgpu process exported over OTLP.
//
// Start skips the test when no Jaeger binary is found: set XGPU_JAEGER_BIN,
// or build one into .cache/bin with hack/jaeger.sh.
//
//	j := jaegertest.Start(t) // stopped at the end of t
//	shutdown, _ := telemetry.Setup(ctx, telemetry.Config{
//		Endpoint: j.OTLPHTTP, Sampler: telemetry.SamplerAlwaysOn, ServiceName: svc,
//	})
//	... spans ...
//	_ = shutdown(ctx) // flushes
//	tr := j.WaitTrace(t, traceID, 2) // the trace, once it has 2 spans
//	client, _ := tr.SpanNamed("MemcpyHtoD", "client")
//
// Every Jaeger listens on free loopback ports of its own (never the
// default 4317, 4318 and 16686), so tests of several packages may run
// Jaeger at once, next to a developer's own.
//
// Concurrency: a *Jaeger is safe for concurrent use; the Trace values it
// returns are plain data.
package jaegertest
