// Package bench measures xgpu against baselines taken in the same run, on
// the same machine, interleaved round by round, and reports each figure
// with its baseline and their ratio (docs/bench.md).
//
// The cases: a synchronous call round trip (a 4-byte D2H copy, a stream
// synchronize) against a raw request/response on the same QUIC transport
// (and on TCP); the pipelined rate of asynchronous calls against raw
// framed writes on the call stream; H2D and D2H copies against one TCP
// connection (and the raw striped QUIC bulk lane); a peer copy between
// devices of two servers against raw striped bulk between two processes,
// with the payload bytes the client saw (which must be zero); and the
// transport's bulk lanes, one raw stream to many lanes, against TCP.
//
// The baselines run in a Peer (ServePeer), a process that only moves
// bytes. `xgpu bench` starts two host-backend servers and two peers on
// loopback and calls Run:
//
//	p, err := bench.ServePeer(bench.PeerConfig{})      // in each baseline process
//	info := p.Info()                                    // its addresses and pin
//
//	m, err := bench.DeviceMap(ctx, []string{srvA, srvB}) // a device on each server
//	c, err := runtime.Open(ctx, runtime.Config{Map: m})
//	rep, err := bench.Run(ctx, bench.Env{Client: c, DevA: 0, DevB: 1, PeerA: a, PeerB: b}, bench.QuickOptions())
//	err = rep.WriteTable(os.Stdout)
//	err = rep.WriteJSON(f)
//
// Concurrency: Run uses its Env alone while it runs; do not call it twice
// at once on one client. A Peer is safe for concurrent use and serves any
// number of connections.
package bench
