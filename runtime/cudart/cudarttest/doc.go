// Package cudarttest holds the tests that drive the CUDA shim
// (libcudart.so.13 and libcuda.so.1) from C, as an unmodified CUDA program
// or framework does: they build libxgpu.so and both facades with
// runtime/cudart/build.sh, compile C programs from testdata against the
// facades (never NVIDIA's libraries), start an xgpu server on the host
// backend in the test process, and run the programs with a device map.
// The package has no non-test code: Go test files cannot import "C", and
// the shim must not link package testing.
package cudarttest
