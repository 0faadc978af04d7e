package cuda

import (
	"errors"

	"github.com/xgpu/xgpu/server/backend"
)

// Handles of driver objects. Each holds the driver's opaque handle by value
// (a C pointer or integer); the zero value is the driver's null handle (for
// Stream: the legacy default stream, which this package's callers avoid).
type (
	// Device is a CUdevice: a device ordinal resolved by DeviceGet.
	Device int32
	// Context is a CUcontext.
	Context uintptr
	// Stream is a CUstream.
	Stream uintptr
	// Event is a CUevent.
	Event uintptr
	// Module is a CUmodule.
	Module uintptr
	// Function is a CUfunction.
	Function uintptr
	// DevicePtr is a CUdeviceptr: a device virtual address.
	DevicePtr uint64
	// MemHandle is a CUmemGenericAllocationHandle: physical memory made by
	// MemCreate, mapped with MemMap.
	MemHandle uint64
)

// DeviceAttribute is a CUdevice_attribute. Its values are those of the
// runtime's cudaDeviceAttr, so a runtime attribute converts by value.
type DeviceAttribute int32

// Device attributes the worker reads; any other CUdevice_attribute value may
// be passed by conversion.
const (
	AttrMaxThreadsPerBlock             DeviceAttribute = 1
	AttrMaxBlockDimX                   DeviceAttribute = 2
	AttrMaxBlockDimY                   DeviceAttribute = 3
	AttrMaxBlockDimZ                   DeviceAttribute = 4
	AttrMaxGridDimX                    DeviceAttribute = 5
	AttrMaxGridDimY                    DeviceAttribute = 6
	AttrMaxGridDimZ                    DeviceAttribute = 7
	AttrMaxSharedMemoryPerBlock        DeviceAttribute = 8
	AttrTotalConstantMemory            DeviceAttribute = 9
	AttrWarpSize                       DeviceAttribute = 10
	AttrMaxRegistersPerBlock           DeviceAttribute = 12
	AttrClockRate                      DeviceAttribute = 13
	AttrMultiprocessorCount            DeviceAttribute = 16
	AttrConcurrentKernels              DeviceAttribute = 31
	AttrECCEnabled                     DeviceAttribute = 32
	AttrPCIBusID                       DeviceAttribute = 33
	AttrPCIDeviceID                    DeviceAttribute = 34
	AttrMemoryClockRate                DeviceAttribute = 36
	AttrGlobalMemoryBusWidth           DeviceAttribute = 37
	AttrL2CacheSize                    DeviceAttribute = 38
	AttrMaxThreadsPerMultiprocessor    DeviceAttribute = 39
	AttrAsyncEngineCount               DeviceAttribute = 40
	AttrUnifiedAddressing              DeviceAttribute = 41
	AttrPCIDomainID                    DeviceAttribute = 50
	AttrComputeCapabilityMajor         DeviceAttribute = 75
	AttrComputeCapabilityMinor         DeviceAttribute = 76
	AttrStreamPrioritiesSupported      DeviceAttribute = 78
	AttrMaxSharedMemoryPerMultiproc    DeviceAttribute = 81
	AttrMaxRegistersPerMultiprocessor  DeviceAttribute = 82
	AttrManagedMemory                  DeviceAttribute = 83
	AttrMaxSharedMemoryPerBlockOptin   DeviceAttribute = 97
	AttrVirtualMemoryManagementSupport DeviceAttribute = 102
)

// FuncAttribute is a CUfunction_attribute. Its values are those of the
// runtime's cudaFuncAttribute where both exist; it is the backend's type.
type FuncAttribute = backend.FuncAttribute

// Function attributes.
const (
	FuncAttrMaxThreadsPerBlock            = backend.FuncAttrMaxThreadsPerBlock
	FuncAttrSharedSizeBytes               = backend.FuncAttrSharedSizeBytes
	FuncAttrConstSizeBytes                = backend.FuncAttrConstSizeBytes
	FuncAttrLocalSizeBytes                = backend.FuncAttrLocalSizeBytes
	FuncAttrNumRegs                       = backend.FuncAttrNumRegs
	FuncAttrPTXVersion                    = backend.FuncAttrPTXVersion
	FuncAttrBinaryVersion                 = backend.FuncAttrBinaryVersion
	FuncAttrCacheModeCA                   = backend.FuncAttrCacheModeCA
	FuncAttrMaxDynamicSharedSizeBytes     = backend.FuncAttrMaxDynamicSharedSizeBytes
	FuncAttrPreferredSharedMemoryCarveout = backend.FuncAttrPreferredSharedMemoryCarveout
)

