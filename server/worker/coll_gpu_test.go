//go:build cuda && cgo

package worker

import (
	"testing"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/server/backend"
)

// TestGPUCollectives runs collectives on the cuda backend, every vGPU on
// GPU 0: two workers with one rank each (messages over QUIC) and one
// worker with two ranks (messages in memory). The reductions of large
// messages run in the GPU's kernels on mapped host memory; results are
// checked against the reference.
func TestGPUCollectives(t *testing.T) {
	if !onGPU() {
		t.Skip("no GPU")
	}
	onGPU0 := func(int) int { return 0 }
	mk := func(t testing.TB, _ int) backend.Backend { return gpuBackend(t) }
	for _, tt := range []struct {
		name      string
		perWorker []int
	}{
		{"two workers", []int{1, 1}},
		{"one worker, two ranks", []int{2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCollClusterOn(t, mk, onGPU0, tt.perWorker...)
			devs := []uint32{0, 1}
			testReducesOnDevice(t, cl, devs)
			id := cl.mustCommInit(t, devs, calls.CommOptions{})
			for _, kind := range []calls.CollKind{calls.CollAllReduce, calls.CollReduceScatter, calls.CollReduce, calls.CollAllGather, calls.CollBroadcast} {
				ops := []collective.Op{collective.Sum, collective.Prod, collective.Min, collective.Max, collective.Avg}
				if kind == calls.CollAllGather || kind == calls.CollBroadcast {
					ops = ops[:1]
				}
				for _, op := range ops {
					runColl(t, cl, id, devs, kind, collective.F32, op, 300_001, false)
					runColl(t, cl, id, devs, kind, collective.I32, op, 300_001, true)
				}
			}
		})
	}
}
