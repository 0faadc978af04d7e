package peers

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/internal/wire"
)

// abortSockets closes the UDP sockets a dialed Conn owns without telling
// the peer, as a crash would.
func (c *Conn) abortSockets() {
	c.closeOnce.Do(func() {}) // no CONNECTION_CLOSE, no stream resets
	for _, l := range c.allLanes() {
		if l.udp != nil {
			_ = l.udp.Close()
		}
	}
	// Only now stop c's goroutines: nothing they do can reach the peer.
	c.cancel(&ConnError{Remote: c.RemoteAddr(), Err: ErrClosed})
}

// TestDeadPeer kills one side without a CONNECTION_CLOSE and checks that
// every blocked operation on the other side fails within the idle-timeout
// bound, and that later ones fail at once.
func TestDeadPeer(t *testing.T) {
	const (
		keepAlive = 100 * time.Millisecond
		idle      = 600 * time.Millisecond
		// The bound: the idle timeout after the last packet heard, plus
		// slack for a loaded test machine.
		bound = idle + 1500*time.Millisecond
	)
	tests := []struct {
		name string
		kill func(cli, srv *Conn, ln *Listener)
		// survivor returns the side that must notice.
		survivor func(cli, srv *Conn) *Conn
	}{
		{
			name:     "listener crashes",
			kill:     func(_, _ *Conn, ln *Listener) { ln.abort() },
			survivor: func(cli, _ *Conn) *Conn { return cli },
		},
		{
			name:     "dialer crashes",
			kill:     func(cli, _ *Conn, _ *Listener) { cli.abortSockets() },
			survivor: func(_, srv *Conn) *Conn { return srv },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv, ln := pair(t, &Config{KeepAlivePeriod: keepAlive, MaxIdleTimeout: idle, BulkLanes: 2, StreamWindow: 1 << 20, ConnWindow: 2 << 20})
			s := tt.survivor(cli, srv)
			// Check the connection is healthy (and the keep-alives run)
			// for longer than the idle timeout.
			time.Sleep(2 * idle)
			if err := s.Err(); err != nil {
				t.Fatalf("idle connection died: %v", err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type op struct {
				name string
				run  func() error
			}
			ops := []op{
				{"CallReader.Next", func() error { _, _, err := s.CallReader().Next(); return err }},
				{"RecvBulk", func() error { return s.RecvBulk(ctx, 77, make([]byte, 10)) }},
				{"AcceptBulk", func() error { _, err := s.AcceptBulk(ctx); return err }},
				// Larger than the flow-control windows: blocks in Write.
				{"SendBulk", func() error { return s.SendBulk(ctx, 5, make([]byte, 8<<20)) }},
			}
			errs := make(chan struct {
				name string
				err  error
				at   time.Time
			}, len(ops))
			for _, o := range ops {
				go func() {
					err := o.run()
					errs <- struct {
						name string
						err  error
						at   time.Time
					}{o.name, err, time.Now()}
				}()
			}
			time.Sleep(50 * time.Millisecond) // let them block
			killed := time.Now()
			tt.kill(cli, srv, ln)
			for range ops {
				r := <-errs
				took := r.at.Sub(killed)
				var ce *ConnError
				if !errors.As(r.err, &ce) {
					t.Errorf("%s: error %v, want *ConnError", r.name, r.err)
				}
				if took > bound {
					t.Errorf("%s: failed %v after the peer died, bound %v", r.name, took, bound)
				}
				t.Logf("%s failed after %v: %v", r.name, took.Round(time.Millisecond), r.err)
			}
			var idleErr *quic.IdleTimeoutError
			if err := s.Err(); !errors.As(err, &idleErr) {
				t.Errorf("Err() = %v, want an idle timeout", err)
			}
			// Later operations fail at once.
			start := time.Now()
			if err := s.SendBulk(ctx, 9, []byte{1}); err == nil {
				t.Error("SendBulk on a dead Conn succeeded")
			}
			if _, err := s.OpenBulk(ctx); err == nil {
				t.Error("OpenBulk on a dead Conn succeeded")
			}
			if err := s.CallWriter().Flush(); err == nil {
				h := wire.Header{Op: 1}
				if err := s.CallWriter().WriteFrame(&h, nil); err == nil {
					if err := s.CallWriter().Flush(); err == nil {
						t.Error("call write on a dead Conn succeeded")
					}
				}
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("operations on a dead Conn took %v", d)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	_, foreign, err := certs.DevConfig()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		client func() *tls.Config
		want   string
	}{
		{name: "no client certificate", client: func() *tls.Config {
			c := devClient.Clone()
			c.Certificates = nil
			return c
		}, want: "certificate required"},
		{name: "certificate from another CA", client: func() *tls.Config {
			c := devClient.Clone()
			c.Certificates = foreign.Certificates
			return c
		}, want: "unknown certificate authority"},
		{name: "server from another CA", client: func() *tls.Config {
			c := foreign.Clone()
			c.Certificates = devClient.Certificates
			return c
		}, want: "certificate signed by unknown authority"},
	}
	ln, err := Listen("127.0.0.1:0", devServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, ln.Addr().String(), tt.client(), &Config{BulkLanes: -1})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial error %q, want %q", err, tt.want)
			}
			actx, acancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer acancel()
			if c, err := ln.Accept(actx); err == nil {
				c.Close()
				t.Fatal("listener accepted the connection")
			}
		})
	}

	t.Run("wrong ALPN", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := devClient.Clone()
		c.NextProtos = []string{"h3"}
		if _, err := Dial(ctx, ln.Addr().String(), c, nil); err == nil || !strings.Contains(err.Error(), "ALPN") {
			t.Fatalf("Dial with h3 only: %v", err)
		}
		// A client that bypasses Dial's check is refused by the server.
		c.ServerName = "127.0.0.1"
		qc, err := quic.DialAddr(ctx, ln.Addr().String(), c, nil)
		if err == nil {
			qc.CloseWithError(0, "")
			t.Fatal("QUIC handshake with ALPN h3 succeeded")
		}
		if !strings.Contains(err.Error(), "application protocol") {
			t.Fatalf("QUIC dial error %q", err)
		}
	})
}

