package devicemap

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"time"
)

// Version is the version of the JSON format this package reads and writes.
const Version = 1

// DefaultBase is the virtual address of the first device's window when a map
// does not name one (16 TiB).
const DefaultBase uint64 = 0x1000_0000_0000

// UserSpaceTop is the end of the user part of a 48-bit virtual address space
// (128 TiB). Every window must end at or below it.
const UserSpaceTop uint64 = 1 << 47

// MinWindow is the smallest window a map may use (1 GiB). WindowFor never
// returns less, so small or emulated devices still get windows that are cheap
// to reserve and naturally aligned for the CUDA VMM API.
const MinWindow uint64 = 1 << 30

// ErrNoSuchDevice is returned, wrapped with the index, for a logical device
// index outside the map.
var ErrNoSuchDevice = errors.New("devicemap: no such device")

// ErrUnsupportedVersion is wrapped by the *ParseError of a map whose version
// this package does not read.
var ErrUnsupportedVersion = errors.New("devicemap: unsupported version")

// Properties are the GPU-level facts of the physical GPU under a device.
type Properties struct {
	// Name is the marketing name, e.g. "NVIDIA H200". May be empty.
	Name string `json:"name"`
	// ComputeCapability is "major.minor", e.g. "9.0". May be empty.
	ComputeCapability string `json:"computeCapability"`
	// PCIBusID is the PCI bus id as NVML reports it. May be empty.
	PCIBusID string `json:"pciBusId"`
	// MultiprocessorCount is the number of SMs; 0 means unknown.
	MultiprocessorCount int `json:"multiprocessorCount,omitempty"`
	// TotalMemory is the physical GPU memory in bytes; 0 means unknown.
	TotalMemory uint64 `json:"totalMemory"`
}

// PeerLink is a physical GPU's link to another physical GPU on the same host.
type PeerLink struct {
	// PeerUUID is the "GPU-..." UUID of the other GPU.
	PeerUUID string `json:"peerUuid"`
	// Kind is LinkNVLink or one of the PCIe kinds (PIX, PXB, PHB, NODE, SYS).
	Kind LinkKind `json:"kind"`
	// NVLinks is the number of bonded NVLinks; > 0 exactly when Kind is NV.
	NVLinks int `json:"nvlinks,omitempty"`
}

// Device is one logical device of a map: a vGPU of a physical GPU served by
// one server.
type Device struct {
	// Index is the logical index in the map (0..n-1). New and Select set it;
	// Parse requires it to equal the device's position.
	Index int `json:"index"`
	// Host is the host name. Several servers may share a host.
	Host string `json:"host"`
	// Server is the server id, unique in the pool.
	Server string `json:"server"`
	// Address is the server's gRPC address, host:port.
	Address string `json:"address"`
	// GPUUUID is the physical GPU's UUID, "GPU-...".
	GPUUUID string `json:"gpuUuid"`
	// GPUIndex is the index of the GPU on its server.
	GPUIndex int `json:"gpuIndex"`
	// VGPU is the vGPU id, unique in the pool: "<GPUUUID>/<Slot>". New fills
	// it in when empty.
	VGPU string `json:"vgpu"`
	// Slot is the vGPU slot on the GPU.
	Slot int `json:"slot"`
	// MemoryQuota is the number of bytes this logical device may allocate;
	// it must be > 0 and fit in the window.
	MemoryQuota uint64 `json:"memoryQuota"`
	// Properties are the facts of the physical GPU.
	Properties Properties `json:"properties"`
	// Peers are the links of the physical GPU to other GPUs of its host.
	Peers []PeerLink `json:"peers,omitempty"`
}

// clone returns a copy of d that shares no memory with it.
func (d Device) clone() Device {
	d.Peers = slices.Clone(d.Peers)
	return d
}

// NetLink holds measured figures between two hosts. A link measured in one
// direction only is used for both.
type NetLink struct {
	FromHost string `json:"fromHost"`
	ToHost   string `json:"toHost"`
	// RTT is the round-trip time; 0 means not measured.
	RTT time.Duration `json:"rttNs,omitempty"`
	// BandwidthBps is the bandwidth in bytes per second; 0 means not measured.
	BandwidthBps float64 `json:"bandwidthBps,omitempty"`
}

// Map is an ordered list of logical devices with the virtual-address window
// of each. Device i owns [Base+i*Window, Base+(i+1)*Window).
//
// A Map made by New, Parse, Load or Select is valid; its methods only read it
// and are safe for concurrent use as long as nobody modifies its fields.
type Map struct {
	// Version is the format version; always Version.
	Version int `json:"version"`
	// LeaseID is the aggregator lease the map belongs to; may be empty.
	LeaseID string `json:"leaseId,omitempty"`
	// Base is the address of device 0's window, a multiple of Window.
	// 0 on input means DefaultBase.
	Base uint64 `json:"base"`
	// Window is the size of each device's window, a power of two >=
	// MinWindow. 0 on input means WindowFor of the largest TotalMemory or
	// MemoryQuota of the map's devices, so that the window depends on the
	// physical GPUs rather than on how they are split into vGPUs.
	Window uint64 `json:"window"`
	// Devices are the logical devices; Devices[i].Index == i.
	Devices []Device `json:"devices"`
	// Net are measured host-to-host figures; optional.
	Net []NetLink `json:"net,omitempty"`
}

