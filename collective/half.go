package collective

import "math"

// f16ToF32 holds the float32 bits of every binary16 value: a conversion is
// one load.
var f16ToF32 = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = math.Float32frombits(halfBitsToFloatBits(uint16(h)))
	}
	return &t
}()

// halfBitsToFloatBits widens binary16 bits to binary32 bits exactly.
func halfBitsToFloatBits(h uint16) uint32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN; the payload (and so quietness) is kept
		return sign | 0xff<<23 | man<<13
	case exp != 0: // normal
		return sign | (exp+127-15)<<23 | man<<13
	case man == 0: // signed zero
		return sign
	}
	// Subnormal: man * 2^-24. Normalise.
	e := uint32(127 - 15 + 1)
	for man&0x400 == 0 {
		man <<= 1
		e--
	}
	return sign | e<<23 | (man&0x3ff)<<13
}

// F16ToF32 converts IEEE 754 binary16 bits to a float32, exactly.
func F16ToF32(h uint16) float32 { return f16ToF32[h] }

// F32ToF16 converts a float32 to binary16 bits, rounding to nearest with
// ties to even; values beyond the range become infinities and NaNs stay
// NaNs (quiet).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal result (or zero): the value in units of 2^-24 is
		// (man|1<<23) >> (14-e).
		if e < -10 {
			return sign // below half the smallest subnormal: zero
		}
		m := man | 1<<23
		shift := uint(14 - e)
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 != 0) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 != 0) {
		r++ // a carry into the exponent is right, up to infinity
	}
	return sign | uint16(r)
}

// packF16 converts src to binary16 bits in dst (len(dst) == len(src)) as
// F32ToF16 does, with the common case, a normal result, inline.
func packF16(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		b := math.Float32bits(f)
		if a := b & 0x7fffffff; a-0x38800000 < 0x47000000-0x38800000 { // 2^-14 <= |f| < 2^15
			a += 0xfff + (a>>13)&1 // round to nearest even on the 13 dropped bits
			dst[i] = uint16(b>>16)&0x8000 | uint16(a>>13-(127-15)<<10)
		} else {
			dst[i] = F32ToF16(f)
		}
	}
}

// BF16ToF32 converts bfloat16 bits to a float32, exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to bfloat16 bits, rounding to nearest with
// ties to even; NaNs stay NaNs (quiet).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
