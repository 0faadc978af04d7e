package peers

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/wire"
)

// Bulk throughput over loopback. Every benchmark moves benchPayload bytes
// per iteration and counts an iteration done only when the receiver has
// everything, so b.SetBytes gives end-to-end goodput. Compare within one
// run (docs/transport.md):
//
//	go test -run '^$' -bench 'Bulk' -benchtime 8x ./peers
//
// XGPU_BENCH_MIB overrides the payload size in MiB.

func benchPayload() int {
	if v, err := strconv.Atoi(os.Getenv("XGPU_BENCH_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 64 << 20
}

const benchWrite = 1 << 20 // write size of the stream baselines

// streamBench drives one stream-shaped transport: send writes n bytes in
// benchWrite pieces, the peer reads them all and answers one byte.
func streamBench(b *testing.B, send io.Writer, recv io.Reader, ackW io.Writer, ackR io.Reader) {
	n := benchPayload()
	payload := make([]byte, n)
	fill(payload, 1)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, benchWrite)
		for range b.N {
			for got := 0; got < n; {
				m, err := recv.Read(buf[:min(len(buf), n-got)])
				if err != nil {
					errc <- err
					return
				}
				got += m
			}
			if _, err := ackW.Write([]byte{1}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	b.SetBytes(int64(n))
	b.ResetTimer()
	var ack [1]byte
	for range b.N {
		for off := 0; off < n; off += benchWrite {
			if _, err := send.Write(payload[off:min(off+benchWrite, n)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(ackR, ack[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func fill(p []byte, seed uint64) {
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
}

// BenchmarkBulkTCP is the baseline: one TCP connection on loopback.
func BenchmarkBulkTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	srv := <-accepted
	defer srv.Close()
	streamBench(b, cli, srv, srv, cli)
}

// BenchmarkBulkTLS is TLS 1.3 over one TCP connection: the same AEAD
// work as QUIC, without QUIC's per-packet costs.
func BenchmarkBulkTLS(b *testing.B) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", devServer)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		if err != nil {
			b.Error(err)
		}
		accepted <- c
	}()
	conf := devClient.Clone()
	conf.ServerName = "127.0.0.1"
	cli, err := tls.Dial("tcp", ln.Addr().String(), conf)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	srv := <-accepted
	defer srv.Close()
	streamBench(b, cli, srv, srv, cli)
}

// BenchmarkBulkQUIC1Stream is one raw bulk stream on one QUIC connection.
func BenchmarkBulkQUIC1Stream(b *testing.B) {
	cli, srv, _ := pair(b, &Config{BulkLanes: 1})
	ctx := context.Background()
	s, err := cli.OpenBulk(ctx)
	if err != nil {
		b.Fatal(err)
	}
	r, err := srv.AcceptBulk(ctx)
	if err != nil {
		b.Fatal(err)
	}
	streamBench(b, s, r, r, s)
	reportLoss(b, cli)
	s.Abort()
	r.Abort()
}

// BenchmarkBulkQUICStreams moves the payload over several raw streams at
// once, all on one QUIC connection or one per connection: more connections
// help, more streams on one connection do not (one goroutine runs each
// connection).
func BenchmarkBulkQUICStreams(b *testing.B) {
	for _, tt := range []struct{ conns, streams int }{{1, 4}, {4, 4}, {8, 8}} {
		b.Run(fmt.Sprintf("conns=%d/streams=%d", tt.conns, tt.streams), func(b *testing.B) {
			cli, srv, _ := pair(b, &Config{BulkLanes: tt.conns})
			ctx := context.Background()
			n := benchPayload()
			payload := make([]byte, n)
			fill(payload, 3)
			per := n / tt.streams
			var ss, rs []*BulkStream
			for range tt.streams {
				s, err := cli.OpenBulk(ctx)
				if err != nil {
					b.Fatal(err)
				}
				r, err := srv.AcceptBulk(ctx)
				if err != nil {
					b.Fatal(err)
				}
				ss, rs = append(ss, s), append(rs, r)
			}
			b.SetBytes(int64(per * tt.streams))
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				for i := range tt.streams {
					wg.Go(func() {
						for off := 0; off < per; off += benchWrite {
							if _, err := ss[i].Write(payload[off:min(off+benchWrite, per)]); err != nil {
								b.Error(err)
								return
							}
						}
					})
					wg.Go(func() {
						buf := make([]byte, benchWrite)
						for got := 0; got < per; {
							m, err := rs[i].Read(buf)
							if err != nil {
								b.Error(err)
								return
							}
							got += m
						}
					})
				}
				wg.Wait()
			}
			b.StopTimer()
			reportLoss(b, cli)
			for i := range ss {
				ss[i].Abort()
				rs[i].Abort()
			}
		})
	}
}

// stripedBench measures SendBulk → RecvBulk with cfg.
func stripedBench(b *testing.B, cfg *Config) {
	cli, srv, _ := pair(b, cfg)
	n := benchPayload()
	payload := make([]byte, n)
	fill(payload, 2)
	dst := make([]byte, n)
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		for i := range b.N {
			if err := srv.RecvBulk(ctx, uint64(i), dst); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	b.SetBytes(int64(n))
	b.ResetTimer()
	for i := range b.N {
		if err := cli.SendBulk(ctx, uint64(i), payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	reportLoss(b, cli)
}

// reportLoss reports the share of packets the sender declared lost.
func reportLoss(b *testing.B, c *Conn) {
	var sent, lost uint64
	for _, l := range c.allLanes() {
		st := l.qc.ConnectionStats()
		sent += st.PacketsSent
		lost += st.PacketsLost
	}
	if sent > 0 {
		b.ReportMetric(100*float64(lost)/float64(sent), "%lost")
	}
}

// BenchmarkBulkQUICStriped is SendBulk over the bulk lanes, by number of
// lanes (each on its own listener socket) and chunk size.
func BenchmarkBulkQUICStriped(b *testing.B) {
	for _, lanes := range []int{1, 2, 4, 8, 16} {
		for _, chunk := range []int{256 << 10, 1 << 20, 4 << 20} {
			b.Run(fmt.Sprintf("lanes=%d/chunk=%dKiB", lanes, chunk>>10), func(b *testing.B) {
				stripedBench(b, &Config{BulkLanes: lanes, ListenSockets: lanes + 1, ChunkSize: chunk})
			})
		}
	}
}

// BenchmarkBulkQUICTuning varies one knob at a time around the defaults.
func BenchmarkBulkQUICTuning(b *testing.B) {
	tests := []struct {
		name string
		cfg  Config
		env  map[string]string
	}{
		{name: "defaults"},
		{name: "window=6MiB", cfg: Config{StreamWindow: 6 << 20, ConnWindow: 15 << 20}},
		{name: "window=64MiB", cfg: Config{StreamWindow: 64 << 20, ConnWindow: 256 << 20}},
		{name: "sockbuf=kernel", cfg: Config{SocketBuffer: -1}},
		{name: "sockbuf=32MiB", cfg: Config{SocketBuffer: 32 << 20}},
		{name: "gso=off", env: map[string]string{"QUIC_GO_DISABLE_GSO": "true"}},
		{name: "listensockets=1", cfg: Config{ListenSockets: -1}},
		{name: "listensockets=3", cfg: Config{ListenSockets: 3}},
		{name: "lanes=8/listensockets=1", cfg: Config{BulkLanes: 8, ListenSockets: -1}},
		{name: "lanes=8/listensockets=5", cfg: Config{BulkLanes: 8, ListenSockets: 5}},
		{name: "lanes=8/listensockets=9", cfg: Config{BulkLanes: 8, ListenSockets: 9}},
		{name: "lanes=16/listensockets=17", cfg: Config{BulkLanes: 16, ListenSockets: 17}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			for k, v := range tt.env {
				b.Setenv(k, v)
			}
			cfg := tt.cfg
			stripedBench(b, &cfg)
		})
	}
}

// BenchmarkCallRoundTrip is one small request and its reply on the call
// stream.
func BenchmarkCallRoundTrip(b *testing.B) {
	cli, srv, _ := pair(b, nil)
	go func() {
		r, w := srv.CallReader(), srv.CallWriter()
		for {
			h, body, err := r.Next()
			if err != nil {
				return
			}
			h.Flags = wireFlagReply
			if w.WriteFrame(&h, body) != nil || w.Flush() != nil {
				return
			}
		}
	}()
	w, r := cli.CallWriter(), cli.CallReader()
	body := make([]byte, 4)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		h := wireHeader(uint64(i))
		if err := w.WriteFrame(&h, body); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/call")
}

const wireFlagReply = wire.FlagReply

func wireHeader(id uint64) wire.Header { return wire.Header{Op: 1, ReqID: id} }

// BenchmarkCallRoundTripTCP is the same exchange over one TCP connection,
// framed the same way: the baseline for BenchmarkCallRoundTrip.
func BenchmarkCallRoundTripTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, w := wire.NewReader(c, 0), wire.NewWriter(c, 0)
		for {
			h, body, err := r.Next()
			if err != nil {
				return
			}
			h.Flags = wire.FlagReply
			if w.WriteFrame(&h, body) != nil || w.Flush() != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r, w := wire.NewReader(c, 0), wire.NewWriter(c, 0)
	body := make([]byte, 4)
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		h := wireHeader(uint64(i))
		if err := w.WriteFrame(&h, body); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/call")
}
