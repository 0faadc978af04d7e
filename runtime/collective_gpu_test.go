//go:build cuda

package runtime

import (
	"testing"

	"github.com/xgpu/xgpu/collective"
	"github.com/xgpu/xgpu/internal/calls"
)

// TestGPUCollectives runs collectives between two cuda servers with one
// GPU each (their worker processes on different GPUs), against the
// reference: the small cases of every operation, and large ones whose
// reductions run in the GPUs' kernels on mapped host memory. (A device map
// puts each GPU on one server, so one GPU cannot hold both ranks; on a
// single GPU, server/worker's TestGPUCollectives covers the worker path.)
func TestGPUCollectives(t *testing.T) {
	if n := gpuCount(); n < 2 {
		t.Skipf("%d GPU on this machine; two servers need one each", n)
	}
	a := startGPUServer(t, "0")
	b := startGPUServer(t, "1")
	c := openGPUClient(t, a.device(t, 0, 0), b.device(t, 0, 0))
	if st := c.Stats(); len(st.Sessions) != 2 {
		t.Fatalf("%d sessions, want one per server", len(st.Sessions))
	}
	devs := []int{0, 1}
	const big = 300_001
	g := newCollRig(t, c, devs, 2*uint64(len(devs))*big*8+1024, CommOptions{})
	var cases []collCase
	for _, kind := range allKinds {
		pairs := [][2]int{{int(collective.F32), int(collective.Sum)}, {int(collective.I32), int(collective.Max)}}
		if kind == calls.CollAllReduce {
			for _, dt := range collective.DTypes {
				for _, op := range collective.Ops {
					pairs = append(pairs, [2]int{int(dt), int(op)})
				}
			}
		}
		cases = append(cases, casesFor(kind, len(devs), pairs)...)
	}
	for _, dt := range collective.DTypes {
		for _, op := range collective.Ops {
			cases = append(cases, collCase{kind: calls.CollAllReduce, dt: dt, op: op, count: big, seed: len(cases)})
		}
	}
	for _, kind := range []calls.CollKind{calls.CollReduceScatter, calls.CollReduce, calls.CollAllGather, calls.CollBroadcast, calls.CollAllToAll} {
		cases = append(cases, collCase{kind: kind, dt: collective.BF16, op: collective.Sum, count: big, root: 1, seed: len(cases)})
	}
	g.run(t, cases)
}
