package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
)

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"empty", nil, 0.5, 0},
		{"one", []float64{7}, 0.99, 7},
		{"median odd", []float64{5, 1, 3}, 0.5, 3},
		{"median even takes the lower", []float64{4, 1, 3, 2}, 0.5, 2},
		{"p99 of 100", seq(100), 0.99, 99},
		{"p99 of 1000", seq(1000), 0.99, 990},
		{"max", []float64{2, 9, 4}, 1, 9},
		{"min", []float64{2, 9, 4}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.xs, tt.q); got != tt.want {
				t.Errorf("quantile(%v, %v) = %v, want %v", tt.xs, tt.q, got, tt.want)
			}
		})
	}
}

// seq returns 1..n.
func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	return xs
}

func TestSizeName(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want string
	}{
		{"bytes", 4, "4B"},
		{"odd bytes", 1500, "1500B"},
		{"KiB", 128 << 10, "128KiB"},
		{"MiB", 64 << 20, "64MiB"},
		{"GiB", 1 << 30, "1GiB"},
		{"MiB not GiB", 1536 << 20, "1536MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SizeName(tt.n); got != tt.want {
				t.Errorf("SizeName(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestRotated(t *testing.T) {
	tests := []struct {
		name string
		n, k int
		want []int
	}{
		{"none", 3, 0, []int{0, 1, 2}},
		{"one", 3, 1, []int{1, 2, 0}},
		{"wraps", 3, 4, []int{1, 2, 0}},
		{"single", 1, 5, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rotated(tt.n, tt.k)
			if len(got) != len(tt.want) {
				t.Fatalf("rotated(%d, %d) = %v, want %v", tt.n, tt.k, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("rotated(%d, %d) = %v, want %v", tt.n, tt.k, got, tt.want)
				}
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opt  Options
		want string // substring of the error; empty: valid
	}{
		{"zero", Options{}, ""},
		{"quick", QuickOptions(), ""},
		{"zero size", Options{Sizes: []int64{0}}, "size 0"},
		{"huge size", Options{Sizes: []int64{MaxSize + 1}}, "outside"},
		{"unknown group", Options{Groups: []string{"h2d", "kernels"}}, `unknown case group "kernels"`},
		{"negative rounds", Options{Rounds: -1}, "negative"},
		{"negative transport size", Options{TransportSize: -1}, "transport size"},
		{"two problems", Options{Sizes: []int64{-1}, Groups: []string{"x"}}, "unknown case group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opt.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error with %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "bench: "):
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if len(o.Sizes) != len(DefaultSizes) || len(o.Groups) != 0 || o.Rounds != DefaultRounds ||
		o.SyncCalls != DefaultSyncCalls || o.AsyncCalls != DefaultAsyncCalls || o.RoundBytes != DefaultRoundBytes ||
		o.TransportSize != DefaultTransportSize {
		t.Errorf("defaults: %+v", o)
	}
	q := QuickOptions().withDefaults()
	if q.Sizes[len(q.Sizes)-1] != 64<<20 || q.Rounds != 3 {
		t.Errorf("quick: %+v", q)
	}
}

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		opt  Options
		want string
	}{
		{"bad options", Env{}, Options{Rounds: -2}, "negative"},
		{"no client", Env{PeerA: PeerInfo{QUIC: "x", TCP: "y"}}, Options{}, "Client is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.env, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestServePeerRejectsConfig(t *testing.T) {
	if _, err := ServePeer(PeerConfig{MaxBytes: -1}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("ServePeer with MaxBytes -1 = %v", err)
	}
}

// TestPeerQUIC drives the peer's call stream with good and bad calls: a
// bad call gets an error reply and the session goes on.
func TestPeerQUIC(t *testing.T) {
	a, b := startPeer(t), startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := dialPeerQUIC(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.close()
	data := make([]byte, 1<<20)
	fill(data)
	got := make([]byte, len(data))

	tests := []struct {
		name string
		do   func() error
		want string // substring of the error; empty: success
	}{
		{"echo", func() error { return pc.echo([]byte("ping")) }, ""},
		{"frames", func() error { return pc.frames(100, []byte("async")) }, ""},
		{"sink", func() error { return pc.sinkBulk(ctx, data) }, ""},
		{"source", func() error { return pc.sourceBulk(ctx, got) }, ""},
		{"raw stream", func() error { return pc.sinkStream(ctx, data) }, ""},
		{"push", func() error { return pc.push(len(data), b, false) }, ""},
		{"unknown opcode", func() error { id, err := pc.send(99, nil); return orErr(err, pc.await(id)) }, "unknown opcode 99"},
		{"malformed transfer", func() error { id, err := pc.send(opSink, []byte{1, 2, 3}); return orErr(err, pc.await(id)) }, "malformed transfer"},
		{"sink too large", func() error { id, err := pc.send(opSink, pc.transferBody(77, 5<<20)); return orErr(err, pc.await(id)) }, "at most"},
		{"source too large", func() error { return pc.sourceBulk(ctx, make([]byte, 5<<20)) }, "at most"},
		{"push with a bad pin", func() error { return pc.push(16, PeerInfo{QUIC: b.QUIC, Pin: "zz"}, false) }, "not a hex SHA-256"},
		{"push with the wrong pin", func() error { return pc.push(16, PeerInfo{QUIC: b.QUIC, Pin: a.Pin}, false) }, "does not match the pin"},
		{"malformed push", func() error { id, err := pc.send(opPush, []byte{1}); return orErr(err, pc.await(id)) }, "malformed push"},
		{"echo after errors", func() error { return pc.echo([]byte("still here")) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	// The peer sources what the connection sank last (the push above went
	// from the same buffer).
	if err := pc.sinkBulk(ctx, data); err != nil {
		t.Fatal(err)
	}
	clear(got)
	if err := pc.sourceBulk(ctx, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("source returned other bytes than the sink received")
	}
}

func orErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// TestPeerRawStreamTooLarge: a raw stream announcing more than MaxBytes
// is aborted, and the connection goes on.
func TestPeerRawStreamTooLarge(t *testing.T) {
	a := startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := dialPeerQUIC(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.close()
	s, err := pc.c.OpenBulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], 1<<40)
	if _, err := s.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(s); err == nil {
		t.Error("a stream of 1 TiB was not aborted")
	}
	if err := pc.sinkStream(ctx, make([]byte, 1<<10)); err != nil {
		t.Errorf("raw stream after the aborted one: %v", err)
	}
}

// TestPeerLocalLane: a connection with a local lane joined moves its
// striped transfers through shared memory (on Linux), the peer pushes
// through a lane when asked, and bad lane calls get an error reply
// without ending the session. Where local lanes are unsupported, both
// fail with peers.ErrLocalUnsupported.
func TestPeerLocalLane(t *testing.T) {
	a, b := startPeer(t), startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if goruntime.GOOS != "linux" {
		if _, err := dialPeerLocal(ctx, a, nil); !errors.Is(err, peers.ErrLocalUnsupported) {
			t.Errorf("dialPeerLocal = %v, want ErrLocalUnsupported", err)
		}
		pc, err := dialPeerQUIC(ctx, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.close()
		if err := pc.push(16, b, true); !errors.Is(err, peers.ErrLocalUnsupported) {
			t.Errorf("push through a lane = %v, want ErrLocalUnsupported", err)
		}
		return
	}
	pc, err := dialPeerLocal(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.close()
	if !pc.local() {
		t.Fatal("no local lane after dialPeerLocal")
	}
	data := make([]byte, 6<<20) // more than one slot of the lane's ring, more than the peer takes
	fill(data)
	got := make([]byte, len(data))
	call := func(op wire.Op, body []byte) error {
		id, err := pc.send(op, body)
		return orErr(err, pc.await(id))
	}
	tests := []struct {
		name string
		do   func() error
		want string // substring of the error; empty: success
	}{
		{"sink too large", func() error { return pc.sinkBulk(ctx, data) }, "at most"},
		{"source too large", func() error { return pc.sourceBulk(ctx, got) }, "at most"},
		{"sink", func() error { return pc.sinkBulk(ctx, data[:4<<20]) }, ""},
		{"source", func() error { return pc.sourceBulk(ctx, got[:4<<20]) }, ""},
		{"push through a lane", func() error { return pc.push(4<<20, b, true) }, ""},
		{"push through a lane again", func() error { return pc.push(1<<20, b, true) }, ""},
		{"push over QUIC", func() error { return pc.push(1<<20, b, false) }, ""},
		{"push through a lane, wrong pin", func() error { return pc.push(16, PeerInfo{QUIC: b.QUIC, Pin: a.Pin}, true) }, "does not match the pin"},
		{"second offer", func() error { return call(opOfferLane, nil) }, "already attached"},
		{"offer with a body", func() error { return call(opOfferLane, []byte{1}) }, "malformed lane offer"},
		{"malformed lane push", func() error { return call(opPushLane, []byte{1}) }, "malformed push"},
		{"echo after errors", func() error { return pc.echo([]byte("still here")) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	// The peer sources what the connection sank last, through the lane.
	data, got = data[:3<<20+5], got[:3<<20+5]
	if err := pc.sinkBulk(ctx, data); err != nil {
		t.Fatal(err)
	}
	clear(got)
	if err := pc.sourceBulk(ctx, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("source returned other bytes than the sink received")
	}
	if !pc.local() || pc.c.Err() != nil {
		t.Errorf("connection after the lane calls: local %v, err %v", pc.local(), pc.c.Err())
	}
}

// TestPeerNoLocalLanes: a peer without local lanes refuses an offer and a
// push through a lane with the reply that the client turns back into
// peers.ErrLocalUnsupported, directly or relayed by the pushing peer, and
// serves on.
func TestPeerNoLocalLanes(t *testing.T) {
	a, none := startPeer(t), startPeer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	toA, err := dialPeerQUIC(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer toA.close()
	toNone, err := dialPeerQUIC(ctx, none, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer toNone.close()
	tests := []struct {
		name string
		do   func() error
	}{
		{"dial with a lane", func() error {
			pc, err := dialPeerLocal(ctx, none, nil)
			if err == nil {
				pc.close()
			}
			return err
		}},
		{"offer", func() error { return toNone.joinLane(ctx) }},
		{"push from it through a lane", func() error { return toNone.push(16, a, true) }},
		{"push to it through a lane", func() error { return toA.push(16, none, true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, peers.ErrLocalUnsupported) {
				t.Errorf("got %v, want ErrLocalUnsupported", err)
			}
		})
	}
	for _, pc := range []*peerClient{toA, toNone} {
		if err := pc.push(1<<10, none, false); err != nil || pc.local() {
			t.Errorf("push over QUIC after the refusals: %v (local lane %v)", err, pc.local())
		}
	}
}

// TestPeerTCP: good requests work, and a bad one closes the connection
// without harming the peer.
func TestPeerTCP(t *testing.T) {
	a := startPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := make([]byte, 1<<20)
	fill(data)
	tests := []struct {
		name string
		raw  []byte // a bad request, sent raw; nil: the good requests
	}{
		{"good", nil},
		{"unknown operation", tcpMsg(9, 0)},
		{"echo too long", tcpMsg(tcpEcho, maxEchoBody+1)},
		{"sink too large", tcpMsg(tcpSink, 5<<20)},
		{"source too large", tcpMsg(tcpSource, 5<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialTCP(ctx, a.TCP)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			if tt.raw == nil {
				got := make([]byte, len(data))
				for _, err := range []error{c.echo([]byte("ping")), c.sink(data), c.source(got)} {
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, data) {
					t.Error("source returned other bytes than the sink received")
				}
				return
			}
			if _, err := c.c.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := io.ReadAll(c.c); err != nil || len(n) != 0 {
				t.Errorf("the peer answered %d bytes (%v) instead of closing", len(n), err)
			}
		})
	}
	if err := (func() error {
		c, err := dialTCP(ctx, a.TCP)
		if err != nil {
			return err
		}
		defer c.close()
		return c.echo([]byte("after"))
	})(); err != nil {
		t.Errorf("peer after bad requests: %v", err)
	}
}

func tcpMsg(op byte, n int) []byte {
	b := make([]byte, tcpHeaderSize)
	tcpHeader(b, op, n)
	return b
}

func TestPathString(t *testing.T) {
	tests := []struct {
		name string
		p    Path
		want string
	}{
		{"auto", PathAuto, "auto"},
		{"quic", PathQUIC, "quic"},
		{"local lane", PathLocalLane, "local-lane"},
		{"unknown", Path(9), "Path(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFill(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{"empty", 0},
		{"short", 100},
		{"one period", 64 << 10},
		{"odd length", 200<<10 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.n)
			fill(p)
			for off := 0; off < len(p); off += 4 << 10 {
				page := p[off:min(off+4<<10, len(p))]
				if bytes.Count(page, []byte{0}) == len(page) {
					t.Fatalf("page at %d is all zero", off)
				}
			}
			for i := 64 << 10; i < len(p); i++ {
				if p[i] != p[i-64<<10] {
					t.Fatalf("byte %d breaks the 64 KiB period", i)
				}
			}
		})
	}
}
