package backendtest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// RunReduce runs the conformance suite of backend.Reducer: every element
// type and operator against a reference computed here on the CPU, element
// by element, byte for byte; division; and the errors of bad calls. A
// Device that does not implement backend.Reducer skips the suite.
func RunReduce(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	e := newEnv(t, newBackend)
	d := e.open(0, quota)
	r, ok := d.(backend.Reducer)
	if !ok {
		t.Skipf("the %s backend's Device does not implement backend.Reducer", e.b.Name())
	}
	const n = 4099 // not a multiple of any block or vector size
	dst := malloc(t, d, 8*n)
	src := malloc(t, d, 8*n)
	s, err := d.StreamCreate(backend.StreamNonBlocking, 0)
	must(t, "StreamCreate", err)

	for _, dt := range backend.DTypes {
		for _, op := range backend.RedOps {
			t.Run(fmt.Sprintf("%v %v", dt, op), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(dt), uint64(op)))
				a, b := randomElems(rng, dt, op, n), randomElems(rng, dt, op, n)
				if dt == backend.F16 || dt == backend.BF16 || dt == backend.F32 || dt == backend.F64 {
					// fmin and fmax: a NaN loses to a number.
					putFloat(dt, a, 0, math.NaN())
					putFloat(dt, b, 1, math.NaN())
				}
				upload(t, d, dst, a)
				upload(t, d, src, b)
				must(t, "Reduce", r.Reduce(dst, src, n, dt, op, s))
				must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
				want := append([]byte(nil), a...)
				refReduce(want, b, dt, op)
				if dt == backend.F16 || dt == backend.BF16 || dt == backend.F32 || dt == backend.F64 {
					if op == backend.Sum || op == backend.Prod {
						// A NaN operand gives a NaN, whose bits the
						// device chooses.
						want = want[2*dt.Size():]
						got := download(t, d, dst, int(n*dt.Size()))
						for i := range 2 {
							if f := getFloat(dt, got, i); f == f {
								t.Fatalf("element %d = %g, want NaN", i, f)
							}
						}
						wantElems(t, dt, got[2*dt.Size():], want, 2)
						return
					}
				}
				wantElems(t, dt, download(t, d, dst, int(n*dt.Size())), want, 0)
			})
		}
		t.Run(fmt.Sprintf("%v divide", dt), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(dt), 99))
			a := randomElems(rng, dt, backend.Sum, n)
			const divisor = 7
			upload(t, d, dst, a)
			must(t, "Divide", r.Divide(dst, n, dt, divisor, s))
			must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
			want := append([]byte(nil), a...)
			refDivide(want, dt, divisor)
			wantElems(t, dt, download(t, d, dst, int(n*dt.Size())), want, 0)
		})
	}

	t.Run("large", func(t *testing.T) {
		// Many more elements than threads in flight: the grid strides.
		const big = 3<<20 + 5
		p := malloc(t, d, 4*big)
		q := malloc(t, d, 4*big)
		a, b := make([]byte, 4*big), make([]byte, 4*big)
		for i := range big {
			binary.LittleEndian.PutUint32(a[4*i:], uint32(i))
			binary.LittleEndian.PutUint32(b[4*i:], 3)
		}
		upload(t, d, p, a)
		upload(t, d, q, b)
		must(t, "Reduce", r.Reduce(p, q, big, backend.U32, backend.Prod, s))
		must(t, "Reduce", r.Reduce(p, q, big, backend.U32, backend.Sum, s))
		must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
		got := download(t, d, p, 4*big)
		for i := range big {
			if v := binary.LittleEndian.Uint32(got[4*i:]); v != uint32(i)*3+3 {
				t.Fatalf("element %d = %d, want %d", i, v, uint32(i)*3+3)
			}
		}
	})

	t.Run("zero elements", func(t *testing.T) {
		must(t, "Reduce of nothing", r.Reduce(0, 0, 0, backend.F32, backend.Sum, s))
		must(t, "Divide of nothing", r.Divide(0, 0, backend.F32, 3, s))
	})

	t.Run("mapped host memory", func(t *testing.T) {
		hm, ok := d.(backend.HostMapper)
		if !ok {
			t.Skipf("the %s backend's Device does not implement backend.HostMapper", e.b.Name())
		}
		_, err := hm.HostAlloc(0)
		wantErr(t, err, "HostAlloc", cudaerr.InvalidValue)
		const m = 1000
		a, err := hm.HostAlloc(4 * m)
		must(t, "HostAlloc", err)
		b, err := hm.HostAlloc(4 * m)
		must(t, "HostAlloc", err)
		if len(a.Bytes) != 4*m || uint64(a.Ptr)%64 != 0 || a.Ptr == 0 {
			t.Fatalf("HostAlloc(%d) = %d bytes at %#x, want %d bytes 64-byte aligned", 4*m, len(a.Bytes), uint64(a.Ptr), 4*m)
		}
		if d.Owns(a.Ptr, 4) {
			t.Fatal("Owns reports mapped host memory as device memory")
		}
		for i := range m {
			binary.LittleEndian.PutUint32(a.Bytes[4*i:], uint32(i))
			binary.LittleEndian.PutUint32(b.Bytes[4*i:], 2*uint32(i)+1)
		}
		// Mapped with mapped, then device memory with mapped and back.
		must(t, "Reduce mapped", r.Reduce(a.Ptr, b.Ptr, m, backend.U32, backend.Sum, s))
		dev := malloc(t, d, 4*m)
		upload(t, d, dev, b.Bytes)
		must(t, "Reduce device += mapped", r.Reduce(dev, a.Ptr, m, backend.U32, backend.Sum, s))
		must(t, "Reduce mapped max= device", r.Reduce(b.Ptr, dev, m, backend.U32, backend.Max, s))
		must(t, "Divide mapped", r.Divide(a.Ptr+4, m-1, backend.U32, 3, s))
		must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
		for i := range m {
			sum := uint32(3*i + 1)
			wa := sum
			if i > 0 {
				wa = sum / 3
			}
			if v := binary.LittleEndian.Uint32(a.Bytes[4*i:]); v != wa {
				t.Fatalf("mapped a[%d] = %d, want %d", i, v, wa)
			}
			if v := binary.LittleEndian.Uint32(b.Bytes[4*i:]); v != sum+2*uint32(i)+1 {
				t.Fatalf("mapped b[%d] = %d, want %d", i, v, sum+2*uint32(i)+1)
			}
		}
		// Past the end of a mapped buffer, and a buffer freed.
		wantErr(t, r.Reduce(a.Ptr, b.Ptr, m+1, backend.U32, backend.Sum, s), "Reduce", cudaerr.InvalidValue)
		must(t, "HostFree", hm.HostFree(b))
		wantErr(t, r.Reduce(a.Ptr, b.Ptr, 1, backend.U32, backend.Sum, s), "Reduce", cudaerr.InvalidValue)
		wantErr(t, hm.HostFree(b), "HostFree", cudaerr.InvalidValue)
		wantErr(t, hm.HostFree(backend.HostBuffer{Ptr: a.Ptr + 4}), "HostFree", cudaerr.InvalidValue)
		must(t, "HostFree", hm.HostFree(a))
	})

	t.Run("source on a peer device", func(t *testing.T) {
		pr, ok := d.(backend.PeerReducer)
		if !ok {
			t.Skipf("the %s backend's Device does not implement backend.PeerReducer", e.b.Name())
		}
		if len(e.infos) < 2 {
			t.Skip("one device")
		}
		d2 := e.open(1, quota)
		const m = 5000
		a, b := make([]byte, 4*m), make([]byte, 4*m)
		for i := range m {
			binary.LittleEndian.PutUint32(a[4*i:], uint32(i))
			binary.LittleEndian.PutUint32(b[4*i:], uint32(7*i+1))
		}
		x := malloc(t, d, 4*m)
		y := malloc(t, d2, 4*m)
		upload(t, d, x, a)
		upload(t, d2, y, b)
		if !pr.CanReducePeer(d2) {
			wantErr(t, pr.ReducePeer(x, d2, y, m, backend.U32, backend.Sum, s), "ReducePeer", cudaerr.NotSupported)
			t.Skip("no peer access between the two devices")
		}
		if pr.CanReducePeer(nil) {
			t.Error("CanReducePeer(nil) = true")
		}
		err := pr.ReducePeer(x, d2, y, m, backend.U32, backend.Sum, s)
		must(t, "ReducePeer", err)
		must(t, "StreamSynchronize", d.StreamSynchronize(ctx(t), s))
		got := download(t, d, x, 4*m)
		for i := range m {
			if v := binary.LittleEndian.Uint32(got[4*i:]); v != uint32(8*i+1) {
				t.Fatalf("element %d = %d, want %d", i, v, 8*i+1)
			}
		}
		wantErr(t, pr.ReducePeer(x, d2, y, m+1, backend.U32, backend.Sum, s), "ReducePeer", cudaerr.InvalidValue)
		wantErr(t, pr.ReducePeer(x, d2, x, 4, backend.U32, backend.Sum, s), "ReducePeer", cudaerr.InvalidValue)
		wantErr(t, pr.ReducePeer(x, nil, y, 4, backend.U32, backend.Sum, s), "ReducePeer", cudaerr.InvalidDevice)
		wantErr(t, pr.ReducePeer(x, d2, y, 4, backend.DType(42), backend.Sum, s), "ReducePeer", cudaerr.InvalidValue)
	})

	t.Run("bad calls", func(t *testing.T) {
		tests := []struct {
			name string
			op   string
			call func() error
			want cudaerr.Error
		}{
			{"unknown type", "Reduce", func() error { return r.Reduce(dst, src, 4, backend.DType(42), backend.Sum, s) }, cudaerr.InvalidValue},
			{"unknown operator", "Reduce", func() error { return r.Reduce(dst, src, 4, backend.F32, backend.RedOp(9), s) }, cudaerr.InvalidValue},
			{"destination past its allocation", "Reduce", func() error { return r.Reduce(dst, src, n+1, backend.I64, backend.Sum, s) }, cudaerr.InvalidValue},
			{"source outside the device", "Reduce", func() error { return r.Reduce(dst, 8, 4, backend.F32, backend.Sum, s) }, cudaerr.InvalidValue},
			{"misaligned", "Reduce", func() error { return r.Reduce(dst+2, src, 4, backend.F32, backend.Sum, s) }, cudaerr.InvalidValue},
			{"unknown stream", "Reduce", func() error { return r.Reduce(dst, src, 4, backend.F32, backend.Sum, 0xdead) }, cudaerr.InvalidResourceHandle},
			{"divide by zero", "Divide", func() error { return r.Divide(dst, 4, backend.F32, 0, s) }, cudaerr.InvalidValue},
			{"divide past the allocation", "Divide", func() error { return r.Divide(dst, n+1, backend.U64, 2, s) }, cudaerr.InvalidValue},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantErr(t, tt.call(), tt.op, tt.want)
			})
		}
	})
}

