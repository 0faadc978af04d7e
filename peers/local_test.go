//go:build linux

package peers

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/wire"
)

// localPair is pair with a local lane attached: the server offers, the
// client joins.
func localPair(t *testing.T, cfg *Config) (client, server *Conn) {
	t.Helper()
	cli, srv, _ := pair(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, tok, err := srv.OfferLocal(ctx)
	if err != nil {
		t.Fatalf("OfferLocal: %v", err)
	}
	if err := cli.JoinLocal(ctx, name, tok); err != nil {
		t.Fatalf("JoinLocal: %v", err)
	}
	if !cli.HasLocal() || !srv.HasLocal() {
		t.Fatalf("lane attached: client %v, server %v", cli.HasLocal(), srv.HasLocal())
	}
	return cli, srv
}

// TestLocalLaneTransfers: both directions, many sizes at once (larger
// than the ring, so slots are reused), chunks before their receiver.
func TestLocalLaneTransfers(t *testing.T) {
	cli, srv := localPair(t, &Config{BulkLanes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sizes := []int{0, 1, 4095, LocalSlotSize - 1, LocalSlotSize, LocalSlotSize + 1, 3*LocalSlotSize + 17, 100 << 20}
	var wg sync.WaitGroup
	for dir, ends := range [][2]*Conn{{cli, srv}, {srv, cli}} {
		from, to := ends[0], ends[1]
		for i, n := range sizes {
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
				if i%2 == 0 {
					time.Sleep(20 * time.Millisecond) // let pieces wait for their receiver
				}
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
		l := c.localLane()
		l.mu.Lock()
		if len(l.xfers) != 0 || len(l.waits) != 0 {
			t.Errorf("%d transfers and %d sends left", len(l.xfers), len(l.waits))
		}
		l.mu.Unlock()
		if len(l.free) != LocalSlots {
			t.Errorf("%d of %d slots free", len(l.free), LocalSlots)
		}
	}
	// Calls still work beside the lane.
	go echoCalls(srv)
	if err := roundTrip(cli, 7); err != nil {
		t.Fatal(err)
	}
}

// TestLocalLaneFailures: a size mismatch, a sender that gives up, a
// receiver that gives up, an orphan: each fails its transfer with an
// error, frees its slots and leaves the lane working.
func TestLocalLaneFailures(t *testing.T) {
	cli, srv := localPair(t, &Config{BulkLanes: 1, OrphanTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := make([]byte, 10*LocalSlotSize)

	t.Run("size mismatch", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { errc <- cli.SendBulk(ctx, 1, big) }()
		if err := srv.RecvBulk(ctx, 1, make([]byte, 5)); err == nil {
			t.Error("RecvBulk of the wrong size succeeded")
		}
		var be *BulkError
		if err := <-errc; !errors.As(err, &be) || be.Code != BulkRefused {
			t.Errorf("SendBulk = %v, want a refusal", err)
		}
	})
	t.Run("orphan", func(t *testing.T) {
		start := time.Now()
		if err := cli.SendBulk(ctx, 2, big[:100]); err == nil {
			t.Error("SendBulk with no receiver succeeded")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the orphan failed after %v", d)
		}
	})
	t.Run("sender gives up", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- cli.SendBulk(sctx, 3, big) }()
		time.Sleep(10 * time.Millisecond)
		scancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("SendBulk = %v, want context.Canceled", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		if err := srv.RecvBulk(rctx, 3, make([]byte, len(big))); err == nil {
			t.Error("RecvBulk of an abandoned transfer succeeded")
		}
	})
	t.Run("receiver gives up", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer rcancel()
		if err := srv.RecvBulk(rctx, 4, make([]byte, 10)); err == nil {
			t.Error("RecvBulk with no sender succeeded")
		}
	})
	// Every slot comes back and the lane still works.
	deadline := time.Now().Add(3 * time.Second)
	for len(cli.localLane().free) != LocalSlots && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(cli.localLane().free); n != LocalSlots {
		t.Errorf("%d of %d slots free after the failures", n, LocalSlots)
	}
	p := make([]byte, 3*LocalSlotSize)
	fill(p, 9)
	dst := make([]byte, len(p))
	errc := make(chan error, 1)
	go func() { errc <- cli.SendBulk(ctx, 10, p) }()
	if err := srv.RecvBulk(ctx, 10, dst); err != nil || !bytes.Equal(dst, p) {
		t.Fatalf("transfer after the failures: %v (equal %v)", err, bytes.Equal(dst, p))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestLocalLaneAdmission: a stranger with a wrong token is turned away and
// the real peer still joins; a malformed offer and an unreachable name
// fail JoinLocal cleanly, and the Conn keeps working over QUIC.
func TestLocalLaneAdmission(t *testing.T) {
	cli, srv, _ := pair(t, &Config{BulkLanes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, tok, err := srv.OfferLocal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A stranger: connects and sends garbage.
	conn, err := net.Dial("unixpacket", name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("hello"))
	conn.Close()
	bad := append([]byte(nil), tok...)
	bad[0] ^= 1
	other, _, _ := pair(t, &Config{BulkLanes: 1})
	if err := other.JoinLocal(ctx, name, bad); err == nil {
		t.Error("JoinLocal with a wrong token succeeded")
	}
	if srv.HasLocal() {
		t.Fatal("the server attached a lane for a wrong token")
	}
	for _, tt := range []struct {
		name, lane string
		tok        []byte
	}{
		{"short token", name, tok[:5]},
		{"not abstract", "/tmp/x", tok},
		{"nobody there", "@xgpu-lane-nobody", tok},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := cli.JoinLocal(ctx, tt.lane, tt.tok); err == nil {
				t.Error("JoinLocal succeeded")
			}
		})
	}
	if err := cli.JoinLocal(ctx, name, tok); err != nil {
		t.Fatalf("JoinLocal after the stranger: %v", err)
	}
	if !srv.HasLocal() || !cli.HasLocal() {
		t.Fatal("no lane after JoinLocal")
	}
	if _, _, err := srv.OfferLocal(ctx); err == nil {
		t.Error("a second OfferLocal succeeded")
	}
}

// TestLocalLanePeerGone: closing one end fails the other's transfers at
// once instead of leaving them waiting.
func TestLocalLanePeerGone(t *testing.T) {
	cli, srv := localPair(t, &Config{BulkLanes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.RecvBulk(ctx, 1, make([]byte, 100)) }()
	time.Sleep(20 * time.Millisecond)
	cli.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("RecvBulk succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RecvBulk still waits 10 s after its peer closed")
	}
}

// TestLocalLaneChecksum: a piece whose bytes do not match its xxhash64
// (here a DATA message that lies about them) fails its transfer with a
// *wire.ChecksumError, frees its slot and leaves the lane working.
func TestLocalLaneChecksum(t *testing.T) {
	cli, srv := localPair(t, &Config{BulkLanes: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := cli.localLane()
	slot := <-l.free
	data := []byte("some bytes the receiver will hash")
	if !l.copyIn(slot, data) {
		t.Fatal("copyIn failed")
	}
	if err := l.write(localMsg{typ: msgData, slot: slot, id: 5, total: uint64(len(data)), n: uint32(len(data)), sum: 12345}); err != nil {
		t.Fatal(err)
	}
	err := srv.RecvBulk(ctx, 5, make([]byte, len(data)))
	var ce *wire.ChecksumError
	if !errors.As(err, &ce) || ce.Want != 12345 {
		t.Fatalf("RecvBulk = %v, want a *wire.ChecksumError", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(l.free) != LocalSlots && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(l.free) != LocalSlots {
		t.Errorf("%d of %d slots free", len(l.free), LocalSlots)
	}
	p := make([]byte, 5<<20)
	fill(p, 3)
	dst := make([]byte, len(p))
	errc := make(chan error, 1)
	go func() { errc <- cli.SendBulk(ctx, 6, p) }()
	if err := srv.RecvBulk(ctx, 6, dst); err != nil || !bytes.Equal(dst, p) {
		t.Fatalf("transfer after the bad piece: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
