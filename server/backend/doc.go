// Package backend defines the interface through which a worker executes
// CUDA calls on a GPU host's devices, so that nothing above it (worker,
// peers, collectives) knows whether it talks to real GPUs (server/cuda, the
// driver API) or to emulated devices in host memory (server/host).
//
// The model is the CUDA driver API's: a Backend lists the host's physical
// devices and opens Devices on them; a Device is one context (one vGPU)
// with a memory quota and a fixed virtual-address window, and owns its
// allocations, streams and events. Asynchronous operations are enqueued on
// streams and run in stream order; events order work across streams and
// devices and time it. Errors are cudaerr.Error values, wrapped in an
// *OpError that names the operation.
//
//	b, err := host.New(host.Config{Devices: 2}) // or the cuda backend
//	dev, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: 0x1000_0000_0000, WindowSize: 1 << 34})
//	p, err := dev.Malloc(4096)
//	err = dev.MemcpyHtoDAsync(p, payload, backend.LegacyStream)
//	err = dev.LaunchHostFunc(backend.LegacyStream, func() { release(payload) })
//	err = dev.StreamSynchronize(ctx, backend.LegacyStream)
//	if cudaerr.Sticky(cudaerr.Code(err)) { /* the context is lost: close dev */ }
//
// Optional interfaces extend a Device: Kernels (load modules, learn
// kernels' parameter layouts, launch in stream order), CooperativeLauncher
// (launches whose blocks are all resident at once), Reducer (element-wise
// reductions for the collectives) and Attributes (the
// physical device's cuDeviceGetAttribute values, DeviceAttrs). Both
// backends implement them; callers find them with a type assertion.
//
// Every Backend and Device method is safe for concurrent use by multiple
// goroutines. Package backendtest holds the conformance suite every
// implementation runs.
package backend
