//go:build cgo && linux

package nvml

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/xgpu/xgpu/internal/pb"
	"github.com/xgpu/xgpu/server"
)

var _ server.GPUSource = (*Source)(nil)

// fakeLink is one NVLink link of a fake GPU.
type fakeLink struct {
	active    bool
	remote    gonvml.IntNvLinkDeviceType
	noType    bool   // GetNvLinkRemoteDeviceType fails
	remoteBus string // bus id of the far end
}

// fakeGPU describes one GPU of a fake machine.
type fakeGPU struct {
	bus       string
	links     []fakeLink
	noNvlink  bool                            // GetNvLinkState answers NOT_SUPPORTED
	noAttrs   bool                            // GetAttributes answers NOT_SUPPORTED
	cores     int                             // CUDA cores; 0: GetNumGpuCores answers NOT_SUPPORTED
	cc        [2]int                          // compute capability; zero: 9.0
	level     map[int]gonvml.GpuTopologyLevel // common ancestor with GPU j; missing: NOT_SUPPORTED
	noP2P     map[int]bool                    // NVLink P2P status with GPU j is not OK
	failField string                          // a required query that fails
}

// fakeMachine is an NVML mock over a list of fake GPUs; it counts Init and
// Shutdown calls.
type fakeMachine struct {
	gpus          []fakeGPU
	initRet       gonvml.Return
	countRet      gonvml.Return
	inits, shuts  atomic.Int32
	onHandleIndex func(i int) // called by DeviceGetHandleByIndex
}

func setBusID(p *gonvml.PciInfo, s string) {
	for i := range p.BusId {
		p.BusId[i] = 0
	}
	for i := 0; i < len(s) && i < len(p.BusId)-1; i++ {
		p.BusId[i] = int8(s[i])
	}
}

func uuidOf(i int) string { return fmt.Sprintf("GPU-%08x-0000-0000-0000-000000000000", i) }

