package collective

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLocalTransport(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, net *LocalNetwork)
	}{
		{"send before recv", func(t *testing.T, net *LocalNetwork) {
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(0).Send(bg(), 1, 7, []byte("hello")) }()
			time.Sleep(10 * time.Millisecond) // let the send wait
			got := make([]byte, 5)
			if err := net.Transport(1).Recv(bg(), 0, 7, got); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if string(got) != "hello" {
				t.Fatalf("got %q", got)
			}
			if net.BytesMoved() != 5 {
				t.Fatalf("BytesMoved = %d, want 5", net.BytesMoved())
			}
		}},
		{"recv before send", func(t *testing.T, net *LocalNetwork) {
			got := make([]byte, 3)
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(1).Recv(bg(), 0, 1, got) }()
			time.Sleep(10 * time.Millisecond)
			if err := net.Transport(0).Send(bg(), 1, 1, []byte("abc")); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if string(got) != "abc" {
				t.Fatalf("got %q", got)
			}
		}},
		{"matched by tag, not order", func(t *testing.T, net *LocalNetwork) {
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Go(func() { errs[0] = net.Transport(0).Send(bg(), 1, 1, []byte("one")) })
			wg.Go(func() { errs[1] = net.Transport(0).Send(bg(), 1, 2, []byte("two")) })
			b2, b1 := make([]byte, 3), make([]byte, 3)
			if err := net.Transport(1).Recv(bg(), 0, 2, b2); err != nil {
				t.Fatal(err)
			}
			if err := net.Transport(1).Recv(bg(), 0, 1, b1); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatal(errs)
			}
			if string(b1) != "one" || string(b2) != "two" {
				t.Fatalf("got %q %q", b1, b2)
			}
		}},
		{"same tag, other pair", func(t *testing.T, net *LocalNetwork) {
			var wg sync.WaitGroup
			wg.Go(func() { _ = net.Transport(0).Send(bg(), 2, 5, []byte("a")) })
			wg.Go(func() { _ = net.Transport(1).Send(bg(), 2, 5, []byte("b")) })
			a, b := make([]byte, 1), make([]byte, 1)
			if err := net.Transport(2).Recv(bg(), 1, 5, b); err != nil {
				t.Fatal(err)
			}
			if err := net.Transport(2).Recv(bg(), 0, 5, a); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if string(a)+string(b) != "ab" {
				t.Fatalf("got %q %q", a, b)
			}
		}},
		{"length mismatch fails both", func(t *testing.T, net *LocalNetwork) {
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(0).Send(bg(), 1, 3, make([]byte, 4)) }()
			err := net.Transport(1).Recv(bg(), 0, 3, make([]byte, 8))
			if !errors.Is(err, ErrMismatch) || !errors.Is(<-errc, ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch on both sides", err)
			}
		}},
		{"two sends with one tag", func(t *testing.T, net *LocalNetwork) {
			ctx, cancel := context.WithCancel(bg())
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(0).Send(ctx, 1, 9, []byte("x")) }()
			time.Sleep(10 * time.Millisecond)
			if err := net.Transport(0).Send(bg(), 1, 9, []byte("y")); !errors.Is(err, ErrMismatch) {
				t.Fatalf("second send: %v, want ErrMismatch", err)
			}
			cancel()
			<-errc
		}},
		{"cancel withdraws the message", func(t *testing.T, net *LocalNetwork) {
			ctx, cancel := context.WithCancel(bg())
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(1).Recv(ctx, 0, 4, make([]byte, 1)) }()
			time.Sleep(10 * time.Millisecond)
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("recv: %v, want context.Canceled", err)
			}
			// The withdrawn receive must not take a later send.
			sctx, scancel := context.WithTimeout(bg(), 20*time.Millisecond)
			defer scancel()
			if err := net.Transport(0).Send(sctx, 1, 4, []byte("z")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("send after withdrawn recv: %v, want a deadline error", err)
			}
		}},
		{"close fails own and peers' calls", func(t *testing.T, net *LocalNetwork) {
			errc := make(chan error, 2)
			go func() { errc <- net.Transport(0).Recv(bg(), 1, 1, make([]byte, 1)) }()
			go func() { errc <- net.Transport(2).Send(bg(), 1, 1, make([]byte, 1)) }()
			time.Sleep(10 * time.Millisecond)
			if err := net.Transport(1).Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := <-errc; !errors.Is(err, ErrPeerLost) {
					t.Fatalf("peer's call: %v, want ErrPeerLost", err)
				}
			}
			if err := net.Transport(1).Send(bg(), 0, 2, make([]byte, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("own call after close: %v, want ErrClosed", err)
			}
			if err := net.Transport(0).Send(bg(), 1, 2, make([]byte, 1)); !errors.Is(err, ErrPeerLost) {
				t.Fatalf("later call to a closed peer: %v, want ErrPeerLost", err)
			}
		}},
		{"kill", func(t *testing.T, net *LocalNetwork) {
			errc := make(chan error, 1)
			go func() { errc <- net.Transport(0).Recv(bg(), 2, 1, make([]byte, 1)) }()
			time.Sleep(10 * time.Millisecond)
			net.Kill(2)
			if err := <-errc; !errors.Is(err, ErrPeerLost) {
				t.Fatalf("got %v, want ErrPeerLost", err)
			}
			if err := net.Transport(2).Send(bg(), 0, 1, []byte("x")); err == nil {
				t.Fatal("a killed rank's call succeeded")
			}
		}},
		{"bad peers", func(t *testing.T, net *LocalNetwork) {
			for _, peer := range []int{-1, 0, 3} {
				if err := net.Transport(0).Send(bg(), peer, 1, []byte("x")); !errors.Is(err, ErrInvalidArgument) {
					t.Fatalf("peer %d: %v, want ErrInvalidArgument", peer, err)
				}
			}
		}},
		{"hosts", func(t *testing.T, net *LocalNetwork) {
			tr := net.Transport(1)
			if tr.Host(0) != "a" || tr.Host(2) != "b" || tr.Host(3) != "" || tr.Rank() != 1 || net.Size() != 3 {
				t.Fatalf("Host(0)=%q Host(2)=%q Host(3)=%q", tr.Host(0), tr.Host(2), tr.Host(3))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := NewLocalNetwork([]string{"a", "a", "b"})
			tt.run(t, net)
		})
	}
}

// TestLocalTransportConcurrent moves many messages between every pair at
// once, for the race detector.
func TestLocalTransportConcurrent(t *testing.T) {
	const n, msgs = 4, 50
	net := NewLocalNetwork(hostsOf(n, 1, false))
	var wg sync.WaitGroup
	errs := make(chan error, 2*n*n*msgs)
	for s := range n {
		for d := range n {
			if s == d {
				continue
			}
			for m := range msgs {
				wg.Go(func() {
					errs <- net.Transport(s).Send(bg(), d, uint64(m), []byte{byte(s), byte(d), byte(m)})
				})
				wg.Go(func() {
					got := make([]byte, 3)
					err := net.Transport(d).Recv(bg(), s, uint64(m), got)
					if err == nil && !bytes.Equal(got, []byte{byte(s), byte(d), byte(m)}) {
						err = errors.New("wrong payload")
					}
					errs <- err
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
