package peers

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/internal/wire"
)

func TestMain(m *testing.M) {
	// quic-go warns once when it cannot get the UDP buffers it wants;
	// the tests do not depend on them.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	goleak.VerifyTestMain(m)
}

var devServer, devClient = func() (*tls.Config, *tls.Config) {
	s, c, err := certs.DevConfig()
	if err != nil {
		panic(err)
	}
	return s, c
}()

// pair returns a dialed Conn and the Conn its listener accepted.
func pair(t testing.TB, cfg *Config) (client, server *Conn, ln *Listener) {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", devServer, cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept(ctx)
		ch <- res{c, err}
	}()
	client, err = Dial(ctx, ln.Addr().String(), devClient, cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("Dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		ln.Close()
		t.Fatalf("Accept: %v", r.err)
	}
	t.Cleanup(func() {
		client.Close()
		r.c.Close()
		ln.Close()
	})
	return client, r.c, ln
}

func TestALPNMatchesCerts(t *testing.T) {
	if ALPN != certs.ALPN {
		t.Fatalf("peers.ALPN %q, certs.ALPN %q", ALPN, certs.ALPN)
	}
}

func TestCallEcho(t *testing.T) {
	tests := []struct {
		name  string
		lanes int
	}{
		{name: "no lanes", lanes: -1},
		{name: "two lanes", lanes: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv, _ := pair(t, &Config{BulkLanes: tt.lanes})
			if want := max(tt.lanes, 0); cli.BulkLanes() != want || srv.BulkLanes() != want {
				t.Fatalf("lanes: client %d, server %d, want %d", cli.BulkLanes(), srv.BulkLanes(), want)
			}
			// Echo server: replies with the body reversed.
			done := make(chan error, 1)
			go func() {
				r, w := srv.CallReader(), srv.CallWriter()
				for {
					h, body, err := r.Next()
					if err != nil {
						done <- err
						return
					}
					out := bytes.Clone(body)
					for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
						out[i], out[j] = out[j], out[i]
					}
					rh := wire.Header{Op: h.Op, Flags: wire.FlagReply, ReqID: h.ReqID}
					if err := w.WriteFrame(&rh, out); err != nil {
						done <- err
						return
					}
					if r.Buffered() == 0 {
						if err := w.Flush(); err != nil {
							done <- err
							return
						}
					}
				}
			}()
			w, r := cli.CallWriter(), cli.CallReader()
			const n = 200
			for i := range n {
				h := wire.Header{Op: 7, ReqID: uint64(i)}
				if i%2 == 0 {
					h.Flags = wire.FlagTrace
					h.Trace = wire.TraceContext{TraceID: [16]byte{1}, SpanID: [8]byte{2}, Flags: 1}
				}
				if err := w.WriteFrame(&h, []byte{byte(i), 1, 2}); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				h, body, err := r.Next()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if h.ReqID != uint64(i) || h.Flags != wire.FlagReply || !bytes.Equal(body, []byte{2, 1, byte(i)}) {
					t.Fatalf("reply %d: %+v %v", i, h, body)
				}
			}
			cli.Close()
			err := <-done
			var ce *ConnError
			if !errors.As(err, &ce) && err != io.EOF {
				t.Fatalf("server reader after client close: %v", err)
			}
		})
	}
}

// TestLanesSpread checks that each bulk lane lands on its own listener
// socket when there are enough of them.
func TestLanesSpread(t *testing.T) {
	tests := []struct {
		name           string
		lanes, sockets int
		wantPorts      int // distinct listener ports used by the lanes
	}{
		{name: "one socket", lanes: 3, sockets: -1, wantPorts: 1},
		{name: "socket per lane", lanes: 3, sockets: 4, wantPorts: 3},
		{name: "two lanes a socket", lanes: 4, sockets: 3, wantPorts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, srv, ln := pair(t, &Config{BulkLanes: tt.lanes, ListenSockets: tt.sockets})
			ports := map[int]bool{}
			for i, l := range srv.lanes {
				p := l.qc.LocalAddr().(*net.UDPAddr).Port
				ports[p] = true
				if cp := cli.lanes[i].qc.RemoteAddr().(*net.UDPAddr).Port; cp != p {
					t.Errorf("lane %d: dialer sees port %d, listener %d", i, cp, p)
				}
			}
			if len(ports) != tt.wantPorts {
				t.Errorf("lanes use %d listener ports, want %d", len(ports), tt.wantPorts)
			}
			primary := ln.Addr().(*net.UDPAddr).Port
			if tt.sockets > 1 && ports[primary] {
				t.Errorf("a lane shares the call connection's port %d", primary)
			}
		})
	}
}

