//go:build cgo

package cuda

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// attrSlot holds the attributes of one physical device once read.
type attrSlot struct {
	mu  sync.Mutex                          // serializes the read
	set atomic.Pointer[backend.DeviceAttrs] // nil until read; never changed after
}

var _ backend.Attributes = (*DeviceContext)(nil)

// DeviceAttributes returns the attributes of d's physical device
// (backend.Attributes): every CUdevice_attribute 1..backend.MaxDeviceAttr-1
// the driver answers with cuDeviceGetAttribute, read on the device's
// executor the first time any Device of the physical device asks, and kept
// by the Backend for every later Device. An attribute the driver refuses
// (CUDA_ERROR_INVALID_VALUE: one it does not know; CUDA_ERROR_NOT_SUPPORTED)
// is absent. Another failure fails the call and is not kept, so a later
// call reads again. It works after a sticky fault (attributes need no
// context) and fails with cudaErrorContextIsDestroyed once d is closed.
func (d *DeviceContext) DeviceAttributes() (*backend.DeviceAttrs, error) {
	const op = "DeviceAttributes"
	slot := &d.b.attrs[d.g.index]
	if s := slot.set.Load(); s != nil {
		if d.gone.Load() {
			return nil, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
		}
		return s, nil
	}
	// Held for reading until the read is done, so that Close (and with the
	// last Device the executor's end) waits for it.
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, backend.Errorf(name, op, cudaerr.ContextIsDestroyed, "device closed")
	}
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if s := slot.set.Load(); s != nil {
		return s, nil
	}
	s := new(backend.DeviceAttrs)
	err := d.g.exec.Do(func() error { return readAttrs(d.drv, d.g.dev, s) })
	if err != nil {
		return nil, &backend.OpError{Backend: name, Op: op, Err: err}
	}
	slot.set.Store(s)
	return s, nil
}

// readAttrs reads every attribute of dev into s, leaving out those the
// driver refuses.
func readAttrs(drv *Driver, dev Device, s *backend.DeviceAttrs) error {
	for a := 1; a < backend.MaxDeviceAttr; a++ {
		v, err := drv.DeviceAttribute(dev, DeviceAttribute(a))
		switch {
		case err == nil:
			s.Set(a, int32(v))
		case errors.Is(err, ErrInvalidValue), errors.Is(err, ErrNotSupported):
			// Refused: absent, as the driver answers.
		default:
			return fmt.Errorf("cuDeviceGetAttribute(%d): %w", a, err)
		}
	}
	return nil
}
