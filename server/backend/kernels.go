package backend

import "fmt"

// Module is a handle to a module (a loaded code image) of one Device.
// Handles are never zero.
type Module uint64

// Function is a handle to a kernel of a loaded Module. Handles are never
// zero; they are invalid once their module is unloaded.
type Function uint64

// Dim3 is a grid size in blocks or a block size in threads. A launch with
// a zero component fails with cudaErrorInvalidConfiguration.
type Dim3 struct{ X, Y, Z uint32 }

// Threads returns X*Y*Z, widened so that it cannot overflow.
func (d Dim3) Threads() uint64 { return uint64(d.X) * uint64(d.Y) * uint64(d.Z) }

func (d Dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

// Param is where one kernel parameter lies in the packed argument buffer
// of LaunchKernel: Size bytes at Offset, as cuFuncGetParamInfo reports.
type Param struct {
	Offset, Size uint32
}

// ArgsSize returns the length of the packed argument buffer of a kernel
// whose parameters are ps, in order: the end of the last one.
func ArgsSize(ps []Param) int {
	if len(ps) == 0 {
		return 0
	}
	last := ps[len(ps)-1]
	return int(last.Offset) + int(last.Size)
}

// MaxKernelArgs is the largest packed argument buffer a launch takes (the
// parameter space of a CUDA kernel since CUDA 12.1).
const MaxKernelArgs = 32764

// MaxBlockThreads is the most threads a block may have.
const MaxBlockThreads = 1024

// FuncAttribute is a kernel attribute; its values are those of
// CUfunction_attribute (and of the runtime's cudaFuncAttribute where both
// exist).
type FuncAttribute int32

// Kernel attributes.
const (
	FuncAttrMaxThreadsPerBlock            FuncAttribute = 0
	FuncAttrSharedSizeBytes               FuncAttribute = 1
	FuncAttrConstSizeBytes                FuncAttribute = 2
	FuncAttrLocalSizeBytes                FuncAttribute = 3
	FuncAttrNumRegs                       FuncAttribute = 4
	FuncAttrPTXVersion                    FuncAttribute = 5
	FuncAttrBinaryVersion                 FuncAttribute = 6
	FuncAttrCacheModeCA                   FuncAttribute = 7
	FuncAttrMaxDynamicSharedSizeBytes     FuncAttribute = 8
	FuncAttrPreferredSharedMemoryCarveout FuncAttribute = 9
)

// Kernels is implemented by Devices that run device code: load modules,
// find their kernels, learn each kernel's parameter layout and launch it
// in stream order. Both backends implement it: the cuda backend runs
// cubin, fatbin and PTX images; the host backend runs kernels of a small
// built-in library named by a text image (see package host), and refuses
// real GPU images with cudaErrorNoKernelImageForDevice, as CUDA does when
// no image of a module fits the device.
//
// Errors follow Device's rules: a bad argument or handle fails the call at
// once and changes nothing; a fault of a kernel while it runs (an illegal
// address) is sticky and reported by the Device's next synchronizing or
// querying call. Handles of one Device mean nothing to another.
type Kernels interface {
	// LoadModule loads a code image. An empty image fails with
	// cudaErrorInvalidValue; an image no part of which can run on the
	// device with cudaErrorNoKernelImageForDevice; malformed PTX with
	// cudaErrorInvalidPtx; another unreadable image with
	// cudaErrorInvalidKernelImage. The image is not kept: the caller may
	// reuse it.
	LoadModule(image []byte) (Module, error)
	// UnloadModule unloads m; its functions become invalid. Work already
	// queued that uses them completes first.
	UnloadModule(m Module) error
	// Function returns the kernel name of m (its mangled name for C++).
	// A name m lacks fails with cudaErrorSymbolNotFound, a handle that is
	// not a loaded module of this Device with
	// cudaErrorInvalidResourceHandle.
	Function(m Module, name string) (Function, error)
	// FuncParams returns the layout of f's parameters, in order.
	FuncParams(f Function) ([]Param, error)
	// FuncAttribute returns one attribute of f.
	FuncAttribute(f Function, attr FuncAttribute) (int, error)
	// SetFuncAttribute sets one attribute of f (such as
	// FuncAttrMaxDynamicSharedSizeBytes); attributes that cannot be set
	// fail with cudaErrorInvalidValue.
	SetFuncAttribute(f Function, attr FuncAttribute, v int) error
	// ModuleGlobal returns the address and size of the global variable
	// name of m.
	ModuleGlobal(m Module, name string) (DevicePtr, uint64, error)
	// LaunchKernel queues f on s with grid blocks of block threads,
	// sharedMem bytes of dynamic shared memory per block and the packed
	// argument buffer args (each parameter at its FuncParams offset). args
	// is copied: the caller may reuse it at once. A zero grid or block
	// component fails with cudaErrorInvalidConfiguration, more than
	// MaxKernelArgs bytes of arguments with cudaErrorInvalidValue. Limits
	// only the device knows (threads per block, shared memory, registers)
	// may be reported at once or by the next synchronizing call.
	LaunchKernel(f Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error
}

// CooperativeLauncher is implemented by Devices whose Kernels can launch a
// kernel cooperatively: every block of the grid is resident on the device
// at once, so that the blocks may wait for each other
// (cooperative_groups::this_grid().sync()). The cuda backend launches with
// cuLaunchCooperativeKernel where the driver has it; the host backend's
// kernels have no grid-wide barrier, so a cooperative launch runs as an
// ordinary one there, after the same residency check.
//
// Errors are those of Kernels.LaunchKernel, and a grid of more blocks than
// the device can hold at once for f with this block size and shared memory
// (the occupancy of f per multiprocessor times the multiprocessors) fails
// with cudaErrorCooperativeLaunchTooLarge. The cuda backend's driver
// reports that, and any configuration error, from the Device's next
// synchronizing call, as it reports every launch error; the host backend
// at once. A Device on a device or driver without cooperative launches
// fails with cudaErrorNotSupported.
type CooperativeLauncher interface {
	// LaunchCooperativeKernel queues f on s as LaunchKernel does, with
	// every block of grid resident at once.
	LaunchCooperativeKernel(f Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error
}

// DType is the element type of a reduction. Its values are those of NCCL's
// ncclDataType_t, so that a collective's type converts with a cast.
type DType int32

// Element types, numbered as ncclDataType_t.
const (
	I8   DType = 0
	U8   DType = 1
	I32  DType = 2
	U32  DType = 3
	I64  DType = 4
	U64  DType = 5
	F16  DType = 6 // IEEE 754 binary16
	F32  DType = 7
	F64  DType = 8
	BF16 DType = 9 // bfloat16: the top half of a float32
)

// DTypes lists every element type in numeric order.
var DTypes = []DType{I8, U8, I32, U32, I64, U64, F16, F32, F64, BF16}

var dtypeInfo = [...]struct {
	name string
	size uint64
}{
	I8: {"i8", 1}, U8: {"u8", 1}, I32: {"i32", 4}, U32: {"u32", 4}, I64: {"i64", 8},
	U64: {"u64", 8}, F16: {"f16", 2}, F32: {"f32", 4}, F64: {"f64", 8}, BF16: {"bf16", 2},
}

// Valid reports whether t is a known element type.
func (t DType) Valid() bool { return t >= 0 && int(t) < len(dtypeInfo) }

// Size returns the bytes of one element, 0 for an unknown type.
func (t DType) Size() uint64 {
	if !t.Valid() {
		return 0
	}
	return dtypeInfo[t].size
}

func (t DType) String() string {
	if !t.Valid() {
		return fmt.Sprintf("DType(%d)", int32(t))
	}
	return dtypeInfo[t].name
}

// RedOp is an element-wise reduction operator. Its values are those of
// NCCL's ncclRedOp_t (ncclAvg is a Sum followed by Divide).
type RedOp int32

// Reduction operators, numbered as ncclRedOp_t.
const (
	Sum  RedOp = 0
	Prod RedOp = 1
	Max  RedOp = 2
	Min  RedOp = 3
)

// RedOps lists every operator in numeric order.
var RedOps = []RedOp{Sum, Prod, Max, Min}

var redOpNames = [...]string{Sum: "sum", Prod: "prod", Max: "max", Min: "min"}

// Valid reports whether o is a known operator.
func (o RedOp) Valid() bool { return o >= 0 && int(o) < len(redOpNames) }

func (o RedOp) String() string {
	if !o.Valid() {
		return fmt.Sprintf("RedOp(%d)", int32(o))
	}
	return redOpNames[o]
}

// Reducer is implemented by Devices that combine buffers in device memory
// for the collectives: on the GPU with the kernels the cuda backend loads
// at start, on the CPU for the host backend. The arithmetic is C's on the
// element type: integers wrap (two's complement), floating-point min and
// max follow fmin and fmax (a NaN loses to a number), and F16 and BF16
// compute in float32 and round to nearest even, which for one operation is
// the correctly rounded result.
//
// Both ranges must lie inside allocations of this Device, or inside host
// memory this Device mapped (see HostMapper); a bad range, an unknown type
// or operator, or a misaligned pointer fails the call at once with
// cudaErrorInvalidValue. The work runs in stream order.
type Reducer interface {
	// Reduce sets dst[i] = op(dst[i], src[i]) for the n elements of type
	// t at dst and src. The ranges may be the same but must not otherwise
	// overlap.
	Reduce(dst, src DevicePtr, n uint64, t DType, op RedOp, s Stream) error
	// Divide sets buf[i] = buf[i] / divisor for the n elements of type t
	// at buf (integers truncate toward zero, as in C). divisor >= 1.
	Divide(buf DevicePtr, n uint64, t DType, divisor uint64, s Stream) error
}

// HostBuffer is page-locked host memory that a Device's kernels can
// address: the CPU reads and writes it through Bytes, a kernel at Ptr
// (the same bytes, through the device's mapping of them).
type HostBuffer struct {
	Bytes []byte
	Ptr   DevicePtr
}

// HostMapper is implemented by Devices whose Reduce and Divide can work
// on mapped host memory in place (zero-copy): the collectives receive
// messages from the network into host memory, and reducing them there
// on the GPU saves a copy to device memory and back. The cuda backend
// maps page-locked memory into the GPU's address space
// (cuMemHostAlloc with CU_MEMHOSTALLOC_DEVICEMAP); the host backend's
// device memory is host memory already.
//
// Mapped memory is not device memory: Owns reports false for it, and
// copies, memsets and kernels launched by clients cannot reach it; only
// Reduce and Divide accept it. It does not count against the quota.
type HostMapper interface {
	// HostAlloc allocates n bytes (n > 0) of mapped host memory, aligned
	// to at least 64 bytes. Its contents are unspecified. n == 0 fails
	// with cudaErrorInvalidValue; a failure to allocate or map with
	// cudaErrorMemoryAllocation.
	HostAlloc(n uint64) (HostBuffer, error)
	// HostFree releases a buffer HostAlloc returned (by its Ptr); work
	// already enqueued that uses it still completes on valid memory (the
	// memory is released after it, without blocking the caller). An
	// unknown buffer fails with cudaErrorInvalidValue and changes nothing.
	// Close frees the buffers still allocated. Bytes must not be used
	// after either.
	HostFree(b HostBuffer) error
}

// PeerReducer is implemented by Devices whose Reduce can read its source
// straight from the memory of another Device of the same Backend: a
// kernel on this device loading over NVLink or PCIe peer access (the
// cuda backend, where the other GPU mapped its allocations for this one),
// or host memory (the host backend). The collectives of the devices of one
// server reduce this way, with no copy through host memory.
type PeerReducer interface {
	// ReducePeer sets dst[i] = op(dst[i], src[i]) for the n elements of
	// type t at dst, in this Device's allocations, and src, in srcDev's,
	// queued on s of this Device. The caller orders it after the work on
	// srcDev that writes src (an event, or a synchronize). srcDev from
	// another Backend fails with cudaErrorInvalidDevice; one this device
	// cannot reach directly with cudaErrorNotSupported; bad ranges as
	// Reduce's.
	ReducePeer(dst DevicePtr, srcDev Device, src DevicePtr, n uint64, t DType, op RedOp, s Stream) error
	// CanReducePeer reports whether ReducePeer can read srcDev's memory
	// (it may stop being so later: ReducePeer still checks).
	CanReducePeer(srcDev Device) bool
}
