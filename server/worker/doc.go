// Package worker is the per-session worker of an xgpu server: the process
// that opens a client session's devices on the backend, accepts the
// client's QUIC data-plane connection and executes its calls (the call
// protocol of internal/calls).
//
// The supervisor (package server) starts one worker process per session
// with `xgpu worker`, whose body is Main: it reads a Config as one JSON line
// on stdin, listens, and prints one Ready line ({"address", "cert_sha256"})
// on stdout. In-process, for tests and single-process setups:
//
//	w, err := worker.New(cfg, backend) // opens cfg.Devices on backend
//	l, ready, err := w.Listen()         // or peers.Listen with w.TLSConfig()
//	go func() { err := w.Serve(l) }()   // until the session ends
//	...
//	w.Close()
//
// # Sessions
//
// A connection's first call must be OpHello with the session token
// (compared in constant time); anything else gets cudaErrorNotPermitted and
// the connection is closed. The first authenticated connection is the
// session's client; the session ends when the client sends
// OpCloseSession, when its connection fails (closed, or silent past the
// transport's idle timeout, Config.Transport.MaxIdleTimeout), when no
// client comes within Config.ClientTimeout, or on Close. Ending frees
// everything: connections and peer links close, queued work drains and the
// devices close (their allocations, streams and events go with them).
// Other workers of the same client connect with OpHello "peer|" + token to
// deliver cross-server peer copies (OpPeerWrite).
//
// # Calls
//
// The device index of a call is the logical index of the client's device
// map. Calls with wire.FlagNoReply are asynchronous: the first failure is
// kept and returned, without executing, by the next call that expects a
// reply (cleared then, unless cudaerr.Sticky). Every pointer range must lie
// inside one live allocation of the session's device (Device.Owns) or the
// call fails with cudaErrorInvalidValue and touches nothing. Payloads up to
// calls.InlineMax travel inside frames; larger ones as bulk transfers:
// MemcpyHtoD names the client's transfer id in Aux, and MemcpyDtoH sends
// its bytes with the call's request id as the transfer id, before the
// reply (whose V1 repeats the id). Synchronizing calls whose work is not
// complete wait on waiter goroutines, so that one thread's wait does not
// hold up another's calls. After replying to OpCloseSession the worker
// waits up to a second for the client to close the connection.
//
// # Modules and kernels
//
// A module image is named by its SHA-256: the client asks OpModuleHave
// first and sends the image (OpModuleLoad, inline or as a bulk transfer)
// only when the server does not hold it. Images are kept in
// Config.ModuleCacheDir, a directory every worker of the server shares
// (written to a temporary name and renamed, checked against their digest
// on every read, so a damaged or planted file is never loaded), so that an
// image crosses the network once per server. Each device keeps its loaded
// modules by digest with a count of the client's loads (OpModuleUnload
// drops one; the last unloads), and the parameter layout of every
// function OpModuleGetFunction gave out (learned from the backend, which
// asks cuFuncGetParamInfo). OpLaunchKernel and OpLaunchCooperativeKernel
// are refused unless their function was given out on their device and
// their arguments are exactly as long as the layout; a cooperative launch
// goes to the backend's backend.CooperativeLauncher (cudaErrorNotSupported
// on a device without one), which refuses a grid the device cannot hold
// at once with cudaErrorCooperativeLaunchTooLarge. Loading runs off the reader goroutine (PTX is compiled by
// the driver). A kernel's fault is reported by the next synchronizing
// call of its device and sticks; a kernel can reach only memory of its
// own worker process's contexts, which is why every session has a
// process of its own. Devices whose backend runs no code
// (backend.Kernels) answer every module call with cudaErrorNotSupported.
//
// # Collectives
//
// OpCommInit creates a communicator (package collective) on every worker
// that holds one of its ranks; the workers link up with each other, one
// QUIC connection per pair whatever the communicators (the worker with
// the smaller address dials, says Hello with "peer|" and the other's token,
// then OpCommLink), and exchange each message as a rendezvous: the
// receiver posts its buffer (OpCollReady), the sender answers inline
// (OpCollData) or with a bulk transfer straight into it. Ranks of one
// worker exchange messages in memory. OpCollective enqueues a rank's
// operation on a stream: a host function holds the stream while the rank's
// executor stages the buffers, runs the operation and writes the result
// back, so later work on the stream sees it. A failure is kept like any
// asynchronous one; a lost or failed rank aborts the communicator on
// every worker (OpCommPeerDown). See docs/collectives.md.
//
// # Tracing and metrics
//
// A call whose frame carries a trace context (wire.FlagTrace) is a server
// span, the child of the client's span, while the process traces; Run
// sets tracing up from Config.Tracing and the OTEL_* environment, and
// flushes it when the session ends. A cross-server peer copy is a PeerSend
// span on the source worker holding a PeerWrite client span, whose context
// the destination's PeerWrite span continues. Workers count calls, bytes,
// memory and queue depth into metrics.Default(); a worker process run by
// Run reports them to its supervisor as Report lines on stdout after the
// Ready line (see docs/observability.md).
//
// # Concurrency
//
// New, Serve, Close, Stats and the accessors are safe for concurrent use.
// Each connection has one reader goroutine; replies are written under a
// per-connection lock and flushed when the reader has no more input, or at
// once when they come from elsewhere (host functions, waiters).
package worker
