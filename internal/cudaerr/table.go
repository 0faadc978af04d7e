package cudaerr

// The values of enum cudaError in the CUDA 13 runtime's driver_types.h. The
// constant names drop the "cudaError" prefix and keep CUDA's spelling, so a
// search for the C name finds them. Codes marked deprecated are still
// defined by the runtime but no longer returned by it.
const (
	Success                        Error = 0
	InvalidValue                   Error = 1
	MemoryAllocation               Error = 2
	InitializationError            Error = 3
	CudartUnloading                Error = 4
	ProfilerDisabled               Error = 5
	ProfilerNotInitialized         Error = 6 // deprecated since CUDA 5.0
	ProfilerAlreadyStarted         Error = 7 // deprecated since CUDA 5.0
	ProfilerAlreadyStopped         Error = 8 // deprecated since CUDA 5.0
	InvalidConfiguration           Error = 9
	VersionTranslation             Error = 10 // added in CUDA 13.3
	InvalidPitchValue              Error = 12
	InvalidSymbol                  Error = 13
	InvalidHostPointer             Error = 16 // deprecated since CUDA 10.1
	InvalidDevicePointer           Error = 17 // deprecated since CUDA 10.1: bad pointers give InvalidValue
	InvalidTexture                 Error = 18
	InvalidTextureBinding          Error = 19
	InvalidChannelDescriptor       Error = 20
	InvalidMemcpyDirection         Error = 21
	AddressOfConstant              Error = 22 // deprecated since CUDA 3.1
	TextureFetchFailed             Error = 23 // deprecated since CUDA 3.1
	TextureNotBound                Error = 24 // deprecated since CUDA 3.1
	SynchronizationError           Error = 25 // deprecated since CUDA 3.1
	InvalidFilterSetting           Error = 26
	InvalidNormSetting             Error = 27
	MixedDeviceExecution           Error = 28 // deprecated since CUDA 3.1
	NotYetImplemented              Error = 31 // deprecated since CUDA 4.1
	MemoryValueTooLarge            Error = 32 // deprecated since CUDA 3.1
	StubLibrary                    Error = 34
	InsufficientDriver             Error = 35
	CallRequiresNewerDriver        Error = 36
	InvalidSurface                 Error = 37
	DuplicateVariableName          Error = 43
	DuplicateTextureName           Error = 44
	DuplicateSurfaceName           Error = 45
	DevicesUnavailable             Error = 46
	IncompatibleDriverContext      Error = 49
	MissingConfiguration           Error = 52
	PriorLaunchFailure             Error = 53 // deprecated since CUDA 3.1
	LaunchMaxDepthExceeded         Error = 65
	LaunchFileScopedTex            Error = 66
	LaunchFileScopedSurf           Error = 67
	SyncDepthExceeded              Error = 68
	LaunchPendingCountExceeded     Error = 69
	InvalidDeviceFunction          Error = 98
	NoDevice                       Error = 100
	InvalidDevice                  Error = 101
	DeviceNotLicensed              Error = 102
	SoftwareValidityNotEstablished Error = 103
	StartupFailure                 Error = 127
	InvalidKernelImage             Error = 200
	DeviceUninitialized            Error = 201
	MapBufferObjectFailed          Error = 205
	UnmapBufferObjectFailed        Error = 206
	ArrayIsMapped                  Error = 207
	AlreadyMapped                  Error = 208
	NoKernelImageForDevice         Error = 209
	AlreadyAcquired                Error = 210
	NotMapped                      Error = 211
	NotMappedAsArray               Error = 212
	NotMappedAsPointer             Error = 213
	ECCUncorrectable               Error = 214
	UnsupportedLimit               Error = 215
	DeviceAlreadyInUse             Error = 216
	PeerAccessUnsupported          Error = 217
	InvalidPtx                     Error = 218
	InvalidGraphicsContext         Error = 219
	NvlinkUncorrectable            Error = 220
	JitCompilerNotFound            Error = 221
	UnsupportedPtxVersion          Error = 222
	JitCompilationDisabled         Error = 223
	UnsupportedExecAffinity        Error = 224
	UnsupportedDevSideSync         Error = 225
	Contained                      Error = 226
	InvalidSource                  Error = 300
	FileNotFound                   Error = 301
	SharedObjectSymbolNotFound     Error = 302
	SharedObjectInitFailed         Error = 303
	OperatingSystem                Error = 304
	InvalidResourceHandle          Error = 400
	IllegalState                   Error = 401
	LossyQuery                     Error = 402
	SymbolNotFound                 Error = 500
	NotReady                       Error = 600
	IllegalAddress                 Error = 700
	LaunchOutOfResources           Error = 701
	LaunchTimeout                  Error = 702
	LaunchIncompatibleTexturing    Error = 703
	PeerAccessAlreadyEnabled       Error = 704
	PeerAccessNotEnabled           Error = 705
	SetOnActiveProcess             Error = 708
	ContextIsDestroyed             Error = 709
	Assert                         Error = 710
	TooManyPeers                   Error = 711
	HostMemoryAlreadyRegistered    Error = 712
	HostMemoryNotRegistered        Error = 713
	HardwareStackError             Error = 714
	IllegalInstruction             Error = 715
	MisalignedAddress              Error = 716
	InvalidAddressSpace            Error = 717
	InvalidPc                      Error = 718
	LaunchFailure                  Error = 719
	CooperativeLaunchTooLarge      Error = 720
	TensorMemoryLeak               Error = 721
	NotPermitted                   Error = 800
	NotSupported                   Error = 801
	SystemNotReady                 Error = 802
	SystemDriverMismatch           Error = 803
	CompatNotSupportedOnDevice     Error = 804
	MpsConnectionFailed            Error = 805
	MpsRpcFailure                  Error = 806
	MpsServerNotReady              Error = 807
	MpsMaxClientsReached           Error = 808
	MpsMaxConnectionsReached       Error = 809
	MpsClientTerminated            Error = 810
	CdpNotSupported                Error = 811
	CdpVersionMismatch             Error = 812
	StreamCaptureUnsupported       Error = 900
	StreamCaptureInvalidated       Error = 901
	StreamCaptureMerge             Error = 902
	StreamCaptureUnmatched         Error = 903
	StreamCaptureUnjoined          Error = 904
	StreamCaptureIsolation         Error = 905
	StreamCaptureImplicit          Error = 906
	CapturedEvent                  Error = 907
	StreamCaptureWrongThread       Error = 908
	Timeout                        Error = 909
	GraphExecUpdateFailure         Error = 910
	ExternalDevice                 Error = 911
	InvalidClusterSize             Error = 912
	FunctionNotLoaded              Error = 913
	InvalidResourceType            Error = 914
	InvalidResourceConfiguration   Error = 915
	StreamDetached                 Error = 917 // added in CUDA 13.1
	GraphRecaptureFailure          Error = 918 // added in CUDA 13.3
	Unknown                        Error = 999
	ApiFailureBase                 Error = 10000 // deprecated since CUDA 4.1
)

