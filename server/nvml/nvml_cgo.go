//go:build cgo && linux

package nvml

import (
	"context"
	"fmt"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/xgpu/xgpu/internal/pb"
)

// library is the part of NVML a Source uses: the real library, or a mock in
// tests.
type library = gonvml.Interface

// Peer link kinds, as nvidia-smi topo -m names them.
const (
	kindNVLink = "NV"   // NVLink, direct or through NVSwitches
	kindPIX    = "PIX"  // at most one PCIe bridge
	kindPXB    = "PXB"  // several PCIe bridges, no host bridge
	kindPHB    = "PHB"  // a PCIe host bridge (the CPU's root complex)
	kindNODE   = "NODE" // host bridges of one NUMA node
	kindSYS    = "SYS"  // across NUMA nodes (the CPUs' interconnect)
)

// GPUs initialises NVML, lists every GPU it sees in NVML's index order with
// its links to the other GPUs, and shuts NVML down again. A GPU's Index is
// its NVML index (PCI bus order), which CUDA's default device order need not
// follow; match devices by UUID.
//
// Name, UUID, memory, PCI bus id and compute capability are required: if
// NVML cannot give one, GPUs fails. The SM count is 0 where it cannot be
// found. Every GPU lists every other GPU as a peer: "NV" with the number
// of NVLink links between them (for GPUs on NVSwitches, the number of links
// to the switches), or else the PCIe path; SYS where NVML cannot tell.
func (s *Source) GPUs(ctx context.Context) ([]*pb.GPU, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nvml: %w", context.Cause(ctx))
	}
	lib := s.lib
	if lib == nil {
		var opts []gonvml.LibraryOption
		if s.LibraryPath != "" {
			opts = append(opts, gonvml.WithLibraryPath(s.LibraryPath))
		}
		lib = gonvml.New(opts...)
	}
	if ret := lib.Init(); ret != gonvml.SUCCESS {
		return nil, &InitError{Library: s.libraryName(), Err: ret, NotFound: ret == gonvml.ERROR_LIBRARY_NOT_FOUND}
	}
	defer lib.Shutdown() // a failed shutdown changes nothing for the caller
	return collect(ctx, lib)
}

// device is one GPU while the list is built.
type device struct {
	h           gonvml.Device
	gpu         *pb.GPU
	pci         pciAddr
	nvlinks     map[int]int // peer index -> active links straight to it
	switchLinks int         // active links to NVSwitches
}

// pciAddr is a PCI device address without its function; the key by which
// NVLink remote ends are matched to GPUs.
type pciAddr struct{ domain, bus, device uint32 }

// pciAddrOf parses the bus id string of p ("00000000:18:00.0" or the legacy
// "0000:18:00.0"), falling back to its numeric fields.
func pciAddrOf(p *gonvml.PciInfo) pciAddr {
	var a pciAddr
	var fn uint32
	if n, _ := fmt.Sscanf(cString(p.BusId[:]), "%x:%x:%x.%x", &a.domain, &a.bus, &a.device, &fn); n == 4 {
		return a
	}
	return pciAddr{p.Domain, p.Bus, p.Device}
}

// cString converts a NUL-terminated C char array.
func cString(c []int8) string {
	b := make([]byte, 0, len(c))
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(b)
}

// collect lists the GPUs of an initialised NVML.
func collect(ctx context.Context, lib library) ([]*pb.GPU, error) {
	n, ret := lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("nvml: device count: %w", ret)
	}
	devs := make([]*device, n)
	byPCI := make(map[pciAddr]int, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("nvml: %w", context.Cause(ctx))
		}
		d, err := describe(lib, i)
		if err != nil {
			return nil, err
		}
		devs[i] = d
		byPCI[d.pci] = i
	}
	for i, d := range devs {
		countLinks(d, i, byPCI)
	}
	out := make([]*pb.GPU, n)
	for i, d := range devs {
		d.gpu.Peers = peers(devs, i)
		out[i] = d.gpu
	}
	return out, nil
}

// describe reads the properties of GPU i.
func describe(lib library, i int) (*device, error) {
	fail := func(what string, ret gonvml.Return) (*device, error) {
		return nil, fmt.Errorf("nvml: GPU %d: %s: %w", i, what, ret)
	}
	h, ret := lib.DeviceGetHandleByIndex(i)
	if ret != gonvml.SUCCESS {
		return fail("handle", ret)
	}
	name, ret := h.GetName()
	if ret != gonvml.SUCCESS {
		return fail("name", ret)
	}
	uuid, ret := h.GetUUID()
	if ret != gonvml.SUCCESS {
		return fail("uuid", ret)
	}
	mem, ret := h.GetMemoryInfo()
	if ret != gonvml.SUCCESS {
		return fail("memory", ret)
	}
	pci, ret := h.GetPciInfo()
	if ret != gonvml.SUCCESS {
		return fail("pci info", ret)
	}
	major, minor, ret := h.GetCudaComputeCapability()
	if ret != gonvml.SUCCESS {
		return fail("compute capability", ret)
	}
	sms := multiprocessors(h, major, minor)
	return &device{
		h: h,
		gpu: &pb.GPU{
			Index:           int32(i),
			Uuid:            uuid,
			Name:            name,
			MemoryBytes:     mem.Total,
			PciBusId:        cString(pci.BusId[:]),
			CcMajor:         int32(major),
			CcMinor:         int32(minor),
			Multiprocessors: int32(sms),
		},
		pci:     pciAddrOf(&pci),
		nvlinks: make(map[int]int),
	}, nil
}

