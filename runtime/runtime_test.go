package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	goruntime "runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/peers"
)

// pattern returns n bytes that differ with seed and position.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8 && i+k < n; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func mustMalloc(t testing.TB, c *Client, dev int, n uint64) uint64 {
	t.Helper()
	p, err := c.Malloc(dev, n)
	if err != nil {
		t.Fatalf("Malloc(%d, %d): %v", dev, n, err)
	}
	return p
}

func wantCode(t testing.TB, err error, code cudaerr.Error) {
	t.Helper()
	if got := cudaerr.Code(err); got != code {
		t.Fatalf("error %v has code %v, want %v", err, got, code)
	}
	if code != cudaerr.Success {
		var re *Error
		if !errors.As(err, &re) {
			t.Fatalf("error %v is not a *runtime.Error", err)
		}
	}
}

// TestCopiesToEveryDevice writes data of uneven sizes from 1 byte to
// 64 MiB to every device of three servers, synchronously and on streams,
// at uneven offsets, and reads it back.
func TestCopiesToEveryDevice(t *testing.T) {
	cl := newCluster(t, 3, 2)
	// Client and workers share this host: bulk data goes through local
	// lanes (shared memory) unless the client turns them off.
	for _, quic := range []bool{false, true} {
		name := "local lane"
		if quic {
			name = "quic"
		}
		t.Run(name, func(t *testing.T) {
			cfg := cl.config()
			cfg.dataAddr = nil // no relay: this test moves a lot of data
			cfg.NoLocalLane = quic
			c := cl.open(t, cfg)
			copiesToEveryDevice(t, c)
			for _, s := range c.Stats().Sessions {
				if s.LocalLane == quic {
					t.Errorf("session on %s: local lane %v, want %v", s.Server, s.LocalLane, !quic)
				}
			}
		})
	}
}