func (m *fakeMachine) lib() *mock.Interface {
	devs := make([]*mock.Device, len(m.gpus))
	indexOf := func(d gonvml.Device) int {
		for i := range devs {
			if gonvml.Device(devs[i]) == d {
				return i
			}
		}
		return -1
	}
	for i := range m.gpus {
		g := &m.gpus[i]
		ret := func(field string) gonvml.Return {
			if g.failField == field {
				return gonvml.ERROR_UNKNOWN
			}
			return gonvml.SUCCESS
		}
		devs[i] = &mock.Device{
			GetNameFunc: func() (string, gonvml.Return) { return "NVIDIA H200", ret("name") },
			GetUUIDFunc: func() (string, gonvml.Return) { return uuidOf(i), ret("uuid") },
			GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
				return gonvml.Memory{Total: 150754820096, Free: 150000000000}, ret("memory")
			},
			GetPciInfoFunc: func() (gonvml.PciInfo, gonvml.Return) {
				var p gonvml.PciInfo
				setBusID(&p, g.bus)
				return p, ret("pci")
			},
			GetCudaComputeCapabilityFunc: func() (int, int, gonvml.Return) {
				if g.cc == [2]int{} {
					return 9, 0, ret("cc")
				}
				return g.cc[0], g.cc[1], ret("cc")
			},
			GetNumGpuCoresFunc: func() (int, gonvml.Return) {
				if g.cores == 0 {
					return 0, gonvml.ERROR_NOT_SUPPORTED
				}
				return g.cores, gonvml.SUCCESS
			},
			GetAttributesFunc: func() (gonvml.DeviceAttributes, gonvml.Return) {
				if g.noAttrs {
					return gonvml.DeviceAttributes{}, gonvml.ERROR_NOT_SUPPORTED
				}
				return gonvml.DeviceAttributes{MultiprocessorCount: 132}, gonvml.SUCCESS
			},
			GetNvLinkStateFunc: func(l int) (gonvml.EnableState, gonvml.Return) {
				switch {
				case g.noNvlink:
					return 0, gonvml.ERROR_NOT_SUPPORTED
				case l >= len(g.links):
					return 0, gonvml.ERROR_INVALID_ARGUMENT
				case g.links[l].active:
					return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
				default:
					return gonvml.FEATURE_DISABLED, gonvml.SUCCESS
				}
			},
			GetNvLinkRemoteDeviceTypeFunc: func(l int) (gonvml.IntNvLinkDeviceType, gonvml.Return) {
				if g.links[l].noType {
					return gonvml.NVLINK_DEVICE_TYPE_UNKNOWN, gonvml.ERROR_NOT_SUPPORTED
				}
				return g.links[l].remote, gonvml.SUCCESS
			},
			GetNvLinkRemotePciInfoFunc: func(l int) (gonvml.PciInfo, gonvml.Return) {
				var p gonvml.PciInfo
				setBusID(&p, g.links[l].remoteBus)
				return p, gonvml.SUCCESS
			},
			GetP2PStatusFunc: func(o gonvml.Device, idx gonvml.GpuP2PCapsIndex) (gonvml.GpuP2PStatus, gonvml.Return) {
				if idx != gonvml.P2P_CAPS_INDEX_NVLINK {
					return 0, gonvml.ERROR_INVALID_ARGUMENT
				}
				if g.noP2P[indexOf(o)] {
					return gonvml.P2P_STATUS_NOT_SUPPORTED, gonvml.SUCCESS
				}
				return gonvml.P2P_STATUS_OK, gonvml.SUCCESS
			},
			GetTopologyCommonAncestorFunc: func(o gonvml.Device) (gonvml.GpuTopologyLevel, gonvml.Return) {
				if l, ok := g.level[indexOf(o)]; ok {
					return l, gonvml.SUCCESS
				}
				return 0, gonvml.ERROR_NOT_SUPPORTED
			},
		}
	}
	return &mock.Interface{
		InitFunc: func() gonvml.Return {
			m.inits.Add(1)
			return m.initRet
		},
		ShutdownFunc: func() gonvml.Return {
			m.shuts.Add(1)
			return gonvml.SUCCESS
		},
		DeviceGetCountFunc: func() (int, gonvml.Return) { return len(devs), m.countRet },
		DeviceGetHandleByIndexFunc: func(i int) (gonvml.Device, gonvml.Return) {
			if m.onHandleIndex != nil {
				m.onHandleIndex(i)
			}
			if i < 0 || i >= len(devs) {
				return nil, gonvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], gonvml.SUCCESS
		},
	}
}

func busOf(i int) string { return fmt.Sprintf("00000000:%02X:00.0", 0x18+i*0x20) }

// links returns n links of the same kind.
func links(n int, l fakeLink) []fakeLink {
	out := make([]fakeLink, n)
	for i := range out {
		out[i] = l
	}
	return out
}

// hgx returns n GPUs that each reach NVSwitches over 18 links.
func hgx(n int) []fakeGPU {
	gpus := make([]fakeGPU, n)
	for i := range gpus {
		gpus[i] = fakeGPU{bus: busOf(i), links: links(18, fakeLink{active: true, remote: gonvml.NVLINK_DEVICE_TYPE_SWITCH, remoteBus: "00000000:C5:00.0"})}
	}
	return gpus
}

