package host

import (
	"encoding/binary"
	"math"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

var _ backend.Reducer = (*Device)(nil)

// Reduce sets dst[i] = op(dst[i], src[i]) for n elements of type t, on the
// CPU in stream order, with the arithmetic backend.Reducer describes.
func (d *Device) Reduce(dst, src backend.DevicePtr, n uint64, t backend.DType, op backend.RedOp, sh backend.Stream) error {
	return d.reduceFrom("Reduce", dst, d, src, n, t, op, sh)
}

// reduceFrom queues dst (on d) = op(dst, src on sd) on stream sh of d.
func (d *Device) reduceFrom(opName string, dst backend.DevicePtr, sd *Device, src backend.DevicePtr, n uint64, t backend.DType, op backend.RedOp, sh backend.Stream) error {
	s, err := d.stream(opName, sh)
	if err != nil {
		return err
	}
	if !t.Valid() || !op.Valid() {
		return backend.Errorf(name, opName, cudaerr.InvalidValue, "element type %v or operator %v unknown", t, op)
	}
	if n == 0 {
		return nil
	}
	a, err := d.elements(opName, "dst", dst, n, t)
	if err != nil {
		return err
	}
	if sd != d {
		if err := sd.check(opName); err != nil {
			return err
		}
	}
	b, err := sd.elements(opName, "src", src, n, t)
	if err != nil {
		return err
	}
	return d.enqueue(opName, s, task{kind: opKernel, kern: func() cudaerr.Error {
		reduceBytes(a, b, t, op)
		return cudaerr.Success
	}})
}

// Divide sets buf[i] /= divisor for n elements of type t, on the CPU in
// stream order.
func (d *Device) Divide(buf backend.DevicePtr, n uint64, t backend.DType, divisor uint64, sh backend.Stream) error {
	const opName = "Divide"
	s, err := d.stream(opName, sh)
	if err != nil {
		return err
	}
	if !t.Valid() || divisor == 0 || divisor > math.MaxInt64 {
		return backend.Errorf(name, opName, cudaerr.InvalidValue, "element type %v or divisor %d invalid", t, divisor)
	}
	if n == 0 {
		return nil
	}
	a, err := d.elements(opName, "buf", buf, n, t)
	if err != nil {
		return err
	}
	return d.enqueue(opName, s, task{kind: opKernel, kern: func() cudaerr.Error {
		divideBytes(a, t, divisor)
		return cudaerr.Success
	}})
}

// elements resolves n aligned elements of type t at p.
func (d *Device) elements(op, what string, p backend.DevicePtr, n uint64, t backend.DType) ([]byte, error) {
	size := t.Size()
	if uint64(p)%size != 0 {
		return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "%s %#x is not aligned to its %d-byte elements", what, uint64(p), size)
	}
	if n > math.MaxUint64/size {
		return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "%d elements of %d bytes overflow", n, size)
	}
	if b, ok := d.lookup(p, n*size); ok {
		return b, nil
	}
	if b, ok := d.lookupMapped(p, n*size); ok {
		return b, nil
	}
	return nil, backend.Errorf(name, op, cudaerr.InvalidValue, "%s range [%#x, +%d) is not inside one allocation or mapped host buffer of this device", what, uint64(p), n*size)
}

func fmin32(a, b float32) float32 {
	switch {
	case a != a:
		return b
	case b != b || a < b:
		return a
	}
	return b
}

func fmax32(a, b float32) float32 {
	switch {
	case a != a:
		return b
	case b != b || a > b:
		return a
	}
	return b
}

func fmin64(a, b float64) float64 {
	switch {
	case a != a:
		return b
	case b != b || a < b:
		return a
	}
	return b
}

func fmax64(a, b float64) float64 {
	switch {
	case a != a:
		return b
	case b != b || a > b:
		return a
	}
	return b
}

func op32(a, b float32, op backend.RedOp) float32 {
	switch op {
	case backend.Sum:
		return a + b
	case backend.Prod:
		return a * b
	case backend.Min:
		return fmin32(a, b)
	}
	return fmax32(a, b)
}

func op64(a, b float64, op backend.RedOp) float64 {
	switch op {
	case backend.Sum:
		return a + b
	case backend.Prod:
		return a * b
	case backend.Min:
		return fmin64(a, b)
	}
	return fmax64(a, b)
}

// opInt combines two integers held in uint64 (sign-extended for the
// signed types); the caller truncates the result to the element's width.
func opInt(a, b uint64, op backend.RedOp, signed bool) uint64 {
	switch op {
	case backend.Sum:
		return a + b
	case backend.Prod:
		return a * b
	}
	less := a < b
	if signed {
		less = int64(a) < int64(b)
	}
	if less == (op == backend.Min) {
		return a
	}
	return b
}

