package core

import (
	"encoding/hex"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// MaxAttr bounds the cudaDeviceAttr values a Device holds.
const MaxAttr = int(runtime.MaxDeviceAttr)

// cudaDeviceAttr values the shim sets per device.
const (
	attrMaxSharedMemoryPerBlock = 8
	attrMultiProcessorCount     = 16
	attrPciBusID                = 33
	attrPciDeviceID             = 34
	attrPciDomainID             = 50
	attrComputeMajor            = 75
	attrComputeMinor            = 76
	attrMultiGpuBoardGroupID    = 85
)

// Device is what the CUDA API reports about one logical device.
type Device struct {
	Name     string
	UUID     [16]byte
	TotalMem uint64 // the memory quota
	PCIBusID string // "0000:00:06.0" (CUDA's form); empty when unknown
	Attrs    [MaxAttr]int
	Valid    [MaxAttr]bool // Valid[a]: Attrs[a] holds attribute a
	Server   string        // the server's address: devices of one server share a worker
}

// attrState is the Shim's part of device attributes: each device's
// attributes are asked of its server at the first call that needs them
// (Shim.Device) and kept.
type attrState struct {
	// fetch asks the server; nil: runtime.Client.DeviceAttributes.
	// Tests replace it.
	fetch func(c *runtime.Client, dev int) (*runtime.DeviceAttributes, error)

	once   sync.Once   // makes devs
	devs   []attrDev   // per logical device
	warned atomic.Bool // the fallback was logged
}

// attrDev is one device's entry of attrState.
type attrDev struct {
	mu  sync.Mutex             // serializes the first fetch
	dev atomic.Pointer[Device] // the device with its attributes; nil until known
}

// newDevice describes logical device i of m with the facts the map is
// authoritative for: name, UUID, PCI bus id and the memory quota. The
// attributes come later (withServerAttrs, or withFallbackAttrs).
func newDevice(m *devicemap.Map, i int) Device {
	d := &m.Devices[i]
	out := Device{Name: d.Properties.Name, TotalMem: d.MemoryQuota, Server: d.Address}
	if out.Name == "" {
		out.Name = "xgpu device"
	}
	out.UUID = parseUUID(d.GPUUUID)
	if dom, bus, dev, ok := parsePCI(d.Properties.PCIBusID); ok {
		out.PCIBusID = fmt.Sprintf("%04x:%02x:%02x.0", dom, bus, dev)
	}
	return out
}

// set puts attribute a in d.
func (d *Device) set(a, v int) { d.Attrs[a], d.Valid[a] = v, true }

// withServerAttrs fills d's attributes with those the server's driver
// reported for the GPU under the device (attrs, as
// runtime.DeviceAttributes.All yields them), then puts in what the map
// says of the device: its PCI location (so that the attributes agree
// with the bus id cudaDeviceGetPCIBusId reports) and its board group (the
// GPU's index on its server, distinct for the GPUs of one server).
func withServerAttrs(d *Device, md *devicemap.Device, attrs iter.Seq2[runtime.DeviceAttr, int]) {
	d.Attrs, d.Valid = [MaxAttr]int{}, [MaxAttr]bool{}
	for a, v := range attrs {
		if a > 0 && int(a) < MaxAttr {
			d.set(int(a), v)
		}
	}
	withMapAttrs(d, md)
}

// withFallbackAttrs fills d's attributes for a server that does not
// report them (one that predates OpDeviceGetAttributes): an H200's
// (fallbackH200), with the SM count and compute capability the map knows
// put in, then the map's facts as withServerAttrs does.
func withFallbackAttrs(d *Device, md *devicemap.Device) {
	d.Attrs, d.Valid = [MaxAttr]int{}, [MaxAttr]bool{}
	for a, v := range fallbackH200 {
		if a > 0 && a < MaxAttr {
			d.set(a, v)
		}
	}
	if md.Properties.MultiprocessorCount > 0 {
		d.set(attrMultiProcessorCount, md.Properties.MultiprocessorCount)
	}
	if maj, min, ok := parseCC(md.Properties.ComputeCapability); ok {
		d.set(attrComputeMajor, maj)
		d.set(attrComputeMinor, min)
	}
	withMapAttrs(d, md)
}

// withMapAttrs puts in the attributes the map is authoritative for.
func withMapAttrs(d *Device, md *devicemap.Device) {
	if dom, bus, dev, ok := parsePCI(md.Properties.PCIBusID); ok {
		d.set(attrPciDomainID, dom)
		d.set(attrPciBusID, bus)
		d.set(attrPciDeviceID, dev)
	}
	d.set(attrMultiGpuBoardGroupID, md.GPUIndex)
}

// parseUUID reads "GPU-2f351d10-ad9d-9be2-a181-942fc6c6671f" into 16
// bytes; anything else gives zeros.
func parseUUID(s string) [16]byte {
	var u [16]byte
	h := strings.ReplaceAll(strings.TrimPrefix(s, "GPU-"), "-", "")
	if b, err := hex.DecodeString(h); err == nil && len(b) == 16 {
		copy(u[:], b)
	}
	return u
}

// parseCC reads "9.0".
func parseCC(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil && major > 0 && minor >= 0
}

// parsePCI reads NVML's "00000000:00:06.0" (or CUDA's "0000:00:06.0").
func parsePCI(s string) (domain, bus, dev int, ok bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	devfn, _, _ := strings.Cut(parts[2], ".")
	d, err1 := strconv.ParseUint(parts[0], 16, 32)
	b, err2 := strconv.ParseUint(parts[1], 16, 8)
	v, err3 := strconv.ParseUint(devfn, 16, 8)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return int(d), int(b), int(v), true
}

// DeviceCount returns the number of logical devices.
func (s *Shim) DeviceCount() (int, error) {
	if _, err := s.Client(); err != nil {
		return 0, err
	}
	return len(s.devs), nil
}

// Device returns what the CUDA API reports about device dev. The result
// must not be modified.
//
// The attributes are those of the GPU under the device, as its server's
// driver reports them: the first call for a device asks the server
// (runtime.Client.DeviceAttributes) and later calls return the same
// Device. A server that predates the question (cudaErrorNotSupported)
// gets an H200's attributes with the map's facts put in, and a warning,
// once per process; another failure (the server is gone) is returned and
// the next call asks again.
func (s *Shim) Device(dev int) (*Device, error) {
	c, err := s.device(dev)
	if err != nil {
		return nil, err
	}
	st := &s.attrs
	st.once.Do(func() { st.devs = make([]attrDev, len(s.devs)) })
	ad := &st.devs[dev]
	if d := ad.dev.Load(); d != nil {
		return d, nil
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if d := ad.dev.Load(); d != nil {
		return d, nil
	}
	fetch := st.fetch
	if fetch == nil {
		fetch = (*runtime.Client).DeviceAttributes
	}
	d := s.devs[dev]
	md := &s.m.Devices[dev]
	a, err := fetch(c, dev)
	switch {
	case err == nil:
		withServerAttrs(&d, md, a.All())
	case cudaerr.Code(err) == cudaerr.NotSupported:
		if !st.warned.Swap(true) {
			s.Logger().Warn("the server does not report its GPUs' attributes (it predates them); CUDA reports an H200's, with the device map's SM count and compute capability",
				"device", dev, "server", md.Address, "err", err)
		}
		withFallbackAttrs(&d, md)
	default:
		return nil, err
	}
	ad.dev.Store(&d)
	return &d, nil
}

// DeviceByPCIBusID returns the first device whose PCI bus id is id
// (compared without case, with or without NVML's 8-digit domain).
func (s *Shim) DeviceByPCIBusID(id string) (int, error) {
	if _, err := s.Client(); err != nil {
		return 0, err
	}
	dom, bus, dev, ok := parsePCI(id)
	if !ok {
		return 0, fmt.Errorf("core: %q is not a PCI bus id: %w", id, cudaerr.InvalidValue)
	}
	want := fmt.Sprintf("%04x:%02x:%02x.0", dom, bus, dev)
	for i := range s.devs {
		if s.devs[i].PCIBusID == want {
			return i, nil
		}
	}
	return 0, fmt.Errorf("core: no device at PCI bus id %s: %w", id, cudaerr.InvalidDevice)
}

// CanAccessPeer reports whether dev may use peer as a peer: true for any
// two distinct devices of the lease. Peer copies between devices of one
// server use the GPUs' own path (NVLink or PCIe); between two servers the
// source worker streams the bytes to the destination worker. So frameworks
// that ask before choosing a copy path (PyTorch does) take the peer-copy
// path, which never moves payload through the application's host. A kernel
// that dereferences a pointer of a device on another server cannot reach
// it and faults; docs/cuda-shim.md says so.
func (s *Shim) CanAccessPeer(dev, peer int) (bool, error) {
	if _, err := s.device(dev); err != nil {
		return false, err
	}
	if _, err := s.device(peer); err != nil {
		return false, err
	}
	return dev != peer, nil
}

// DeviceSynchronize waits for all work of dev.
func (s *Shim) DeviceSynchronize(dev int) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	return c.DeviceSynchronize(dev)
}
