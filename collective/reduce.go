package collective

import (
	"fmt"
	"unsafe"
)

// Reducer does everything a Comm does to the contents of buffers: it
// combines, divides and copies them. The Comm itself never reads or writes
// a buffer's bytes, so a Reducer (with a Transport to match) may be handed
// slices whose data pointer is device memory, as under xgpu's cluster-wide
// unified addressing, and run each call as a GPU kernel or device copy.
//
// Each method returns once its result is in place: the Comm sends dst right
// after Reduce returns. Buffers hold whole elements in little-endian order.
// Methods may be called from many goroutines at once, on disjoint buffers.
//
// CPUReducer is the implementation for host memory; the cuda worker supplies
// one built on its own kernels.
type Reducer interface {
	// Reduce sets dst[i] = dst[i] op src[i] element-wise. len(dst) must
	// equal len(src) and be a multiple of dt.Size(). Avg reduces as Sum;
	// the Comm divides once at the end.
	Reduce(dst, src []byte, dt DType, op Op) error
	// Divide sets buf[i] = buf[i] / n element-wise (integers truncate
	// toward zero, as in C). n >= 1.
	Divide(buf []byte, dt DType, n int) error
	// Copy copies src to dst; len(dst) must equal len(src). They do not
	// overlap.
	Copy(dst, src []byte) error
}

// ScratchAllocator is implemented by a Reducer whose temporary buffers must
// come from somewhere special (device memory for a GPU reducer). A Comm
// whose Reducer lacks it allocates temporaries from the Go heap.
type ScratchAllocator interface {
	// AllocScratch returns a buffer of n bytes, aligned to 8 bytes.
	AllocScratch(n int) ([]byte, error)
	// FreeScratch releases a buffer AllocScratch returned.
	FreeScratch(b []byte)
}

// CPUReducer reduces host memory on the calling goroutine. The zero value
// is ready to use and it is safe for concurrent use. Aligned buffers (the
// usual case: element offsets into an 8-byte-aligned allocation) run
// type-specialised loops with no per-element calls; misaligned ones are
// staged through an aligned block on the stack. Float min and max follow C's
// fmin/fmax: a NaN loses to a number. F16 and BF16 compute in float32 and
// round to nearest even, which for one +, * or / is the correctly rounded
// result. Integer arithmetic wraps, as in C's unsigned arithmetic.
type CPUReducer struct{}

var _ Reducer = CPUReducer{}

func checkReduce(dst, src []byte, dt DType) error {
	if !dt.Valid() {
		return fmt.Errorf("%w: data type %v", ErrInvalidArgument, dt)
	}
	if len(dst) != len(src) {
		return fmt.Errorf("%w: reduce of %d bytes into %d", ErrInvalidArgument, len(src), len(dst))
	}
	if len(dst)%dt.Size() != 0 {
		return fmt.Errorf("%w: %d bytes is not a whole number of %v elements", ErrInvalidArgument, len(dst), dt)
	}
	return nil
}

// Reduce implements Reducer.
func (CPUReducer) Reduce(dst, src []byte, dt DType, op Op) error {
	if err := checkReduce(dst, src, dt); err != nil {
		return err
	}
	if !op.Valid() {
		return fmt.Errorf("%w: operator %v", ErrInvalidArgument, op)
	}
	sz := uintptr(dt.Size())
	if uintptr(unsafe.Pointer(unsafe.SliceData(dst)))%sz == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(src)))%sz == 0 {
		reduceAligned(dst, src, dt, op)
		return nil
	}
	var da, sa [stageWords]uint64
	db := unsafe.Slice((*byte)(unsafe.Pointer(&da)), stageWords*8)
	sb := unsafe.Slice((*byte)(unsafe.Pointer(&sa)), stageWords*8)
	for len(dst) > 0 {
		n := min(len(dst), len(db))
		copy(db, dst[:n])
		copy(sb, src[:n])
		reduceAligned(db[:n], sb[:n], dt, op)
		copy(dst, db[:n])
		dst, src = dst[n:], src[n:]
	}
	return nil
}

