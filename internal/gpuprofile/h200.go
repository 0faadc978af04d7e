// Package gpuprofile holds what real GPUs reported about themselves, for
// the places that must answer like one without asking it: the host
// backend, which emulates an H200, and the CUDA shim's fallback for a
// server that does not report its GPUs' attributes. Both read the one
// table here.
package gpuprofile

import "maps"

// H200 returns (a copy of) every CUdevice_attribute value
// cuDeviceGetAttribute gave for device 0 of a 4 x H200 machine (driver
// 580.159.04, CUDA 13.0) on 2026-11-28 (examples/cuda/device_query
// --attrs), including the few values it answers for numbers CUDA 13's
// enum no longer names. Attributes it refused are absent. The runtime
// API's cudaDeviceAttr numbers are the same.
func H200() map[int]int32 { return maps.Clone(h200) }

var h200 = map[int]int32{
	1:   1024,       // cudaDevAttrMaxThreadsPerBlock
	2:   1024,       // cudaDevAttrMaxBlockDimX
	3:   1024,       // cudaDevAttrMaxBlockDimY
	4:   64,         // cudaDevAttrMaxBlockDimZ
	5:   2147483647, // cudaDevAttrMaxGridDimX
	6:   65535,      // cudaDevAttrMaxGridDimY
	7:   65535,      // cudaDevAttrMaxGridDimZ
	8:   49152,      // cudaDevAttrMaxSharedMemoryPerBlock
	9:   65536,      // cudaDevAttrTotalConstantMemory
	10:  32,         // cudaDevAttrWarpSize
	11:  2147483647, // cudaDevAttrMaxPitch
	12:  65536,      // cudaDevAttrMaxRegistersPerBlock
	13:  1980000,    // cudaDevAttrClockRate
	14:  512,        // cudaDevAttrTextureAlignment
	15:  1,          // cudaDevAttrGpuOverlap
	16:  132,        // cudaDevAttrMultiProcessorCount
	17:  0,          // cudaDevAttrKernelExecTimeout
	18:  0,          // cudaDevAttrIntegrated
	19:  1,          // cudaDevAttrCanMapHostMemory
	20:  0,          // cudaDevAttrComputeMode
	21:  131072,     // cudaDevAttrMaxTexture1DWidth
	22:  131072,     // cudaDevAttrMaxTexture2DWidth
	23:  65536,      // cudaDevAttrMaxTexture2DHeight
	24:  16384,      // cudaDevAttrMaxTexture3DWidth
	25:  16384,      // cudaDevAttrMaxTexture3DHeight
	26:  16384,      // cudaDevAttrMaxTexture3DDepth
	27:  32768,      // cudaDevAttrMaxTexture2DLayeredWidth
	28:  32768,      // cudaDevAttrMaxTexture2DLayeredHeight
	29:  2048,       // cudaDevAttrMaxTexture2DLayeredLayers
	30:  512,        // cudaDevAttrSurfaceAlignment
	31:  1,          // cudaDevAttrConcurrentKernels
	32:  1,          // cudaDevAttrEccEnabled
	33:  0,          // cudaDevAttrPciBusId
	34:  6,          // cudaDevAttrPciDeviceId
	35:  0,          // cudaDevAttrTccDriver
	36:  3201000,    // cudaDevAttrMemoryClockRate
	37:  6016,       // cudaDevAttrGlobalMemoryBusWidth
	38:  62914560,   // cudaDevAttrL2CacheSize
	39:  2048,       // cudaDevAttrMaxThreadsPerMultiProcessor
	40:  3,          // cudaDevAttrAsyncEngineCount
	41:  1,          // cudaDevAttrUnifiedAddressing
	42:  32768,      // cudaDevAttrMaxTexture1DLayeredWidth
	43:  2048,       // cudaDevAttrMaxTexture1DLayeredLayers
	44:  1,          // (not in the CUDA 13 enum)
	45:  32768,      // cudaDevAttrMaxTexture2DGatherWidth
	46:  32768,      // cudaDevAttrMaxTexture2DGatherHeight
	47:  8192,       // cudaDevAttrMaxTexture3DWidthAlt
	48:  8192,       // cudaDevAttrMaxTexture3DHeightAlt
	49:  32768,      // cudaDevAttrMaxTexture3DDepthAlt
	50:  0,          // cudaDevAttrPciDomainId
	51:  32,         // cudaDevAttrTexturePitchAlignment
	52:  32768,      // cudaDevAttrMaxTextureCubemapWidth
	53:  32768,      // cudaDevAttrMaxTextureCubemapLayeredWidth
	54:  2046,       // cudaDevAttrMaxTextureCubemapLayeredLayers
	55:  32768,      // cudaDevAttrMaxSurface1DWidth
	56:  131072,     // cudaDevAttrMaxSurface2DWidth
	57:  65536,      // cudaDevAttrMaxSurface2DHeight
	58:  16384,      // cudaDevAttrMaxSurface3DWidth
	59:  16384,      // cudaDevAttrMaxSurface3DHeight
	60:  16384,      // cudaDevAttrMaxSurface3DDepth
	61:  32768,      // cudaDevAttrMaxSurface1DLayeredWidth
	62:  2048,       // cudaDevAttrMaxSurface1DLayeredLayers
	63:  32768,      // cudaDevAttrMaxSurface2DLayeredWidth
	64:  32768,      // cudaDevAttrMaxSurface2DLayeredHeight
	65:  2048,       // cudaDevAttrMaxSurface2DLayeredLayers
	66:  32768,      // cudaDevAttrMaxSurfaceCubemapWidth
	67:  32768,      // cudaDevAttrMaxSurfaceCubemapLayeredWidth
	68:  2046,       // cudaDevAttrMaxSurfaceCubemapLayeredLayers
	69:  268435456,  // cudaDevAttrMaxTexture1DLinearWidth
	70:  131072,     // cudaDevAttrMaxTexture2DLinearWidth
	71:  65000,      // cudaDevAttrMaxTexture2DLinearHeight
	72:  2097120,    // cudaDevAttrMaxTexture2DLinearPitch
	73:  32768,      // cudaDevAttrMaxTexture2DMipmappedWidth
	74:  32768,      // cudaDevAttrMaxTexture2DMipmappedHeight
	75:  9,          // cudaDevAttrComputeCapabilityMajor
	76:  0,          // cudaDevAttrComputeCapabilityMinor
	77:  32768,      // cudaDevAttrMaxTexture1DMipmappedWidth
	78:  1,          // cudaDevAttrStreamPrioritiesSupported
	79:  1,          // cudaDevAttrGlobalL1CacheSupported
	80:  1,          // cudaDevAttrLocalL1CacheSupported
	81:  233472,     // cudaDevAttrMaxSharedMemoryPerMultiprocessor
	82:  65536,      // cudaDevAttrMaxRegistersPerMultiprocessor
	83:  1,          // cudaDevAttrManagedMemory
	84:  0,          // cudaDevAttrIsMultiGpuBoard
	85:  0,          // cudaDevAttrMultiGpuBoardGroupID
	86:  0,          // cudaDevAttrHostNativeAtomicSupported
	87:  2,          // cudaDevAttrSingleToDoublePrecisionPerfRatio
	88:  0,          // cudaDevAttrPageableMemoryAccess
	89:  1,          // cudaDevAttrConcurrentManagedAccess
	90:  1,          // cudaDevAttrComputePreemptionSupported
	91:  1,          // cudaDevAttrCanUseHostPointerForRegisteredMem
	92:  0,          // cudaDevAttrReserved92
	93:  0,          // cudaDevAttrReserved93
	94:  0,          // cudaDevAttrReserved94
	95:  1,          // cudaDevAttrCooperativeLaunch
	96:  1,          // cudaDevAttrReserved96
	97:  232448,     // cudaDevAttrMaxSharedMemoryPerBlockOptin
	98:  0,          // cudaDevAttrCanFlushRemoteWrites
	99:  1,          // cudaDevAttrHostRegisterSupported
	100: 0,          // cudaDevAttrPageableMemoryAccessUsesHostPageTables
	101: 0,          // cudaDevAttrDirectManagedMemAccessFromHost
	102: 1,          // (not in the CUDA 13 enum)
	103: 1,          // (not in the CUDA 13 enum)
	104: 0,          // (not in the CUDA 13 enum)
	105: 0,          // (not in the CUDA 13 enum)
	106: 32,         // cudaDevAttrMaxBlocksPerMultiprocessor
	107: 1,          // (not in the CUDA 13 enum)
	108: 39321600,   // cudaDevAttrMaxPersistingL2CacheSize
	109: 134217728,  // cudaDevAttrMaxAccessPolicyWindowSize
	110: 1,          // (not in the CUDA 13 enum)
	111: 1024,       // cudaDevAttrReservedSharedMemoryPerBlock
	112: 1,          // cudaDevAttrSparseCudaArraySupported
	113: 1,          // cudaDevAttrHostRegisterReadOnlySupported
	114: 1,          // cudaDevAttrTimelineSemaphoreInteropSupported
	115: 1,          // cudaDevAttrMemoryPoolsSupported
	116: 1,          // cudaDevAttrGPUDirectRDMASupported
	117: 1,          // cudaDevAttrGPUDirectRDMAFlushWritesOptions
	118: 100,        // cudaDevAttrGPUDirectRDMAWritesOrdering
	119: 9,          // cudaDevAttrMemoryPoolSupportedHandleTypes
	120: 1,          // cudaDevAttrClusterLaunch
	121: 1,          // cudaDevAttrDeferredMappingCudaArraySupported
	122: 1,          // cudaDevAttrReserved122
	123: 1,          // cudaDevAttrReserved123
	124: 1,          // cudaDevAttrReserved124
	125: 1,          // cudaDevAttrIpcEventSupport
	126: 4,          // cudaDevAttrMemSyncDomainCount
	127: 1,          // cudaDevAttrReserved127
	128: 1,          // cudaDevAttrReserved128
	129: 1,          // cudaDevAttrReserved129
	130: 0,          // cudaDevAttrNumaConfig
	131: -1,         // cudaDevAttrNumaId
	132: 1,          // cudaDevAttrReserved132
	133: 0,          // cudaDevAttrMpsEnabled
	134: 0,          // cudaDevAttrHostNumaId
	135: 0,          // cudaDevAttrD3D12CigSupported
	136: 0,          // (not in the CUDA 13 enum)
	137: 0,          // (not in the CUDA 13 enum)
	138: 0,          // cudaDevAttrVulkanCigSupported
	139: 590680286,  // cudaDevAttrGpuPciDeviceId
	140: 415174878,  // cudaDevAttrGpuPciSubsystemId
	141: 1,          // cudaDevAttrReserved141
	142: 1,          // cudaDevAttrHostNumaMemoryPoolsSupported
	143: 0,          // cudaDevAttrHostNumaMultinodeIpcSupported
	144: 1,          // cudaDevAttrHostMemoryPoolsSupported
	145: 1,          // cudaDevAttrReserved145
	146: 0,          // (not in the CUDA 13 enum)
	147: 0,          // cudaDevAttrOnlyPartialHostNativeAtomicSupported
}
