// Package core is the CUDA runtime and driver API of an xgpu client process
// in Go: everything libcudart.so.13 and libcuda.so.1 serve except the C ABI
// and the per-thread state, which live in runtime/cudart and its C
// facades.
//
// # Usage
//
//	s := core.New(func() (core.Config, error) { return core.ConfigFromEnv(os.LookupEnv) })
//	n, err := s.DeviceCount()                  // opens the sessions on first use
//	p, err := s.Malloc(dev, size)
//	err = s.Memcpy(dst, src, n, core.Default, dev, stream, async)
//	h, err := s.StreamCreate(dev, 0, 0)        // an integer handle for C
//	mod, err := s.RegisterFatbin(container)    // at nvcc's registration
//	err = s.RegisterFunction(mod, hostStub, "_Z5axpbyPKfS0_Pf6Coeffsim", namePtr)
//	k, err := s.Kernel(hostStub)
//	err = s.Launch(k, dev, grid, block, shmem, stream, argv)
//	m, err := s.ModuleLoad(dev, image)         // cuModuleLoadData: loaded at once
//	f, err := s.ModuleFunction(m, "kernel")
//	err = s.FunctionLaunch(f, grid, block, shmem, stream, argv, nil, 0)
//	code := core.Code(err)                     // the cudaError_t for C
//
// The configuration is read, and the client's sessions opened, at the
// first call that needs a device; a failure is final, as a CUDA runtime
// that failed to initialize stays failed. Streams, events, modules and
// kernels are integer handles (never 0, 1 or 2, CUDA's special stream
// values). Fat binaries are recorded at registration and uploaded to a
// server at the first launch of one of their kernels on it; each kernel's
// parameter layout is learned then and kept, so that later launches pack
// their arguments with no round trip.
//
// Device attributes come from a profile measured on an H200 with the
// device map's facts (name, compute capability, SM count, PCI location,
// memory quota) put in; docs/cuda-shim.md says what that means for other
// GPUs.
//
// # Concurrency
//
// A Shim is safe for use by many goroutines (C threads) at once; calls of
// one thread reach each server in program order.
package core
