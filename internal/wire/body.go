package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

var (
	// ErrTruncated means a body ended before a value being decoded.
	ErrTruncated = errors.New("wire: truncated body")
	// ErrTrailing means a body had bytes left after its last value.
	ErrTrailing = errors.New("wire: trailing bytes in body")
)

// Enc builds a frame body by appending little-endian values to B. Reuse one
// Enc (Reset keeps the capacity) to build bodies without allocating. The zero
// Enc is ready to use.
type Enc struct {
	B []byte
}

// Reset empties the body and keeps its capacity.
func (e *Enc) Reset() { e.B = e.B[:0] }

// U8 appends v.
func (e *Enc) U8(v uint8) { e.B = append(e.B, v) }

// U16 appends v.
func (e *Enc) U16(v uint16) { e.B = binary.LittleEndian.AppendUint16(e.B, v) }

// U32 appends v.
func (e *Enc) U32(v uint32) { e.B = binary.LittleEndian.AppendUint32(e.B, v) }

// U64 appends v.
func (e *Enc) U64(v uint64) { e.B = binary.LittleEndian.AppendUint64(e.B, v) }

// I64 appends v in two's complement.
func (e *Enc) I64(v int64) { e.U64(uint64(v)) }

// F64 appends the IEEE 754 bits of v.
func (e *Enc) F64(v float64) { e.U64(math.Float64bits(v)) }

// Bool appends v as one byte, 0 or 1.
func (e *Enc) Bool(v bool) {
	var b uint8
	if v {
		b = 1
	}
	e.U8(b)
}

// Bytes appends len(b) as a u32, then b. A slice longer than MaxFrameSize
// can never be decoded, so such a call records nothing and returns false.
func (e *Enc) Bytes(b []byte) bool {
	if len(b) > MaxFrameSize {
		return false
	}
	e.U32(uint32(len(b)))
	e.B = append(e.B, b...)
	return true
}

// String appends len(s) as a u32, then s. Like Bytes it refuses a string
// longer than MaxFrameSize and returns false.
func (e *Enc) String(s string) bool {
	if len(s) > MaxFrameSize {
		return false
	}
	e.U32(uint32(len(s)))
	e.B = append(e.B, s...)
	return true
}

// Raw appends b with no length prefix.
func (e *Enc) Raw(b []byte) { e.B = append(e.B, b...) }

// Dec decodes a frame body with bounds checks. Its error is sticky: after
// the first failure every method returns a zero value, so a decoder reads
// all fields and checks Err (or Done) once.
type Dec struct {
	b   []byte
	off int
	err error
}

// NewDec returns a decoder over b.
func NewDec(b []byte) Dec { return Dec{b: b} }

// Reset makes d decode b from its start and clears the error.
func (d *Dec) Reset(b []byte) { *d = Dec{b: b} }

// Err returns the first error met, if any.
func (d *Dec) Err() error { return d.err }

// Len returns the number of bytes not yet decoded.
func (d *Dec) Len() int { return len(d.b) - d.off }

// Done returns the first error met, or ErrTrailing when bytes are left.
func (d *Dec) Done() error {
	if d.err != nil {
		return d.err
	}
	if d.off != len(d.b) {
		d.err = fmt.Errorf("%w: %d bytes", ErrTrailing, len(d.b)-d.off)
	}
	return d.err
}

// take returns the next n bytes, or nil after recording ErrTruncated.
func (d *Dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.err = fmt.Errorf("%w: need %d bytes at offset %d, have %d", ErrTruncated, n, d.off, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

// U8 decodes one byte.
func (d *Dec) U8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

// U16 decodes a u16.
func (d *Dec) U16() uint16 {
	if p := d.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

// U32 decodes a u32.
func (d *Dec) U32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// U64 decodes a u64.
func (d *Dec) U64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// I64 decodes an i64.
func (d *Dec) I64() int64 { return int64(d.U64()) }

// F64 decodes an f64.
func (d *Dec) F64() float64 { return math.Float64frombits(d.U64()) }

// Bool decodes a byte that must be 0 or 1.
func (d *Dec) Bool() bool {
	p := d.take(1)
	if p == nil {
		return false
	}
	if p[0] > 1 {
		d.err = fmt.Errorf("%w: bool byte %d at offset %d", ErrMalformed, p[0], d.off-1)
		return false
	}
	return p[0] == 1
}

// Bytes decodes a u32 length and that many bytes. The result aliases the
// body; copy it to keep it past the frame's lifetime.
func (d *Dec) Bytes() []byte {
	n := d.U32()
	if d.err != nil {
		return nil
	}
	return d.take(int(n))
}

// String decodes a u32 length and that many bytes as a string (a copy).
func (d *Dec) String() string {
	return string(d.Bytes())
}

// Raw decodes the next n bytes, no length prefix. The result aliases the
// body.
func (d *Dec) Raw(n int) []byte { return d.take(n) }