func copiesToEveryDevice(t *testing.T, c *Client) {
	small := []int{1, 7, 255, 4096 + 3, calls.InlineMax, calls.InlineMax + 1, 1<<20 + 17}
	// Sizes around and across chunk boundaries, and 64 MiB, on some
	// devices each: every size crosses the network once per direction.
	large := map[int][]int{0: {64 << 20}, 1: {DefaultChunkSize + 5}, 2: {3*DefaultChunkSize - 9}, 3: {DefaultChunkSize}}
	if raceOn {
		large = map[int][]int{0: {64 << 20}, 3: {DefaultChunkSize + 5}}
	}
	var wg sync.WaitGroup
	for dev := range c.DeviceCount() {
		wg.Go(func() {
			for k, n := range append(small, large[dev]...) {
				async := (dev+k)%2 == 1
				if err := roundTrip(c, dev, n, 3, uint64(dev*1000+k), async); err != nil {
					t.Errorf("device %d, %d bytes (async %v): %v", dev, n, async, err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.PayloadSent() == 0 || st.PayloadReceived() != st.PayloadSent() {
		t.Errorf("payload sent %d, received %d: want equal and non-zero", st.PayloadSent(), st.PayloadReceived())
	}
}

// roundTrip copies n bytes of pattern seed to device dev at offset off
// and back, and compares.
func roundTrip(c *Client, dev, n, off int, seed uint64, async bool) error {
	p, err := c.Malloc(dev, uint64(n+off))
	if err != nil {
		return err
	}
	defer c.Free(p)
	in := pattern(n, seed)
	out := make([]byte, n)
	dst := p + uint64(off)
	if async {
		s, err := c.StreamCreate(dev, StreamNonBlocking, 0)
		if err != nil {
			return err
		}
		defer c.StreamDestroy(s)
		if err := c.MemcpyHtoDAsync(dst, in, s); err != nil {
			return err
		}
		if err := c.MemcpyDtoHAsync(out, dst, s); err != nil {
			return err
		}
		if err := c.StreamSynchronize(s); err != nil {
			return err
		}
	} else {
		if err := c.MemcpyHtoD(dst, in); err != nil {
			return err
		}
		if err := c.MemcpyDtoH(out, dst); err != nil {
			return err
		}
	}
	if i := firstDiff(in, out); i >= 0 {
		return fmt.Errorf("byte %d differs: wrote %#x, read %#x", i, in[i], out[i])
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// TestDeviceToDeviceCopies copies between every ordered pair of devices
// of two servers (the same device, two of one server, two of two servers)
// with every copy call, and checks every byte.
func TestDeviceToDeviceCopies(t *testing.T) {
	cl := newCluster(t, 2, 2, withWorkerProcesses())
	c := cl.open(t, cl.config())
	n := 3*calls.InlineMax + 333 // bulk on every path
	type call struct {
		name string
		copy func(c *Client, dst uint64, dd int, src uint64, sd int, n uint64, s Stream) error
		sync bool
	}
	cases := []call{
		{"MemcpyDtoD", func(c *Client, dst uint64, _ int, src uint64, _ int, n uint64, _ Stream) error {
			return c.MemcpyDtoD(dst, src, n)
		}, true},
		{"MemcpyDtoDAsync", func(c *Client, dst uint64, _ int, src uint64, _ int, n uint64, s Stream) error {
			return c.MemcpyDtoDAsync(dst, src, n, s)
		}, false},
		{"MemcpyPeer", func(c *Client, dst uint64, dd int, src uint64, sd int, n uint64, _ Stream) error {
			return c.MemcpyPeer(dst, dd, src, sd, n)
		}, true},
		{"MemcpyPeerAsync", func(c *Client, dst uint64, dd int, src uint64, sd int, n uint64, s Stream) error {
			return c.MemcpyPeerAsync(dst, dd, src, sd, n, s)
		}, false},
	}
	for k, cc := range cases {
		t.Run(cc.name, func(t *testing.T) {
			for sd := range c.DeviceCount() {
				for dd := range c.DeviceCount() {
					seed := uint64(k*100 + sd*10 + dd)
					in := pattern(n, seed)
					src := mustMalloc(t, c, sd, uint64(n))
					dst := mustMalloc(t, c, dd, uint64(n)+64)
					if err := c.MemcpyHtoD(src, in); err != nil {
						t.Fatal(err)
					}
					if err := c.Memset(dst, 0xee, uint64(n)+64); err != nil {
						t.Fatal(err)
					}
					if err := c.DeviceSynchronize(dd); err != nil {
						t.Fatal(err)
					}
					s, err := c.StreamCreate(sd, StreamDefault, 0)
					if err != nil {
						t.Fatal(err)
					}
					if err := cc.copy(c, dst+32, dd, src, sd, uint64(n), s); err != nil {
						t.Fatalf("%d -> %d: %v", sd, dd, err)
					}
					if !cc.sync {
						if err := c.StreamSynchronize(s); err != nil {
							t.Fatalf("%d -> %d: sync: %v", sd, dd, err)
						}
					}
					out := make([]byte, n+64)
					if err := c.MemcpyDtoH(out, dst); err != nil {
						t.Fatal(err)
					}
					if i := firstDiff(in, out[32:32+n]); i >= 0 {
						t.Fatalf("%d -> %d: byte %d differs", sd, dd, i)
					}
					for _, b := range append(out[:32:32], out[32+n:]...) {
						if b != 0xee {
							t.Fatalf("%d -> %d: copy wrote outside its range", sd, dd)
						}
					}
					for _, err := range []error{c.StreamDestroy(s), c.Free(src), c.Free(dst)} {
						if err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		})
	}
}

// TestCrossServerCopyBypassesClient copies 64 MiB between devices of two
// servers and checks that no payload byte crossed the client's
// connections: neither its own counters nor the relays that carry every
// UDP datagram between it and the workers grew by more than the calls
// and the transport's acknowledgements.
func TestCrossServerCopyBypassesClient(t *testing.T) {
	cl := newCluster(t, 2, 1, withWorkerProcesses())
	c := cl.open(t, cl.config())
	n := uint64(64<<20 + 5)
	if raceOn {
		n = 2*DefaultChunkSize + 5
	}
	in := pattern(int(n), 42)
	src := mustMalloc(t, c, 0, n)
	dst := mustMalloc(t, c, 1, n)
	if err := c.MemcpyHtoD(src, in); err != nil {
		t.Fatal(err)
	}
	if err := c.Memset(dst, 0, n); err != nil {
		t.Fatal(err)
	}
	if err := c.DeviceSynchronize(1); err != nil {
		t.Fatal(err)
	}
	before, relayBefore := c.Stats(), cl.relayBytes()

	if err := c.MemcpyPeer(dst, 1, src, 0, n); err != nil {
		t.Fatal(err)
	}

	after, relayAfter := c.Stats(), cl.relayBytes()
	if d := after.PayloadSent() - before.PayloadSent(); d != 0 {
		t.Errorf("client sent %d payload bytes during the copy", d)
	}
	if d := after.PayloadReceived() - before.PayloadReceived(); d != 0 {
		t.Errorf("client received %d payload bytes during the copy", d)
	}
	// The calls are a few hundred bytes; QUIC acknowledgements and
	// keep-alives add a few kilobytes at most.
	if d := relayAfter - relayBefore; d > 64<<10 {
		t.Errorf("%d bytes crossed the client's connections during a %d-byte copy", d, n)
	} else {
		t.Logf("%d bytes crossed the client's connections during a %d-byte copy", d, n)
	}
	out := make([]byte, n)
	if err := c.MemcpyDtoH(out, dst); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(in, out); i >= 0 {
		t.Fatalf("byte %d differs after the peer copy", i)
	}
}

// TestAsyncErrorSurfacesAtNextSync checks that an asynchronous call's
// failure is reported by the next synchronising call of its session, once,
// and that the calls after it work.
func TestAsyncErrorSurfacesAtNextSync(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 0, 4096)
	tests := []struct {
		name  string
		fail  func() error // an asynchronous call that fails on the worker
		sync  func() error // the next synchronising call
		code  cudaerr.Error
		other func() error // a synchronising call of the other session: unaffected
	}{
		{
			name: "record of a destroyed event",
			fail: func() error {
				e, err := c.EventCreate(0, EventDefault)
				if err != nil {
					return err
				}
				if err := c.EventDestroy(e); err != nil {
					return err
				}
				return c.EventRecord(e, LegacyStream(0))
			},
			sync:  func() error { return c.StreamSynchronize(LegacyStream(0)) },
			code:  cudaerr.InvalidResourceHandle,
			other: func() error { return c.DeviceSynchronize(1) },
		},
		{
			name: "memset on a destroyed stream",
			fail: func() error {
				s, err := c.StreamCreate(0, StreamNonBlocking, 0)
				if err != nil {
					return err
				}
				if err := c.StreamDestroy(s); err != nil {
					return err
				}
				return c.MemsetAsync(p, 1, 16, s)
			},
			sync: func() error { _, _, err := c.MemGetInfo(0); return err },
			code: cudaerr.InvalidResourceHandle,
		},
		{
			name: "D2H on a destroyed stream",
			fail: func() error {
				s, err := c.StreamCreate(0, StreamNonBlocking, 0)
				if err != nil {
					return err
				}
				if err := c.StreamDestroy(s); err != nil {
					return err
				}
				return c.MemcpyDtoHAsync(make([]byte, 16), p, s)
			},
			sync: func() error { return c.DeviceSynchronize(0) },
			code: cudaerr.InvalidResourceHandle,
		},
		{
			name: "large H2D on a destroyed stream",
			fail: func() error {
				s, err := c.StreamCreate(0, StreamNonBlocking, 0)
				if err != nil {
					return err
				}
				if err := c.StreamDestroy(s); err != nil {
					return err
				}
				q, err := c.Malloc(0, 1<<20)
				if err != nil {
					return err
				}
				defer c.Free(q)
				return c.MemcpyHtoDAsync(q, make([]byte, 1<<20), s)
			},
			sync: func() error { return c.DeviceSynchronize(0) },
			code: cudaerr.InvalidResourceHandle,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fail(); err != nil {
				t.Fatalf("the asynchronous call failed at once: %v", err)
			}
			if tt.other != nil {
				if err := tt.other(); err != nil {
					t.Fatalf("another session saw the failure: %v", err)
				}
			}
			wantCode(t, tt.sync(), tt.code)
			if err := tt.sync(); err != nil {
				t.Fatalf("the failure was reported twice: %v", err)
			}
			if err := c.MemcpyHtoD(p, []byte{1, 2, 3}); err != nil {
				t.Fatalf("the session did not recover: %v", err)
			}
		})
	}
}

// TestStreamOrder checks that the calls of one stream run in order and
// that async D2H data is in place when the stream is synchronized.
func TestStreamOrder(t *testing.T) {
	cl := newCluster(t, 1, 2)
	c := cl.open(t, cl.config())
	const n = 256 << 10
	a, b := mustMalloc(t, c, 0, n), mustMalloc(t, c, 0, n)
	s, err := c.StreamCreate(0, StreamNonBlocking, StreamPriorityGreatest)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([][]byte, 20)
	for i := range outs {
		outs[i] = make([]byte, n)
		// Each round overwrites a and b; the D2H of round i must see
		// round i's data, not a later one's.
		if err := c.MemsetAsync(a, byte(i), n, s); err != nil {
			t.Fatal(err)
		}
		if err := c.MemcpyHtoDAsync(a, bytes.Repeat([]byte{byte(i + 100)}, n/2), s); err != nil {
			t.Fatal(err)
		}
		if err := c.MemcpyDtoDAsync(b, a, n, s); err != nil {
			t.Fatal(err)
		}
		if err := c.MemcpyDtoHAsync(outs[i], b, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.StreamSynchronize(s); err != nil {
		t.Fatal(err)
	}
	for i, out := range outs {
		want := append(bytes.Repeat([]byte{byte(i + 100)}, n/2), bytes.Repeat([]byte{byte(i)}, n/2)...)
		if j := firstDiff(want, out); j >= 0 {
			t.Fatalf("round %d: byte %d is %d, want %d", i, j, out[j], want[j])
		}
	}
	if err := c.StreamQuery(s); err != nil {
		t.Fatalf("StreamQuery after synchronize: %v", err)
	}
	if err := c.StreamDestroy(s); err != nil {
		t.Fatal(err)
	}

	// The legacy stream synchronizes with blocking streams: its
	// synchronize covers their D2H data.
	bs, err := c.StreamCreate(0, StreamDefault, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MemsetAsync(a, 0x77, n, bs); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, n)
	if err := c.MemcpyDtoHAsync(out, a, bs); err != nil {
		t.Fatal(err)
	}
	if err := c.StreamSynchronize(LegacyStream(0)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, bytes.Repeat([]byte{0x77}, n)) {
		t.Fatal("legacy stream synchronize returned before a blocking stream's D2H data")
	}
	if err := c.StreamDestroy(bs); err != nil {
		t.Fatal(err)
	}
}

// TestEvents checks event records, queries, synchronization, elapsed time
// and waits across streams and devices.
func TestEvents(t *testing.T) {
	cl := newCluster(t, 2, 2, withWorkerProcesses())
	c := cl.open(t, cl.config())
	const big = 256 << 20
	p := mustMalloc(t, c, 0, big)
	s, err := c.StreamCreate(0, StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.EventCreate(0, EventDefault)
	if err != nil {
		t.Fatal(err)
	}
	end, err := c.EventCreate(0, EventBlockingSync)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EventQuery(end); err != nil {
		t.Fatalf("query of a never recorded event: %v", err)
	}

	t.Run("query and elapsed time", func(t *testing.T) {
		if err := c.EventRecord(start, s); err != nil {
			t.Fatal(err)
		}
		for i := range 8 { // a fraction of a second of work on the host backend
			if err := c.MemsetAsync(p, byte(i), big, s); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.EventRecord(end, s); err != nil {
			t.Fatal(err)
		}
		wantCode(t, c.EventQuery(end), cudaerr.NotReady)
		wantCode(t, c.StreamQuery(s), cudaerr.NotReady)
		if err := c.EventSynchronize(end); err != nil {
			t.Fatal(err)
		}
		if err := c.EventQuery(end); err != nil {
			t.Fatalf("query after synchronize: %v", err)
		}
		ms, err := c.EventElapsedTime(start, end)
		if err != nil {
			t.Fatal(err)
		}
		if ms <= 0 {
			t.Fatalf("elapsed time %v ms, want > 0", ms)
		}
	})

	t.Run("record covers async D2H data", func(t *testing.T) {
		out := make([]byte, 1<<20+1)
		if err := c.MemsetAsync(p, 0x5a, uint64(len(out)), s); err != nil {
			t.Fatal(err)
		}
		if err := c.MemcpyDtoHAsync(out, p, s); err != nil {
			t.Fatal(err)
		}
		if err := c.EventRecord(end, s); err != nil {
			t.Fatal(err)
		}
		if err := c.EventSynchronize(end); err != nil {
			t.Fatal(err)
		}
		for i, b := range out {
			if b != 0x5a {
				t.Fatalf("byte %d is %#x after the event", i, b)
			}
		}
	})

	t.Run("wait across streams and servers", func(t *testing.T) {
		for _, other := range []int{1, 2} { // same server, other server
			q := mustMalloc(t, c, other, 1<<20)
			os, err := c.StreamCreate(other, StreamNonBlocking, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.MemsetAsync(p, byte(other), big, s); err != nil {
				t.Fatal(err)
			}
			if err := c.EventRecord(end, s); err != nil {
				t.Fatal(err)
			}
			if err := c.StreamWaitEvent(os, end); err != nil {
				t.Fatal(err)
			}
			// The peer copy on the other device's stream must see the
			// memset.
			if err := c.MemcpyPeerAsync(q, other, p, 0, 1<<20, s); err != nil {
				t.Fatal(err)
			}
			if err := c.StreamSynchronize(s); err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 1<<20)
			if err := c.MemcpyDtoH(out, q); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, bytes.Repeat([]byte{byte(other)}, 1<<20)) {
				t.Fatalf("device %d did not see the memset before the copy", other)
			}
			if err := c.StreamDestroy(os); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("bad event arguments", func(t *testing.T) {
		e1, err := c.EventCreate(1, EventDisableTiming)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.EventElapsedTime(start, e1)
		wantCode(t, err, cudaerr.InvalidResourceHandle)
		wantCode(t, c.EventRecord(e1, s), cudaerr.InvalidResourceHandle) // stream of another device
		if err := c.EventRecord(e1, LegacyStream(1)); err != nil {
			t.Fatal(err)
		}
		_, err = c.EventElapsedTime(e1, e1)
		wantCode(t, err, cudaerr.InvalidResourceHandle) // timing disabled
		if err := c.EventDestroy(e1); err != nil {
			t.Fatal(err)
		}
	})
	for _, e := range []Event{start, end} {
		if err := c.EventDestroy(e); err != nil {
			t.Fatal(err)
		}
	}
}

// TestManyGoroutines runs many goroutines, each with its own stream and
// buffers on some device, at once.
func TestManyGoroutines(t *testing.T) {
	cl := newCluster(t, 2, 2, withWorkerProcesses())
	c := cl.open(t, cl.config())
	const workers, rounds = 16, 8
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			dev := g % c.DeviceCount()
			peer := (g + 1) % c.DeviceCount()
			s, err := c.StreamCreate(dev, StreamNonBlocking, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.StreamDestroy(s)
			for r := range rounds {
				n := 1 + (g*7919+r*104729)%(192<<10)
				in := pattern(n, uint64(g<<16|r))
				p, err := c.Malloc(dev, uint64(n))
				if err != nil {
					t.Error(err)
					return
				}
				q, err := c.Malloc(peer, uint64(n))
				if err != nil {
					t.Error(err)
					return
				}
				out := make([]byte, n)
				err = errors.Join(
					c.MemcpyHtoDAsync(p, in, s),
					c.MemcpyPeerAsync(q, peer, p, dev, uint64(n), s),
					c.MemsetAsync(p, 0, uint64(n), s),
					c.StreamSynchronize(s),
					c.MemcpyDtoH(out, q),
				)
				if err != nil {
					t.Error(err)
					return
				}
				if i := firstDiff(in, out); i >= 0 {
					t.Errorf("goroutine %d round %d: byte %d differs", g, r, i)
					return
				}
				if err := errors.Join(c.Free(p), c.Free(q)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for dev := range c.DeviceCount() {
		if err := c.DeviceSynchronize(dev); err != nil {
			t.Fatal(err)
		}
		free, total, err := c.MemGetInfo(dev)
		if err != nil {
			t.Fatal(err)
		}
		if free != total {
			t.Errorf("device %d: %d of %d bytes free after every buffer was freed", dev, free, total)
		}
	}
}

// TestAsyncCallsProgressWithoutSync checks that an asynchronous call
// leaves the client on its own, with no synchronising call after it.
func TestAsyncCallsProgressWithoutSync(t *testing.T) {
	cl := newCluster(t, 1, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 0, 4096)
	before := cl.relayBytes()
	if err := c.MemsetAsync(p, 7, 4096, LegacyStream(0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for cl.relayBytes() == before {
		if time.Now().After(deadline) {
			t.Fatal("the asynchronous call did not leave the client within a second")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestLostWorker cuts the path to one server's worker silently, as a
// killed worker, host or network would, and checks that calls on its
// devices fail within the idle timeout with cudaErrorDevicesUnavailable
// while the other server's devices go on working.
func TestLostWorker(t *testing.T) {
	const idle = time.Second
	cl := newCluster(t, 2, 1, withWorkerIdle(idle))
	cfg := cl.config()
	cfg.Transport = &peers.Config{MaxIdleTimeout: idle, KeepAlivePeriod: idle / 4}
	c := cl.open(t, cfg)
	p := mustMalloc(t, c, 0, 1<<20)
	q := mustMalloc(t, c, 1, 1<<20)
	s, err := c.StreamCreate(0, StreamNonBlocking, 0)
	if err != nil {
		t.Fatal(err)
	}
	lost := c.Stats().Sessions[0]
	r, err := cl.relay(lost.DataAddress)
	if err != nil {
		t.Fatal(err)
	}

	r.cut.Store(true)
	start := time.Now()
	// A call in flight when the worker went silent, and calls made later,
	// all fail.
	errc := make(chan error, 1)
	go func() { errc <- c.StreamSynchronize(s) }()
	out := make([]byte, 1<<20)
	err = c.MemcpyDtoH(out, p)
	elapsed := time.Since(start)
	wantCode(t, err, cudaerr.DevicesUnavailable)
	var le *LostError
	if !errors.As(err, &le) || le.Addr != lost.DataAddress {
		t.Fatalf("error %v is not a LostError naming %s", err, lost.DataAddress)
	}
	// The bound: the idle timeout after the last packet, plus scheduling.
	if elapsed > idle+time.Second {
		t.Fatalf("the loss took %v to surface, bound %v", elapsed, idle)
	}
	t.Logf("loss surfaced after %v (idle timeout %v)", elapsed, idle)
	wantCode(t, <-errc, cudaerr.DevicesUnavailable)
	t0 := time.Now()
	wantCode(t, c.MemsetAsync(p, 0, 16, s), cudaerr.DevicesUnavailable)
	_, err = c.Malloc(0, 16)
	wantCode(t, err, cudaerr.DevicesUnavailable)
	if time.Since(t0) > 100*time.Millisecond {
		t.Error("calls on a lost session do not fail at once")
	}
	if c.Stats().Sessions[0].Lost == nil {
		t.Error("Stats does not report the lost session")
	}

	// The other server's device is unaffected.
	in := pattern(1<<20, 9)
	if err := c.MemcpyHtoD(q, in); err != nil {
		t.Fatal(err)
	}
	if err := c.MemcpyDtoH(out, q); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("the surviving device returned wrong data")
	}
	// A peer copy towards the lost device fails too.
	wantCode(t, c.MemcpyPeer(p, 0, q, 1, 16), cudaerr.DevicesUnavailable)
}

// TestClosedWorker ends a worker from its side: calls fail at once.
func TestClosedWorker(t *testing.T) {
	cl := newCluster(t, 1, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 0, 64)
	for _, h := range cl.servers[0].rec.workers() {
		if err := h.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := c.MemcpyDtoH(make([]byte, 64), p)
	wantCode(t, err, cudaerr.DevicesUnavailable)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a closed worker took %v to surface", d)
	}
}

// TestBadArguments checks that calls with bad arguments fail at once with
// CUDA's code and send nothing.
func TestBadArguments(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 0, 4096)
	q := mustMalloc(t, c, 1, 4096)
	s1, err := c.StreamCreate(1, StreamDefault, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := c.Map().WindowOf(0)
	buf := make([]byte, 128)
	tests := []struct {
		name string
		call func() error
		code cudaerr.Error
	}{
		{"malloc on a device outside the map", func() error { _, err := c.Malloc(2, 64); return err }, cudaerr.InvalidDevice},
		{"malloc on a negative device", func() error { _, err := c.Malloc(-1, 64); return err }, cudaerr.InvalidDevice},
		{"free of an interior pointer", func() error { return c.Free(p + 8) }, cudaerr.InvalidValue},
		{"free of a host pointer", func() error { return c.Free(0x1000) }, cudaerr.InvalidValue},
		{"free of an unallocated window address", func() error { return c.Free(lo + 1<<29) }, cudaerr.InvalidValue},
		{"copy past the allocation", func() error { return c.MemcpyHtoD(p+4000, buf[:97]) }, cudaerr.InvalidValue},
		{"copy from a host address", func() error { return c.MemcpyDtoH(buf[:64], 0x1000) }, cudaerr.InvalidValue},
		{"memset past the allocation", func() error { return c.Memset(p, 0, 4097) }, cudaerr.InvalidValue},
		{"misaligned D32 memset", func() error { return c.MemsetD32Async(p+2, 1, 4, LegacyStream(0)) }, cudaerr.InvalidValue},
		{"stream of another device", func() error { return c.MemsetAsync(p, 0, 16, s1) }, cudaerr.InvalidResourceHandle},
		{"peer copy with swapped devices", func() error { return c.MemcpyPeer(q, 0, p, 1, 16) }, cudaerr.InvalidValue},
		{"peer copy to a device outside the map", func() error { return c.MemcpyPeer(q, 5, p, 0, 16) }, cudaerr.InvalidDevice},
		{"destroy the legacy stream", func() error { return c.StreamDestroy(LegacyStream(0)) }, cudaerr.InvalidResourceHandle},
		{"stream on a device outside the map", func() error { _, err := c.StreamCreate(7, 0, 0); return err }, cudaerr.InvalidDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Stats()
			wantCode(t, tt.call(), tt.code)
			after := c.Stats()
			for k := range after.Sessions {
				a, b := after.Sessions[k], before.Sessions[k]
				if a.Calls != b.Calls || a.AsyncCalls != b.AsyncCalls {
					t.Errorf("session %d sent calls for a bad call", k)
				}
			}
		})
	}
	t.Run("zero-byte calls do nothing", func(t *testing.T) {
		for _, err := range []error{c.MemcpyHtoD(p, nil), c.MemcpyDtoH(nil, p), c.MemcpyDtoD(q, p, 0), c.Memset(p, 0, 0), c.Free(0)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if x, err := c.Malloc(0, 0); x != 0 || err != nil {
			t.Fatalf("Malloc(0) = %#x, %v", x, err)
		}
	})
}

// TestMemoryAndPointers checks MemGetInfo and PointerGetAttributes
// against allocations.
func TestMemoryAndPointers(t *testing.T) {
	cl := newCluster(t, 1, 2)
	c := cl.open(t, cl.config())
	free0, total, err := c.MemGetInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	if total != testDeviceMemory || free0 != total {
		t.Fatalf("MemGetInfo = %d, %d; want %d free of %d", free0, total, testDeviceMemory, testDeviceMemory)
	}
	p := mustMalloc(t, c, 1, 10<<20)
	free1, _, err := c.MemGetInfo(1)
	if err != nil {
		t.Fatal(err)
	}
	if free0-free1 < 10<<20 {
		t.Fatalf("free went from %d to %d after a 10 MiB allocation", free0, free1)
	}
	lo, hi := c.Map().WindowOf(1)
	if p < lo || p >= hi || p%256 != 0 {
		t.Fatalf("pointer %#x outside device 1's window [%#x, %#x) or misaligned", p, lo, hi)
	}
	tests := []struct {
		name string
		ptr  uint64
		want PointerAttributes
		code cudaerr.Error
	}{
		{"base", p, PointerAttributes{Type: MemoryTypeDevice, Device: 1, DevicePointer: p, Base: p, Size: 10 << 20}, 0},
		{"interior", p + 12345, PointerAttributes{Type: MemoryTypeDevice, Device: 1, DevicePointer: p + 12345, Base: p, Size: 10 << 20}, 0},
		{"last byte", p + 10<<20 - 1, PointerAttributes{Type: MemoryTypeDevice, Device: 1, DevicePointer: p + 10<<20 - 1, Base: p, Size: 10 << 20}, 0},
		{"past the end", p + 10<<20, PointerAttributes{}, cudaerr.InvalidValue},
		{"window of device 0", c.Map().Base + 4096, PointerAttributes{}, cudaerr.InvalidValue},
		{"host", 0xc000010000, PointerAttributes{Type: MemoryTypeUnregistered, Device: UnregisteredDevice, HostPointer: 0xc000010000}, 0},
		{"null", 0, PointerAttributes{Type: MemoryTypeUnregistered, Device: UnregisteredDevice}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.PointerGetAttributes(tt.ptr)
			wantCode(t, err, tt.code)
			if got != tt.want {
				t.Fatalf("PointerGetAttributes(%#x) = %+v, want %+v", tt.ptr, got, tt.want)
			}
		})
	}
	if err := c.Free(p); err != nil {
		t.Fatal(err)
	}
	_, err = c.PointerGetAttributes(p)
	wantCode(t, err, cudaerr.InvalidValue)
	if err := c.DeviceSynchronize(1); err != nil { // Free is asynchronous
		t.Fatal(err)
	}
	if free2, _, err := c.MemGetInfo(1); err != nil || free2 != free0 {
		t.Fatalf("free %d after Free, want %d (%v)", free2, free0, err)
	}
	_, err = c.Malloc(1, 2*testDeviceMemory)
	wantCode(t, err, cudaerr.MemoryAllocation)
}

// TestClose checks that Close ends the sessions and later calls fail with
// cudaErrorCudartUnloading.
func TestClose(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c, err := Open(context.Background(), cl.config())
	if err != nil {
		t.Fatal(err)
	}
	p := mustMalloc(t, c, 1, 64)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, s := range cl.servers {
		if n := s.sessions(t); n != 0 {
			t.Errorf("server %d still has %d sessions", s.idx, n)
		}
		if n := len(s.rec.workers()); n != 0 {
			t.Errorf("server %d still runs %d workers", s.idx, n)
		}
	}
	_, err = c.Malloc(0, 64)
	wantCode(t, err, cudaerr.CudartUnloading)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("error %v does not wrap ErrClosed", err)
	}
	wantCode(t, c.MemcpyHtoD(p, []byte{1}), cudaerr.CudartUnloading)
	wantCode(t, c.Free(p), cudaerr.CudartUnloading)
	_, err = c.PointerGetAttributes(p)
	wantCode(t, err, cudaerr.CudartUnloading)
}

// TestOpenFailure checks that a refused session leaves nothing open.
func TestOpenFailure(t *testing.T) {
	cl := newCluster(t, 2, 1)
	cfg := cl.config()
	m := *cl.m
	m.Devices = append(m.Devices[:1:1], m.Devices[1])
	m.Devices[1].VGPU = m.Devices[1].GPUUUID + "/7" // a vGPU the server does not have
	cfg.Map = &m
	_, err := Open(context.Background(), cfg)
	if err == nil {
		t.Fatal("Open succeeded with a device the server does not have")
	}
	for _, s := range cl.servers {
		if n := s.sessions(t); n != 0 {
			t.Errorf("server %d still has %d sessions after a failed Open", s.idx, n)
		}
	}
}

// TestKilledWorkerProcess kills a worker process with SIGKILL: calls on its
// devices fail within the idle timeout, the server frees the session, and
// the other server's devices keep working.
func TestKilledWorkerProcess(t *testing.T) {
	const idle = time.Second
	cl := newCluster(t, 2, 1, withWorkerIdle(idle), withWorkerProcesses())
	cfg := cl.config()
	cfg.dataAddr = nil
	cfg.Transport = &peers.Config{MaxIdleTimeout: idle, KeepAlivePeriod: idle / 4}
	c := cl.open(t, cfg)
	p := mustMalloc(t, c, 0, 4096)
	q := mustMalloc(t, c, 1, 4096)
	pid := int(c.Stats().Sessions[0].WorkerPID)
	if pid <= 0 {
		t.Fatalf("worker pid %d", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := c.MemcpyDtoH(make([]byte, 4096), p)
	elapsed := time.Since(start)
	wantCode(t, err, cudaerr.DevicesUnavailable)
	if elapsed > idle+time.Second {
		t.Fatalf("the kill took %v to surface, bound %v", elapsed, idle)
	}
	t.Logf("kill surfaced after %v (idle timeout %v)", elapsed, idle)
	if err := c.MemcpyHtoD(q, []byte{1, 2, 3}); err != nil {
		t.Fatalf("the other server's device failed: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cl.servers[0].sessions(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not free the killed worker's session")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoppedServer stops a whole server: its workers end and calls on its
// devices fail.
func TestStoppedServer(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c := cl.open(t, cl.config())
	p := mustMalloc(t, c, 0, 4096)
	s, err := c.StreamCreate(0, StreamDefault, 0)
	if err != nil {
		t.Fatal(err)
	}
	cl.servers[0].srv.Close()
	start := time.Now()
	wantCode(t, c.StreamSynchronize(s), cudaerr.DevicesUnavailable)
	wantCode(t, c.Memset(p, 0, 16), cudaerr.DevicesUnavailable)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a stopped server took %v to surface", d)
	}
	if _, err := c.Malloc(1, 64); err != nil {
		t.Fatalf("the other server's device failed: %v", err)
	}
}

// testAggregator serves GetLease from a fixed lease.
type testAggregator struct {
	pb.UnimplementedAggregatorServer
	lease *pb.Lease
}

func (a *testAggregator) GetLease(_ context.Context, req *pb.GetLeaseRequest) (*pb.Lease, error) {
	if req.GetLeaseId() != a.lease.GetId() {
		return nil, status.Errorf(codes.NotFound, "no lease %q", req.GetLeaseId())
	}
	return a.lease, nil
}

// TestOpenLease opens a client from a lease held by an aggregator.
func TestOpenLease(t *testing.T) {
	cl := newCluster(t, 2, 1)
	doc, err := cl.m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	agg := &testAggregator{lease: &pb.Lease{Id: "lease-7", State: pb.Lease_ACTIVE, DeviceMap: doc}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterAggregatorServer(gs, agg)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })

	tests := []struct {
		name  string
		lease string
		cfg   Config
		ok    bool
	}{
		{"active lease", "lease-7", Config{}, true},
		{"unknown lease", "lease-8", Config{}, false},
		{"empty id", "", Config{}, false},
		{"map given too", "lease-7", Config{Map: cl.m}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := OpenLease(context.Background(), lis.Addr().String(), tt.lease, tt.cfg)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("OpenLease succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.DeviceCount() != 2 || c.cfg.LeaseID != "lease-7" {
				t.Fatalf("%d devices, lease %q", c.DeviceCount(), c.cfg.LeaseID)
			}
			if _, err := c.Malloc(1, 64); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseWhileBusy closes the client while goroutines are in calls:
// every call returns, with ErrClosed or success, and nothing leaks.
func TestCloseWhileBusy(t *testing.T) {
	cl := newCluster(t, 2, 1)
	c, err := Open(context.Background(), cl.config())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			dev := g % 2
			buf := make([]byte, 200<<10)
			for {
				p, err := c.Malloc(dev, uint64(len(buf)))
				if err == nil {
					err = errors.Join(c.MemcpyHtoD(p, buf), c.MemcpyDtoHAsync(buf, p, LegacyStream(dev)), c.DeviceSynchronize(dev))
				}
				if err != nil {
					if code := cudaerr.Code(err); code != cudaerr.CudartUnloading {
						t.Errorf("call during Close failed with %v: %v", code, err)
					}
					return
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
}

// TestWindowsReserved checks that an open client keeps its device windows
// out of the process's address space, shares them with another client of
// the same map, and gives them back when the last one closes.
func TestWindowsReserved(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("window reservation is implemented on Linux only")
	}
	cl := newCluster(t, 1, 2)
	lo, hi := cl.m.WindowOf(1)
	free := func() bool {
		if err := mapReserve(lo, hi-lo); err != nil {
			return false
		}
		mapRelease(lo, hi-lo)
		return true
	}
	if !free() {
		t.Fatal("device 1's window is mapped before any client opened")
	}
	c1, err := Open(context.Background(), cl.config())
	if err != nil {
		t.Fatal(err)
	}
	if free() {
		t.Fatal("device 1's window is not reserved while a client is open")
	}
	// A second client of the same map is refused by the servers (the
	// devices are busy); its failed Open leaves the first one's windows.
	if c2, err := Open(context.Background(), Config{Map: cl.m}); err == nil {
		c2.Close()
		t.Fatal("a second client opened the devices the first holds")
	}
	if free() {
		t.Fatal("a failed Open released the windows of the open client")
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if !free() {
		t.Fatal("device 1's window is still reserved after Close")
	}
	held, err := reserveWindows(cl.m)
	if err != nil {
		t.Fatal(err)
	}
	held2, err := reserveWindows(cl.m)
	if err != nil {
		t.Fatalf("a second reservation of the same windows failed: %v", err)
	}
	releaseWindows(held)
	if free() {
		t.Fatal("the window went away while a reservation still holds it")
	}
	releaseWindows(held2)
	if !free() {
		t.Fatal("the window stayed after the last reservation")
	}
}
