package collective

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkAllReduce measures all-reduce bus bandwidth (algbw * 2(n-1)/n,
// as nccl-tests reports it) over the in-memory transport with the CPU
// reducer, and in the same run, interleaved, the link bound: every rank at
// once sending to its ring neighbour the bytes one all-reduce sends
// (2(n-1)/n of the message), over the same kind of transport, in the same
// chunks and pipeline depth, from and into a buffer of the message's size
// (so that both touch the same memory), with no reductions.
// ratio = busbw / link.
//
// Sizes run from 1 MiB to 64 MiB; XGPU_BENCH_MAX_MIB raises the top (for
// example to 1024 on a machine with the memory for it: each rank holds one
// message).
func BenchmarkAllReduce(b *testing.B) {
	maxMiB := 64
	if v, err := strconv.Atoi(os.Getenv("XGPU_BENCH_MAX_MIB")); err == nil && v > 0 {
		maxMiB = v
	}
	topos := []struct {
		name  string
		hosts []string
	}{
		{"1x4", hostsOf(1, 4, false)}, // ring
		{"2x2", hostsOf(2, 2, false)}, // hierarchical
		{"8x1", hostsOf(8, 1, false)}, // ring across hosts
	}
	for _, tp := range topos {
		for mib := 1; mib <= maxMiB; mib *= 4 {
			b.Run(fmt.Sprintf("%s/%dMiB", tp.name, mib), func(b *testing.B) {
				benchAllReduce(b, tp.hosts, mib<<20)
			})
		}
	}
}

func benchAllReduce(b *testing.B, hosts []string, size int) {
	n := len(hosts)
	cl := newCluster(b, hosts, Options{})
	bufs := make([][]byte, n)
	for r := range bufs {
		bufs[r] = make([]byte, size)
	}
	count := size / 4
	perRank := size / n * 2 * (n - 1) // bytes each rank sends in one all-reduce
	link := newLinkBench(bufs, perRank)
	var arTime, linkTime time.Duration
	run := func() {
		start := time.Now()
		mustAll(b, cl.do(func(r int, c *Comm) error {
			return c.AllReduce(bg(), bufs[r], bufs[r], count, F32, Sum)
		}))
		arTime += time.Since(start)
		b.StopTimer()
		linkTime += link.run(b)
		b.StartTimer()
	}
	run() // warm up: scratch, page faults
	arTime, linkTime = 0, 0
	b.ResetTimer()
	iters := 0
	for b.Loop() {
		run()
		iters++
	}
	b.StopTimer()
	algbw := float64(size) * float64(iters) / arTime.Seconds()
	busbw := algbw * 2 * float64(n-1) / float64(n)
	linkbw := float64(perRank) * float64(iters) / linkTime.Seconds()
	b.ReportMetric(busbw/1e9, "busbw_GB/s")
	b.ReportMetric(linkbw/1e9, "link_GB/s")
	b.ReportMetric(busbw/linkbw, "ratio")
}

// linkBench sends, on every rank at once, perRank bytes to the next rank
// in DefaultChunkSize messages, DefaultPipeline at a time, from the first
// half of the rank's buffer into the second half of the next rank's,
// cycling through each half.
type linkBench struct {
	net     *LocalNetwork
	bufs    [][]byte
	perRank int
	seq     uint64
}

func newLinkBench(bufs [][]byte, perRank int) *linkBench {
	return &linkBench{net: NewLocalNetwork(hostsOf(len(bufs), 1, false)), bufs: bufs, perRank: perRank}
}

func (lb *linkBench) run(b *testing.B) time.Duration {
	const chunk = DefaultChunkSize
	n := len(lb.bufs)
	chunks := (lb.perRank + chunk - 1) / chunk
	lb.seq++
	base := lb.seq << 32
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n*DefaultPipeline)
	for r := range n {
		next, prev := (r+1)%n, (r+n-1)%n
		t := lb.net.Transport(r)
		half := len(lb.bufs[r]) / 2
		out, in := lb.bufs[r][:half], lb.bufs[r][half:2*half]
		// piece returns the bytes of message k in a half.
		piece := func(h []byte, k int) []byte {
			size := min(chunk, lb.perRank-k*chunk)
			off := (k * chunk) % len(h)
			if off+size > len(h) {
				off = 0
			}
			return h[off : off+min(size, len(h))]
		}
		for w := range DefaultPipeline {
			wg.Go(func() {
				for k := w; k < chunks; k += DefaultPipeline {
					if err := t.Send(bg(), next, base|uint64(k), piece(out, k)); err != nil {
						errs <- err
						return
					}
				}
			})
			wg.Go(func() {
				for k := w; k < chunks; k += DefaultPipeline {
					if err := t.Recv(bg(), prev, base|uint64(k), piece(in, k)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return took
}