// Divide implements Reducer.
func (CPUReducer) Divide(buf []byte, dt DType, n int) error {
	if err := checkReduce(buf, buf, dt); err != nil {
		return err
	}
	if n < 1 {
		return fmt.Errorf("%w: divide by %d", ErrInvalidArgument, n)
	}
	if n == 1 {
		return nil
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%uintptr(dt.Size()) == 0 {
		divideAligned(buf, dt, n)
		return nil
	}
	var da [stageWords]uint64
	db := unsafe.Slice((*byte)(unsafe.Pointer(&da)), stageWords*8)
	for len(buf) > 0 {
		k := min(len(buf), len(db))
		copy(db, buf[:k])
		divideAligned(db[:k], dt, n)
		copy(buf, db[:k])
		buf = buf[k:]
	}
	return nil
}

// Copy implements Reducer.
func (CPUReducer) Copy(dst, src []byte) error {
	if len(dst) != len(src) {
		return fmt.Errorf("%w: copy of %d bytes into %d", ErrInvalidArgument, len(src), len(dst))
	}
	copy(dst, src)
	return nil
}

// stageWords is the size in 8-byte words of the stack block that stages
// misaligned buffers.
const stageWords = 512

// view reinterprets b, whose data pointer is aligned for T, as a []T.
func view[T any](b []byte) []T {
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b))/unsafe.Sizeof(z))
}

func reduceAligned(d, s []byte, dt DType, op Op) {
	switch dt {
	case I8, U8:
		if op == Sum || op == Avg {
			sumBytes(d, s) // two's complement: one sum for both
			return
		}
		if dt == I8 {
			reduceInt(view[int8](d), view[int8](s), op)
		} else {
			reduceInt(view[uint8](d), view[uint8](s), op)
		}
	case I32:
		reduceInt(view[int32](d), view[int32](s), op)
	case U32:
		reduceInt(view[uint32](d), view[uint32](s), op)
	case I64:
		reduceInt(view[int64](d), view[int64](s), op)
	case U64:
		reduceInt(view[uint64](d), view[uint64](s), op)
	case F32:
		reduceFloat(view[float32](d), view[float32](s), op)
	case F64:
		reduceFloat(view[float64](d), view[float64](s), op)
	case F16:
		reduceF16(view[uint16](d), view[uint16](s), op)
	case BF16:
		reduceBF16(view[uint16](d), view[uint16](s), op)
	}
}

// sumBytes adds bytes lane-wise eight at a time where both buffers allow
// 8-byte loads at the same offset: the low seven bits of each lane add
// without reaching the next lane, and the top bit is their carry xor the
// operands' top bits.
func sumBytes(d, s []byte) {
	s = s[:len(d)]
	i := 0
	for ; i < len(d) && addr(d[i:])%8 != 0; i++ {
		d[i] += s[i]
	}
	if w := (len(d) - i) / 8; w > 0 && addr(s[i:])%8 == 0 {
		dw, sw := view[uint64](d[i:i+8*w]), view[uint64](s[i:i+8*w])
		sw = sw[:len(dw)]
		const hi = 0x8080808080808080
		for k := range dw {
			a, b := dw[k], sw[k]
			dw[k] = (a&^hi + b&^hi) ^ (a^b)&hi
		}
		i += 8 * w
	}
	for ; i < len(d); i++ {
		d[i] += s[i]
	}
}

type integer interface {
	~int8 | ~uint8 | ~int32 | ~uint32 | ~int64 | ~uint64
}

type float interface{ ~float32 | ~float64 }

func reduceInt[T integer](d, s []T, op Op) {
	s = s[:len(d)]
	switch op {
	case Sum, Avg:
		for i := range d {
			d[i] += s[i]
		}
	case Prod:
		for i := range d {
			d[i] *= s[i]
		}
	case Max:
		for i := range d {
			if s[i] > d[i] {
				d[i] = s[i]
			}
		}
	case Min:
		for i := range d {
			if s[i] < d[i] {
				d[i] = s[i]
			}
		}
	}
}

