package host

import (
	"fmt"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/gpuprofile"
	"github.com/xgpu/xgpu/server/backend"
)

// Device attributes whose values the host backend's devices take from
// their Info rather than from the H200 profile (CUdevice_attribute
// numbers).
const (
	attrPCIBusID             = 33
	attrPCIDeviceID          = 34
	attrPCIDomainID          = 50
	attrMultiprocessorCount  = 16
	attrComputeMajor         = 75
	attrComputeMinor         = 76
	attrIsMultiGPUBoard      = 84
	attrMultiGPUBoardGroupID = 85
)

// DeviceAttributes returns the attributes of the emulated physical device
// d runs on (backend.Attributes): those of an H200 (H200Attributes), with
// the device's own facts put in: the SM count and compute capability of
// the Config, the PCI location of its Info.PCIBusID, and a board of its
// own (group id: its index). Memory is no attribute; a client learns it
// from Info.TotalMemory and the quota. It fails with
// cudaErrorContextIsDestroyed once d is closed, and works after a fault.
func (d *Device) DeviceAttributes() (*backend.DeviceAttrs, error) {
	if d.closed.Load() {
		return nil, backend.Errorf(name, "DeviceAttributes", cudaerr.ContextIsDestroyed, "")
	}
	return deviceAttrs(d.spec.Index, d.b.infos[d.spec.Index]), nil
}

var _ backend.Attributes = (*Device)(nil)

// deviceAttrs is the attribute set of emulated device index, described
// by info.
func deviceAttrs(index int, info backend.Info) *backend.DeviceAttrs {
	s := new(backend.DeviceAttrs)
	for a, v := range h200Profile {
		s.Set(a, v)
	}
	s.Set(attrMultiprocessorCount, int32(info.Multiprocessors))
	s.Set(attrComputeMajor, int32(info.ComputeMajor))
	s.Set(attrComputeMinor, int32(info.ComputeMinor))
	var dom, bus, dev uint32
	if _, err := fmt.Sscanf(info.PCIBusID, "%x:%x:%x.0", &dom, &bus, &dev); err == nil {
		s.Set(attrPCIDomainID, int32(dom))
		s.Set(attrPCIBusID, int32(bus))
		s.Set(attrPCIDeviceID, int32(dev))
	}
	s.Set(attrIsMultiGPUBoard, 0)
	s.Set(attrMultiGPUBoardGroupID, int32(index))
	return s
}

// h200Profile is the profile the devices start from.
var h200Profile = gpuprofile.H200()

// H200Attributes returns the attribute values the host backend's devices
// start from (a copy): every CUdevice_attribute value cuDeviceGetAttribute
// gave for device 0 of a 4 x H200 machine (driver 580.159.04, CUDA 13.0)
// on 2026-11-28 (examples/cuda/device_query --attrs), including the few
// values it answers for numbers CUDA 13's enum no longer names.
// Attributes it refused are absent.
func H200Attributes() map[int]int32 { return gpuprofile.H200() }
