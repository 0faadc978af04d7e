// Package runtime is the client side of xgpu: the Go API through which an
// application (and the libcudart shim built on it) uses the pooled GPUs of
// a device map as CUDA devices 0..n-1.
//
// # Usage
//
//	c, err := runtime.Open(ctx, runtime.Config{Map: m})        // or runtime.OpenLease(ctx, aggr, leaseID, runtime.Config{})
//	defer c.Close()
//	p, err := c.Malloc(3, 64<<20)                                // device pointers name their device
//	err = c.MemcpyHtoD(p, data)
//	s, err := c.StreamCreate(3, runtime.StreamNonBlocking, 0)
//	err = c.MemsetAsync(p, 0, 1<<20, s)                          // fire and forget
//	err = c.MemcpyDtoHAsync(out, p, s)
//	err = c.StreamSynchronize(s)                                 // out holds the data; async failures surface here
//	err = c.MemcpyPeer(q, 9, p, 3, 64<<20)                       // worker to worker when 3 and 9 sit on two servers
//	code := cudaerr.Code(err)                                    // the cudaError_t of any error
//	a, err := c.DeviceAttributes(3)                              // the GPU's own attributes, asked once per device
//	sms, _ := a.Get(runtime.DevAttrMultiProcessorCount)
//
// # Sessions
//
// Open groups the map's devices by server and asks each server
// (gRPC OpenSession) for a session; the server starts a worker process
// for it, and the client connects to the worker over QUIC (package peers)
// and presents the session's token. All calls of the devices of one
// server travel on that connection's ordered call stream; bulk payloads go
// on separate bulk streams. Close ends every session: the workers free
// everything the client held.
//
// Device i's pointers lie in its address window (devicemap.Map.WindowOf);
// the client reserves the windows in its own address space (an
// inaccessible mapping, Linux only; clients of one process share it), so
// that no host allocation lands in one and any pointer's value tells
// device from host memory: PointerGetAttributes answers without a call.
//
// # Calls
//
// Calls that return a value or wait (Malloc, MemGetInfo, StreamCreate,
// the Synchronize and Query calls, EventElapsedTime, synchronous D2H
// copies) send their frame at once and wait for the reply. Every other
// call is fire-and-forget: its frame is queued in a send buffer that goes
// out with the next synchronising call, when it fills, or when a flusher
// goroutine gets to it (after Config.FlushDelay, zero by default),
// whichever comes first; calls queued while the flusher writes go in its
// next write, so a run of asynchronous calls leaves in few writes. A failure of an asynchronous call is
// kept by the worker (or by the client, for a D2H copy) and returned by
// the next synchronising call of the session, as CUDA does. Pointers are
// checked against the client's own allocation table before anything is
// sent, so a pointer outside the client's allocations fails at the call
// with cudaErrorInvalidValue.
//
// Copies larger than calls.InlineMax move over bulk streams in chunks of
// Config.ChunkSize, up to Config.MaxInflight chunks in flight per session,
// so that the transfer of one chunk overlaps the device copy of another.
// An asynchronous D2H copy returns at once; its data is in the caller's
// buffer once a synchronising call covering its stream returns. A peer
// copy between devices of two servers is one small call to the source
// worker, which streams the bytes to the destination worker over a
// connection of their own: no payload byte passes the client (Stats
// shows it).
//
// # Errors
//
// Every error is a *Error naming the CUDA API call and the device, wrapping
// a cudaerr.Error: cudaerr.Code(err) is the cudaError_t a C caller gets. A
// session whose worker or server died, or whose network failed, ends with a
// *LostError (cudaErrorDevicesUnavailable) for every call on its devices,
// no later than Config.Transport's MaxIdleTimeout (5 s by default) after
// the last packet heard from the worker. After Close, calls fail with
// ErrClosed (cudaErrorCudartUnloading).
//
// # Concurrency
//
// A Client is safe for use by many goroutines at once. Calls made by one
// goroutine reach each worker in program order; calls of different
// goroutines interleave in some order. As in CUDA, order between streams
// is the application's business (events, synchronising calls).
package runtime
