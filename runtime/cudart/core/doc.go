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
//	err = s.LaunchEx(k, dev, grid, block, shmem, stream, argv, core.LaunchCooperative) // cudaLaunchCooperativeKernel
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
// Device attributes are those of the GPU under each device, as its
// server's driver reports them, asked at the first call that needs them
// (cudaGetDeviceProperties, cudaDeviceGetAttribute) and kept; the device
// map's facts (name, UUID, PCI location, memory quota, board group) are
// put in. A server too old to report them gets an H200's attributes and a
// warning; docs/cuda-shim.md says more.
//
// Graphs, stream capture and memory pools are client-side: a capture turns
// the asynchronous calls queued on a capturing stream into nodes of a
// graph; an executable graph replays its nodes on a stream in a
// topological order; a pool hands out and takes back blocks of device
// memory in stream order (docs/cuda-shim.md, "Graphs and memory pools").
//
//	err = s.BeginCapture(dev, stream, core.CaptureModeGlobal, thread, 0, nil)
//	err = s.Launch(k, dev, grid, block, shmem, stream, argv) // becomes a node
//	g, err := s.EndCapture(stream, thread)
//	x, err := s.GraphInstantiate(g, 0)
//	err = s.GraphLaunch(x, dev, stream)
//	p, err := s.MallocAsync(dev, 0, size, stream)            // the device's current pool
//
// # Concurrency
//
// A Shim is safe for use by many goroutines (C threads) at once; calls of
// one thread reach each server in program order.
package core
