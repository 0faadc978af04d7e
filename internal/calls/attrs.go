package calls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// MaxAttr is one more than the largest device attribute number the
// protocol carries. Device attributes are numbered as CUDA's cudaDeviceAttr
// (CUdevice_attribute has the same numbers), from 1; 0 is no attribute.
const MaxAttr = 256

// AttrBitmapLen is the length of the bitmap that starts an encoded
// attribute set.
const AttrBitmapLen = MaxAttr / 8

// MaxAttrsLen is the length of the largest encoded attribute set: the
// bitmap and a value for every attribute 1..MaxAttr-1.
const MaxAttrsLen = AttrBitmapLen + 4*(MaxAttr-1)

// Attrs is the set of attributes a device answers: Valid[a] says that it
// answers attribute a, and Value[a] is the value then (zero otherwise).
// Valid[0] is never set in a set that DecodeAttrs returns, and AppendAttrs
// ignores it.
type Attrs struct {
	Valid [MaxAttr]bool
	Value [MaxAttr]int32
}

// Len returns the number of attributes in a, attribute 0 not counted.
func (a *Attrs) Len() int {
	n := 0
	for _, v := range a.Valid[1:] {
		if v {
			n++
		}
	}
	return n
}

// ErrBadAttrs is wrapped by the error DecodeAttrs returns for bytes that
// are not an encoded attribute set.
var ErrBadAttrs = errors.New("calls: bad device attribute set")

// AppendAttrs appends the encoding of a to b, the data of an
// OpDeviceGetAttributes reply: a bitmap of AttrBitmapLen bytes in which bit
// a%8 of byte a/8 is set for each attribute a in the set, then the value of
// each of those attributes, int32 little endian, in ascending order of a.
// An H200's set (147 attributes) takes 620 bytes; no set takes
// more than MaxAttrsLen.
func AppendAttrs(b []byte, a *Attrs) []byte {
	var bitmap [AttrBitmapLen]byte
	for i := 1; i < MaxAttr; i++ {
		if a.Valid[i] {
			bitmap[i/8] |= 1 << (i % 8)
		}
	}
	b = append(b, bitmap[:]...)
	for i := 1; i < MaxAttr; i++ {
		if a.Valid[i] {
			b = binary.LittleEndian.AppendUint32(b, uint32(a.Value[i]))
		}
	}
	return b
}

// DecodeAttrs decodes into a (replacing its contents) a set AppendAttrs
// encoded. It checks that attribute 0 is absent and that exactly one value
// follows the bitmap for each attribute in it; it never panics. On error a
// is left empty.
func DecodeAttrs(b []byte, a *Attrs) error {
	*a = Attrs{}
	if len(b) < AttrBitmapLen {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte bitmap", ErrBadAttrs, len(b), AttrBitmapLen)
	}
	bitmap, vals := b[:AttrBitmapLen], b[AttrBitmapLen:]
	if bitmap[0]&1 != 0 {
		return fmt.Errorf("%w: attribute 0 is present", ErrBadAttrs)
	}
	n := 0
	for _, x := range bitmap {
		n += bits.OnesCount8(x)
	}
	if len(vals) != 4*n {
		return fmt.Errorf("%w: %d attributes with %d bytes of values", ErrBadAttrs, n, len(vals))
	}
	for i := 1; i < MaxAttr; i++ {
		if bitmap[i/8]&(1<<(i%8)) != 0 {
			a.Valid[i] = true
			a.Value[i] = int32(binary.LittleEndian.Uint32(vals))
			vals = vals[4:]
		}
	}
	return nil
}