// Flags of the calls that take them.
const (
	// StreamNonBlocking (CU_STREAM_NON_BLOCKING): the stream does not
	// synchronize with the legacy default stream.
	StreamNonBlocking uint32 = 0x1

	// EventBlockingSync (CU_EVENT_BLOCKING_SYNC): EventSynchronize blocks
	// the thread instead of spinning.
	EventBlockingSync uint32 = 0x1
	// EventDisableTiming (CU_EVENT_DISABLE_TIMING): the event records no
	// time stamp, which makes it cheaper.
	EventDisableTiming uint32 = 0x2

	// HostAllocPortable (CU_MEMHOSTALLOC_PORTABLE): the pinned memory is
	// pinned for every context, not only the current one.
	HostAllocPortable uint32 = 0x1
	// HostAllocDeviceMap (CU_MEMHOSTALLOC_DEVICEMAP): map the memory into
	// the device address space.
	HostAllocDeviceMap uint32 = 0x2
	// HostAllocWriteCombined (CU_MEMHOSTALLOC_WRITECOMBINED).
	HostAllocWriteCombined uint32 = 0x4
)

// Granularity selects MemGetAllocationGranularity's answer
// (CUmemAllocationGranularity_flags).
type Granularity int32

// Allocation granularities.
const (
	GranularityMinimum     Granularity = 0 // CU_MEM_ALLOC_GRANULARITY_MINIMUM
	GranularityRecommended Granularity = 1 // CU_MEM_ALLOC_GRANULARITY_RECOMMENDED
)

// Access is a CUmemAccess_flags protection for MemSetAccess.
type Access int32

// Access protections.
const (
	AccessNone      Access = 0x0 // CU_MEM_ACCESS_FLAGS_PROT_NONE
	AccessRead      Access = 0x1 // CU_MEM_ACCESS_FLAGS_PROT_READ
	AccessReadWrite Access = 0x3 // CU_MEM_ACCESS_FLAGS_PROT_READWRITE
)

// Dim3 is a grid or block size. A zero component is an error at launch.
// It is the backend's type.
type Dim3 = backend.Dim3

// ParamInfo is where a kernel parameter lies in the packed argument buffer,
// as cuFuncGetParamInfo reports it.
type ParamInfo struct {
	Offset uint64
	Size   uint64
}

// UUID is a device's 16-byte identifier (CUuuid).
type UUID [16]byte

// String formats u as NVML and nvidia-smi do: "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
func (u UUID) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 40)
	b = append(b, "GPU-"...)
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return string(b)
}

// DefaultLibrary is the driver library Open loads when given no path.
const DefaultLibrary = "libcuda.so.1"

// ErrNoCgo is returned by Open and New in a binary built with CGO_ENABLED=0:
// the driver binding needs cgo.
var ErrNoCgo = errors.New("cuda: built without cgo; rebuild with CGO_ENABLED=1 to use the CUDA driver")

// LoadError reports that the driver library could not be loaded: the file
// is missing or unloadable (Symbol empty), or it lacks a required entry
// point (Symbol names it).
type LoadError struct {
	Library string // the path passed to dlopen
	Symbol  string // the missing entry point; empty when dlopen failed
	Reason  string // dlopen's or dlsym's message
}

func (e *LoadError) Error() string {
	if e.Symbol != "" {
		return "cuda: " + e.Library + " lacks " + e.Symbol + " (driver too old?): " + e.Reason
	}
	return "cuda: cannot load " + e.Library + " (is the NVIDIA driver installed?): " + e.Reason
}

// SymbolError reports a call to an optional entry point that the loaded
// driver does not export (for example cuFuncGetParamInfo before CUDA 12.4).
type SymbolError struct {
	Symbol string
}

func (e *SymbolError) Error() string {
	return "cuda: the loaded driver lacks " + e.Symbol + "; a newer NVIDIA driver is needed"
}

// argError reports input this package rejects before calling the driver.
// It unwraps to ErrInvalidValue, so errors.Is(err, ErrInvalidValue) holds
// and the runtime sees cudaErrorInvalidValue.
type argError struct {
	op  string
	msg string
}

func (e *argError) Error() string { return "cuda: " + e.op + ": " + e.msg }

func (e *argError) Unwrap() error { return ErrInvalidValue }

func badArg(op, msg string) error { return &argError{op: op, msg: msg} }