// peerString renders the peers of every GPU as "i->j:KIND[n]" for tables.
func peerString(gpus []*pb.GPU) string {
	index := map[string]int32{}
	for _, g := range gpus {
		index[g.Uuid] = g.Index
	}
	var parts []string
	for _, g := range gpus {
		for _, p := range g.Peers {
			s := fmt.Sprintf("%d->%d:%s", g.Index, index[p.PeerUuid], p.Kind)
			if p.Nvlinks != 0 {
				s += fmt.Sprint(p.Nvlinks)
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func TestGPUsTopology(t *testing.T) {
	gpuLink := func(peer int) fakeLink {
		return fakeLink{active: true, remote: gonvml.NVLINK_DEVICE_TYPE_GPU, remoteBus: busOf(peer)}
	}
	tests := []struct {
		name  string
		gpus  func() []fakeGPU
		peers string
	}{
		{
			name:  "single GPU has no peers",
			gpus:  func() []fakeGPU { return hgx(1) },
			peers: "",
		},
		{
			name: "GPUs on NVSwitches are all linked by their switch links",
			gpus: func() []fakeGPU { return hgx(4) },
			peers: "0->1:NV18 0->2:NV18 0->3:NV18 1->0:NV18 1->2:NV18 1->3:NV18 " +
				"2->0:NV18 2->1:NV18 2->3:NV18 3->0:NV18 3->1:NV18 3->2:NV18",
		},
		{
			name: "switch links down or to separate fabrics",
			gpus: func() []fakeGPU {
				g := hgx(3)
				for l := 4; l < 18; l++ {
					g[0].links[l].active = false // 4 links up
				}
				g[1].noP2P = map[int]bool{2: true}
				g[2].noP2P = map[int]bool{1: true}
				g[1].level = map[int]gonvml.GpuTopologyLevel{2: gonvml.TOPOLOGY_SYSTEM}
				g[2].level = map[int]gonvml.GpuTopologyLevel{1: gonvml.TOPOLOGY_SYSTEM}
				return g
			},
			peers: "0->1:NV4 0->2:NV4 1->0:NV4 1->2:SYS 2->0:NV4 2->1:SYS",
		},
		{
			name: "bridged pairs and PCIe between the pairs",
			gpus: func() []fakeGPU {
				g := make([]fakeGPU, 4)
				for i := range g {
					peer := i ^ 1
					g[i] = fakeGPU{bus: busOf(i), links: append(links(4, gpuLink(peer)), fakeLink{active: false, remote: gonvml.NVLINK_DEVICE_TYPE_GPU, remoteBus: busOf(peer)})}
				}
				g[0].level = map[int]gonvml.GpuTopologyLevel{2: gonvml.TOPOLOGY_NODE, 3: gonvml.TOPOLOGY_SYSTEM}
				g[1].level = map[int]gonvml.GpuTopologyLevel{2: gonvml.TOPOLOGY_HOSTBRIDGE, 3: gonvml.TOPOLOGY_MULTIPLE}
				g[2].level = map[int]gonvml.GpuTopologyLevel{0: gonvml.TOPOLOGY_NODE, 1: gonvml.TOPOLOGY_HOSTBRIDGE}
				g[3].level = map[int]gonvml.GpuTopologyLevel{0: gonvml.TOPOLOGY_SYSTEM, 1: gonvml.TOPOLOGY_MULTIPLE}
				return g
			},
			peers: "0->1:NV4 0->2:NODE 0->3:SYS 1->0:NV4 1->2:PHB 1->3:PXB " +
				"2->0:NODE 2->1:PHB 2->3:NV4 3->0:SYS 3->1:PXB 3->2:NV4",
		},
		{
			name: "PCIe only, with levels NVML cannot tell",
			gpus: func() []fakeGPU {
				g := make([]fakeGPU, 3)
				for i := range g {
					g[i] = fakeGPU{bus: busOf(i), noNvlink: true}
				}
				g[0].level = map[int]gonvml.GpuTopologyLevel{1: gonvml.TOPOLOGY_SINGLE, 2: gonvml.TOPOLOGY_INTERNAL}
				g[1].level = map[int]gonvml.GpuTopologyLevel{0: gonvml.TOPOLOGY_SINGLE}
				g[2].level = map[int]gonvml.GpuTopologyLevel{0: gonvml.TOPOLOGY_INTERNAL, 1: gonvml.GpuTopologyLevel(99)}
				return g
			},
			peers: "0->1:PIX 0->2:PIX 1->0:PIX 1->2:SYS 2->0:PIX 2->1:SYS",
		},
		{
			name: "remote type unknown: matched by legacy bus id, switches ignored",
			gpus: func() []fakeGPU {
				g := make([]fakeGPU, 2)
				for i := range g {
					legacy := strings.TrimPrefix(busOf(i^1), "0000") // "0000:38:00.0"
					g[i] = fakeGPU{bus: busOf(i), links: []fakeLink{
						{active: true, noType: true, remoteBus: legacy},
						{active: true, noType: true, remoteBus: strings.ToLower(busOf(i ^ 1))},
						{active: true, noType: true, remoteBus: "00000000:C5:00.0"}, // a switch: unknown bus
						{active: true, remote: gonvml.NVLINK_DEVICE_TYPE_IBMNPU, remoteBus: "00000000:00:00.0"},
					}}
				}
				return g
			},
			peers: "0->1:NV2 1->0:NV2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMachine{gpus: tt.gpus()}
			got, err := (&Source{lib: m.lib()}).GPUs(context.Background())
			if err != nil {
				t.Fatalf("GPUs() error = %v", err)
			}
			if len(got) != len(m.gpus) {
				t.Fatalf("GPUs() gave %d GPUs, want %d", len(got), len(m.gpus))
			}
			for i, g := range got {
				want := &pb.GPU{Index: int32(i), Uuid: uuidOf(i), Name: "NVIDIA H200", MemoryBytes: 150754820096,
					PciBusId: busOf(i), CcMajor: 9, CcMinor: 0, Multiprocessors: 132}
				if g.Index != want.Index || g.Uuid != want.Uuid || g.Name != want.Name || g.MemoryBytes != want.MemoryBytes ||
					g.PciBusId != want.PciBusId || g.CcMajor != want.CcMajor || g.CcMinor != want.CcMinor || g.Multiprocessors != want.Multiprocessors {
					t.Errorf("GPU %d = %v, want %v", i, g, want)
				}
			}
			if s := peerString(got); s != tt.peers {
				t.Errorf("peers:\n got %s\nwant %s", s, tt.peers)
			}
			if m.inits.Load() != 1 || m.shuts.Load() != 1 {
				t.Errorf("Init/Shutdown calls = %d/%d, want 1/1", m.inits.Load(), m.shuts.Load())
			}
		})
	}
}

func TestGPUsMultiprocessors(t *testing.T) {
	tests := []struct {
		name string
		gpu  fakeGPU
		want int32
	}{
		{name: "from attributes", gpu: fakeGPU{cores: 1}, want: 132},
		{name: "Hopper from cores", gpu: fakeGPU{noAttrs: true, cores: 16896}, want: 132},
		{name: "A100 from cores", gpu: fakeGPU{noAttrs: true, cores: 6912, cc: [2]int{8, 0}}, want: 108},
		{name: "Ada from cores", gpu: fakeGPU{noAttrs: true, cores: 16384, cc: [2]int{8, 9}}, want: 128},
		{name: "Turing from cores", gpu: fakeGPU{noAttrs: true, cores: 2560, cc: [2]int{7, 5}}, want: 40},
		{name: "cores not reported", gpu: fakeGPU{noAttrs: true}, want: 0},
		{name: "architecture not listed", gpu: fakeGPU{noAttrs: true, cores: 2880, cc: [2]int{3, 5}}, want: 0},
		{name: "cores not a multiple", gpu: fakeGPU{noAttrs: true, cores: 1000}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.gpu
			g.bus = busOf(0)
			m := &fakeMachine{gpus: []fakeGPU{g}}
			got, err := (&Source{lib: m.lib()}).GPUs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Multiprocessors != tt.want {
				t.Errorf("Multiprocessors = %d, want %d", got[0].Multiprocessors, tt.want)
			}
		})
	}
}

func TestGPUsErrors(t *testing.T) {
	ctxCancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		m         *fakeMachine
		ctx       context.Context
		cancelAt  int // cancel the context when GPU cancelAt is listed; 0: never
		wantErr   string
		wantIs    []error
		wantInits int32 // Init calls; each that succeeded needs one Shutdown
	}{
		{name: "library missing", m: &fakeMachine{gpus: hgx(1), initRet: gonvml.ERROR_LIBRARY_NOT_FOUND},
			wantErr: "nvml: cannot load libnvidia-ml.so.1 (is the NVIDIA driver installed?)", wantIs: []error{ErrUnavailable, gonvml.ERROR_LIBRARY_NOT_FOUND}, wantInits: 1},
		{name: "driver not loaded", m: &fakeMachine{gpus: hgx(1), initRet: gonvml.ERROR_DRIVER_NOT_LOADED},
			wantErr: "nvml: init libnvidia-ml.so.1: ", wantIs: []error{ErrUnavailable, gonvml.ERROR_DRIVER_NOT_LOADED}, wantInits: 1},
		{name: "count fails", m: &fakeMachine{gpus: hgx(1), countRet: gonvml.ERROR_GPU_IS_LOST},
			wantErr: "nvml: device count: ", wantIs: []error{gonvml.ERROR_GPU_IS_LOST}, wantInits: 1},
		{name: "uuid fails", m: func() *fakeMachine { g := hgx(2); g[1].failField = "uuid"; return &fakeMachine{gpus: g} }(),
			wantErr: "nvml: GPU 1: uuid: ", wantIs: []error{gonvml.ERROR_UNKNOWN}, wantInits: 1},
		{name: "memory fails", m: func() *fakeMachine { g := hgx(1); g[0].failField = "memory"; return &fakeMachine{gpus: g} }(),
			wantErr: "nvml: GPU 0: memory: ", wantInits: 1},
		{name: "compute capability fails", m: func() *fakeMachine { g := hgx(1); g[0].failField = "cc"; return &fakeMachine{gpus: g} }(),
			wantErr: "nvml: GPU 0: compute capability: ", wantInits: 1},
		{name: "context done before", m: &fakeMachine{gpus: hgx(2)}, ctx: ctxCancelled,
			wantErr: "nvml: context canceled", wantIs: []error{context.Canceled}, wantInits: 0},
		{name: "context done while listing", m: &fakeMachine{gpus: hgx(3)}, cancelAt: 1,
			wantErr: "nvml: context canceled", wantIs: []error{context.Canceled}, wantInits: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
				if tt.cancelAt > 0 {
					tt.m.onHandleIndex = func(i int) {
						if i == tt.cancelAt {
							cancel()
						}
					}
				}
			}
			got, err := (&Source{lib: tt.m.lib()}).GPUs(ctx)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("GPUs() = %v, %v; want an error starting %q", got, err, tt.wantErr)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("GPUs() error %v is not %v", err, target)
				}
			}
			wantShuts := tt.wantInits
			if tt.m.initRet != gonvml.SUCCESS {
				wantShuts = 0
			}
			if inits, shuts := tt.m.inits.Load(), tt.m.shuts.Load(); inits != tt.wantInits || shuts != wantShuts {
				t.Errorf("Init/Shutdown calls = %d/%d, want %d/%d", inits, shuts, tt.wantInits, wantShuts)
			}
		})
	}
}

