// Package metrics holds the Prometheus metrics of xgpu's servers, workers
// and aggregator, and serves them at /metrics.
//
// Counting a forwarded call is one atomic add on a counter picked by
// opcode (no label lookup); the counters become xgpu_calls_total{api} and
// friends only when Prometheus scrapes. Gauges are plain Prometheus gauges
// that callers keep:
//
//	m := metrics.Default()
//	srv, err := metrics.Serve(":9464") // GET /metrics
//	if err != nil { ... }
//	defer srv.Shutdown(ctx)
//
//	m.Call(h.Op)                          // per call
//	m.Bytes(metrics.HostToDevice, n)      // per copy
//	mem := m.VGPUMemory(vgpuID)           // once per vGPU
//	mem.Add(float64(size))                // per allocation
//	m.Sessions().Inc()
//
// The metrics are listed by the Metric* constants. Default also installs
// its OpenTelemetry meter provider as the global one, so the RPC metrics
// of telemetry.GRPCServerOptions appear as rpc_server_*. This package is
// apart from package telemetry so that client processes, which trace but
// serve no metrics, do not link Prometheus.
//
// Concurrency: every function and method is safe for concurrent use.
package metrics
