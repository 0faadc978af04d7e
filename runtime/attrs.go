package runtime

import (
	"fmt"
	"iter"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/internal/wire"
)

// DeviceAttr is a device attribute: a cudaDeviceAttr value (the driver
// API's CUdevice_attribute has the same numbers), such as
// DevAttrMultiProcessorCount.
type DeviceAttr int

// MaxDeviceAttr is one more than the largest DeviceAttr a device reports.
const MaxDeviceAttr DeviceAttr = calls.MaxAttr

// A few attributes, for the examples and tests; any other cudaDeviceAttr
// converts by value.
const (
	DevAttrMaxThreadsPerBlock     DeviceAttr = 1
	DevAttrWarpSize               DeviceAttr = 10
	DevAttrMultiProcessorCount    DeviceAttr = 16
	DevAttrComputeCapabilityMajor DeviceAttr = 75
	DevAttrComputeCapabilityMinor DeviceAttr = 76
)

// DeviceAttributes are the attributes of the physical GPU under a logical
// device, as its server's driver answers cuDeviceGetAttribute. It is
// read-only; the zero value holds no attribute.
type DeviceAttributes struct {
	set calls.Attrs
}

// Get returns attribute a and whether the device answers it (false for an
// attribute its driver refuses, as cudaDeviceGetAttribute then fails with
// cudaErrorInvalidValue).
func (d *DeviceAttributes) Get(a DeviceAttr) (int, bool) {
	if a <= 0 || a >= MaxDeviceAttr || !d.set.Valid[a] {
		return 0, false
	}
	return int(d.set.Value[a]), true
}

// Len returns the number of attributes the device answers.
func (d *DeviceAttributes) Len() int { return d.set.Len() }

// All yields every attribute the device answers with its value, in
// ascending order.
func (d *DeviceAttributes) All() iter.Seq2[DeviceAttr, int] {
	return func(yield func(DeviceAttr, int) bool) {
		for a := DeviceAttr(1); a < MaxDeviceAttr; a++ {
			if d.set.Valid[a] && !yield(a, int(d.set.Value[a])) {
				return
			}
		}
	}
}

// attrCache holds a device's attributes once fetched.
type attrCache struct {
	mu  sync.Mutex                       // serializes the fetch
	set atomic.Pointer[DeviceAttributes] // nil until fetched; never changed after
}

// DeviceAttributes returns the attributes of device dev's physical GPU, as
// the driver of its server reports them (one OpDeviceGetAttributes call):
// the GPU's values, not a profile kept in the client. The memory quota is
// not among them; MemGetInfo reports it. The first call for a device asks
// its worker; later calls, from any goroutine, return the same result
// without a call. A failure is not kept: the next call asks again. A
// server that predates the call answers cudaErrorNotSupported. It reports
// no failure of earlier asynchronous work and leaves it for the next
// synchronizing call, as cudaDeviceGetAttribute does. The result must not
// be modified.
func (c *Client) DeviceAttributes(dev int) (*DeviceAttributes, error) {
	const op = "cudaDeviceGetAttribute"
	d, err := c.device(op, dev)
	if err != nil {
		return nil, err
	}
	if a := d.attrs.set.Load(); a != nil {
		return a, nil
	}
	d.attrs.mu.Lock()
	defer d.attrs.mu.Unlock()
	if a := d.attrs.set.Load(); a != nil {
		return a, nil
	}
	var buf [calls.MaxAttrsLen]byte
	n, count, err := d.s.callUpTo(calls.OpDeviceGetAttributes, &calls.Call{Dev: uint32(dev)}, buf[:])
	if err != nil {
		return nil, opErr(op, dev, err)
	}
	a := new(DeviceAttributes)
	if err := calls.DecodeAttrs(buf[:n], &a.set); err != nil {
		return nil, opErr(op, dev, fmt.Errorf("%w (worker sent %v)", cudaerr.Unknown, err))
	}
	if count != uint64(a.set.Len()) {
		return nil, opErr(op, dev, fmt.Errorf("%w (worker counted %d attributes and sent %d)", cudaerr.Unknown, count, a.set.Len()))
	}
	d.attrs.set.Store(a)
	return a, nil
}

// callUpTo sends a synchronous call whose reply carries at most len(dst)
// bytes of data, copied into dst; n is their length. Unlike roundTrip it
// leaves a failure of earlier asynchronous work for the next call that
// reports one.
func (s *session) callUpTo(op wire.Op, c *calls.Call, dst []byte) (n int, v1 uint64, err error) {
	v1, _, n, err = s.exchange(op, c, dst, true)
	return n, v1, err
}
