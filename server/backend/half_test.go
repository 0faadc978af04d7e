package backend

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestHalfConversions(t *testing.T) {
	tests := []struct {
		name string
		f    float32
		half uint16
		bf16 uint16
	}{
		{"one", 1, 0x3c00, 0x3f80},
		{"minus two", -2, 0xc000, 0xc000},
		{"zero", 0, 0, 0},
		{"minus zero", float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{"half max", 65504, 0x7bff, 0x4780},
		{"half overflow", 65520, 0x7c00, 0x4780},
		{"smallest half subnormal", 1.0 / (1 << 24), 0x0001, 0x3380},
		{"below half subnormal rounds to zero", 1.0 / (1 << 26), 0, 0x3280},
		{"tie rounds to even", 1 + 1.0/2048, 0x3c00, 0x3f80},
		{"above tie rounds up", 1 + 1.0/2048 + 1.0/(1<<20), 0x3c01, 0x3f80},
		{"infinity", float32(math.Inf(1)), 0x7c00, 0x7f80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float32ToHalf(tt.f); got != tt.half {
				t.Errorf("Float32ToHalf(%g) = %#04x, want %#04x", tt.f, got, tt.half)
			}
			if got := Float32ToBF16(tt.f); got != tt.bf16 {
				t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", tt.f, got, tt.bf16)
			}
		})
	}
	nan := float32(math.NaN())
	if h := Float32ToHalf(nan); HalfToFloat32(h) == HalfToFloat32(h) {
		t.Errorf("Float32ToHalf(NaN) = %#04x, not a NaN", h)
	}
	if h := Float32ToBF16(nan); BF16ToFloat32(h) == BF16ToFloat32(h) {
		t.Errorf("Float32ToBF16(NaN) = %#04x, not a NaN", h)
	}
}

// TestHalfRoundTrip widens every binary16 and bfloat16 value and narrows
// it back.
func TestHalfRoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := HalfToFloat32(uint16(h))
		if f != f {
			continue // NaN payloads are made quiet
		}
		if got := Float32ToHalf(f); got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, f, got)
		}
		b := BF16ToFloat32(uint16(h))
		if b == b && Float32ToBF16(b) != uint16(h) {
			t.Fatalf("bf16 %#04x -> %g -> %#04x", h, b, Float32ToBF16(b))
		}
	}
}

// TestHalfRoundsToNearest checks narrowing against the two neighbours of
// random float32 values, in float64.
func TestHalfRoundsToNearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := float32((rng.Float64()*2 - 1) * math.Pow(2, float64(rng.IntN(40)-28)))
		h := Float32ToHalf(f)
		got := float64(HalfToFloat32(h))
		if math.IsInf(got, 0) {
			continue
		}
		for _, n := range []uint16{h - 1, h + 1} {
			other := float64(HalfToFloat32(n))
			if n&0x7fff >= 0x7c00 || math.Signbit(other) != math.Signbit(got) {
				continue
			}
			if d, dn := math.Abs(got-float64(f)), math.Abs(other-float64(f)); dn < d || (dn == d && n&1 == 0) {
				t.Fatalf("Float32ToHalf(%g) = %#04x (%g); %#04x (%g) is nearer or the even tie", f, h, got, n, other)
			}
		}
		b := Float32ToBF16(f)
		gb := float64(BF16ToFloat32(b))
		for _, n := range []uint16{b - 1, b + 1} {
			other := float64(BF16ToFloat32(n))
			if n&0x7fff >= 0x7f80 || math.Signbit(other) != math.Signbit(gb) {
				continue
			}
			if d, dn := math.Abs(gb-float64(f)), math.Abs(other-float64(f)); dn < d || (dn == d && n&1 == 0) {
				t.Fatalf("Float32ToBF16(%g) = %#04x; %#04x is nearer or the even tie", f, b, n)
			}
		}
	}
}
