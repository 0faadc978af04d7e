package cuda

import (
	"strconv"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// Result is a CUDA driver API status code, CUresult. Its numeric values are
// the driver's own. Success (0) is a status, not an error: every function of
// this package returns a nil error rather than Success.
//
// A Result is an error whose text names the code, so errors.Is(err,
// cuda.ErrOutOfMemory) works on wrapped errors. It also converts itself to
// the runtime's code: errors.As(err, &e) with e a cudaerr.Error finds the
// runtime value of a wrapped Result, so cudaerr.Code(err) gives the status a
// CUDA application expects without any further mapping.
//
// Name, Description, Error and Runtime work without the driver loaded.
type Result int32

// CUresult values of the CUDA 13 driver API.
const (
	Success                         Result = 0
	ErrInvalidValue                 Result = 1
	ErrOutOfMemory                  Result = 2
	ErrNotInitialized               Result = 3
	ErrDeinitialized                Result = 4
	ErrProfilerDisabled             Result = 5
	ErrProfilerNotInitialized       Result = 6
	ErrProfilerAlreadyStarted       Result = 7
	ErrProfilerAlreadyStopped       Result = 8
	ErrStubLibrary                  Result = 34
	ErrCallRequiresNewerDriver      Result = 36
	ErrDeviceUnavailable            Result = 46
	ErrNoDevice                     Result = 100
	ErrInvalidDevice                Result = 101
	ErrDeviceNotLicensed            Result = 102
	ErrInvalidImage                 Result = 200
	ErrInvalidContext               Result = 201
	ErrContextAlreadyCurrent        Result = 202
	ErrMapFailed                    Result = 205
	ErrUnmapFailed                  Result = 206
	ErrArrayIsMapped                Result = 207
	ErrAlreadyMapped                Result = 208
	ErrNoBinaryForGPU               Result = 209
	ErrAlreadyAcquired              Result = 210
	ErrNotMapped                    Result = 211
	ErrNotMappedAsArray             Result = 212
	ErrNotMappedAsPointer           Result = 213
	ErrECCUncorrectable             Result = 214
	ErrUnsupportedLimit             Result = 215
	ErrContextAlreadyInUse          Result = 216
	ErrPeerAccessUnsupported        Result = 217
	ErrInvalidPTX                   Result = 218
	ErrInvalidGraphicsContext       Result = 219
	ErrNVLinkUncorrectable          Result = 220
	ErrJITCompilerNotFound          Result = 221
	ErrUnsupportedPTXVersion        Result = 222
	ErrJITCompilationDisabled       Result = 223
	ErrUnsupportedExecAffinity      Result = 224
	ErrUnsupportedDevsideSync       Result = 225
	ErrContained                    Result = 226
	ErrInvalidSource                Result = 300
	ErrFileNotFound                 Result = 301
	ErrSharedObjectSymbolNotFound   Result = 302
	ErrSharedObjectInitFailed       Result = 303
	ErrOperatingSystem              Result = 304
	ErrInvalidHandle                Result = 400
	ErrIllegalState                 Result = 401
	ErrLossyQuery                   Result = 402
	ErrNotFound                     Result = 500
	ErrNotReady                     Result = 600
	ErrIllegalAddress               Result = 700
	ErrLaunchOutOfResources         Result = 701
	ErrLaunchTimeout                Result = 702
	ErrLaunchIncompatibleTexturing  Result = 703
	ErrPeerAccessAlreadyEnabled     Result = 704
	ErrPeerAccessNotEnabled         Result = 705
	ErrPrimaryContextActive         Result = 708
	ErrContextIsDestroyed           Result = 709
	ErrAssert                       Result = 710
	ErrTooManyPeers                 Result = 711
	ErrHostMemoryAlreadyRegistered  Result = 712
	ErrHostMemoryNotRegistered      Result = 713
	ErrHardwareStackError           Result = 714
	ErrIllegalInstruction           Result = 715
	ErrMisalignedAddress            Result = 716
	ErrInvalidAddressSpace          Result = 717
	ErrInvalidPC                    Result = 718
	ErrLaunchFailed                 Result = 719
	ErrCooperativeLaunchTooLarge    Result = 720
	ErrTensorMemoryLeak             Result = 721
	ErrNotPermitted                 Result = 800
	ErrNotSupported                 Result = 801
	ErrSystemNotReady               Result = 802
	ErrSystemDriverMismatch         Result = 803
	ErrCompatNotSupportedOnDevice   Result = 804
	ErrMPSConnectionFailed          Result = 805
	ErrMPSRPCFailure                Result = 806
	ErrMPSServerNotReady            Result = 807
	ErrMPSMaxClientsReached         Result = 808
	ErrMPSMaxConnectionsReached     Result = 809
	ErrMPSClientTerminated          Result = 810
	ErrCDPNotSupported              Result = 811
	ErrCDPVersionMismatch           Result = 812
	ErrStreamCaptureUnsupported     Result = 900
	ErrStreamCaptureInvalidated     Result = 901
	ErrStreamCaptureMerge           Result = 902
	ErrStreamCaptureUnmatched       Result = 903
	ErrStreamCaptureUnjoined        Result = 904
	ErrStreamCaptureIsolation       Result = 905
	ErrStreamCaptureImplicit        Result = 906
	ErrCapturedEvent                Result = 907
	ErrStreamCaptureWrongThread     Result = 908
	ErrTimeout                      Result = 909
	ErrGraphExecUpdateFailure       Result = 910
	ErrExternalDevice               Result = 911
	ErrInvalidClusterSize           Result = 912
	ErrFunctionNotLoaded            Result = 913
	ErrInvalidResourceType          Result = 914
	ErrInvalidResourceConfiguration Result = 915
	ErrKeyRotation                  Result = 916
	ErrStreamDetached               Result = 917
	ErrGraphRecaptureFailure        Result = 918
	ErrUnknown                      Result = 999
)

// resultInfo describes one CUresult value: its enum name, a short
// description, and the cudaError_t value the CUDA runtime reports for it.
type resultInfo struct {
	name string
	desc string
	rt   cudaerr.Error
}

// results holds every CUresult value of the CUDA 13 driver API. The runtime
// value is the same number wherever the runtime defines one with the same
// meaning (the runtime spells some differently: CUDA_ERROR_INVALID_CONTEXT
// is cudaErrorDeviceUninitialized, CUDA_ERROR_NOT_FOUND is
// cudaErrorSymbolNotFound); the two codes the runtime lacks map to
// cudaErrorUnknown.
var results = map[Result]resultInfo{
	Success:                         {"CUDA_SUCCESS", "no error", 0},
	ErrInvalidValue:                 {"CUDA_ERROR_INVALID_VALUE", "invalid argument", 1},
	ErrOutOfMemory:                  {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory", 2},
	ErrNotInitialized:               {"CUDA_ERROR_NOT_INITIALIZED", "driver not initialized (cuInit not called or failed)", 3},
	ErrDeinitialized:                {"CUDA_ERROR_DEINITIALIZED", "driver shutting down", 4},
	ErrProfilerDisabled:             {"CUDA_ERROR_PROFILER_DISABLED", "profiler disabled while using an external profiling tool", 5},
	ErrProfilerNotInitialized:       {"CUDA_ERROR_PROFILER_NOT_INITIALIZED", "profiler not initialized (deprecated)", 6},
	ErrProfilerAlreadyStarted:       {"CUDA_ERROR_PROFILER_ALREADY_STARTED", "profiler already started (deprecated)", 7},
	ErrProfilerAlreadyStopped:       {"CUDA_ERROR_PROFILER_ALREADY_STOPPED", "profiler already stopped (deprecated)", 8},
	ErrStubLibrary:                  {"CUDA_ERROR_STUB_LIBRARY", "the loaded driver is a stub library, not a real driver", 34},
	ErrCallRequiresNewerDriver:      {"CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", "the call needs a newer driver than the one installed", 36},
	ErrDeviceUnavailable:            {"CUDA_ERROR_DEVICE_UNAVAILABLE", "device unavailable (compute mode or busy)", 46},
	ErrNoDevice:                     {"CUDA_ERROR_NO_DEVICE", "no CUDA-capable device detected", 100},
	ErrInvalidDevice:                {"CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal", 101},
	ErrDeviceNotLicensed:            {"CUDA_ERROR_DEVICE_NOT_LICENSED", "device has no valid grid license", 102},
	ErrInvalidImage:                 {"CUDA_ERROR_INVALID_IMAGE", "invalid device kernel image", 200},
	ErrInvalidContext:               {"CUDA_ERROR_INVALID_CONTEXT", "invalid or no current context", 201},
	ErrContextAlreadyCurrent:        {"CUDA_ERROR_CONTEXT_ALREADY_CURRENT", "context already current (deprecated)", 999},
	ErrMapFailed:                    {"CUDA_ERROR_MAP_FAILED", "map or register operation failed", 205},
	ErrUnmapFailed:                  {"CUDA_ERROR_UNMAP_FAILED", "unmap or unregister operation failed", 206},
	ErrArrayIsMapped:                {"CUDA_ERROR_ARRAY_IS_MAPPED", "array is mapped and cannot be destroyed", 207},
	ErrAlreadyMapped:                {"CUDA_ERROR_ALREADY_MAPPED", "resource already mapped", 208},
	ErrNoBinaryForGPU:               {"CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image for this device", 209},
	ErrAlreadyAcquired:              {"CUDA_ERROR_ALREADY_ACQUIRED", "resource already acquired", 210},
	ErrNotMapped:                    {"CUDA_ERROR_NOT_MAPPED", "resource not mapped", 211},
	ErrNotMappedAsArray:             {"CUDA_ERROR_NOT_MAPPED_AS_ARRAY", "mapped resource not available as an array", 212},
	ErrNotMappedAsPointer:           {"CUDA_ERROR_NOT_MAPPED_AS_POINTER", "mapped resource not available as a pointer", 213},
	ErrECCUncorrectable:             {"CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error", 214},
	ErrUnsupportedLimit:             {"CUDA_ERROR_UNSUPPORTED_LIMIT", "limit not supported by the device", 215},
	ErrContextAlreadyInUse:          {"CUDA_ERROR_CONTEXT_ALREADY_IN_USE", "context already bound to another thread", 216},
	ErrPeerAccessUnsupported:        {"CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access not supported between these devices", 217},
	ErrInvalidPTX:                   {"CUDA_ERROR_INVALID_PTX", "PTX JIT compilation failed", 218},
	ErrInvalidGraphicsContext:       {"CUDA_ERROR_INVALID_GRAPHICS_CONTEXT", "invalid OpenGL or DirectX context", 219},
	ErrNVLinkUncorrectable:          {"CUDA_ERROR_NVLINK_UNCORRECTABLE", "uncorrectable NVLink error", 220},
	ErrJITCompilerNotFound:          {"CUDA_ERROR_JIT_COMPILER_NOT_FOUND", "PTX JIT compiler library not found", 221},
	ErrUnsupportedPTXVersion:        {"CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "PTX built by an unsupported toolchain", 222},
	ErrJITCompilationDisabled:       {"CUDA_ERROR_JIT_COMPILATION_DISABLED", "PTX JIT compilation disabled", 223},
	ErrUnsupportedExecAffinity:      {"CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY", "execution affinity not supported by the device", 224},
	ErrUnsupportedDevsideSync:       {"CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC", "device-side cudaDeviceSynchronize not supported", 225},
	ErrContained:                    {"CUDA_ERROR_CONTAINED", "device exception contained by error containment; the process must restart CUDA", 226},
	ErrInvalidSource:                {"CUDA_ERROR_INVALID_SOURCE", "invalid device kernel source", 300},
	ErrFileNotFound:                 {"CUDA_ERROR_FILE_NOT_FOUND", "file not found", 301},
	ErrSharedObjectSymbolNotFound:   {"CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND", "shared object symbol not found", 302},
	ErrSharedObjectInitFailed:       {"CUDA_ERROR_SHARED_OBJECT_INIT_FAILED", "shared object initialization failed", 303},
	ErrOperatingSystem:              {"CUDA_ERROR_OPERATING_SYSTEM", "operating system call failed", 304},
	ErrInvalidHandle:                {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle", 400},
	ErrIllegalState:                 {"CUDA_ERROR_ILLEGAL_STATE", "resource not in a valid state for the operation", 401},
	ErrLossyQuery:                   {"CUDA_ERROR_LOSSY_QUERY", "introspection would lose information", 402},
	ErrNotFound:                     {"CUDA_ERROR_NOT_FOUND", "named symbol not found", 500},
	ErrNotReady:                     {"CUDA_ERROR_NOT_READY", "asynchronous work not completed yet", 600},
	ErrIllegalAddress:               {"CUDA_ERROR_ILLEGAL_ADDRESS", "illegal memory access in device code; the context is unusable", 700},
	ErrLaunchOutOfResources:         {"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch", 701},
	ErrLaunchTimeout:                {"CUDA_ERROR_LAUNCH_TIMEOUT", "kernel execution timed out; the context is unusable", 702},
	ErrLaunchIncompatibleTexturing:  {"CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING", "launch uses an incompatible texturing mode", 703},
	ErrPeerAccessAlreadyEnabled:     {"CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", "peer access already enabled", 704},
	ErrPeerAccessNotEnabled:         {"CUDA_ERROR_PEER_ACCESS_NOT_ENABLED", "peer access not enabled", 705},
	ErrPrimaryContextActive:         {"CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", "primary context already initialized", 708},
	ErrContextIsDestroyed:           {"CUDA_ERROR_CONTEXT_IS_DESTROYED", "current context destroyed or not yet initialized", 709},
	ErrAssert:                       {"CUDA_ERROR_ASSERT", "device-side assert triggered; the context is unusable", 710},
	ErrTooManyPeers:                 {"CUDA_ERROR_TOO_MANY_PEERS", "peer access resources exhausted", 711},
	ErrHostMemoryAlreadyRegistered:  {"CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "host memory already registered", 712},
	ErrHostMemoryNotRegistered:      {"CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "host memory not registered", 713},
	ErrHardwareStackError:           {"CUDA_ERROR_HARDWARE_STACK_ERROR", "device stack error; the context is unusable", 714},
	ErrIllegalInstruction:           {"CUDA_ERROR_ILLEGAL_INSTRUCTION", "illegal instruction in device code; the context is unusable", 715},
	ErrMisalignedAddress:            {"CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address in device code; the context is unusable", 716},
	ErrInvalidAddressSpace:          {"CUDA_ERROR_INVALID_ADDRESS_SPACE", "address outside the instruction's address space; the context is unusable", 717},
	ErrInvalidPC:                    {"CUDA_ERROR_INVALID_PC", "invalid program counter; the context is unusable", 718},
	ErrLaunchFailed:                 {"CUDA_ERROR_LAUNCH_FAILED", "exception while executing a kernel; the context is unusable", 719},
	ErrCooperativeLaunchTooLarge:    {"CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", "too many blocks for a cooperative launch", 720},
	ErrTensorMemoryLeak:             {"CUDA_ERROR_TENSOR_MEMORY_LEAK", "kernel exited without freeing tensor memory; the context is unusable", 721},
	ErrNotPermitted:                 {"CUDA_ERROR_NOT_PERMITTED", "operation not permitted", 800},
	ErrNotSupported:                 {"CUDA_ERROR_NOT_SUPPORTED", "operation not supported on this system or device", 801},
	ErrSystemNotReady:               {"CUDA_ERROR_SYSTEM_NOT_READY", "system not ready for CUDA work", 802},
	ErrSystemDriverMismatch:         {"CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "display driver and CUDA driver versions do not match", 803},
	ErrCompatNotSupportedOnDevice:   {"CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility not supported on this device", 804},
	ErrMPSConnectionFailed:          {"CUDA_ERROR_MPS_CONNECTION_FAILED", "MPS client failed to connect", 805},
	ErrMPSRPCFailure:                {"CUDA_ERROR_MPS_RPC_FAILURE", "MPS remote procedure call failed", 806},
	ErrMPSServerNotReady:            {"CUDA_ERROR_MPS_SERVER_NOT_READY", "MPS server not ready", 807},
	ErrMPSMaxClientsReached:         {"CUDA_ERROR_MPS_MAX_CLIENTS_REACHED", "MPS client limit reached", 808},
	ErrMPSMaxConnectionsReached:     {"CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED", "MPS connection limit reached", 809},
	ErrMPSClientTerminated:          {"CUDA_ERROR_MPS_CLIENT_TERMINATED", "MPS client terminated by the server", 810},
	ErrCDPNotSupported:              {"CUDA_ERROR_CDP_NOT_SUPPORTED", "dynamic parallelism not supported in this configuration", 811},
	ErrCDPVersionMismatch:           {"CUDA_ERROR_CDP_VERSION_MISMATCH", "mixed dynamic parallelism versions", 812},
	ErrStreamCaptureUnsupported:     {"CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted while the stream is capturing", 900},
	ErrStreamCaptureInvalidated:     {"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "stream capture invalidated by an earlier error", 901},
	ErrStreamCaptureMerge:           {"CUDA_ERROR_STREAM_CAPTURE_MERGE", "operation would merge two capture sequences", 902},
	ErrStreamCaptureUnmatched:       {"CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", "capture not started in this stream", 903},
	ErrStreamCaptureUnjoined:        {"CUDA_ERROR_STREAM_CAPTURE_UNJOINED", "capture forked without joining", 904},
	ErrStreamCaptureIsolation:       {"CUDA_ERROR_STREAM_CAPTURE_ISOLATION", "dependency would cross the capture boundary", 905},
	ErrStreamCaptureImplicit:        {"CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", "implicit dependency on a capture from the legacy stream", 906},
	ErrCapturedEvent:                {"CUDA_ERROR_CAPTURED_EVENT", "operation not permitted on an event recorded in a capturing stream", 907},
	ErrStreamCaptureWrongThread:     {"CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", "capture ended on another thread", 908},
	ErrTimeout:                      {"CUDA_ERROR_TIMEOUT", "wait timed out", 909},
	ErrGraphExecUpdateFailure:       {"CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE", "graph update violated an instantiated graph's constraints", 910},
	ErrExternalDevice:               {"CUDA_ERROR_EXTERNAL_DEVICE", "error in an external device; the context is unusable", 911},
	ErrInvalidClusterSize:           {"CUDA_ERROR_INVALID_CLUSTER_SIZE", "invalid cluster size", 912},
	ErrFunctionNotLoaded:            {"CUDA_ERROR_FUNCTION_NOT_LOADED", "function not loaded", 913},
	ErrInvalidResourceType:          {"CUDA_ERROR_INVALID_RESOURCE_TYPE", "invalid resource type", 914},
	ErrInvalidResourceConfiguration: {"CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION", "insufficient or inapplicable resources", 915},
	ErrKeyRotation:                  {"CUDA_ERROR_KEY_ROTATION", "key rotation failed", 999},
	ErrStreamDetached:               {"CUDA_ERROR_STREAM_DETACHED", "stream detached from its destroyed green context", 917},
	ErrGraphRecaptureFailure:        {"CUDA_ERROR_GRAPH_RECAPTURE_FAILURE", "graph recapture failed", 918},
	ErrUnknown:                      {"CUDA_ERROR_UNKNOWN", "unknown error", 999},
}

// Error returns "cuda: <NAME> (<n>): <description>", for example
// "cuda: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory".
func (r Result) Error() string {
	return "cuda: " + r.Name() + " (" + strconv.FormatInt(int64(r), 10) + "): " + r.Description()
}

// Name returns the enum name, such as "CUDA_ERROR_INVALID_VALUE", or
// "CUresult(<n>)" for a value the CUDA 13 driver does not define.
func (r Result) Name() string {
	if info, ok := results[r]; ok {
		return info.name
	}
	return "CUresult(" + strconv.FormatInt(int64(r), 10) + ")"
}

// Description returns a short description of r, or "unrecognized error
// code" for a value the CUDA 13 driver does not define.
func (r Result) Description() string {
	if info, ok := results[r]; ok {
		return info.desc
	}
	return "unrecognized error code"
}

// Known reports whether r is a value of the CUDA 13 driver's enum.
func (r Result) Known() bool {
	_, ok := results[r]
	return ok
}

// Runtime returns the cudaError_t value the CUDA runtime reports for r:
// cudaSuccess for Success, cudaErrorUnknown for a value the runtime has no
// counterpart of (including values unknown to this table).
func (r Result) Runtime() cudaerr.Error {
	if info, ok := results[r]; ok {
		return info.rt
	}
	return cudaerr.Error(ErrUnknown)
}

// Is reports whether target is the runtime code r maps to, so that
// errors.Is(err, cudaerr.X) holds for a wrapped Result as well.
func (r Result) Is(target error) bool {
	if t, ok := target.(cudaerr.Error); ok {
		return r != Success && r.Runtime() == t
	}
	return false
}

// As sets *target to r's runtime code when target is a *cudaerr.Error.
func (r Result) As(target any) bool {
	if p, ok := target.(*cudaerr.Error); ok && r != Success {
		*p = r.Runtime()
		return true
	}
	return false
}

// Sticky reports whether r poisons the context: CUDA documents that after
// such an error every further call on the context returns the same error,
// and only a new process (for xgpu: a new worker) recovers.
func (r Result) Sticky() bool {
	switch r {
	case ErrIllegalAddress, ErrLaunchTimeout, ErrAssert, ErrHardwareStackError,
		ErrIllegalInstruction, ErrMisalignedAddress, ErrInvalidAddressSpace,
		ErrInvalidPC, ErrLaunchFailed, ErrTensorMemoryLeak, ErrContained,
		ErrMPSClientTerminated, ErrExternalDevice:
		return true
	}
	return false
}

// check converts a driver status into an error: nil for Success.
func check(r Result) error {
	if r == Success {
		return nil
	}
	return r
}