// Option configures New.
type Option func(*options)

type options struct {
	base      uint64
	window    uint64
	leaseID   string
	net       []NetLink
	keepOrder bool
}

// WithBase sets the address of device 0's window. 0 means DefaultBase.
func WithBase(base uint64) Option { return func(o *options) { o.base = base } }

// WithWindow sets the window size, for example from the largest device of the
// whole pool so that every lease of the pool uses the same windows. 0 means
// WindowFor(the largest device of the map).
func WithWindow(window uint64) Option { return func(o *options) { o.window = window } }

// WithLeaseID records the lease the map belongs to.
func WithLeaseID(id string) Option { return func(o *options) { o.leaseID = id } }

// WithNet records measured host-to-host figures. The slice is copied.
func WithNet(net []NetLink) Option {
	return func(o *options) { o.net = slices.Clone(net) }
}

// KeepOrder keeps the devices in the order given instead of applying Order,
// for callers that chose the order themselves.
func KeepOrder() Option { return func(o *options) { o.keepOrder = true } }

// New builds a valid map from devs. It copies devs, orders them with Order
// (unless KeepOrder), numbers their Index, fills an empty VGPU with
// "<GPUUUID>/<Slot>", sizes the window with WindowFor from the largest device
// (unless WithWindow) and validates the result. Errors are *ParseError; the
// device index in one is the device's position after ordering.
func New(devs []Device, opts ...Option) (*Map, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	ds := make([]Device, len(devs))
	for i, d := range devs {
		ds[i] = d.clone()
		if ds[i].VGPU == "" && ds[i].GPUUUID != "" {
			ds[i].VGPU = VGPUID(ds[i].GPUUUID, ds[i].Slot)
		}
	}
	if !o.keepOrder {
		Order(ds)
	}
	for i := range ds {
		ds[i].Index = i
	}
	m := &Map{
		Version: Version,
		LeaseID: o.leaseID,
		Base:    o.base,
		Window:  o.window,
		Devices: ds,
		Net:     o.net,
	}
	if err := m.fillDefaults(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// VGPUID returns the vGPU id of slot on the GPU with the given UUID.
func VGPUID(gpuUUID string, slot int) string {
	return fmt.Sprintf("%s/%d", gpuUUID, slot)
}

// fillDefaults sets a zero Base to DefaultBase and a zero Window from the
// largest device.
func (m *Map) fillDefaults() error {
	if m.Base == 0 {
		m.Base = DefaultBase
	}
	if m.Window == 0 {
		var largest uint64
		for _, d := range m.Devices {
			largest = max(largest, d.MemoryQuota, d.Properties.TotalMemory)
		}
		m.Window = WindowFor(largest)
		if m.Window == 0 {
			return &ParseError{Device: -1, Field: "window",
				Err: fmt.Errorf("no power-of-two window holds %d bytes", largest)}
		}
	}
	return nil
}

// WindowFor returns the window for devices of at most maxDeviceMemory bytes:
// maxDeviceMemory rounded up to a power of two, and at least MinWindow. A
// 141 GiB H200 gets 256 GiB, so 448 of them fit between DefaultBase and
// UserSpaceTop. It returns 0 when no power of two in a uint64 is large
// enough (maxDeviceMemory > 1<<63).
func WindowFor(maxDeviceMemory uint64) uint64 {
	if maxDeviceMemory <= MinWindow {
		return MinWindow
	}
	if maxDeviceMemory > 1<<63 {
		return 0
	}
	return 1 << bits.Len64(maxDeviceMemory-1)
}

// Len returns the number of logical devices.
func (m *Map) Len() int { return len(m.Devices) }

// Device returns a copy of logical device i, or an error wrapping
// ErrNoSuchDevice.
func (m *Map) Device(i int) (Device, error) {
	if i < 0 || i >= len(m.Devices) {
		return Device{}, fmt.Errorf("%w: index %d (map has %d devices)", ErrNoSuchDevice, i, len(m.Devices))
	}
	return m.Devices[i].clone(), nil
}

// WindowOf returns the window [lo, hi) of logical device i; hi is exclusive.
// It returns 0, 0 for an index outside the map.
func (m *Map) WindowOf(i int) (lo, hi uint64) {
	if i < 0 || i >= len(m.Devices) {
		return 0, 0
	}
	lo = m.Base + uint64(i)*m.Window
	return lo, lo + m.Window
}

// DeviceOf returns the logical device whose window holds ptr. It does not
// allocate.
func (m *Map) DeviceOf(ptr uint64) (int, bool) {
	if ptr < m.Base || m.Window == 0 || m.Window&(m.Window-1) != 0 {
		return 0, false
	}
	i := (ptr - m.Base) >> bits.TrailingZeros64(m.Window)
	if i >= uint64(len(m.Devices)) {
		return 0, false
	}
	return int(i), true
}
