package core

import "github.com/xgpu/xgpu/internal/gpuprofile"

// fallbackH200 is what the shim reports for the devices of a server that
// does not report its GPUs' attributes (one that predates
// OpDeviceGetAttributes; see Shim.Device): every cudaDeviceAttr value
// cudaDeviceGetAttribute gave for device 0 of a 4 x H200 machine (driver
// 580.159.04, CUDA 13.0) on 2026-11-28 (examples/cuda/device_query
// --attrs), including the few values it answers for numbers CUDA 13's enum
// no longer names. Attributes it refused are absent. The host backend
// emulates the same GPU from the same table (internal/gpuprofile).
var fallbackH200 = func() map[int]int {
	m := make(map[int]int)
	for a, v := range gpuprofile.H200() {
		m[a] = int(v)
	}
	return m
}()
