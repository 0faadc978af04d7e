// Package server is the supervisor of one GPU host: it lists the host's GPUs,
// splits them into vGPUs, serves the xgpu Server gRPC service (Inventory,
// Health) next to the standard gRPC health service, and keeps the host
// registered with the pool's aggregator.
//
// Usage:
//
//	srv, err := server.New(server.Config{
//		Backend:     server.BackendCUDA,
//		Source:      &nvml.Source{},         // or server.StaticGPUs(hostDevices)
//		VGPUsPerGPU: 2,                      // two vGPUs per GPU, half the memory each
//		Aggregator:  "aggregator.lan:7100",  // empty: standalone
//		Version:     version,
//	})
//	if err != nil {
//		return err
//	}
//	lis, err := net.Listen("tcp", ":7200")
//	if err != nil {
//		return err
//	}
//	go func() {
//		<-ctx.Done()
//		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//		defer cancel()
//		srv.Shutdown(sctx) // NOT_SERVING, deregister, graceful stop
//	}()
//	if err := srv.Serve(lis); !errors.Is(err, server.ErrServerClosed) {
//		return err
//	}
//
// Serve never waits for the aggregator. In the background the server
// registers, retrying with a capped exponential backoff while the aggregator
// is unreachable or still holds a previous instance of this server
// (AlreadyExists), then heartbeats at the interval the aggregator answers,
// and registers again if a heartbeat answers NotFound. Every server process
// registers with a fresh random instance id, so that the aggregator can tell
// a restarted server from the one it knew.
//
// Each client session (OpenSession) runs in a worker (package
// server/worker) that Config.Worker starts: by default a child process,
// this binary run again as `xgpu worker` (ExecLauncher), or goroutines of
// this process (InProcessLauncher). The server checks that the requested
// vGPUs are its own and in no other live session, and that the address
// windows are aligned and disjoint; it frees the vGPUs when CloseSession
// stops the worker, when the worker exits (its client left or vanished)
// and on Shutdown or Close, which stop every worker.
//
// Its gRPC service and its calls to the aggregator are traced
// (telemetry.GRPCServerOptions, GRPCDialOptions); Config.Tracing is the
// tracing setup handed to every worker. Gather (a prometheus.Gatherer)
// and MetricsHandler give the server's Prometheus metrics: its own, plus
// those its worker processes report on their stdout, counters of exited
// workers kept (see docs/observability.md).
//
// A Server is safe for concurrent use: Serve, Shutdown, Close, Inventory and
// the gRPC handlers may run at the same time. Partition and the GPUSource
// implementations of this package hold no state and are safe too.
package server
