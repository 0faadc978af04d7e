package worker

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/server/host"
)

// BenchmarkAllReduceBusBW measures the bus bandwidth of an in-place f32
// sum all-reduce over ranks on separate workers (one device each, host
// backend, loopback QUIC with the default transport), from 1 MiB to
// 64 MiB (to 1 GiB with XGPU_BENCH_BIG=1), and in the same run,
// interleaved with it, the link bound: the raw bulk throughput of the
// workers' own links, every worker sending a message of the same size to
// the next at once, as the ring does. It reports
//
//	busbw_GB/s  algbw * 2(n-1)/n, algbw = bytes / time of one all-reduce
//	link_GB/s   bytes / time of one bulk transfer per link, all links at once
//	ratio       busbw / link
//
// XGPU_BENCH_RANKS sets the number of ranks (default 4), XGPU_BENCH_CHUNK
// and XGPU_BENCH_PIPELINE the communicator's chunk size in bytes and
// pipeline depth (defaults: collective.DefaultChunkSize and
// DefaultPipeline).
func BenchmarkAllReduceBusBW(b *testing.B) {
	ranks := 4
	if v := os.Getenv("XGPU_BENCH_RANKS"); v != "" {
		if _, err := fmt.Sscan(v, &ranks); err != nil || ranks < 2 {
			b.Fatalf("XGPU_BENCH_RANKS=%q: want a number >= 2", v)
		}
	}
	sizes := []int{1 << 20, 4 << 20, 16 << 20, 64 << 20}
	if os.Getenv("XGPU_BENCH_BIG") == "1" {
		sizes = append(sizes, 256<<20, 1<<30)
	}
	maxSize := uint64(slices.Max(sizes))
	cl := newBenchCluster(b, ranks, maxSize)
	devs := make([]uint32, ranks)
	for r := range devs {
		devs[r] = uint32(r)
	}
	opts := calls.CommOptions{Algo: uint8(collective.Ring)}
	for env, p := range map[string]*uint32{"XGPU_BENCH_CHUNK": &opts.ChunkSize, "XGPU_BENCH_PIPELINE": &opts.Pipeline} {
		if v := os.Getenv(env); v != "" {
			if _, err := fmt.Sscan(v, p); err != nil {
				b.Fatalf("%s=%q: %v", env, v, err)
			}
		}
	}
	id := cl.mustCommInit(b, devs, opts)
	ptrs := make([]uint64, ranks)
	for r, d := range devs {
		ptrs[r] = mustMalloc(b, cl.client(d), d, maxSize)
	}
	allReduce := func(size int) {
		for r := range devs {
			cl.issue(b, id, devs, r, collOp{kind: calls.CollAllReduce, dt: collective.F32, redOp: collective.Sum, count: uint64(size / 4), send: ptrs[r], recv: ptrs[r]})
		}
		var wg sync.WaitGroup
		for r, d := range devs {
			wg.Go(func() {
				if err := cl.clients[r].Sync(context.Background(), d, 0); err != nil {
					b.Errorf("rank %d: %v", r, err)
				}
			})
		}
		wg.Wait()
	}
	allReduce(1 << 20) // links up, buffers warm
	bus := 2 * float64(ranks-1) / float64(ranks)
	for _, size := range sizes {
		b.Run(describe(size), func(b *testing.B) {
			rb := newRingBulk(b, cl, size)
			b.SetBytes(int64(size))
			// Interleaved: one all-reduce, then one round of the link bound,
			// so that both see the same load on the machine.
			var coll, link time.Duration
			for b.Loop() {
				start := time.Now()
				allReduce(size)
				coll += time.Since(start)
				b.StopTimer()
				link += rb.round(b)
				b.StartTimer()
			}
			busbw := float64(size) * float64(b.N) / coll.Seconds() * bus / 1e9
			linkbw := float64(size) * float64(b.N) / link.Seconds() / 1e9
			b.ReportMetric(busbw, "busbw_GB/s")
			b.ReportMetric(linkbw, "link_GB/s")
			b.ReportMetric(busbw/linkbw, "ratio")
		})
	}
}

// newBenchCluster starts one single-device worker per rank with the
// default transport and room for buffers of size bytes.
func newBenchCluster(b *testing.B, ranks int, size uint64) *collCluster {
	b.Helper()
	cl := &collCluster{}
	window := uint64(testWindow)
	for window < 2*size {
		window *= 2
	}
	for i := range ranks {
		dc := DeviceConfig{Logical: uint32(i), Physical: 0, WindowBase: testBase + uint64(i)*window, WindowSize: window}
		cfg := testConfig(dc)
		cfg.Transport = peers.Config{}
		cfg.SessionID = fmt.Sprintf("s-bench-%d", i)
		cfg.Token = fmt.Sprintf("bench-token-%02d-0123456789abcdef", i)
		be, err := host.New(host.Config{Devices: 1, Memory: window, HostID: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { be.Close() })
		r := start(b, cfg, be)
		cl.workers = append(cl.workers, r)
		cl.tokens = append(cl.tokens, cfg.Token)
		cl.hostOf = append(cl.hostOf, i)
		cl.clients = append(cl.clients, dial(b, r, cfg.Token))
	}
	return cl
}

// ringBulk measures the link bound: every worker sends size bytes to the
// next over their collective link, all at once, as raw bulk transfers.
type ringBulk struct {
	out, in  []*collLink // each worker's link to the next and from the previous
	src, dst [][]byte
	next     uint64 // bulk ids, above those the collectives use
}

func newRingBulk(b *testing.B, cl *collCluster, size int) *ringBulk {
	b.Helper()
	n := len(cl.workers)
	key := func(i int) string {
		r := cl.workers[i]
		return (&calls.CommWorker{Addr: r.ready.Address, Pin: r.ready.CertSHA256}).Key()
	}
	rb := &ringBulk{out: make([]*collLink, n), in: make([]*collLink, n), src: make([][]byte, n), dst: make([][]byte, n), next: 1 << 62}
	for i, r := range cl.workers {
		cw := &r.w.coll
		cw.mu.Lock()
		rb.out[i], rb.in[i] = cw.links[key((i+1)%n)], cw.links[key((i-1+n)%n)]
		cw.mu.Unlock()
		if rb.out[i] == nil || rb.in[i] == nil {
			b.Fatalf("worker %d has no link to its neighbours", i)
		}
		rb.src[i], rb.dst[i] = make([]byte, size), make([]byte, size)
	}
	return rb
}

// round moves one message over every link at once and returns how long
// it took.
func (rb *ringBulk) round(b *testing.B) time.Duration {
	n := len(rb.out)
	rb.next++
	id := rb.next
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		j := (i + 1) % n
		wg.Go(func() {
			if err := rb.out[i].pc.SendBulk(context.Background(), id, rb.src[i]); err != nil {
				b.Errorf("send %d: %v", i, err)
			}
		})
		wg.Go(func() {
			if err := rb.in[j].pc.RecvBulk(context.Background(), id, rb.dst[j]); err != nil {
				b.Errorf("recv %d: %v", j, err)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