func TestInitErrorNotFoundWithPath(t *testing.T) {
	// A library that cannot exist: this runs anywhere, with or without a GPU.
	src := &Source{LibraryPath: "/nonexistent/libnvidia-ml.so.1"}
	_, err := src.GPUs(context.Background())
	var ie *InitError
	if !errors.As(err, &ie) || !ie.NotFound || ie.Library != "/nonexistent/libnvidia-ml.so.1" || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GPUs() error = %v, want an InitError for the missing library matching ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "cannot load /nonexistent/libnvidia-ml.so.1") {
		t.Errorf("error %q does not name the library", err)
	}
}

func TestPCIAddr(t *testing.T) {
	tests := []struct {
		name string
		bus  string
		num  [3]uint32
		want pciAddr
	}{
		{name: "NVML form", bus: "00000000:18:00.0", want: pciAddr{0, 0x18, 0}},
		{name: "legacy form", bus: "0000:9A:01.0", want: pciAddr{0, 0x9a, 1}},
		{name: "lower case with domain", bus: "00000001:c5:1f.3", want: pciAddr{1, 0xc5, 0x1f}},
		{name: "no string falls back to fields", bus: "", num: [3]uint32{2, 0x40, 3}, want: pciAddr{2, 0x40, 3}},
		{name: "garbage falls back to fields", bus: "pci-zz", num: [3]uint32{0, 0x41, 0}, want: pciAddr{0, 0x41, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := gonvml.PciInfo{Domain: tt.num[0], Bus: tt.num[1], Device: tt.num[2]}
			setBusID(&p, tt.bus)
			if got := pciAddrOf(&p); got != tt.want {
				t.Errorf("pciAddrOf(%q) = %+v, want %+v", tt.bus, got, tt.want)
			}
		})
	}
}
