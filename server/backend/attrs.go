package backend

// MaxDeviceAttr is one more than the largest device attribute number a
// DeviceAttrs holds. Device attributes are numbered as CUDA's
// CUdevice_attribute (the runtime's cudaDeviceAttr has the same numbers),
// from 1; 0 is no attribute.
const MaxDeviceAttr = 256

// DeviceAttrs is the set of attributes a physical device answers, as
// cuDeviceGetAttribute reports them: Valid[a] says that the device answers
// attribute a and Value[a] is the value then. An attribute the driver
// refuses (one it does not know, or one this device does not report) is
// absent. Valid[0] is never set.
type DeviceAttrs struct {
	Valid [MaxDeviceAttr]bool
	Value [MaxDeviceAttr]int32
}

// Get returns attribute a and whether the set holds it.
func (s *DeviceAttrs) Get(a int) (int32, bool) {
	if a <= 0 || a >= MaxDeviceAttr || !s.Valid[a] {
		return 0, false
	}
	return s.Value[a], true
}

// Set puts attribute a in the set with value v. Numbers outside
// 1..MaxDeviceAttr-1 are ignored.
func (s *DeviceAttrs) Set(a int, v int32) {
	if a > 0 && a < MaxDeviceAttr {
		s.Valid[a], s.Value[a] = true, v
	}
}

// Len returns the number of attributes in the set.
func (s *DeviceAttrs) Len() int {
	n := 0
	for _, v := range s.Valid[1:] {
		if v {
			n++
		}
	}
	return n
}

// Attributes is implemented by Devices that report the attributes of the
// physical device they run on, so that a client sees the attributes of the
// GPU that runs its work (cudaDeviceGetAttribute, cudaGetDeviceProperties)
// rather than those of some other GPU. The cuda backend reads every
// attribute from the driver, once per physical device; the host backend
// reports the attributes of the GPU it emulates (an H200) with its own
// configured facts put in.
//
// The values are those of the physical device, not of the Device's share
// of it: the memory quota is not an attribute (Info.TotalMemory and
// DeviceSpec.MemoryQuota carry memory).
type Attributes interface {
	// DeviceAttributes returns the attributes of the Device's physical
	// device. The set is shared: the caller must not modify it. It works
	// after a sticky fault too (attributes belong to the device, not to the
	// lost context), and fails with cudaErrorContextIsDestroyed once the
	// Device is closed.
	DeviceAttributes() (*DeviceAttrs, error)
}
