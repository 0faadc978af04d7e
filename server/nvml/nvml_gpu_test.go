//go:build cuda && cgo && linux

package nvml

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server"
)

// requireGPU skips the test when NVML cannot be initialised here.
func requireGPU(t *testing.T) {
	t.Helper()
	if ret := gonvml.Init(); ret != gonvml.SUCCESS {
		t.Skipf("NVML unavailable: %v", ret)
	}
	gonvml.Shutdown()
}

func TestGPUsOnThisMachine(t *testing.T) {
	requireGPU(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	gpus, err := (&Source{}).GPUs(ctx)
	if err != nil {
		t.Fatalf("GPUs() error = %v", err)
	}
	t.Logf("listed %d GPUs in %v", len(gpus), time.Since(start))
	if len(gpus) == 0 {
		t.Fatal("GPUs() listed no GPU, though NVML initialises")
	}
	uuids := map[string]int{}
	for i, g := range gpus {
		t.Logf("GPU %d: %s %s %d MiB pci %s cc %d.%d SMs %d", g.Index, g.Uuid, g.Name, g.MemoryBytes>>20, g.PciBusId, g.CcMajor, g.CcMinor, g.Multiprocessors)
		if g.Index != int32(i) || !strings.HasPrefix(g.Uuid, "GPU-") || g.Name == "" || g.MemoryBytes == 0 || g.PciBusId == "" || g.CcMajor < 3 {
			t.Errorf("GPU %d is incomplete: %v", i, g)
		}
		if _, dup := uuids[g.Uuid]; dup {
			t.Errorf("UUID %s listed twice", g.Uuid)
		}
		uuids[g.Uuid] = i
		if len(g.Peers) != len(gpus)-1 {
			t.Errorf("GPU %d has %d peers, want %d", i, len(g.Peers), len(gpus)-1)
		}
	}
	if len(gpus) < 2 {
		return
	}

	// The topology matrix, as nvidia-smi topo -m prints it.
	var b strings.Builder
	fmt.Fprintf(&b, "\n     ")
	for j := range gpus {
		fmt.Fprintf(&b, "%-6s", fmt.Sprintf("GPU%d", j))
	}
	link := map[[2]int]*pb.PeerLink{}
	for i, g := range gpus {
		fmt.Fprintf(&b, "\nGPU%d ", i)
		for _, p := range g.Peers {
			link[[2]int{i, uuids[p.PeerUuid]}] = p
		}
		for j := range gpus {
			cell := "X"
			if p := link[[2]int{i, j}]; p != nil {
				cell = p.Kind
				if p.Kind == "NV" {
					cell = fmt.Sprintf("NV%d", p.Nvlinks)
				}
			}
			fmt.Fprintf(&b, "%-6s", cell)
		}
	}
	t.Log(b.String())

	// Cross-check against NVML's own NVLink P2P status, and symmetry.
	if ret := gonvml.Init(); ret != gonvml.SUCCESS {
		t.Fatalf("nvml.Init: %v", ret)
	}
	defer gonvml.Shutdown()
	nvlinked := 0
	for i := range gpus {
		hi, ret := gonvml.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			t.Fatalf("handle %d: %v", i, ret)
		}
		for j := range gpus {
			if i == j {
				continue
			}
			p, back := link[[2]int{i, j}], link[[2]int{j, i}]
			if p == nil || back == nil {
				t.Errorf("GPU %d and %d do not list each other", i, j)
				continue
			}
			if p.Kind != back.Kind || p.Nvlinks != back.Nvlinks {
				t.Errorf("link %d->%d is %s%d but %d->%d is %s%d", i, j, p.Kind, p.Nvlinks, j, i, back.Kind, back.Nvlinks)
			}
			hj, _ := gonvml.DeviceGetHandleByIndex(j)
			st, ret := hi.GetP2PStatus(hj, gonvml.P2P_CAPS_INDEX_NVLINK)
			if ret != gonvml.SUCCESS {
				t.Logf("P2P NVLink status %d->%d unknown: %v", i, j, ret)
				continue
			}
			if wantNV := st == gonvml.P2P_STATUS_OK; wantNV != (p.Kind == "NV" && p.Nvlinks > 0) {
				t.Errorf("link %d->%d is %s%d, but NVML's NVLink P2P status is %v", i, j, p.Kind, p.Nvlinks, st)
			}
			if p.Kind == "NV" {
				nvlinked++
			}
		}
	}
	t.Logf("%d of %d ordered GPU pairs are linked by NVLink", nvlinked, len(gpus)*(len(gpus)-1))
}

func TestServerOnThisMachine(t *testing.T) {
	requireGPU(t)
	s, err := server.New(server.Config{Host: "gpu-test", Backend: server.BackendCUDA, Source: &Source{}, VGPUsPerGPU: 2})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	defer s.Close()
	inv := s.Inventory()
	if len(inv.Vgpus) != 2*len(inv.Gpus) {
		t.Errorf("%d vGPUs for %d GPUs, want 2 each", len(inv.Vgpus), len(inv.Gpus))
	}
	for _, v := range inv.Vgpus {
		if v.ComputeShare != 50 || v.MemoryBytes == 0 || v.MemoryBytes%(2<<20) != 0 {
			t.Errorf("vGPU %v: want half the compute and an even, 2 MiB aligned memory share", v)
		}
	}
	t.Logf("vGPUs: %d, first %v", len(inv.Vgpus), inv.Vgpus[0])
}
