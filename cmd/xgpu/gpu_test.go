//go:build cuda

package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/xgpu/xgpu/devicemap"
)

// TestTopoRealServer serves this machine's GPUs through one real server
// (cuda backend, NVML inventory) and checks that `xgpu topo --json` over the
// pool shows an NVLink link between every pair of GPUs.
func TestTopoRealServer(t *testing.T) {
	if _, err := os.Stat("/dev/nvidiactl"); err != nil {
		t.Skip("no NVIDIA GPU on this machine")
	}
	aggAddr := freePort(t)
	startProc(t, "aggregator", "aggregator", "--listen", aggAddr)
	startProc(t, "server", "server", "--backend", "cuda", "--listen", "127.0.0.1:0", "--aggregator", aggAddr)

	var doc devicemap.MatrixDoc
	eventually(t, 30*time.Second, "GPUs in the pool", func() (bool, string) {
		out, errOut, code := xgpuCLI(t, aggAddr, "topo", "--json")
		if code != 0 {
			return false, errOut
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			return false, err.Error()
		}
		return len(doc.Devices) > 0, "no devices"
	})
	out, _, _ := xgpuCLI(t, aggAddr, "topo")
	t.Logf("xgpu topo:\n%s", out)
	n := len(doc.Devices)
	if n < 2 {
		t.Skipf("%d GPU: no pair to check", n)
	}
	for i := range n {
		for j := range n {
			l := doc.Links[i][j]
			switch {
			case i == j && l.Kind != devicemap.LinkSelf:
				t.Errorf("link %d-%d = %s, want X", i, j, l.Kind)
			case i != j && (l.Kind != devicemap.LinkNVLink || l.NVLinks < 1):
				t.Errorf("link %d-%d = %s%d, want NVLink", i, j, l.Kind, l.NVLinks)
			}
		}
	}
}
