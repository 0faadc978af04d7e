package devicemap

import (
	"fmt"
	"testing"
	"time"
)

const gib = uint64(1) << 30

// h200 is the memory of the test GPUs (141 GiB).
const h200 = 141 * gib

// gpu returns a device of slot on GPU gpuIndex of server, with an address
// derived from the server id.
func gpu(host, server string, gpuIndex, slot int, quota uint64, peers ...PeerLink) Device {
	return Device{
		Host:        host,
		Server:      server,
		Address:     server + ".example:7070",
		GPUUUID:     uuid(server, gpuIndex),
		GPUIndex:    gpuIndex,
		Slot:        slot,
		MemoryQuota: quota,
		Properties: Properties{
			Name:                "NVIDIA H200",
			ComputeCapability:   "9.0",
			PCIBusID:            fmt.Sprintf("00000000:%02X:00.0", 0x18+gpuIndex),
			MultiprocessorCount: 132,
			TotalMemory:         h200,
		},
		Peers: peers,
	}
}

func uuid(server string, gpuIndex int) string { return fmt.Sprintf("GPU-%s-%d", server, gpuIndex) }

func nv(server string, gpuIndex, links int) PeerLink {
	return PeerLink{PeerUUID: uuid(server, gpuIndex), Kind: LinkNVLink, NVLinks: links}
}

func pcie(server string, gpuIndex int, kind LinkKind) PeerLink {
	return PeerLink{PeerUUID: uuid(server, gpuIndex), Kind: kind}
}

// twoHostDevices is a small pool: host alpha has GPU 0 split in two vGPUs
// and GPU 1, linked by NV18; host beta has two GPUs behind one PCIe switch.
func twoHostDevices() []Device {
	return []Device{
		gpu("alpha", "alpha-0", 0, 0, 64*gib, nv("alpha-0", 1, 18)),
		gpu("alpha", "alpha-0", 0, 1, 64*gib, nv("alpha-0", 1, 18)),
		gpu("alpha", "alpha-0", 1, 0, h200, nv("alpha-0", 0, 18)),
		gpu("beta", "beta-0", 0, 0, h200, pcie("beta-0", 1, LinkPIX)),
		gpu("beta", "beta-0", 1, 0, h200, pcie("beta-0", 0, LinkPIX)),
	}
}

var twoHostNet = []NetLink{{FromHost: "alpha", ToHost: "beta", RTT: 85 * time.Microsecond, BandwidthBps: 12.5e9}}

func twoHostMap(t testing.TB) *Map {
	t.Helper()
	m, err := New(twoHostDevices(), WithLeaseID("lease-7"), WithNet(twoHostNet))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// vgpus returns the vGPU ids of m in order.
func vgpus(m *Map) []string {
	out := make([]string, m.Len())
	for i, d := range m.Devices {
		out[i] = d.VGPU
	}
	return out
}