// stripedStream opens a hand-made striped stream on c's first lane: the
// fake sender at the network edge for protocol tests.
func stripedStream(t *testing.T, c *Conn, id, total uint64, chunk uint32, streams uint16) *quic.Stream {
	t.Helper()
	s, err := c.bulkLane(0).OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{kindStriped}
	b = binary.LittleEndian.AppendUint64(b, id)
	b = binary.LittleEndian.AppendUint64(b, total)
	b = binary.LittleEndian.AppendUint32(b, chunk)
	b = binary.LittleEndian.AppendUint16(b, streams)
	if _, err := s.Write(b); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeChunk(s *quic.Stream, off uint64, p []byte, sum uint64) {
	h := wire.ChunkHeader{Offset: off, Len: uint32(len(p)), Sum: sum}
	_, _ = s.Write(wire.AppendChunkHeader(nil, &h))
	_, _ = s.Write(p)
}

func TestStripedProtocolErrors(t *testing.T) {
	const chunk = MinChunkSize
	data := make([]byte, 3*chunk)
	fill(data, 9)
	sum := func(off, n int) uint64 { return wire.ChunkSum(data[off : off+n]) }
	tests := []struct {
		name     string
		total    uint64
		chunk    uint32
		streams  uint16
		dstLen   int // RecvBulk's buffer; -1: no RecvBulk
		send     func(s *quic.Stream)
		wantCode BulkCode
		wantRecv func(error) bool
	}{
		{
			name: "corrupted chunk", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 3 * chunk,
			send: func(s *quic.Stream) {
				writeChunk(s, 0, data[:chunk], sum(0, chunk))
				bad := append([]byte{}, data[chunk:2*chunk]...)
				bad[100] ^= 1
				writeChunk(s, chunk, bad, sum(chunk, chunk))
			},
			wantCode: BulkChecksum,
			wantRecv: func(err error) bool { var ce *wire.ChecksumError; return errors.As(err, &ce) && ce.Offset == chunk },
		},
		{
			name: "chunk sent twice", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 3 * chunk,
			send: func(s *quic.Stream) {
				writeChunk(s, 0, data[:chunk], sum(0, chunk))
				writeChunk(s, 0, data[:chunk], sum(0, chunk))
			},
			wantCode: BulkProtocol,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "sent twice") },
		},
		{
			name: "misaligned offset", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 3 * chunk,
			send:     func(s *quic.Stream) { writeChunk(s, 10, data[10:10+chunk], sum(10, chunk)) },
			wantCode: BulkProtocol,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "bad chunk") },
		},
		{
			name: "offset past the end", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 3 * chunk,
			send:     func(s *quic.Stream) { writeChunk(s, 3*chunk, data[:chunk], sum(0, chunk)) },
			wantCode: BulkProtocol,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "bad chunk") },
		},
		{
			name: "short last chunk claimed full", total: 3*chunk - 5, chunk: chunk, streams: 1, dstLen: 3*chunk - 5,
			send:     func(s *quic.Stream) { writeChunk(s, 2*chunk, data[2*chunk:], sum(2*chunk, chunk)) },
			wantCode: BulkProtocol,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "bad chunk") },
		},
		{
			name: "stream ends early", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 3 * chunk,
			send:     func(s *quic.Stream) { writeChunk(s, 0, data[:chunk], sum(0, chunk)) },
			wantCode: BulkProtocol,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "missing") },
		},
		{
			name: "size mismatch", total: 3 * chunk, chunk: chunk, streams: 1, dstLen: 2 * chunk,
			send:     func(s *quic.Stream) { writeChunk(s, 0, data[:chunk], sum(0, chunk)) },
			wantCode: BulkRefused,
			wantRecv: func(err error) bool { return err != nil && strings.Contains(err.Error(), "receiver expects") },
		},
		{
			name: "chunk size too small", total: 3 * chunk, chunk: 100, streams: 1, dstLen: -1,
			send:     func(*quic.Stream) {},
			wantCode: BulkProtocol,
		},
		{
			name: "more streams than chunks", total: chunk, chunk: chunk, streams: 2, dstLen: -1,
			send:     func(*quic.Stream) {},
			wantCode: BulkProtocol,
		},
		{
			name: "no receiver", total: chunk, chunk: chunk, streams: 1, dstLen: -1,
			send:     func(s *quic.Stream) { writeChunk(s, 0, data[:chunk], sum(0, chunk)) },
			wantCode: BulkRefused,
		},
	}
	cli, srv, _ := pair(t, &Config{BulkLanes: 1, OrphanTimeout: 300 * time.Millisecond})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			id := uint64(1000 + i)
			recv := make(chan error, 1)
			if tt.dstLen >= 0 {
				go func() { recv <- srv.RecvBulk(ctx, id, make([]byte, tt.dstLen)) }()
			}
			s := stripedStream(t, cli, id, tt.total, tt.chunk, tt.streams)
			tt.send(s)
			_ = s.Close()
			st, err := readStatus(s)
			if err != nil {
				t.Fatalf("reading the verdict: %v", err)
			}
			if st.Code != tt.wantCode {
				t.Errorf("verdict %v (%s), want %v", st.Code, st.Msg, tt.wantCode)
			}
			if tt.dstLen >= 0 {
				if err := <-recv; !tt.wantRecv(err) {
					t.Errorf("RecvBulk: %v", err)
				}
			}
			if err := srv.Err(); err != nil {
				t.Fatalf("a bad transfer broke the connection: %v", err)
			}
		})
	}
	// The connection still carries good transfers.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := make([]byte, len(data))
	recv := make(chan error, 1)
	go func() { recv <- srv.RecvBulk(ctx, 1, dst) }()
	if err := cli.SendBulk(ctx, 1, data); err != nil {
		t.Fatalf("SendBulk after errors: %v", err)
	}
	if err := <-recv; err != nil {
		t.Fatalf("RecvBulk after errors: %v", err)
	}
}

