// Package peers is the QUIC data plane of xgpu: the connection between a
// client runtime and a worker, and between two workers, that carries
// forwarded calls and bulk data.
//
// A Conn is one QUIC connection with a single ordered, bidirectional call
// stream of wire frames (opened by the dialer), plus bulk lanes: further
// QUIC connections to the same peer, set up during Dial, that carry bulk
// streams. A large copy therefore never blocks small calls, and because
// quic-go runs each connection on one goroutine, lanes spread a copy over
// cores. SendBulk/RecvBulk stripe one payload over the lanes in
// xxhash64-checked chunks that land straight in the destination buffer;
// OpenBulk/AcceptBulk give raw streams for anything else. Everything runs
// over TLS 1.3 with ALPN "xgpu/1" (see internal/certs for the cluster CA).
//
// Usage:
//
//	// server
//	ln, err := peers.Listen(":7070", serverTLS, nil) // UDP 7070-7078
//	c, err := ln.Accept(ctx)
//	h, body, err := c.CallReader().Next()       // a call
//	err = c.RecvBulk(ctx, id, staging)            // its payload
//
//	// client
//	c, err := peers.Dial(ctx, "gpu01:7070", clientTLS, nil) // 8 bulk lanes
//	w := c.CallWriter()
//	err = w.WriteFrame(&wire.Header{Op: opMemcpyHtoD, ReqID: id}, args)
//	err = w.Flush()
//	err = c.SendBulk(ctx, id, payload)
//
// A peer that dies silently is detected by QUIC keep-alives and the idle
// timeout: every pending and later operation then fails with a *ConnError
// within Config.MaxIdleTimeout (5 s by default) of the last packet heard.
//
// Concurrency: Listener and Conn methods are safe for concurrent use,
// except that the call stream's Reader and Writer each belong to one
// goroutine at a time; a BulkStream may be read by one goroutine while
// another writes it.
package peers