// multiprocessors returns the SM count of h: from the device attributes,
// which NVML reports on MIG-capable GPUs in MIG mode only, else from the CUDA
// core count divided by the cores per SM of the architecture; 0 if neither
// is known.
func multiprocessors(h gonvml.Device, major, minor int) uint32 {
	if attr, ret := h.GetAttributes(); ret == gonvml.SUCCESS && attr.MultiprocessorCount > 0 {
		return attr.MultiprocessorCount
	}
	cores, ret := h.GetNumGpuCores()
	per := coresPerSM(major, minor)
	if ret != gonvml.SUCCESS || per == 0 || cores <= 0 || cores%per != 0 {
		return 0
	}
	return uint32(cores / per)
}

// coresPerSM is the number of FP32 CUDA cores per SM of an architecture, as
// NVIDIA's programming guide lists them; 0 for one not listed.
func coresPerSM(major, minor int) int {
	switch {
	case major == 6 && minor == 0, major == 7, major == 8 && minor == 0:
		return 64 // Pascal GP100, Volta, Turing, Ampere GA100
	case major == 5, major == 6, major == 8, major == 9, major == 10, major == 11, major == 12:
		return 128 // Maxwell, other Pascal and Ampere, Ada, Hopper, Blackwell
	default:
		return 0
	}
}

// countLinks counts the active NVLink links of GPU i, per peer GPU and to
// NVSwitches. A link whose far end is neither a switch nor a GPU of this
// list (an NVLink CPU) is not counted.
func countLinks(d *device, i int, byPCI map[pciAddr]int) {
	for l := range gonvml.NVLINK_MAX_LINKS {
		state, ret := d.h.GetNvLinkState(l)
		if ret != gonvml.SUCCESS || state != gonvml.FEATURE_ENABLED {
			continue // no such link, link down, or no NVLink at all
		}
		typ, ret := d.h.GetNvLinkRemoteDeviceType(l)
		if ret == gonvml.SUCCESS {
			switch typ {
			case gonvml.NVLINK_DEVICE_TYPE_SWITCH:
				d.switchLinks++
				continue
			case gonvml.NVLINK_DEVICE_TYPE_GPU:
			default:
				continue
			}
		}
		// The far end is a GPU, or the driver cannot say: find it by bus id.
		remote, ret := d.h.GetNvLinkRemotePciInfo(l)
		if ret != gonvml.SUCCESS {
			continue
		}
		if j, ok := byPCI[pciAddrOf(&remote)]; ok && j != i {
			d.nvlinks[j]++
		}
	}
}

// peers lists the links from GPU i to every other GPU, in index order.
func peers(devs []*device, i int) []*pb.PeerLink {
	d := devs[i]
	out := make([]*pb.PeerLink, 0, len(devs)-1)
	for j, o := range devs {
		if j == i {
			continue
		}
		link := &pb.PeerLink{PeerUuid: o.gpu.Uuid}
		n := d.nvlinks[j]
		if n == 0 && d.switchLinks > 0 && o.switchLinks > 0 && nvlinkP2P(d.h, o.h) {
			n = min(d.switchLinks, o.switchLinks)
		}
		if n > 0 {
			link.Kind, link.Nvlinks = kindNVLink, int32(n)
		} else {
			link.Kind = pcieKind(d.h, o.h)
		}
		out = append(out, link)
	}
	return out
}

// nvlinkP2P reports whether a and b, both on NVSwitches, can reach each
// other over NVLink (they may sit on separate fabrics). If the driver cannot
// tell, it trusts the shared fabric.
func nvlinkP2P(a, b gonvml.Device) bool {
	st, ret := a.GetP2PStatus(b, gonvml.P2P_CAPS_INDEX_NVLINK)
	return ret != gonvml.SUCCESS || st == gonvml.P2P_STATUS_OK
}

// pcieKind names the PCIe path between a and b; SYS, the farthest, if NVML
// cannot tell.
func pcieKind(a, b gonvml.Device) string {
	level, ret := a.GetTopologyCommonAncestor(b)
	if ret != gonvml.SUCCESS {
		return kindSYS
	}
	switch level {
	case gonvml.TOPOLOGY_INTERNAL, gonvml.TOPOLOGY_SINGLE:
		return kindPIX
	case gonvml.TOPOLOGY_MULTIPLE:
		return kindPXB
	case gonvml.TOPOLOGY_HOSTBRIDGE:
		return kindPHB
	case gonvml.TOPOLOGY_NODE:
		return kindNODE
	default:
		return kindSYS
	}
}
