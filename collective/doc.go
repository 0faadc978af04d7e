// Package collective implements NCCL-style communicators for xgpu: groups
// of ranks (logical devices on any servers) that run all-reduce,
// reduce-scatter, all-gather, broadcast, reduce, all-to-all and
// point-to-point send and receive, worker to worker, without the client.
//
// # Usage
//
// Every rank (in xgpu, the worker that holds the device) makes its handle
// on the communicator from its rank, the size, its endpoint of a Transport
// and a Reducer, then calls the same operations in the same order as the
// other ranks:
//
//	c, err := collective.New(rank, size, transport, reducer, collective.Options{})
//	defer c.Close()
//	// sum n float32s across every rank, in place
//	err = c.AllReduce(ctx, buf, buf, n, collective.F32, collective.Sum)
//	err = c.Broadcast(ctx, buf, buf, n, collective.BF16, 0)
//	err = c.Group(ctx,
//		collective.P2P{Peer: next, Buf: out, Count: n, DType: collective.U8},
//		collective.P2P{Recv: true, Peer: prev, Buf: in, Count: n, DType: collective.U8})
//
// The arguments follow NCCL's (ncclAllReduce, ncclReduceScatter, ...):
// counts in elements, DType and Op numbered as ncclDataType_t and
// ncclRedOp_t, in place when the buffers alias as NCCL defines it. Types:
// i8, u8, i32, u32, i64, u64, f16, bf16, f32, f64; operators: sum, prod,
// max, min, avg.
//
// # Algorithms
//
// Ring (bandwidth: reduce-scatter then all-gather around a ring that
// visits the ranks of each host together), Tree (latency: binomial trees)
// and Hierarchical (reduce inside each host, ring between one leader per
// host, broadcast inside each host). Each is cut into chunks
// (Options.ChunkSize) that are pipelined, and counts that do not divide
// evenly are cut into nearly equal parts. Auto picks per call from the
// size and the topology; Options.Algo or the XGPU_ALGO environment
// variable (like NCCL_ALGO) forces one. Every rank must choose alike.
//
// # Where the data goes
//
// The Transport carries messages rank to rank: LocalNetwork in memory (tests
// and the host backend in one process); between workers, an implementation
// over the peers package's QUIC connections, and between ranks of one
// server the server's own path (NVLink peer copies). The Reducer combines
// buffers: CPUReducer for host memory, a GPU implementation with the
// worker's kernels for device memory. The Comm never touches buffer
// contents itself, so the same code drives both.
//
// # Streams
//
// A Comm call blocks until the operation is complete on this rank. The
// worker orders it with the rest of the device's work by enqueuing it as a
// stream operation (like any other async call) that runs the Comm call when
// the stream reaches it and completes when the call returns; its error
// becomes the stream's sticky error.
//
// # Failures
//
// A rank that dies, or stalls, never makes the others hang: each surviving
// rank's operation fails with ErrPeerLost within the transport's dead-peer
// bound plus a close propagated along the algorithm's edges (measured in
// the tests: a few milliseconds in memory), and in any case with
// ErrTimeout once Options.Timeout passes without any message completing.
// A failed operation aborts the communicator (ErrAborted for every later
// call); make a new one, as NCCL users do after ncclCommAbort.
//
// # Concurrency
//
// A Comm is safe for concurrent use, but runs one operation at a time, in
// the order the calls take its lock; ranks must issue operations in the
// same order, so each rank normally issues them from one goroutine (the
// stream's). LocalNetwork and CPUReducer are safe for concurrent use.
package collective