// reduceBytes is the CPU reduction of two little-endian element arrays of
// equal length.
func reduceBytes(dst, src []byte, t backend.DType, op backend.RedOp) {
	le := binary.LittleEndian
	switch t {
	case backend.I8:
		for i := range dst {
			dst[i] = byte(opInt(uint64(int64(int8(dst[i]))), uint64(int64(int8(src[i]))), op, true))
		}
	case backend.U8:
		for i := range dst {
			dst[i] = byte(opInt(uint64(dst[i]), uint64(src[i]), op, false))
		}
	case backend.I32, backend.U32:
		signed := t == backend.I32
		for i := 0; i < len(dst); i += 4 {
			a, b := uint64(le.Uint32(dst[i:])), uint64(le.Uint32(src[i:]))
			if signed {
				a, b = uint64(int64(int32(a))), uint64(int64(int32(b)))
			}
			le.PutUint32(dst[i:], uint32(opInt(a, b, op, signed)))
		}
	case backend.I64, backend.U64:
		for i := 0; i < len(dst); i += 8 {
			le.PutUint64(dst[i:], opInt(le.Uint64(dst[i:]), le.Uint64(src[i:]), op, t == backend.I64))
		}
	case backend.F16:
		for i := 0; i < len(dst); i += 2 {
			v := op32(backend.HalfToFloat32(le.Uint16(dst[i:])), backend.HalfToFloat32(le.Uint16(src[i:])), op)
			le.PutUint16(dst[i:], backend.Float32ToHalf(v))
		}
	case backend.BF16:
		for i := 0; i < len(dst); i += 2 {
			v := op32(backend.BF16ToFloat32(le.Uint16(dst[i:])), backend.BF16ToFloat32(le.Uint16(src[i:])), op)
			le.PutUint16(dst[i:], backend.Float32ToBF16(v))
		}
	case backend.F32:
		for i := 0; i < len(dst); i += 4 {
			v := op32(math.Float32frombits(le.Uint32(dst[i:])), math.Float32frombits(le.Uint32(src[i:])), op)
			le.PutUint32(dst[i:], math.Float32bits(v))
		}
	case backend.F64:
		for i := 0; i < len(dst); i += 8 {
			v := op64(math.Float64frombits(le.Uint64(dst[i:])), math.Float64frombits(le.Uint64(src[i:])), op)
			le.PutUint64(dst[i:], math.Float64bits(v))
		}
	}
}

// divideBytes divides every element of buf by divisor, as C does.
func divideBytes(buf []byte, t backend.DType, divisor uint64) {
	le := binary.LittleEndian
	sd := int64(divisor)
	switch t {
	case backend.I8:
		for i := range buf {
			buf[i] = byte(int64(int8(buf[i])) / sd)
		}
	case backend.U8:
		for i := range buf {
			buf[i] = byte(uint64(buf[i]) / divisor)
		}
	case backend.I32:
		for i := 0; i < len(buf); i += 4 {
			le.PutUint32(buf[i:], uint32(int64(int32(le.Uint32(buf[i:])))/sd))
		}
	case backend.U32:
		for i := 0; i < len(buf); i += 4 {
			le.PutUint32(buf[i:], uint32(uint64(le.Uint32(buf[i:]))/divisor))
		}
	case backend.I64:
		for i := 0; i < len(buf); i += 8 {
			le.PutUint64(buf[i:], uint64(int64(le.Uint64(buf[i:]))/sd))
		}
	case backend.U64:
		for i := 0; i < len(buf); i += 8 {
			le.PutUint64(buf[i:], le.Uint64(buf[i:])/divisor)
		}
	case backend.F16:
		for i := 0; i < len(buf); i += 2 {
			le.PutUint16(buf[i:], backend.Float32ToHalf(backend.HalfToFloat32(le.Uint16(buf[i:]))/float32(divisor)))
		}
	case backend.BF16:
		for i := 0; i < len(buf); i += 2 {
			le.PutUint16(buf[i:], backend.Float32ToBF16(backend.BF16ToFloat32(le.Uint16(buf[i:]))/float32(divisor)))
		}
	case backend.F32:
		for i := 0; i < len(buf); i += 4 {
			le.PutUint32(buf[i:], math.Float32bits(math.Float32frombits(le.Uint32(buf[i:]))/float32(divisor)))
		}
	case backend.F64:
		for i := 0; i < len(buf); i += 8 {
			le.PutUint64(buf[i:], math.Float64bits(math.Float64frombits(le.Uint64(buf[i:]))/float64(divisor)))
		}
	}
}

var _ backend.PeerReducer = (*Device)(nil)

// ReducePeer is Reduce with its source in srcDev's memory, another Device
// of this Backend (whose memory is host memory too).
func (d *Device) ReducePeer(dst backend.DevicePtr, srcDev backend.Device, src backend.DevicePtr, n uint64, t backend.DType, op backend.RedOp, sh backend.Stream) error {
	sd, ok := srcDev.(*Device)
	if !ok || sd.b != d.b {
		return backend.Errorf(name, "ReducePeer", cudaerr.InvalidDevice, "the source device is not of this backend")
	}
	return d.reduceFrom("ReducePeer", dst, sd, src, n, t, op, sh)
}

// CanReducePeer reports whether srcDev is another Device of this Backend.
func (d *Device) CanReducePeer(srcDev backend.Device) bool {
	sd, ok := srcDev.(*Device)
	return ok && sd.b == d.b
}