func TestBulkRoundTrip(t *testing.T) {
	cli, srv, _ := pair(t, &Config{BulkLanes: 3, ChunkSize: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 100, 64 << 10, 64<<10 + 1, 3*(64<<10) - 7, 1 << 20, 5<<20 + 12345}
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		dst := make([]byte, n)
		errc := make(chan error, 1)
		go func() { errc <- srv.RecvBulk(ctx, uint64(i), dst) }()
		if err := cli.SendBulk(ctx, uint64(i), p); err != nil {
			t.Fatalf("SendBulk %d bytes: %v", n, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("RecvBulk %d bytes: %v", n, err)
		}
		if !bytes.Equal(p, dst) {
			t.Fatalf("%d bytes: data differs", n)
		}
	}
}

// echoCalls answers every call on c with its body until the stream ends.
func echoCalls(c *Conn) {
	r, w := c.CallReader(), c.CallWriter()
	for {
		h, body, err := r.Next()
		if err != nil {
			return
		}
		rh := wire.Header{Op: h.Op, Flags: wire.FlagReply, ReqID: h.ReqID}
		if w.WriteFrame(&rh, body) != nil || w.Flush() != nil {
			return
		}
	}
}

// roundTrip sends one call and waits for its reply.
func roundTrip(c *Conn, id uint64) error {
	h := wire.Header{Op: 3, ReqID: id}
	w := c.CallWriter()
	if err := w.WriteFrame(&h, []byte("ping")); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	rh, body, err := c.CallReader().Next()
	if err != nil {
		return err
	}
	if rh.ReqID != id || string(body) != "ping" {
		return fmt.Errorf("reply %+v %q", rh, body)
	}
	return nil
}

// TestCallsPassStalledBulk: a bulk transfer stuck on flow control (the
// receiver has not asked for it) must not hold up calls.
func TestCallsPassStalledBulk(t *testing.T) {
	for _, lanes := range []int{-1, 2} {
		t.Run(fmt.Sprintf("lanes=%d", lanes), func(t *testing.T) {
			cfg := &Config{BulkLanes: lanes, StreamWindow: 1 << 20, ConnWindow: 2 << 20}
			cli, srv, _ := pair(t, cfg)
			go echoCalls(srv)
			ctx, cancel := context.WithCancel(context.Background())
			sent := make(chan error, 1)
			go func() { sent <- cli.SendBulk(ctx, 1, make([]byte, 32<<20)) }()
			time.Sleep(100 * time.Millisecond) // let the window fill
			for i := range 20 {
				if err := roundTrip(cli, uint64(i)); err != nil {
					t.Fatalf("call %d behind a stalled transfer: %v", i, err)
				}
			}
			select {
			case err := <-sent:
				t.Fatalf("SendBulk returned early: %v", err)
			default:
			}
			cancel()
			if err := <-sent; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled SendBulk: %v", err)
			}
		})
	}
}

func TestRawBulkStreams(t *testing.T) {
	cli, srv, _ := pair(t, &Config{BulkLanes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const streams = 6
	errc := make(chan error, streams)
	go func() {
		for range streams {
			b, err := srv.AcceptBulk(ctx)
			if err != nil {
				errc <- err
				return
			}
			go func() {
				// Echo everything back, then close.
				_, err := io.Copy(b, b)
				if err == nil {
					err = b.Close()
				}
				errc <- err
			}()
		}
	}()
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			b, err := cli.OpenBulk(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			p := make([]byte, 100_000+i*77_777)
			fill(p, uint64(i))
			go func() {
				if _, err := b.Write(p); err != nil {
					t.Error(err)
				}
				b.Close()
			}()
			got, err := io.ReadAll(b)
			if err != nil || !bytes.Equal(got, p) {
				t.Errorf("stream %d: %d bytes back, err %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	for range streams {
		if err := <-errc; err != nil {
			t.Fatalf("server side: %v", err)
		}
	}
}

// TestBulkConcurrent sends transfers of uneven sizes both ways at once.
func TestBulkConcurrent(t *testing.T) {
	sizes := []int{1, 7, 4095, 256<<10 + 1, 1<<20 - 3, 3<<20 + 17, 9<<20 + 1234, 64 << 20}
	if testing.Short() {
		sizes = sizes[:len(sizes)-1]
	}
	cli, srv, _ := pair(t, &Config{BulkLanes: 3, ChunkSize: 256 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for dir, ends := range [][2]*Conn{{cli, srv}, {srv, cli}} {
		from, to := ends[0], ends[1]
		for i, n := range sizes {
			if dir == 1 && n > 16<<20 {
				continue // the largest goes one way only, to keep the test quick
			}
			id := uint64(dir*100 + i)
			p := make([]byte, n)
			fill(p, id+1)
			dst := make([]byte, n)
			wg.Go(func() {
				if err := from.SendBulk(ctx, id, p); err != nil {
					t.Errorf("SendBulk %d (%d bytes): %v", id, n, err)
				}
			})
			wg.Go(func() {
				if err := to.RecvBulk(ctx, id, dst); err != nil {
					t.Errorf("RecvBulk %d (%d bytes): %v", id, n, err)
					return
				}
				if !bytes.Equal(dst, p) {
					t.Errorf("transfer %d (%d bytes): data differs", id, n)
				}
			})
		}
	}
	wg.Wait()
	for _, c := range []*Conn{cli, srv} {
		if err := c.Err(); err != nil {
			t.Errorf("connection failed: %v", err)
		}
		c.reg.mu.Lock()
		if n := len(c.reg.m); n != 0 {
			t.Errorf("%d transfers left in the registry", n)
		}
		c.reg.mu.Unlock()
	}
}
