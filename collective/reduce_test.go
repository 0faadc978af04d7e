package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// halfTable lists the positive finite values of a 16-bit float format by
// bits, increasing, for a reference rounding by search.
type halfTable struct {
	vals []float64 // vals[i] is the value of bits i
	inf  uint16    // bits of +Inf
	max  float64   // midpoint between the largest finite value and the next power: rounds to Inf
}

func newHalfTable(decode func(uint16) float64, inf uint16) *halfTable {
	ht := &halfTable{inf: inf}
	for b := uint16(0); b < inf; b++ {
		ht.vals = append(ht.vals, decode(b))
	}
	top := ht.vals[len(ht.vals)-1]
	ulp := top - ht.vals[len(ht.vals)-2]
	ht.max = top + ulp/2
	return ht
}

// round returns the bits of the format nearest to x, ties to even.
func (ht *halfTable) round(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	if x >= ht.max {
		return sign | ht.inf
	}
	i := sort.SearchFloat64s(ht.vals, x) // first >= x
	if i == len(ht.vals) {
		i--
	}
	if ht.vals[i] == x || i == 0 {
		return sign | uint16(i)
	}
	lo, hi := ht.vals[i-1], ht.vals[i]
	switch {
	case x-lo < hi-x:
		return sign | uint16(i-1)
	case x-lo > hi-x:
		return sign | uint16(i)
	}
	if (i-1)%2 == 0 {
		return sign | uint16(i-1)
	}
	return sign | uint16(i)
}

var (
	f16Table  = newHalfTable(halfValue, 0x7c00)
	bf16Table = newHalfTable(func(b uint16) float64 { return float64(math.Float32frombits(uint32(b) << 16)) }, 0x7f80)
)