func reduceFloat[T float](d, s []T, op Op) {
	s = s[:len(d)]
	switch op {
	case Sum, Avg:
		for i := range d {
			d[i] += s[i]
		}
	case Prod:
		for i := range d {
			d[i] *= s[i]
		}
	case Max:
		for i := range d {
			// fmax: b wins if larger, or if a is NaN.
			if a, b := d[i], s[i]; b > a || a != a {
				d[i] = b
			}
		}
	case Min:
		for i := range d {
			if a, b := d[i], s[i]; b < a || a != a {
				d[i] = b
			}
		}
	}
}

// halfBlock is how many f16 results are formed in float32 before they are
// packed.
const halfBlock = 512

func reduceF16(d, s []uint16, op Op) {
	s = s[:len(d)]
	t := f16ToF32
	switch op {
	case Max:
		for i := range d {
			if a, b := t[d[i]], t[s[i]]; b > a || a != a {
				d[i] = s[i]
			}
		}
		return
	case Min:
		for i := range d {
			if a, b := t[d[i]], t[s[i]]; b < a || a != a {
				d[i] = s[i]
			}
		}
		return
	}
	var buf [halfBlock]float32
	for len(d) > 0 {
		k := min(len(d), halfBlock)
		f, dk, sk := buf[:k], d[:k], s[:k]
		if op == Prod {
			for i := range f {
				f[i] = t[dk[i]] * t[sk[i]]
			}
		} else {
			for i := range f {
				f[i] = t[dk[i]] + t[sk[i]]
			}
		}
		packF16(dk, f)
		d, s = d[k:], s[k:]
	}
}

func reduceBF16(d, s []uint16, op Op) {
	s = s[:len(d)]
	switch op {
	case Sum, Avg:
		for i := range d {
			d[i] = F32ToBF16(BF16ToF32(d[i]) + BF16ToF32(s[i]))
		}
	case Prod:
		for i := range d {
			d[i] = F32ToBF16(BF16ToF32(d[i]) * BF16ToF32(s[i]))
		}
	case Max:
		for i := range d {
			if a, b := BF16ToF32(d[i]), BF16ToF32(s[i]); b > a || a != a {
				d[i] = s[i]
			}
		}
	case Min:
		for i := range d {
			if a, b := BF16ToF32(d[i]), BF16ToF32(s[i]); b < a || a != a {
				d[i] = s[i]
			}
		}
	}
}

func divideAligned(b []byte, dt DType, n int) {
	switch dt {
	case I8:
		divSigned(view[int8](b), int64(n))
	case U8:
		divUnsigned(view[uint8](b), uint64(n))
	case I32:
		divSigned(view[int32](b), int64(n))
	case U32:
		divUnsigned(view[uint32](b), uint64(n))
	case I64:
		divSigned(view[int64](b), int64(n))
	case U64:
		divUnsigned(view[uint64](b), uint64(n))
	case F32:
		d, f := view[float32](b), float32(n)
		for i := range d {
			d[i] /= f
		}
	case F64:
		d, f := view[float64](b), float64(n)
		for i := range d {
			d[i] /= f
		}
	case F16:
		d, f := view[uint16](b), float32(n)
		var buf [halfBlock]float32
		for len(d) > 0 {
			k := min(len(d), halfBlock)
			for i := range buf[:k] {
				buf[i] = f16ToF32[d[i]] / f
			}
			packF16(d[:k], buf[:k])
			d = d[k:]
		}
	case BF16:
		d, f := view[uint16](b), float32(n)
		for i := range d {
			d[i] = F32ToBF16(BF16ToF32(d[i]) / f)
		}
	}
}

// divSigned divides in 64 bits so that n need not fit in T.
func divSigned[T ~int8 | ~int32 | ~int64](d []T, n int64) {
	for i := range d {
		d[i] = T(int64(d[i]) / n)
	}
}

func divUnsigned[T ~uint8 | ~uint32 | ~uint64](d []T, n uint64) {
	for i := range d {
		d[i] = T(uint64(d[i]) / n)
	}
}
