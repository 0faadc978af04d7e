package host

import (
	"math"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// The asynchronous operations check their arguments, resolve device
// pointers to host memory at once (so a bad range fails the call and
// touches nothing) and queue a task that does the work in stream order.

// MemsetD8Async sets n bytes at dst to v.
func (d *Device) MemsetD8Async(dst backend.DevicePtr, v uint8, n uint64, s backend.Stream) error {
	return d.memset("MemsetD8Async", dst, uint32(v), 1, n, s)
}

// MemsetD16Async sets n 16-bit values at dst to v.
func (d *Device) MemsetD16Async(dst backend.DevicePtr, v uint16, n uint64, s backend.Stream) error {
	return d.memset("MemsetD16Async", dst, uint32(v), 2, n, s)
}

// MemsetD32Async sets n 32-bit values at dst to v.
func (d *Device) MemsetD32Async(dst backend.DevicePtr, v uint32, n uint64, s backend.Stream) error {
	return d.memset("MemsetD32Async", dst, v, 4, n, s)
}

func (d *Device) memset(op string, dst backend.DevicePtr, v uint32, elem uint8, n uint64, sh backend.Stream) error {
	s, err := d.stream(op, sh)
	if err != nil || n == 0 {
		return err
	}
	if uint64(dst)%uint64(elem) != 0 {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "dst %#x is not %d-byte aligned", uint64(dst), elem)
	}
	if n > math.MaxUint64/uint64(elem) {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d elements of %d bytes overflow", n, elem)
	}
	buf, err := d.resolve(op, "dst", dst, n*uint64(elem))
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opMemset, elem: elem, val: v, dst: buf})
}

// MemcpyHtoDAsync copies src to dst when the stream reaches the copy.
func (d *Device) MemcpyHtoDAsync(dst backend.DevicePtr, src []byte, sh backend.Stream) error {
	const op = "MemcpyHtoDAsync"
	s, err := d.stream(op, sh)
	if err != nil || len(src) == 0 {
		return err
	}
	buf, err := d.resolve(op, "dst", dst, uint64(len(src)))
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opCopy, dst: buf, src: src})
}

// MemcpyDtoHAsync copies src to dst when the stream reaches the copy.
func (d *Device) MemcpyDtoHAsync(dst []byte, src backend.DevicePtr, sh backend.Stream) error {
	const op = "MemcpyDtoHAsync"
	s, err := d.stream(op, sh)
	if err != nil || len(dst) == 0 {
		return err
	}
	buf, err := d.resolve(op, "src", src, uint64(len(dst)))
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opCopy, dst: dst, src: buf})
}

// MemcpyDtoDAsync copies n bytes from src to dst, both on this Device.
func (d *Device) MemcpyDtoDAsync(dst, src backend.DevicePtr, n uint64, sh backend.Stream) error {
	const op = "MemcpyDtoDAsync"
	s, err := d.stream(op, sh)
	if err != nil || n == 0 {
		return err
	}
	to, err := d.resolve(op, "dst", dst, n)
	if err != nil {
		return err
	}
	from, err := d.resolve(op, "src", src, n)
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opCopy, dst: to, src: from})
}

// MemcpyPeerAsync copies n bytes from src on this Device to dst on dstDev.
func (d *Device) MemcpyPeerAsync(dst backend.DevicePtr, dstDev backend.Device, src backend.DevicePtr, n uint64, sh backend.Stream) error {
	const op = "MemcpyPeerAsync"
	s, err := d.stream(op, sh)
	if err != nil {
		return err
	}
	peer, ok := dstDev.(*Device)
	if !ok || peer == nil || peer.b != d.b {
		return backend.Errorf(name, op, cudaerr.InvalidDevice, "destination device is not a device of this backend")
	}
	if err := peer.check(op); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	to, err := peer.resolve(op, "dst", dst, n)
	if err != nil {
		return err
	}
	from, err := d.resolve(op, "src", src, n)
	if err != nil {
		return err
	}
	return d.enqueue(op, s, task{kind: opCopy, dst: to, src: from})
}

// LaunchHostFunc runs fn on the stream's goroutine in stream order.
func (d *Device) LaunchHostFunc(sh backend.Stream, fn func()) error {
	const op = "LaunchHostFunc"
	s, err := d.stream(op, sh)
	if err != nil {
		return err
	}
	if fn == nil {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "fn is nil")
	}
	return d.enqueue(op, s, task{kind: opHostFunc, fn: fn})
}