func TestF16Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		want := halfValue(uint16(h))
		if math.IsNaN(want) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			if back := F32ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("F32ToF16(NaN from %#04x) = %#04x, not a NaN", h, back)
			}
			continue
		}
		if float64(f) != want {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

func TestBF16RoundTrip(t *testing.T) {
	for h := range 1 << 16 {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			if back := F32ToBF16(f); back&0x7f80 != 0x7f80 || back&0x7f == 0 {
				t.Fatalf("F32ToBF16(NaN from %#04x) = %#04x, not a NaN", h, back)
			}
			continue
		}
		if back := F32ToBF16(f); back != uint16(h) {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// TestHalfRounding checks the float32 to f16/bf16 conversions against a
// search for the nearest value, on random values, on every midpoint
// between neighbours (the ties) and on the edges of the ranges.
func TestHalfRounding(t *testing.T) {
	tests := []struct {
		name string
		ht   *halfTable
		conv func(float32) uint16
	}{
		{"f16", f16Table, F32ToF16},
		{"bf16", bf16Table, F32ToBF16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(f float32) {
				t.Helper()
				if got, want := tt.conv(f), tt.ht.round(float64(f)); got != want {
					t.Fatalf("conv(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
				}
			}
			vals := tt.ht.vals
			for i := 1; i < len(vals); i++ {
				mid := float32((vals[i-1] + vals[i]) / 2)
				if float64(mid) == (vals[i-1]+vals[i])/2 { // representable tie
					check(mid)
					check(-mid)
				}
				check(math.Nextafter32(mid, 0))
				check(math.Nextafter32(mid, float32(math.Inf(1))))
			}
			check(float32(tt.ht.max))
			check(math.Nextafter32(float32(tt.ht.max), 0))
			check(math.MaxFloat32)
			check(float32(math.Inf(-1)))
			check(0)
			check(float32(math.Copysign(0, -1)))
			check(math.SmallestNonzeroFloat32)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 200000 {
				f := math.Float32frombits(rng.Uint32())
				if math.IsNaN(float64(f)) {
					continue
				}
				check(f)
			}
		})
	}
}

// roundTo rounds an exact float64 result to dt's bits.
func roundTo(dt DType, x float64) uint64 {
	switch dt {
	case F16:
		return uint64(f16Table.round(x))
	case BF16:
		return uint64(bf16Table.round(x))
	case F32:
		return uint64(math.Float32bits(float32(x)))
	}
	return math.Float64bits(x)
}

func getBits(dt DType, b []byte, i int) uint64 {
	switch dt.Size() {
	case 2:
		return uint64(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return getU(dt, b, i)
}

// TestCPUReducer checks every type and operator element by element: floats
// bit-exact against the exact result rounded to nearest even, integers
// against wrapping arithmetic. It runs on aligned and misaligned buffers.
func TestCPUReducer(t *testing.T) {
	const count = 3001 // more than one staging block of every type
	for _, dt := range DTypes {
		for _, op := range Ops {
			for _, misalign := range []int{0, 1} {
				t.Run(fmt.Sprintf("%v/%v/misalign%d", dt, op, misalign), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(dt), uint64(op)))
					a, b := randData(rng, dt, op, count), randData(rng, dt, op, count)
					if dt.Float() && op == Sum {
						// Include a pair that cancels exactly.
						copy(a[:dt.Size()], b[:dt.Size()])
						a[dt.Size()-1] ^= 0x80
					}
					dbuf := make([]byte, len(a)+8)
					sbuf := make([]byte, len(b)+8)
					dst := dbuf[misalign : misalign+len(a)]
					src := sbuf[misalign : misalign+len(b)]
					copy(dst, a)
					copy(src, b)
					if err := (CPUReducer{}).Reduce(dst, src, dt, op); err != nil {
						t.Fatal(err)
					}
					refOp := op
					if op == Avg {
						refOp = Sum
					}
					if !dt.Float() {
						reduceRef(dt, refOp, [][]byte{a, b}, 0, count).check(t, "reduce", dst)
						return
					}
					for i := range count {
						x, y := getF(dt, a, i), getF(dt, b, i)
						var e float64
						switch refOp {
						case Sum:
							e = x + y
						case Prod:
							e = x * y
						case Max:
							e = math.Max(x, y)
						case Min:
							e = math.Min(x, y)
						}
						if got, want := getBits(dt, dst, i), roundTo(dt, e); got != want && !(e == 0 && getF(dt, dst, i) == 0) {
							t.Fatalf("element %d: %g %v %g = bits %#x, want %#x", i, x, op, y, got, want)
						}
					}
				})
			}
		}
	}
}

func TestCPUReducerNaN(t *testing.T) {
	nan32 := math.Float32bits(float32(math.NaN()))
	one32 := math.Float32bits(1)
	tests := []struct {
		name     string
		op       Op
		dst, src uint32
		want     float32 // NaN checked with IsNaN
	}{
		{"max keeps the number over a NaN in src", Max, one32, nan32, 1},
		{"max takes the number over a NaN in dst", Max, nan32, one32, 1},
		{"min keeps the number over a NaN in src", Min, one32, nan32, 1},
		{"min takes the number over a NaN in dst", Min, nan32, one32, 1},
		{"sum with a NaN is NaN", Sum, one32, nan32, float32(math.NaN())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, s := make([]byte, 4), make([]byte, 4)
			binary.LittleEndian.PutUint32(d, tt.dst)
			binary.LittleEndian.PutUint32(s, tt.src)
			if err := (CPUReducer{}).Reduce(d, s, F32, tt.op); err != nil {
				t.Fatal(err)
			}
			got := math.Float32frombits(binary.LittleEndian.Uint32(d))
			if math.IsNaN(float64(tt.want)) != math.IsNaN(float64(got)) || (!math.IsNaN(float64(got)) && got != tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCPUReducerDivide(t *testing.T) {
	enc := func(dt DType, vals ...float64) []byte {
		b := make([]byte, len(vals)*dt.Size())
		for i, v := range vals {
			switch dt {
			case F16:
				binary.LittleEndian.PutUint16(b[2*i:], F32ToF16(float32(v)))
			case BF16:
				binary.LittleEndian.PutUint16(b[2*i:], F32ToBF16(float32(v)))
			case F32:
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
			case F64:
				binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
			default:
				putU(dt, b, i, uint64(int64(v)))
			}
		}
		return b
	}
	tests := []struct {
		name string
		dt   DType
		n    int
		in   []float64
		want []float64
	}{
		{"i8 truncates toward zero", I8, 2, []float64{-7, 7, -128}, []float64{-3, 3, -64}},
		{"i8 by more than it holds", I8, 200, []float64{-128, 127}, []float64{0, 0}},
		{"u8", U8, 3, []float64{255, 10}, []float64{85, 3}},
		{"i32", I32, 4, []float64{-9, 9}, []float64{-2, 2}},
		{"u32", U32, 7, []float64{4294967295}, []float64{613566756}},
		{"i64", I64, 3, []float64{-10}, []float64{-3}},
		{"u64", U64, 2, []float64{9}, []float64{4}},
		{"f16", F16, 3, []float64{1}, []float64{float64(F16ToF32(F32ToF16(1.0 / 3)))}},
		{"bf16", BF16, 4, []float64{3}, []float64{0.75}},
		{"f32", F32, 3, []float64{1}, []float64{float64(float32(1) / 3)}},
		{"f64", F64, 3, []float64{1}, []float64{1.0 / 3}},
		{"by one", F32, 1, []float64{5}, []float64{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := enc(tt.dt, tt.in...)
			if err := (CPUReducer{}).Divide(b, tt.dt, tt.n); err != nil {
				t.Fatal(err)
			}
			want := enc(tt.dt, tt.want...)
			if string(b) != string(want) {
				t.Fatalf("got % x, want % x", b, want)
			}
		})
	}
}

func TestCPUReducerErrors(t *testing.T) {
	r := CPUReducer{}
	tests := []struct {
		name string
		run  func() error
	}{
		{"lengths differ", func() error { return r.Reduce(make([]byte, 8), make([]byte, 4), F32, Sum) }},
		{"partial element", func() error { return r.Reduce(make([]byte, 6), make([]byte, 6), F32, Sum) }},
		{"bad type", func() error { return r.Reduce(make([]byte, 4), make([]byte, 4), DType(10), Sum) }},
		{"bad operator", func() error { return r.Reduce(make([]byte, 4), make([]byte, 4), F32, Op(5)) }},
		{"divide by zero", func() error { return r.Divide(make([]byte, 4), F32, 0) }},
		{"divide partial element", func() error { return r.Divide(make([]byte, 3), I32, 2) }},
		{"copy lengths differ", func() error { return r.Copy(make([]byte, 3), make([]byte, 4)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("got %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// BenchmarkReduce measures the CPU reducer's sum of random values, in
// bytes of dst per second.
func BenchmarkReduce(b *testing.B) {
	const size = 1 << 20
	for _, dt := range DTypes {
		b.Run(dt.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			d, s := randData(rng, dt, Sum, size/dt.Size()), randData(rng, dt, Sum, size/dt.Size())
			b.SetBytes(size)
			for b.Loop() {
				if err := (CPUReducer{}).Reduce(d, s, dt, Sum); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
