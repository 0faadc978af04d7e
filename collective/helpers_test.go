package collective

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hostsOf returns the host of every rank for servers hosts with perServer
// ranks each: ranks of one host contiguous, or with interleave rank r on
// host r%servers, so that the ring order differs from the rank order.
func hostsOf(servers, perServer int, interleave bool) []string {
	var hs []string
	for s := range servers {
		for range perServer {
			hs = append(hs, fmt.Sprintf("host%d", s))
		}
	}
	if interleave {
		// Rank r goes to host r % servers: ranks of one host are spread.
		for r := range hs {
			hs[r] = fmt.Sprintf("host%d", r%servers)
		}
	}
	return hs
}

// cluster is a communicator of ranks in one process over a LocalNetwork.
type cluster struct {
	net   *LocalNetwork
	comms []*Comm
}

func newCluster(t testing.TB, hosts []string, opts Options) *cluster {
	t.Helper()
	cl := &cluster{net: NewLocalNetwork(hosts)}
	for r := range hosts {
		c, err := New(r, len(hosts), cl.net.Transport(r), nil, opts)
		if err != nil {
			t.Fatalf("New(%d): %v", r, err)
		}
		cl.comms = append(cl.comms, c)
	}
	t.Cleanup(cl.close)
	return cl
}

func (cl *cluster) close() {
	for _, c := range cl.comms {
		_ = c.Close()
	}
}

// do runs fn on every rank at once and returns each rank's error.
func (cl *cluster) do(fn func(r int, c *Comm) error) []error {
	errs := make([]error, len(cl.comms))
	var wg sync.WaitGroup
	for r, c := range cl.comms {
		wg.Go(func() { errs[r] = fn(r, c) })
	}
	wg.Wait()
	return errs
}

func mustAll(t testing.TB, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// randData returns count random elements of dt fit for op: floats in
// +-[0.01, 1) (for Prod in [0.9, 1.1]), integers over their whole range.
func randData(rng *rand.Rand, dt DType, op Op, count int) []byte {
	b := make([]byte, count*dt.Size())
	for i := range count {
		var f float64
		if op == Prod {
			f = 0.9 + 0.2*rng.Float64()
		} else {
			f = 0.01 + 0.99*rng.Float64()
			if rng.IntN(2) == 0 {
				f = -f
			}
		}
		switch dt {
		case F16:
			binary.LittleEndian.PutUint16(b[2*i:], F32ToF16(float32(f)))
		case BF16:
			binary.LittleEndian.PutUint16(b[2*i:], F32ToBF16(float32(f)))
		case F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
		case F64:
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(f))
		default:
			putU(dt, b, i, rng.Uint64())
		}
	}
	return b
}

// getU returns element i of an integer buffer, zero-extended.
func getU(dt DType, b []byte, i int) uint64 {
	switch dt.Size() {
	case 1:
		return uint64(b[i])
	case 4:
		return uint64(binary.LittleEndian.Uint32(b[4*i:]))
	default:
		return binary.LittleEndian.Uint64(b[8*i:])
	}
}

func putU(dt DType, b []byte, i int, v uint64) {
	switch dt.Size() {
	case 1:
		b[i] = byte(v)
	case 4:
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
}

// sext sign-extends an element of a signed type.
func sext(dt DType, u uint64) int64 {
	switch dt {
	case I8:
		return int64(int8(u))
	case I32:
		return int64(int32(u))
	}
	return int64(u)
}

func signed(dt DType) bool { return dt == I8 || dt == I32 || dt == I64 }

// halfValue decodes binary16 bits independently of the package's table.
func halfValue(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1f, float64(h&0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m, -24)
	case 0x1f:
		if m == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1024+m, e-25)
}

// getF returns element i of a float buffer.
func getF(dt DType, b []byte, i int) float64 {
	switch dt {
	case F16:
		return halfValue(binary.LittleEndian.Uint16(b[2*i:]))
	case BF16:
		return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16))
	case F32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
}

// unitRoundoff returns half the machine epsilon of a float type.
func unitRoundoff(dt DType) float64 {
	switch dt {
	case F16:
		return 0x1p-11
	case BF16:
		return 0x1p-8
	case F32:
		return 0x1p-24
	}
	return 0x1p-53
}

// ref is the expected reduction of some inputs: exact bytes for integers,
// values and per-element tolerances for floats.
type ref struct {
	dt    DType
	exact []byte
	val   []float64
	tol   []float64
}