// randomElems returns n random elements of type dt suited to op: any bits
// for integers, moderate magnitudes for floats (near 1 for products, so
// that they stay finite).
func randomElems(rng *rand.Rand, dt backend.DType, op backend.RedOp, n uint64) []byte {
	b := make([]byte, n*dt.Size())
	for i := range int(n) {
		switch dt {
		case backend.F16, backend.BF16, backend.F32, backend.F64:
			v := (rng.Float64()*2 - 1) * 1000
			if op == backend.Prod {
				v = 0.5 + rng.Float64()*1.5
				if rng.IntN(2) == 0 {
					v = -v
				}
			}
			putFloat(dt, b, i, v)
		default:
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], rng.Uint64())
			copy(b[uint64(i)*dt.Size():], w[:dt.Size()])
		}
	}
	return b
}

func putFloat(dt backend.DType, b []byte, i int, v float64) {
	switch dt {
	case backend.F16:
		binary.LittleEndian.PutUint16(b[2*i:], backend.Float32ToHalf(float32(v)))
	case backend.BF16:
		binary.LittleEndian.PutUint16(b[2*i:], backend.Float32ToBF16(float32(v)))
	case backend.F32:
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
	case backend.F64:
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
}

func getFloat(dt backend.DType, b []byte, i int) float64 {
	switch dt {
	case backend.F16:
		return float64(backend.HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case backend.BF16:
		return float64(backend.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
	case backend.F32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
}

// getInt and putInt read and write integer elements, sign-extended for
// the signed types.
func getInt(dt backend.DType, b []byte, i int) uint64 {
	switch dt {
	case backend.I8:
		return uint64(int64(int8(b[i])))
	case backend.U8:
		return uint64(b[i])
	case backend.I32:
		return uint64(int64(int32(binary.LittleEndian.Uint32(b[4*i:]))))
	case backend.U32:
		return uint64(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return binary.LittleEndian.Uint64(b[8*i:])
}

func putInt(dt backend.DType, b []byte, i int, v uint64) {
	switch dt.Size() {
	case 1:
		b[i] = byte(v)
	case 4:
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
}

func signed(dt backend.DType) bool { return dt == backend.I8 || dt == backend.I32 || dt == backend.I64 }

// roundTo rounds a float32 result to dt, as the device stores it.
func roundTo(dt backend.DType, v float32) float64 {
	switch dt {
	case backend.F16:
		return float64(backend.HalfToFloat32(backend.Float32ToHalf(v)))
	case backend.BF16:
		return float64(backend.BF16ToFloat32(backend.Float32ToBF16(v)))
	}
	return float64(v)
}

// fmin and fmax are C's: a NaN loses to a number.
func fmin(a, b float64) float64 {
	switch {
	case a != a:
		return b
	case b != b:
		return a
	case b < a:
		return b
	}
	return a
}

func fmax(a, b float64) float64 {
	switch {
	case a != a:
		return b
	case b != b:
		return a
	case b > a:
		return b
	}
	return a
}

// refReduce is the reference: dst[i] = op(dst[i], src[i]), one element at
// a time. F16, BF16 and F32 compute in float32 (Go rounds every float32
// operation to float32), F64 in float64.
func refReduce(dst, src []byte, dt backend.DType, op backend.RedOp) {
	n := len(dst) / int(dt.Size())
	for i := range n {
		switch dt {
		case backend.F16, backend.BF16, backend.F32:
			a, b := float32(getFloat(dt, dst, i)), float32(getFloat(dt, src, i))
			var v float32
			switch op {
			case backend.Sum:
				v = a + b
			case backend.Prod:
				v = a * b
			case backend.Min:
				v = float32(fmin(float64(a), float64(b)))
			case backend.Max:
				v = float32(fmax(float64(a), float64(b)))
			}
			putFloat(dt, dst, i, roundTo(dt, v))
		case backend.F64:
			a, b := getFloat(dt, dst, i), getFloat(dt, src, i)
			var v float64
			switch op {
			case backend.Sum:
				v = a + b
			case backend.Prod:
				v = a * b
			case backend.Min:
				v = fmin(a, b)
			case backend.Max:
				v = fmax(a, b)
			}
			putFloat(dt, dst, i, v)
		default:
			a, b := getInt(dt, dst, i), getInt(dt, src, i)
			var v uint64
			switch op {
			case backend.Sum:
				v = a + b
			case backend.Prod:
				v = a * b
			case backend.Min, backend.Max:
				less := a < b
				if signed(dt) {
					less = int64(a) < int64(b)
				}
				if less == (op == backend.Min) {
					v = a
				} else {
					v = b
				}
			}
			putInt(dt, dst, i, v)
		}
	}
}

// refDivide is the reference of Divide: C's division (integers truncate
// toward zero).
func refDivide(buf []byte, dt backend.DType, divisor uint64) {
	n := len(buf) / int(dt.Size())
	for i := range n {
		switch dt {
		case backend.F16, backend.BF16, backend.F32:
			putFloat(dt, buf, i, roundTo(dt, float32(getFloat(dt, buf, i))/float32(divisor)))
		case backend.F64:
			putFloat(dt, buf, i, getFloat(dt, buf, i)/float64(divisor))
		default:
			v := getInt(dt, buf, i)
			if signed(dt) {
				putInt(dt, buf, i, uint64(int64(v)/int64(divisor)))
			} else {
				putInt(dt, buf, i, v/divisor)
			}
		}
	}
}

// wantElems compares element by element and reports the first
// difference with its values; first is the index of got's element 0.
func wantElems(t *testing.T, dt backend.DType, got, want []byte, first int) {
	t.Helper()
	i := firstDiff(got, want)
	if i < 0 {
		return
	}
	e := i / int(dt.Size())
	switch dt {
	case backend.F16, backend.BF16, backend.F32, backend.F64:
		t.Fatalf("%v element %d of %d: got %g, want %g", dt, first+e, first+len(want)/int(dt.Size()), getFloat(dt, got, e), getFloat(dt, want, e))
	default:
		t.Fatalf("%v element %d of %d: got %#x, want %#x", dt, first+e, first+len(want)/int(dt.Size()), getInt(dt, got, e), getInt(dt, want, e))
	}
}
