package runtime

import (
	"fmt"
	goruntime "runtime"
	"testing"
	"time"
)

// benchClient opens a one-server, one-device cluster for a benchmark.
func benchClient(b *testing.B, cfg func(*Config)) *Client {
	b.Helper()
	cl := newCluster(b, 1, 1)
	c := cl.config()
	c.dataAddr = nil // straight to the worker: no relay in the way
	if cfg != nil {
		cfg(&c)
	}
	return cl.open(b, c)
}

// BenchmarkSyncRoundTrip is a synchronous 4-byte D2H copy: one call and
// its reply.
func BenchmarkSyncRoundTrip(b *testing.B) {
	c := benchClient(b, nil)
	p, err := c.Malloc(0, 4)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 4)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.MemcpyDtoH(out, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAsyncCallRate is asynchronous memsets, synchronized every
// 4096 calls.
func BenchmarkAsyncCallRate(b *testing.B) {
	for _, d := range []int{0, 20, 200, 1000} {
		b.Run(fmt.Sprintf("flushDelay=%dus", d), func(b *testing.B) {
			c := benchClient(b, func(c *Config) { c.FlushDelay = durUS(d) })
			p, err := c.Malloc(0, 4096)
			if err != nil {
				b.Fatal(err)
			}
			s := LegacyStream(0)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := c.MemsetAsync(p, byte(n), 4096, s); err != nil {
					b.Fatal(err)
				}
				if n++; n%4096 == 0 {
					if err := c.StreamSynchronize(s); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := c.StreamSynchronize(s); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
			st := c.Stats().Sessions[0]
			b.ReportMetric(float64(st.AsyncCalls)/float64(st.Flushes), "calls/flush")
		})
	}
}

var copySizes = []int{1 << 20, 16 << 20, 64 << 20, 256 << 20}

func BenchmarkH2D(b *testing.B) {
	for _, n := range copySizes {
		b.Run(sizeName(n), func(b *testing.B) {
			c := benchClient(b, nil)
			p, err := c.Malloc(0, uint64(n))
			if err != nil {
				b.Fatal(err)
			}
			src := make([]byte, n)
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := c.MemcpyHtoD(p, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkD2H(b *testing.B) {
	for _, n := range copySizes {
		b.Run(sizeName(n), func(b *testing.B) {
			c := benchClient(b, nil)
			p, err := c.Malloc(0, uint64(n))
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, n)
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := c.MemcpyDtoH(dst, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPeerCopy copies 64 MiB between two devices of one server and
// of two servers, and reports the bytes that crossed the client's
// connections per copy (calls and transport acknowledgements only).
func BenchmarkPeerCopy(b *testing.B) {
	const n = 64 << 20
	for _, tc := range []struct {
		name             string
		servers, devices int
	}{{"sameServer", 1, 2}, {"crossServer", 2, 1}} {
		b.Run(tc.name, func(b *testing.B) {
			cl := newCluster(b, tc.servers, tc.devices)
			c := cl.open(b, cl.config())
			src, err := c.Malloc(0, n)
			if err != nil {
				b.Fatal(err)
			}
			dst, err := c.Malloc(1, n)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(n)
			before := cl.relayBytes()
			for b.Loop() {
				if err := c.MemcpyPeer(dst, 1, src, 0, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cl.relayBytes()-before)/float64(b.N), "client-bytes/op")
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func durUS(us int) time.Duration { return time.Duration(us) * time.Microsecond }

// BenchmarkAsyncLatency is the time from an asynchronous call to its
// first byte leaving the client (seen by the relay in front of the worker)
// when no synchronising call follows it: what FlushDelay costs an
// async-only program.
func BenchmarkAsyncLatency(b *testing.B) {
	for _, d := range []int{0, 20, 200, 1000} {
		b.Run(fmt.Sprintf("flushDelay=%dus", d), func(b *testing.B) {
			cl := newCluster(b, 1, 1)
			cfg := cl.config()
			cfg.FlushDelay = durUS(d)
			c := cl.open(b, cfg)
			p, err := c.Malloc(0, 4096)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				before := cl.relayBytes()
				if err := c.MemsetAsync(p, 1, 4096, LegacyStream(0)); err != nil {
					b.Fatal(err)
				}
				for cl.relayBytes() == before {
					goruntime.Gosched()
				}
			}
		})
	}
}