// seen reports whether a stream of transfer id has reached the registry.
func (r *registry) seen(id uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.m[id]
	return t != nil && t.haveHdr
}

func TestBulkIDs(t *testing.T) {
	cli, srv, _ := pair(t, &Config{BulkLanes: 2, OrphanTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("id in use", func(t *testing.T) {
		first := make(chan error, 1)
		go func() { first <- srv.RecvBulk(ctx, 1, make([]byte, 5)) }()
		time.Sleep(20 * time.Millisecond)
		if err := srv.RecvBulk(ctx, 1, make([]byte, 5)); !errors.Is(err, ErrBulkIDInUse) {
			t.Fatalf("second RecvBulk with the same id: %v", err)
		}
		if err := cli.SendBulk(ctx, 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("receiver gives up", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer rcancel()
		if err := srv.RecvBulk(rctx, 2, make([]byte, 5)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("RecvBulk past its deadline: %v", err)
		}
		err := cli.SendBulk(ctx, 2, []byte("late!"))
		var be *BulkError
		if !errors.As(err, &be) || be.Code != BulkRefused || be.ID != 2 {
			t.Fatalf("SendBulk to an abandoned id: %v", err)
		}
	})
	t.Run("sender gives up", func(t *testing.T) {
		recv := make(chan error, 1)
		go func() { recv <- srv.RecvBulk(ctx, 3, make([]byte, 64<<20)) }()
		sctx, scancel := context.WithCancel(ctx)
		go func() {
			// Give up once the receiver has seen the transfer's streams.
			for !srv.reg.seen(3) {
				time.Sleep(time.Millisecond)
			}
			scancel()
		}()
		if err := cli.SendBulk(sctx, 3, make([]byte, 64<<20)); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled SendBulk: %v", err)
		}
		if err := <-recv; err == nil {
			t.Fatal("RecvBulk of a cancelled transfer succeeded")
		}
	})
	t.Run("no receiver", func(t *testing.T) {
		err := cli.SendBulk(ctx, 4, make([]byte, 3<<20))
		var be *BulkError
		if !errors.As(err, &be) || be.Code != BulkRefused {
			t.Fatalf("SendBulk with no receiver: %v", err)
		}
	})
	if err := srv.Err(); err != nil {
		t.Fatalf("connection broke: %v", err)
	}
}

func TestListenerClose(t *testing.T) {
	cli, srv, ln := pair(t, &Config{BulkLanes: 1})
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ln.Accept(context.Background()); !errors.Is(err, ErrListenerClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if err := srv.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("accepted Conn after listener Close: %v", err)
	}
	// The dialer hears the close at once, not after the idle timeout.
	select {
	case <-cli.Context().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("dialer did not notice the close")
	}
	var ae *quic.ApplicationError
	if err := cli.Err(); !errors.As(err, &ae) || !ae.Remote {
		t.Errorf("dialer error %v, want a remote close", err)
	}
	var ce *ConnError
	if _, _, err := cli.CallReader().Next(); !errors.As(err, &ce) {
		t.Errorf("call read after the listener closed: %v, want *ConnError", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "zero", cfg: Config{}},
		{name: "too many lanes", cfg: Config{BulkLanes: MaxBulkLanes + 1}, want: "BulkLanes"},
		{name: "tiny chunks", cfg: Config{ChunkSize: 100}, want: "ChunkSize"},
		{name: "tiny window", cfg: Config{StreamWindow: 1000}, want: "StreamWindow"},
		{name: "conn window below stream window", cfg: Config{StreamWindow: 32 << 20, ConnWindow: 16 << 20}, want: "ConnWindow"},
		{name: "keepalive not below idle", cfg: Config{KeepAlivePeriod: 5 * time.Second, MaxIdleTimeout: 5 * time.Second}, want: "KeepAlivePeriod"},
		{name: "negative idle", cfg: Config{MaxIdleTimeout: -1}, want: "MaxIdleTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to mention %s", err, tt.want)
			}
			if _, err := Listen("127.0.0.1:0", devServer, &tt.cfg); err == nil {
				t.Fatal("Listen accepted an invalid config")
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	// A UDP socket that never answers.
	silent, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tests := []struct {
		name string
		addr string
		tls  *tls.Config
		cfg  *Config
		want func(error) bool
	}{
		{name: "nobody answers", addr: silent.LocalAddr().String(), tls: devClient,
			want: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "no port", addr: "127.0.0.1", tls: devClient,
			want: func(err error) bool { return strings.Contains(err.Error(), "missing port") }},
		{name: "nil TLS config", addr: silent.LocalAddr().String(),
			want: func(err error) bool { return strings.Contains(err.Error(), "nil TLS config") }},
		{name: "invalid config", addr: silent.LocalAddr().String(), tls: devClient, cfg: &Config{ChunkSize: 1},
			want: func(err error) bool { return strings.Contains(err.Error(), "ChunkSize") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, tt.addr, tt.tls, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !tt.want(err) {
				t.Fatalf("Dial error: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Dial took %v", d)
			}
		})
	}
}
