// Package cudarttest holds the tests that drive the libcudart.so.13 shim
// from C, as an unmodified CUDA program does: they build libxgpu.so and
// the facade with runtime/cudart/build.sh, compile C programs from
// testdata against the facade (never NVIDIA's library), start an xgpu
// server on the host backend in the test process, and run the programs
// with a device map. The package has no non-test code: Go test files
// cannot import "C", and the shim must not link package testing.
package cudarttest
