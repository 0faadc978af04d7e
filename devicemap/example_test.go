package devicemap_test

import (
	"fmt"
	"os"

	"github.com/xgpu/xgpu/devicemap"
)

func Example() {
	const gib = 1 << 30
	h200 := devicemap.Properties{Name: "NVIDIA H200", ComputeCapability: "9.0", TotalMemory: 141 * gib}
	devs := []devicemap.Device{
		{Host: "b", Server: "b-0", Address: "10.0.0.2:7070", GPUUUID: "GPU-b0", MemoryQuota: 141 * gib, Properties: h200},
		{Host: "a", Server: "a-0", Address: "10.0.0.1:7070", GPUUUID: "GPU-a1", GPUIndex: 1, MemoryQuota: 141 * gib, Properties: h200,
			Peers: []devicemap.PeerLink{{PeerUUID: "GPU-a0", Kind: devicemap.LinkNVLink, NVLinks: 18}}},
		{Host: "a", Server: "a-0", Address: "10.0.0.1:7070", GPUUUID: "GPU-a0", MemoryQuota: 141 * gib, Properties: h200,
			Peers: []devicemap.PeerLink{{PeerUUID: "GPU-a1", Kind: devicemap.LinkNVLink, NVLinks: 18}}},
	}
	m, err := devicemap.New(devs, devicemap.WithLeaseID("lease-1"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range m.Len() {
		lo, hi := m.WindowOf(i)
		fmt.Printf("device %d: %s window [%#x, %#x)\n", i, m.Devices[i].VGPU, lo, hi)
	}
	fmt.Println("links 0-1, 1-2:", m.Link(0, 1), m.Link(1, 2))
	i, ok := m.DeviceOf(0x1000_0000_0000 + 256*gib + 4096)
	fmt.Println("pointer belongs to device", i, ok)

	sel, err := m.Select("2,GPU-a0")
	fmt.Println("selected", sel.Len(), "devices:", sel.Devices[0].VGPU, sel.Devices[1].VGPU, err)

	if err := m.Matrix(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// device 0: GPU-b0/0 window [0x100000000000, 0x104000000000)
	// device 1: GPU-a0/0 window [0x104000000000, 0x108000000000)
	// device 2: GPU-a1/0 window [0x108000000000, 0x10c000000000)
	// links 0-1, 1-2: NET NV18
	// pointer belongs to device 1 true
	// selected 2 devices: GPU-a1/0 GPU-a0/0 <nil>
	//       GPU0  GPU1  GPU2  Host  vGPU
	// GPU0  X     NET   NET   b     GPU-b0/0
	// GPU1  NET   X     NV18  a     GPU-a0/0
	// GPU2  NET   NV18  X     a     GPU-a1/0
	//
	// Legend:
	//
	//   X    = Self
	//   VGPU = Two vGPUs of the same physical GPU
	//   NV#  = NVLink, a bonded set of # links
	//   PIX  = PCIe through at most one PCIe bridge
	//   PXB  = PCIe through several PCIe bridges, not through a host bridge
	//   PHB  = PCIe through a PCIe host bridge (typically the CPU)
	//   NODE = PCIe and the link between PCIe host bridges of one NUMA node
	//   SYS  = PCIe and the interconnect between NUMA nodes (e.g. QPI/UPI)
	//   NET  = Across the network between hosts (RTT, bandwidth when measured)
}
