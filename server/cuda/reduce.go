//go:build cgo

package cuda

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// reducePTX is kernels/reduce.cu compiled to PTX for compute capability
// 9.0 (`make generate-ptx`, on a machine with the CUDA toolkit). The
// driver compiles it for the GPU when a context loads it, and caches the
// result (its JIT cache), so the worker needs no compiler.
//
//go:embed kernels/reduce_sm90.ptx
var reducePTX []byte

// reduceImage is the image startGPU loads; tests replace it to try a
// freshly compiled one.
var reduceImage = reducePTX

// Launch shape of the element-wise kernels: blocks of reduceBlock
// threads, at most reduceBlocksPerSM blocks per multiprocessor (the
// kernels stride over the rest), which fills an H100 or H200.
const (
	reduceBlock       = 256
	reduceBlocksPerSM = 8
)

var typeNames = [...]string{
	backend.I8: "i8", backend.U8: "u8", backend.I32: "i32", backend.U32: "u32", backend.I64: "i64",
	backend.U64: "u64", backend.F16: "f16", backend.F32: "f32", backend.F64: "f64", backend.BF16: "bf16",
}

var opNames = [...]string{backend.Sum: "sum", backend.Prod: "prod", backend.Max: "max", backend.Min: "min"}

// reducer is the element-wise kernels of one gpu, loaded into its primary
// context when the gpu starts.
type reducer struct {
	err       error // why the kernels are unavailable; nil once loaded
	mod       Module
	reduce    [len(typeNames)][len(opNames)]Function
	divide    [len(typeNames)]Function
	maxBlocks uint32
}

// loadReducer loads image and finds every kernel; it runs on the
// executor. A failure is kept in the reducer (Reduce and Divide report
// it): a context without them still serves everything else.
func loadReducer(drv *Driver, dev Device, image []byte) *reducer {
	r := &reducer{}
	sms, err := drv.DeviceAttribute(dev, AttrMultiprocessorCount)
	if err != nil || sms <= 0 {
		sms = 1
	}
	r.maxBlocks = uint32(sms) * reduceBlocksPerSM
	if r.mod, err = drv.ModuleLoadData(image); err != nil {
		r.err = fmt.Errorf("cuda: loading the reduction kernels: %w", err)
		r.mod = 0
		return r
	}
	for t, tn := range typeNames {
		for o, on := range opNames {
			if r.reduce[t][o], err = drv.ModuleGetFunction(r.mod, "xgpu_reduce_"+on+"_"+tn); err != nil {
				break
			}
		}
		if err == nil {
			r.divide[t], err = drv.ModuleGetFunction(r.mod, "xgpu_divide_"+tn)
		}
		if err != nil {
			drv.ModuleUnload(r.mod)
			r.mod = 0
			r.err = fmt.Errorf("cuda: the reduction kernels lack one for %s: %w", tn, err)
			return r
		}
	}
	return r
}

// unload runs on the executor.
func (r *reducer) unload(drv *Driver) {
	if r != nil && r.mod != 0 {
		drv.ModuleUnload(r.mod)
		r.mod = 0
	}
}

// ReducerErr returns why the reduction kernels could not be loaded on
// the Device's GPU, or nil when Reduce and Divide can run.
func (d *DeviceContext) ReducerErr() error { return d.g.red.err }

var _ backend.Reducer = (*DeviceContext)(nil)

// Reduce sets dst[i] = op(dst[i], src[i]) for the n elements of type t at
// dst and src, with a kernel queued on s (see backend.Reducer for the
// arithmetic). Both ranges must lie in allocations of this Device and be
// aligned to the element size.
func (d *DeviceContext) Reduce(dst, src backend.DevicePtr, n uint64, t backend.DType, op backend.RedOp, s backend.Stream) error {
	const opName = "Reduce"
	if !t.Valid() || !op.Valid() {
		return backend.Errorf(name, opName, cudaerr.InvalidValue, "element type %v or operator %v unknown", t, op)
	}
	return d.elementwise(opName, n, t, s, func(r *reducer) (Function, error) {
		if err := d.checkElements(opName, "destination", dst, n, t); err != nil {
			return 0, err
		}
		if err := d.checkElements(opName, "source", src, n, t); err != nil {
			return 0, err
		}
		return r.reduce[t][op], nil
	}, uint64(dst), uint64(src), n)
}

// Divide sets buf[i] = buf[i] / divisor for the n elements of type t at
// buf, with a kernel queued on s; integers truncate toward zero.
func (d *DeviceContext) Divide(buf backend.DevicePtr, n uint64, t backend.DType, divisor uint64, s backend.Stream) error {
	const opName = "Divide"
	if !t.Valid() || divisor == 0 || divisor > math.MaxInt64 {
		return backend.Errorf(name, opName, cudaerr.InvalidValue, "element type %v or divisor %d invalid", t, divisor)
	}
	return d.elementwise(opName, n, t, s, func(r *reducer) (Function, error) {
		if err := d.checkElements(opName, "buffer", buf, n, t); err != nil {
			return 0, err
		}
		return r.divide[t], nil
	}, uint64(buf), n, divisor)
}