// reduceRef reduces elements [off, off+count) of every input with op.
func reduceRef(dt DType, op Op, ins [][]byte, off, count int) ref {
	n := len(ins)
	r := ref{dt: dt}
	if !dt.Float() {
		r.exact = make([]byte, count*dt.Size())
		width := uint(8 * dt.Size())
		mask := uint64(math.MaxUint64)
		if width < 64 {
			mask = 1<<width - 1
		}
		for i := range count {
			acc := getU(dt, ins[0], off+i)
			for _, in := range ins[1:] {
				x := getU(dt, in, off+i)
				switch op {
				case Sum, Avg:
					acc = (acc + x) & mask
				case Prod:
					acc = (acc * x) & mask
				case Max, Min:
					less := x < acc
					if signed(dt) {
						less = sext(dt, x) < sext(dt, acc)
					}
					if less == (op == Min) && x != acc {
						acc = x
					}
				}
			}
			if op == Avg {
				if signed(dt) {
					acc = uint64(sext(dt, acc)/int64(n)) & mask
				} else {
					acc /= uint64(n)
				}
			}
			putU(dt, r.exact, i, acc)
		}
		return r
	}
	u := unitRoundoff(dt)
	r.val = make([]float64, count)
	r.tol = make([]float64, count)
	mag := make([]float64, count)
	x := make([]float64, count)
	for k, in := range ins {
		decodeF(dt, in[off*dt.Size():], x)
		if k == 0 {
			copy(r.val, x)
			for i, v := range x {
				mag[i] = math.Abs(v)
			}
			continue
		}
		acc := r.val
		switch op {
		case Sum, Avg:
			for i, v := range x {
				acc[i] += v
				mag[i] += math.Abs(v)
			}
		case Prod:
			for i, v := range x {
				acc[i] *= v
			}
		case Max:
			for i, v := range x {
				acc[i] = math.Max(acc[i], v)
			}
		case Min:
			for i, v := range x {
				acc[i] = math.Min(acc[i], v)
			}
		}
	}
	nf := float64(n)
	for i, v := range r.val {
		switch op {
		case Sum:
			r.tol[i] = 2*(nf+1)*u*mag[i] + 1e-300
		case Avg:
			v /= nf
			r.val[i] = v
			r.tol[i] = 2*(nf+1)*u*mag[i]/nf + u*math.Abs(v) + 1e-300
		case Prod:
			r.tol[i] = 2 * (nf + 1) * u * math.Abs(v)
		}
	}
	return r
}

// decodeF decodes len(x) float elements of b into x.
func decodeF(dt DType, b []byte, x []float64) {
	switch dt {
	case F32:
		for i := range x {
			x[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case F64:
		for i := range x {
			x[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	default:
		for i := range x {
			x[i] = getF(dt, b, i)
		}
	}
}

// check compares got (count elements) with the reference.
func (r ref) check(t testing.TB, what string, got []byte) {
	t.Helper()
	if r.exact != nil {
		for i := range len(r.exact) / r.dt.Size() {
			if g, w := getU(r.dt, got, i), getU(r.dt, r.exact, i); g != w {
				t.Fatalf("%s: element %d = %#x, want %#x", what, i, g, w)
			}
		}
		return
	}
	for i, w := range r.val {
		g := getF(r.dt, got, i)
		if math.IsNaN(g) || math.Abs(g-w) > r.tol[i] {
			t.Fatalf("%s: element %d = %g, want %g +- %g", what, i, g, w, r.tol[i])
		}
	}
}

// canary fills b with a pattern that an operation must not overwrite.
func canary(b []byte) {
	for i := range b {
		b[i] = byte(0xa5 ^ i)
	}
}

func checkCanary(t testing.TB, what string, b []byte) {
	t.Helper()
	for i := range b {
		if b[i] != byte(0xa5^i) {
			t.Fatalf("%s: byte %d past the data was overwritten", what, i)
		}
	}
}

// withTail returns a copy of data followed by tail canary bytes.
func withTail(data []byte, tail int) []byte {
	b := make([]byte, len(data)+tail)
	copy(b, data)
	canary(b[len(data):])
	return b
}

// canaryBuf returns n bytes of canary plus tail.
func canaryBuf(n, tail int) []byte {
	b := make([]byte, n+tail)
	canary(b[:n])
	canary(b[n:])
	return b
}

func bg() context.Context { return context.Background() }
