//go:build cuda && cgo

package worker

import (
	"testing"

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
