package main

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

// curesult is one value of the driver API's CUresult (CUDA 13's cuda.h)
// with what cuGetErrorString says of it: desc, or, where desc is empty,
// the description of the runtime's cudaError_t of the same value (CUDA
// numbers the two alike wherever both have a status).
type curesult struct {
	value int32
	name  string
	desc  string
}

var curesults = []curesult{
	{0, "CUDA_SUCCESS", ""},
	{1, "CUDA_ERROR_INVALID_VALUE", ""},
	{2, "CUDA_ERROR_OUT_OF_MEMORY", ""},
	{3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{4, "CUDA_ERROR_DEINITIALIZED", ""},
	{5, "CUDA_ERROR_PROFILER_DISABLED", ""},
	{6, "CUDA_ERROR_PROFILER_NOT_INITIALIZED", "profiler not initialized"},
	{7, "CUDA_ERROR_PROFILER_ALREADY_STARTED", ""},
	{8, "CUDA_ERROR_PROFILER_ALREADY_STOPPED", ""},
	{34, "CUDA_ERROR_STUB_LIBRARY", ""},
	{36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", ""},
	{46, "CUDA_ERROR_DEVICE_UNAVAILABLE", ""},
	{100, "CUDA_ERROR_NO_DEVICE", ""},
	{101, "CUDA_ERROR_INVALID_DEVICE", ""},
	{102, "CUDA_ERROR_DEVICE_NOT_LICENSED", ""},
	{200, "CUDA_ERROR_INVALID_IMAGE", ""},
	{201, "CUDA_ERROR_INVALID_CONTEXT", ""},
	{202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT", "context already current"},
	{205, "CUDA_ERROR_MAP_FAILED", ""},
	{206, "CUDA_ERROR_UNMAP_FAILED", ""},
	{207, "CUDA_ERROR_ARRAY_IS_MAPPED", ""},
	{208, "CUDA_ERROR_ALREADY_MAPPED", ""},
	{209, "CUDA_ERROR_NO_BINARY_FOR_GPU", ""},
	{210, "CUDA_ERROR_ALREADY_ACQUIRED", ""},
	{211, "CUDA_ERROR_NOT_MAPPED", ""},
	{212, "CUDA_ERROR_NOT_MAPPED_AS_ARRAY", ""},
	{213, "CUDA_ERROR_NOT_MAPPED_AS_POINTER", ""},
	{214, "CUDA_ERROR_ECC_UNCORRECTABLE", ""},
	{215, "CUDA_ERROR_UNSUPPORTED_LIMIT", ""},
	{216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE", ""},
	{217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", ""},
	{218, "CUDA_ERROR_INVALID_PTX", ""},
	{219, "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT", ""},
	{220, "CUDA_ERROR_NVLINK_UNCORRECTABLE", ""},
	{221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", ""},
	{222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", ""},
	{223, "CUDA_ERROR_JIT_COMPILATION_DISABLED", ""},
	{224, "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY", ""},
	{225, "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC", ""},
	{226, "CUDA_ERROR_CONTAINED", ""},
	{300, "CUDA_ERROR_INVALID_SOURCE", ""},
	{301, "CUDA_ERROR_FILE_NOT_FOUND", ""},
	{302, "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND", ""},
	{303, "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED", ""},
	{304, "CUDA_ERROR_OPERATING_SYSTEM", ""},
	{400, "CUDA_ERROR_INVALID_HANDLE", ""},
	{401, "CUDA_ERROR_ILLEGAL_STATE", ""},
	{402, "CUDA_ERROR_LOSSY_QUERY", ""},
	{500, "CUDA_ERROR_NOT_FOUND", ""},
	{600, "CUDA_ERROR_NOT_READY", ""},
	{700, "CUDA_ERROR_ILLEGAL_ADDRESS", ""},
	{701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", ""},
	{702, "CUDA_ERROR_LAUNCH_TIMEOUT", ""},
	{703, "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING", ""},
	{704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", ""},
	{705, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED", ""},
	{708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", ""},
	{709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", ""},
	{710, "CUDA_ERROR_ASSERT", ""},
	{711, "CUDA_ERROR_TOO_MANY_PEERS", ""},
	{712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", ""},
	{713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", ""},
	{714, "CUDA_ERROR_HARDWARE_STACK_ERROR", ""},
	{715, "CUDA_ERROR_ILLEGAL_INSTRUCTION", ""},
	{716, "CUDA_ERROR_MISALIGNED_ADDRESS", ""},
	{717, "CUDA_ERROR_INVALID_ADDRESS_SPACE", ""},
	{718, "CUDA_ERROR_INVALID_PC", ""},
	{719, "CUDA_ERROR_LAUNCH_FAILED", ""},
	{720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE", ""},
	{721, "CUDA_ERROR_TENSOR_MEMORY_LEAK", ""},
	{800, "CUDA_ERROR_NOT_PERMITTED", ""},
	{801, "CUDA_ERROR_NOT_SUPPORTED", ""},
	{802, "CUDA_ERROR_SYSTEM_NOT_READY", ""},
	{803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", ""},
	{804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", ""},
	{805, "CUDA_ERROR_MPS_CONNECTION_FAILED", ""},
	{806, "CUDA_ERROR_MPS_RPC_FAILURE", ""},
	{807, "CUDA_ERROR_MPS_SERVER_NOT_READY", ""},
	{808, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED", ""},
	{809, "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED", ""},
	{810, "CUDA_ERROR_MPS_CLIENT_TERMINATED", ""},
	{811, "CUDA_ERROR_CDP_NOT_SUPPORTED", ""},
	{812, "CUDA_ERROR_CDP_VERSION_MISMATCH", ""},
	{900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", ""},
	{901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", ""},
	{902, "CUDA_ERROR_STREAM_CAPTURE_MERGE", ""},
	{903, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", ""},
	{904, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED", ""},
	{905, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION", ""},
	{906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", ""},
	{907, "CUDA_ERROR_CAPTURED_EVENT", ""},
	{908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", ""},
	{909, "CUDA_ERROR_TIMEOUT", ""},
	{910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE", ""},
	{911, "CUDA_ERROR_EXTERNAL_DEVICE", ""},
	{912, "CUDA_ERROR_INVALID_CLUSTER_SIZE", ""},
	{913, "CUDA_ERROR_FUNCTION_NOT_LOADED", ""},
	{914, "CUDA_ERROR_INVALID_RESOURCE_TYPE", ""},
	{915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION", ""},
	{916, "CUDA_ERROR_KEY_ROTATION", "key rotation failed"},
	{999, "CUDA_ERROR_UNKNOWN", ""},
}

// driverErrorTables returns the CUresult enum and cuGetErrorName and
// cuGetErrorString, which fail with CUDA_ERROR_INVALID_VALUE for a value
// outside the enum, as the driver's do.
func driverErrorTables() (h, c []byte) {
	var hb, cb bytes.Buffer
	fmt.Fprintf(&hb, header, "runtime/cudart/gen/curesult.go")
	hb.WriteString("#ifndef XGPU_ZZ_GENERATED_DRIVER_ERRORS_H\n#define XGPU_ZZ_GENERATED_DRIVER_ERRORS_H\n\n/* The values of CUresult in the CUDA 13 driver API. */\nenum {\n")
	for _, r := range curesults {
		fmt.Fprintf(&hb, "  %s = %d,\n", r.name, r.value)
	}
	hb.WriteString("};\n\n#endif\n")

	fmt.Fprintf(&cb, header, "runtime/cudart/gen/curesult.go")
	cb.WriteString("#include \"driver.h\"\n\n")
	cb.WriteString("XGPU_EXPORT CUresult cuGetErrorName(CUresult e, const char **s) {\n  if (!s) return CUDA_ERROR_INVALID_VALUE;\n  switch (e) {\n")
	for _, r := range curesults {
		fmt.Fprintf(&cb, "    case %d: *s = %s; return CUDA_SUCCESS;\n", r.value, strconv.Quote(r.name))
	}
	cb.WriteString("  }\n  *s = NULL;\n  return CUDA_ERROR_INVALID_VALUE;\n}\n\n")
	cb.WriteString("XGPU_EXPORT CUresult cuGetErrorString(CUresult e, const char **s) {\n  if (!s) return CUDA_ERROR_INVALID_VALUE;\n  switch (e) {\n")
	for _, r := range curesults {
		fmt.Fprintf(&cb, "    case %d: *s = %s; return CUDA_SUCCESS;\n", r.value, strconv.Quote(r.description()))
	}
	cb.WriteString("  }\n  *s = NULL;\n  return CUDA_ERROR_INVALID_VALUE;\n}\n")
	return hb.Bytes(), cb.Bytes()
}

func (r curesult) description() string {
	if r.desc != "" {
		return r.desc
	}
	return cudaerr.Error(r.value).Description()
}

// versionTable is zz_generated_versions.c: the entry points with a
// version, sorted by name, for cuGetProcAddress.
func versionTable(lib library, names []name) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, header, lib.names)
	fmt.Fprintf(&b, "/* The versioned entry points of %s and the CUDA version that introduced\n * each, sorted by name. */\n#include %q\n\n", lib.soname, lib.header)
	b.WriteString("const struct drv_versioned drv_versioned[] = {\n")
	n := 0
	for _, nm := range names {
		if nm.version != 0 {
			fmt.Fprintf(&b, "    {%q, %d},\n", nm.name, nm.version)
			n++
		}
	}
	if n == 0 {
		b.WriteString("    {\"\", 0},\n")
	}
	fmt.Fprintf(&b, "};\n\nconst int drv_nversioned = %d;\n", n)
	return b.Bytes()
}