type entry struct {
	name string // enum name, as cudaGetErrorName returns it
	desc string // as cudaGetErrorString returns it
}

// table maps every defined value to its name and description. The
// descriptions are the runtime's cudaGetErrorString texts, so an application
// that prints or matches them (PyTorch's "CUDA error: out of memory") sees
// what it sees natively. For the codes added after CUDA 12.6 whose runtime
// text is not published (VersionTranslation, UnsupportedDevSideSync,
// Contained, LossyQuery, TensorMemoryLeak, CdpNotSupported,
// CdpVersionMismatch, FunctionNotLoaded, InvalidResourceType,
// InvalidResourceConfiguration, StreamDetached, GraphRecaptureFailure) the
// description condenses the API reference's wording.
var table = map[Error]entry{
	Success:                        {"cudaSuccess", "no error"},
	InvalidValue:                   {"cudaErrorInvalidValue", "invalid argument"},
	MemoryAllocation:               {"cudaErrorMemoryAllocation", "out of memory"},
	InitializationError:            {"cudaErrorInitializationError", "initialization error"},
	CudartUnloading:                {"cudaErrorCudartUnloading", "driver shutting down"},
	ProfilerDisabled:               {"cudaErrorProfilerDisabled", "profiler disabled while using external profiling tool"},
	ProfilerNotInitialized:         {"cudaErrorProfilerNotInitialized", "profiler not initialized: call cudaProfilerInitialize()"},
	ProfilerAlreadyStarted:         {"cudaErrorProfilerAlreadyStarted", "profiler already started"},
	ProfilerAlreadyStopped:         {"cudaErrorProfilerAlreadyStopped", "profiler already stopped"},
	InvalidConfiguration:           {"cudaErrorInvalidConfiguration", "invalid configuration argument"},
	VersionTranslation:             {"cudaErrorVersionTranslation", "driver returned graph node information the runtime cannot translate"},
	InvalidPitchValue:              {"cudaErrorInvalidPitchValue", "invalid pitch argument"},
	InvalidSymbol:                  {"cudaErrorInvalidSymbol", "invalid device symbol"},
	InvalidHostPointer:             {"cudaErrorInvalidHostPointer", "invalid host pointer"},
	InvalidDevicePointer:           {"cudaErrorInvalidDevicePointer", "invalid device pointer"},
	InvalidTexture:                 {"cudaErrorInvalidTexture", "invalid texture reference"},
	InvalidTextureBinding:          {"cudaErrorInvalidTextureBinding", "texture is not bound to a pointer"},
	InvalidChannelDescriptor:       {"cudaErrorInvalidChannelDescriptor", "invalid channel descriptor"},
	InvalidMemcpyDirection:         {"cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
	AddressOfConstant:              {"cudaErrorAddressOfConstant", "invalid address of constant"},
	TextureFetchFailed:             {"cudaErrorTextureFetchFailed", "fetch from texture failed"},
	TextureNotBound:                {"cudaErrorTextureNotBound", "cannot fetch from a texture that is not bound"},
	SynchronizationError:           {"cudaErrorSynchronizationError", "incorrect use of __syncthreads()"},
	InvalidFilterSetting:           {"cudaErrorInvalidFilterSetting", "linear filtering not supported for non-float type"},
	InvalidNormSetting:             {"cudaErrorInvalidNormSetting", "read as normalized float not supported for 32-bit non float type"},
	MixedDeviceExecution:           {"cudaErrorMixedDeviceExecution", "device emulation mode and device execution mode cannot be mixed"},
	NotYetImplemented:              {"cudaErrorNotYetImplemented", "feature not yet implemented"},
	MemoryValueTooLarge:            {"cudaErrorMemoryValueTooLarge", "memory size or pointer value too large to fit in 32 bit"},
	StubLibrary:                    {"cudaErrorStubLibrary", "CUDA driver is a stub library"},
	InsufficientDriver:             {"cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version"},
	CallRequiresNewerDriver:        {"cudaErrorCallRequiresNewerDriver", "API call is not supported in the installed CUDA driver"},
	InvalidSurface:                 {"cudaErrorInvalidSurface", "invalid surface reference"},
	DuplicateVariableName:          {"cudaErrorDuplicateVariableName", "duplicate global variable looked up by string name"},
	DuplicateTextureName:           {"cudaErrorDuplicateTextureName", "duplicate texture looked up by string name"},
	DuplicateSurfaceName:           {"cudaErrorDuplicateSurfaceName", "duplicate surface looked up by string name"},
	DevicesUnavailable:             {"cudaErrorDevicesUnavailable", "CUDA-capable device(s) is/are busy or unavailable"},
	IncompatibleDriverContext:      {"cudaErrorIncompatibleDriverContext", "incompatible driver context"},
	MissingConfiguration:           {"cudaErrorMissingConfiguration", "__global__ function call is not configured"},
	PriorLaunchFailure:             {"cudaErrorPriorLaunchFailure", "unspecified launch failure in prior launch"},
	LaunchMaxDepthExceeded:         {"cudaErrorLaunchMaxDepthExceeded", "launch would exceed maximum depth of nested launches"},
	LaunchFileScopedTex:            {"cudaErrorLaunchFileScopedTex", "launch failed because kernel uses unsupported, file-scoped textures (texture objects are supported)"},
	LaunchFileScopedSurf:           {"cudaErrorLaunchFileScopedSurf", "launch failed because kernel uses unsupported, file-scoped surfaces (surface objects are supported)"},
	SyncDepthExceeded:              {"cudaErrorSyncDepthExceeded", "cudaDeviceSynchronize failed because caller's grid depth exceeds cudaLimitDevRuntimeSyncDepth"},
	LaunchPendingCountExceeded:     {"cudaErrorLaunchPendingCountExceeded", "launch failed because launch would exceed cudaLimitDevRuntimePendingLaunchCount"},
	InvalidDeviceFunction:          {"cudaErrorInvalidDeviceFunction", "invalid device function"},
	NoDevice:                       {"cudaErrorNoDevice", "no CUDA-capable device is detected"},
	InvalidDevice:                  {"cudaErrorInvalidDevice", "invalid device ordinal"},
	DeviceNotLicensed:              {"cudaErrorDeviceNotLicensed", "device doesn't have valid Grid license"},
	SoftwareValidityNotEstablished: {"cudaErrorSoftwareValidityNotEstablished", "integrity checks failed"},
	StartupFailure:                 {"cudaErrorStartupFailure", "startup failure in cuda runtime"},
	InvalidKernelImage:             {"cudaErrorInvalidKernelImage", "device kernel image is invalid"},
	DeviceUninitialized:            {"cudaErrorDeviceUninitialized", "invalid device context"},
	MapBufferObjectFailed:          {"cudaErrorMapBufferObjectFailed", "mapping of buffer object failed"},
	UnmapBufferObjectFailed:        {"cudaErrorUnmapBufferObjectFailed", "unmapping of buffer object failed"},
	ArrayIsMapped:                  {"cudaErrorArrayIsMapped", "array is mapped"},
	AlreadyMapped:                  {"cudaErrorAlreadyMapped", "resource already mapped"},
	NoKernelImageForDevice:         {"cudaErrorNoKernelImageForDevice", "no kernel image is available for execution on the device"},
	AlreadyAcquired:                {"cudaErrorAlreadyAcquired", "resource already acquired"},
	NotMapped:                      {"cudaErrorNotMapped", "resource not mapped"},
	NotMappedAsArray:               {"cudaErrorNotMappedAsArray", "resource not mapped as array"},
	NotMappedAsPointer:             {"cudaErrorNotMappedAsPointer", "resource not mapped as pointer"},
	ECCUncorrectable:               {"cudaErrorECCUncorrectable", "uncorrectable ECC error encountered"},
	UnsupportedLimit:               {"cudaErrorUnsupportedLimit", "limit is not supported on this architecture"},
	DeviceAlreadyInUse:             {"cudaErrorDeviceAlreadyInUse", "exclusive-thread device already in use by a different thread"},
	PeerAccessUnsupported:          {"cudaErrorPeerAccessUnsupported", "peer access is not supported between these two devices"},
	InvalidPtx:                     {"cudaErrorInvalidPtx", "a PTX JIT compilation failed"},
	InvalidGraphicsContext:         {"cudaErrorInvalidGraphicsContext", "invalid OpenGL or DirectX context"},
	NvlinkUncorrectable:            {"cudaErrorNvlinkUncorrectable", "uncorrectable NVLink error detected during the execution"},
	JitCompilerNotFound:            {"cudaErrorJitCompilerNotFound", "PTX JIT compiler library not found"},
	UnsupportedPtxVersion:          {"cudaErrorUnsupportedPtxVersion", "the provided PTX was compiled with an unsupported toolchain."},
	JitCompilationDisabled:         {"cudaErrorJitCompilationDisabled", "PTX JIT compilation was disabled"},
	UnsupportedExecAffinity:        {"cudaErrorUnsupportedExecAffinity", "the provided execution affinity is not supported"},
	UnsupportedDevSideSync:         {"cudaErrorUnsupportedDevSideSync", "the PTX contains an unsupported call to cudaDeviceSynchronize"},
	Contained:                      {"cudaErrorContained", "an exception occurred on the device and was contained by the GPU's error containment"},
	InvalidSource:                  {"cudaErrorInvalidSource", "device kernel image is invalid"},
	FileNotFound:                   {"cudaErrorFileNotFound", "file not found"},
	SharedObjectSymbolNotFound:     {"cudaErrorSharedObjectSymbolNotFound", "shared object symbol not found"},
	SharedObjectInitFailed:         {"cudaErrorSharedObjectInitFailed", "shared object initialization failed"},
	OperatingSystem:                {"cudaErrorOperatingSystem", "OS call failed or operation not supported on this OS"},
	InvalidResourceHandle:          {"cudaErrorInvalidResourceHandle", "invalid resource handle"},
	IllegalState:                   {"cudaErrorIllegalState", "the operation cannot be performed in the present state"},
	LossyQuery:                     {"cudaErrorLossyQuery", "the query would discard semantically important information"},
	SymbolNotFound:                 {"cudaErrorSymbolNotFound", "named symbol not found"},
	NotReady:                       {"cudaErrorNotReady", "device not ready"},
	IllegalAddress:                 {"cudaErrorIllegalAddress", "an illegal memory access was encountered"},
	LaunchOutOfResources:           {"cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
	LaunchTimeout:                  {"cudaErrorLaunchTimeout", "the launch timed out and was terminated"},
	LaunchIncompatibleTexturing:    {"cudaErrorLaunchIncompatibleTexturing", "launch uses incompatible texturing mode"},
	PeerAccessAlreadyEnabled:       {"cudaErrorPeerAccessAlreadyEnabled", "peer access is already enabled"},
	PeerAccessNotEnabled:           {"cudaErrorPeerAccessNotEnabled", "peer access has not been enabled"},
	SetOnActiveProcess:             {"cudaErrorSetOnActiveProcess", "cannot set while device is active in this process"},
	ContextIsDestroyed:             {"cudaErrorContextIsDestroyed", "context is destroyed"},
	Assert:                         {"cudaErrorAssert", "device-side assert triggered"},
	TooManyPeers:                   {"cudaErrorTooManyPeers", "peer mapping resources exhausted"},
	HostMemoryAlreadyRegistered:    {"cudaErrorHostMemoryAlreadyRegistered", "part or all of the requested memory range is already mapped"},
	HostMemoryNotRegistered:        {"cudaErrorHostMemoryNotRegistered", "pointer does not correspond to a registered memory region"},
	HardwareStackError:             {"cudaErrorHardwareStackError", "hardware stack error"},
	IllegalInstruction:             {"cudaErrorIllegalInstruction", "an illegal instruction was encountered"},
	MisalignedAddress:              {"cudaErrorMisalignedAddress", "misaligned address"},
	InvalidAddressSpace:            {"cudaErrorInvalidAddressSpace", "operation not supported on global/shared address space"},
	InvalidPc:                      {"cudaErrorInvalidPc", "invalid program counter"},
	LaunchFailure:                  {"cudaErrorLaunchFailure", "unspecified launch failure"},
	CooperativeLaunchTooLarge:      {"cudaErrorCooperativeLaunchTooLarge", "too many blocks in cooperative launch"},
	TensorMemoryLeak:               {"cudaErrorTensorMemoryLeak", "tensor memory was not completely deallocated when a kernel exited"},
	NotPermitted:                   {"cudaErrorNotPermitted", "operation not permitted"},
	NotSupported:                   {"cudaErrorNotSupported", "operation not supported"},
	SystemNotReady:                 {"cudaErrorSystemNotReady", "system not yet initialized"},
	SystemDriverMismatch:           {"cudaErrorSystemDriverMismatch", "system has unsupported display driver / cuda driver combination"},
	CompatNotSupportedOnDevice:     {"cudaErrorCompatNotSupportedOnDevice", "forward compatibility was attempted on non supported HW"},
	MpsConnectionFailed:            {"cudaErrorMpsConnectionFailed", "MPS client failed to connect to the MPS control daemon or the MPS server"},
	MpsRpcFailure:                  {"cudaErrorMpsRpcFailure", "the remote procedural call between the MPS server and the MPS client failed"},
	MpsServerNotReady:              {"cudaErrorMpsServerNotReady", "MPS server is not ready to accept new MPS client requests"},
	MpsMaxClientsReached:           {"cudaErrorMpsMaxClientsReached", "the hardware resources required to create MPS client have been exhausted"},
	MpsMaxConnectionsReached:       {"cudaErrorMpsMaxConnectionsReached", "the hardware resources required to support device connections have been exhausted"},
	MpsClientTerminated:            {"cudaErrorMpsClientTerminated", "the MPS client has been terminated by the server"},
	CdpNotSupported:                {"cudaErrorCdpNotSupported", "CUDA Dynamic Parallelism is not supported in this configuration"},
	CdpVersionMismatch:             {"cudaErrorCdpVersionMismatch", "unsupported interaction between different versions of CUDA Dynamic Parallelism"},
	StreamCaptureUnsupported:       {"cudaErrorStreamCaptureUnsupported", "operation not permitted when stream is capturing"},
	StreamCaptureInvalidated:       {"cudaErrorStreamCaptureInvalidated", "operation failed due to a previous error during capture"},
	StreamCaptureMerge:             {"cudaErrorStreamCaptureMerge", "operation would result in a merge of separate capture sequences"},
	StreamCaptureUnmatched:         {"cudaErrorStreamCaptureUnmatched", "capture was not ended in the same stream as it began"},
	StreamCaptureUnjoined:          {"cudaErrorStreamCaptureUnjoined", "capturing stream has unjoined work"},
	StreamCaptureIsolation:         {"cudaErrorStreamCaptureIsolation", "dependency created on uncaptured work in another stream"},
	StreamCaptureImplicit:          {"cudaErrorStreamCaptureImplicit", "operation would make the legacy stream depend on a capturing blocking stream"},
	CapturedEvent:                  {"cudaErrorCapturedEvent", "operation not permitted on an event last recorded in a capturing stream"},
	StreamCaptureWrongThread:       {"cudaErrorStreamCaptureWrongThread", "attempt to terminate a thread-local capture sequence from another thread"},
	Timeout:                        {"cudaErrorTimeout", "wait operation timed out"},
	GraphExecUpdateFailure:         {"cudaErrorGraphExecUpdateFailure", "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update"},
	ExternalDevice:                 {"cudaErrorExternalDevice", "an async error has occured in external entity outside of CUDA"},
	InvalidClusterSize:             {"cudaErrorInvalidClusterSize", "a kernel launch error has occurred due to cluster misconfiguration"},
	FunctionNotLoaded:              {"cudaErrorFunctionNotLoaded", "function handle is not loaded"},
	InvalidResourceType:            {"cudaErrorInvalidResourceType", "invalid resource type for the operation"},
	InvalidResourceConfiguration:   {"cudaErrorInvalidResourceConfiguration", "invalid resource configuration for the operation"},
	StreamDetached:                 {"cudaErrorStreamDetached", "operation not permitted because the stream is detached"},
	GraphRecaptureFailure:          {"cudaErrorGraphRecaptureFailure", "a graph recapture failed and had to be terminated"},
	Unknown:                        {"cudaErrorUnknown", "unknown error"},
	ApiFailureBase:                 {"cudaErrorApiFailureBase", "api failure base"},
}
