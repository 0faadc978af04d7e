// Package bench measures xgpu against baselines taken in the same run, on
// the same machine, interleaved round by round, and reports each figure
// with its baseline and their ratio (docs/bench.md).
//
// The cases: a synchronous call round trip (a 4-byte D2H copy, a stream
// synchronize) against a raw request/response on the same QUIC transport
// (and on TCP); the pipelined rate of asynchronous calls against raw
// framed writes on the call stream; H2D and D2H copies against one TCP
// connection (and raw striped transfers to a baseline peer on the path the
// session's bytes take: a local lane, shared memory, when the client's
// session with the server uses one, QUIC otherwise); a peer copy between
// devices of two servers against raw bulk between two processes, pushed
// through a local lane when the workers' link uses one (Env.WorkerPath)
// and over QUIC otherwise, with the payload bytes the client saw (which
// must be zero); an in-place f32 sum all-reduce over the ranks of
// Env.Ranks (bus bandwidth, algbw * 2(n-1)/n) against its link bound, the
// two baseline peers pushing to each other at once on the workers' path;
// and the transport alone, one raw QUIC stream, striped
// QUIC over one to eight lanes and a local lane, against TCP. Where the
// platform has no local lanes (peers.ErrLocalUnsupported) every reference
// is QUIC, and its name says so.
//
// On the cuda backend (a GPU machine), an Env with a Native baseline —
// the native program examples/bench/cudabench.cu, driven in serve mode by
// NativeProgram — compares xgpu with native CUDA on the same GPUs instead:
// cudaMemcpy of 4 B and cudaStreamSynchronize, cudaMemsetAsync and empty
// kernel launch rates (the launch group; xgpu loads an embedded PTX kernel),
// H2D and D2H copies against pageable and pinned native copies with the raw
// transfer on the session's path as reference (and the staging overlap,
// Overlap), and peer
// copies within one server (the peer-local group) against cudaMemcpyPeer.
// With Env.NCCL (StartNCCL: examples/bench/nccl_allreduce.py, NCCL through
// torch.distributed, one process per GPU) the all-reduce compares with NCCL
// on the same GPUs, the link bound kept as reference.
// The transport figures stay as references. Each native measurement is one
// NativeCommand, sent once per round between xgpu's, so every ratio comes
// from one run.
//
// The baselines run in a Peer (ServePeer), a process that only moves
// bytes. `xgpu bench` starts two servers (host backend, or cuda with
// --backend cuda), two peers on loopback, and for cuda the native
// program, and calls Run:
//
//	p, err := bench.ServePeer(bench.PeerConfig{})      // in each baseline process
//	info := p.Info()                                    // its addresses and pin
//
//	m, err := bench.DeviceMap(ctx, []string{srvA, srvB}) // a device on each server
//	c, err := runtime.Open(ctx, runtime.Config{Map: m})
//	env := bench.Env{Client: c, DevA: 0, DevB: 1, PeerA: a, PeerB: b,
//		WorkerPath: bench.PathLocalLane} // the servers run on one host with local lanes on
//	rep, err := bench.Run(ctx, env, bench.QuickOptions())
//	err = rep.WriteTable(os.Stdout)
//	err = rep.WriteJSON(f)
//
// On the cuda backend the Env also holds the native program, started on
// the servers' GPUs, and a second device of server A:
//
//	np, err := bench.StartNative(ctx, bench.NativeConfig{Path: "bin/cudabench", Env: []string{"CUDA_VISIBLE_DEVICES=" + gpus}})
//	defer np.Close()
//	m, err := bench.DeviceMapOf(ctx, []bench.DeviceRef{{Server: srvA}, {Server: srvB}, {Server: srvA, GPU: 1}})
//	env := bench.Env{Client: c, DevA: 0, DevB: 1, DevA2: 2, Native: np, NativeDevs: bench.NativeDevices{A: 0, A2: 1, B: 2}, ...}
//
// Concurrency: Run uses its Env alone while it runs; do not call it twice
// at once on one client. A Peer is safe for concurrent use and serves any
// number of connections. A NativeProgram is safe for concurrent use and
// runs one command at a time.
package bench
