//go:build cuda && cgo

package worker

import (
	"testing"
	"time"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/server/backend"
)

// TestGPUCollectives runs collectives between two workers on the cuda
// backend, each rank a vGPU of GPU 0, and checks them against the
// reference; the reductions of large messages run in the GPU's kernels
// on mapped host memory (testReducesOnDevice counts them).
//
// Both workers live in this test process and so share its context of
// GPU 0, whose legacy stream would order one rank's operation behind the
// other's, which waits for it (worker processes, one per session, do not
// share a context): every copy and operation of a rank runs on a
// non-blocking stream of its own.
func TestGPUCollectives(t *testing.T) {
	if !onGPU() {
		t.Skip("no GPU")
	}
	mk := func(t testing.TB, _ int) backend.Backend { return gpuBackend(t) }
	cl := newCollClusterOn(t, mk, func(int) int { return 0 }, 1, 1)
	devs := []uint32{0, 1}
	cl.streams = make(map[uint32]uint64)
	for _, d := range devs {
		rep, err := cl.client(d).Call(testCtx(t), calls.OpStreamCreate, calls.Call{Dev: d, Aux: uint64(backend.StreamNonBlocking)})
		if err != nil {
			t.Fatal(err)
		}
		cl.streams[d] = rep.V1
	}
	testReducesOnDevice(t, cl, devs)
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	for _, kind := range []calls.CollKind{calls.CollAllReduce, calls.CollReduceScatter, calls.CollReduce, calls.CollAllGather, calls.CollBroadcast} {
		ops := []collective.Op{collective.Sum, collective.Prod, collective.Min, collective.Max, collective.Avg}
		if kind == calls.CollAllGather || kind == calls.CollBroadcast {
			ops = ops[:1]
		}
		for _, op := range ops {
			t.Logf("%v %v", kind, op)
			runColl(t, cl, id, devs, kind, collective.F32, op, 100_001, false)
			runColl(t, cl, id, devs, kind, collective.I32, op, 100_001, true)
		}
	}
}

// TestGPUDeviceAllReduce: the ranks of one worker on two GPUs all-reduce
// on the GPUs (peer reductions over NVLink, peer copies), checked against
// the reference; it logs the time of one 64 MiB f32 all-reduce, as an
// indication (the benchmark figures come from make bench).
func TestGPUDeviceAllReduce(t *testing.T) {
	if !onGPU() {
		t.Skip("no GPU")
	}
	b := newBackend(t, 2) // skips below two GPUs
	cl := newCollClusterOn(t, func(testing.TB, int) backend.Backend { return b }, func(k int) int { return k }, 2)
	devs := []uint32{0, 1}
	id := cl.mustCommInit(t, devs, calls.CommOptions{})
	w := cl.workers[0].w
	before := w.CollectiveStats().DeviceReductions
	for _, op := range collective.Ops {
		for _, inPlace := range []bool{false, true} {
			runColl(t, cl, id, devs, calls.CollAllReduce, collective.F32, op, 100_003, inPlace)
			runColl(t, cl, id, devs, calls.CollAllReduce, collective.I32, op, 7, inPlace)
		}
	}
	if n := w.CollectiveStats().DeviceReductions - before; n != uint64(4*len(collective.Ops)) {
		t.Errorf("%d all-reduces ran on the devices, want %d", n, 4*len(collective.Ops))
	}
	const count = 16 << 20 // 64 MiB of f32 (the test quota is 128 MiB)
	var ptrs [2]uint64
	for r, d := range devs {
		ptrs[r] = mustMalloc(t, cl.client(d), d, count*4)
	}
	for round := range 3 {
		start := time.Now()
		for r := range devs {
			cl.issue(t, id, devs, r, collOp{kind: calls.CollAllReduce, dt: collective.F32, redOp: collective.Sum, count: count, send: ptrs[r], recv: ptrs[r]})
		}
		for _, d := range devs {
			mustSync(t, cl.client(d), d)
		}
		el := time.Since(start)
		algbw := float64(count*4) / el.Seconds() / 1e9
		t.Logf("64 MiB f32 all-reduce, 2 GPUs, round %d: %v, algbw %.1f GB/s, busbw %.1f GB/s", round, el, algbw, algbw) // busbw = algbw * 2(n-1)/n = algbw for n = 2
	}
}
