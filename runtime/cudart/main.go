// Command cudart is libxgpu.so, the one Go runtime of an xgpu client
// process, built with
//
//	go build -buildmode=c-shared -o libxgpu.so ./runtime/cudart
//
// It exports the small C ABI of include/xgpu.h (integer handles; no Go
// pointer ever crosses to C) over package runtime/cudart/core, and, in
// plain C (state.c), the state the facades share: each thread's current
// device and context, the primary contexts, the device descriptions. The
// CUDA libraries an application loads are thin generated C facades over
// that ABI: facade/ builds libcudart.so.13 and driver/ libcuda.so.1
// (`make shim` builds all three). The facades keep the rest of CUDA's
// per-thread state (last error, launch configurations) in C thread-locals
// and call in here for everything else.
//
// Applications run unmodified with the three libraries preloaded:
//
//	LD_PRELOAD=bin/libxgpu.so:bin/libcudart.so.13:bin/libcuda.so.1 XGPU_DEVICE_MAP=map.json ./app
//
// docs/cuda-shim.md lists the configuration variables and what is
// served. Every exported function is safe to call from any thread.
package main

//go:generate go run ./gen -lib cudart -dir facade
//go:generate go run ./gen -lib cuda -dir driver

// main is never called: the package is built as a C shared library.
func main() {}