// checkElements checks that n elements of type t at p are aligned and
// inside one allocation.
func (d *DeviceContext) checkElements(op, what string, p backend.DevicePtr, n uint64, t backend.DType) error {
	size := t.Size()
	if uint64(p)%size != 0 {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%s %#x is not aligned to its %d-byte elements", what, uint64(p), size)
	}
	if n > math.MaxUint64/size {
		return backend.Errorf(name, op, cudaerr.InvalidValue, "%d elements of %d bytes overflow", n, size)
	}
	if n*size > 0 && d.inMapped(p, n*size) {
		return nil
	}
	return d.checkRange(op, what, p, n*size)
}

// elementwise validates the stream, lets pick check the ranges and choose
// the kernel, and queues it with three 8-byte arguments.
func (d *DeviceContext) elementwise(op string, n uint64, t backend.DType, s backend.Stream, pick func(*reducer) (Function, error), a0, a1, a2 uint64) error {
	if err := d.enter(op); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	st, err := d.streamLocked(op, s)
	if err != nil || n == 0 {
		return err
	}
	r := d.g.red
	if r.err != nil {
		return &backend.OpError{Backend: name, Op: op, Err: &detail{err: r.err, code: cudaerr.NotSupported}}
	}
	f, err := pick(r)
	if err != nil {
		return err
	}
	blocks := min((n+reduceBlock-1)/reduceBlock, uint64(r.maxBlocks))
	var args [24]byte
	binary.LittleEndian.PutUint64(args[0:], a0)
	binary.LittleEndian.PutUint64(args[8:], a1)
	binary.LittleEndian.PutUint64(args[16:], a2)
	cu := st.cu
	return d.submit(op, func() error {
		return d.drv.LaunchKernel(f, Dim3{X: uint32(blocks), Y: 1, Z: 1}, Dim3{X: reduceBlock, Y: 1, Z: 1}, 0, cu, args[:])
	})
}

// errNoReducer is the reducer of a gpu that has not loaded one.
var errNoReducer = errors.New("cuda: the reduction kernels were not loaded")

var _ backend.PeerReducer = (*DeviceContext)(nil)

// ReducePeer is Reduce with its source in srcDev's allocations: the kernel
// on this GPU loads it over NVLink or PCIe, which works where srcDev's GPU
// mapped its allocations for this one (peer access; always for two
// Devices of one GPU), and is refused with cudaErrorNotSupported
// elsewhere rather than fault.
func (d *DeviceContext) ReducePeer(dst backend.DevicePtr, srcDev backend.Device, src backend.DevicePtr, n uint64, t backend.DType, op backend.RedOp, s backend.Stream) error {
	const opName = "ReducePeer"
	sd, ok := srcDev.(*DeviceContext)
	if !ok || sd.b != d.b {
		return backend.Errorf(name, opName, cudaerr.InvalidDevice, "the source device is not of this backend")
	}
	if !t.Valid() || !op.Valid() {
		return backend.Errorf(name, opName, cudaerr.InvalidValue, "element type %v or operator %v unknown", t, op)
	}
	if !sd.g.mapsFor(d.g) {
		return backend.Errorf(name, opName, cudaerr.NotSupported, "GPU %d's memory is not mapped for GPU %d (no peer access)", sd.g.index, d.g.index)
	}
	return d.elementwise(opName, n, t, s, func(r *reducer) (Function, error) {
		if err := d.checkElements(opName, "destination", dst, n, t); err != nil {
			return 0, err
		}
		if err := sd.checkElements(opName, "source", src, n, t); err != nil {
			return 0, err
		}
		return r.reduce[t][op], nil
	}, uint64(dst), uint64(src), n)
}

// mapsFor reports whether g's allocations are mapped for other's kernels:
// the same GPU, or a peer g granted access when it started.
func (g *gpu) mapsFor(other *gpu) bool {
	if g == other {
		return true
	}
	if !g.peersMapped.Load() {
		return false
	}
	for _, p := range g.peerDevs {
		if p == other.dev {
			return true
		}
	}
	return false
}

// CanReducePeer reports whether srcDev, of this Backend, has its GPU's
// allocations mapped for this one's kernels.
func (d *DeviceContext) CanReducePeer(srcDev backend.Device) bool {
	sd, ok := srcDev.(*DeviceContext)
	return ok && sd.b == d.b && sd.g.mapsFor(d.g) && d.g.red.err == nil
}
