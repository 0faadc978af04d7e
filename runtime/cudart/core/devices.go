package core

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/cudaerr"
)

// MaxAttr bounds the cudaDeviceAttr values a Device holds.
const MaxAttr = 256

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

// newDevice describes logical device i of m. The attributes are those of
// an H200 (the profile measured on one), with the values the map knows
// (compute capability, SM count, PCI location) put in; see
// docs/cuda-shim.md for what that means for other GPUs.
func newDevice(m *devicemap.Map, i int) Device {
	d := &m.Devices[i]
	out := Device{Name: d.Properties.Name, TotalMem: d.MemoryQuota, Server: d.Address}
	if out.Name == "" {
		out.Name = "xgpu device"
	}
	out.UUID = parseUUID(d.GPUUUID)
	for a, v := range h200 {
		if a > 0 && a < MaxAttr {
			out.Attrs[a], out.Valid[a] = v, true
		}
	}
	set := func(a, v int) { out.Attrs[a], out.Valid[a] = v, true }
	if d.Properties.MultiprocessorCount > 0 {
		set(attrMultiProcessorCount, d.Properties.MultiprocessorCount)
	}
	if maj, min, ok := parseCC(d.Properties.ComputeCapability); ok {
		set(attrComputeMajor, maj)
		set(attrComputeMinor, min)
	}
	if dom, bus, dev, ok := parsePCI(d.Properties.PCIBusID); ok {
		set(attrPciDomainID, dom)
		set(attrPciBusID, bus)
		set(attrPciDeviceID, dev)
		out.PCIBusID = fmt.Sprintf("%04x:%02x:%02x.0", dom, bus, dev)
	}
	set(attrMultiGpuBoardGroupID, d.GPUIndex)
	return out
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
func (s *Shim) Device(dev int) (*Device, error) {
	if _, err := s.device(dev); err != nil {
		return nil, err
	}
	return &s.devs[dev], nil
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
