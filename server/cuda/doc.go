// Package cuda runs xgpu's devices on NVIDIA GPUs: a binding of the CUDA
// driver API (libcuda.so.1, loaded with dlopen) and the cuda implementation
// of backend.Backend built on it.
//
// # The driver binding
//
// Only the prototypes and types used are declared (cudadrv.h), so the
// package builds on machines with no CUDA toolkit and no driver. Open loads
// the library and resolves every entry point with dlsym, taking the
// versioned export where the driver has one (cuMemcpyHtoDAsync_v2,
// cuStreamDestroy_v2, cuEventElapsedTime_v2, ...); a missing library or
// entry point is a *LoadError. Driver's methods are thin wrappers with Go
// types (Device, Context, Stream, Event, Module, Function, DevicePtr); a
// failed call returns its CUresult as a Result, an error whose table of
// names and descriptions works without the library and which converts to
// the runtime's cudaerr.Error (errors.As, cudaerr.Code). Handles cross to C
// as integers and no Go pointer is kept by C: cuLaunchHostFunc gets an
// integer id into a table of Go functions, and kernel arguments go as one
// packed buffer (CU_LAUNCH_PARAM_BUFFER_POINTER) that the driver copies.
//
//	drv, err := cuda.Open("")      // libcuda.so.1
//	err = drv.Init()
//	dev, err := drv.DeviceGet(0)
//	name, err := drv.DeviceName(dev)
//
// A build without cgo compiles too: Open and New return ErrNoCgo.
//
// # Threads
//
// CUDA keeps the current context per OS thread. Each physical device gets
// one Executor: a goroutine locked to its OS thread, on which the device's
// primary context is made current once, and which runs every
// context-bound driver call for the device in submission order. Calls that
// only wait (stream, event and context synchronization, which may block for
// as long as kernels run) run on other goroutines that lock their thread
// and set the context current for the wait, so that a wait never holds up
// the device's other calls and can be abandoned when its context.Context
// is done.
//
// # The backend
//
//	b, err := cuda.New(cuda.Config{Links: linksFromNVML})
//	dev, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: 0x1000_0000_0000, WindowSize: 256 << 30})
//	p, err := dev.Malloc(1 << 20)
//	err = dev.MemcpyHtoDAsync(p, data, backend.LegacyStream)
//	err = dev.StreamSynchronize(ctx, backend.LegacyStream)
//	// kernels (backend.Kernels): LoadModule, Function, FuncParams, LaunchKernel
//	// cooperative launches (backend.CooperativeLauncher): LaunchCooperativeKernel,
//	// with cuLaunchCooperativeKernel where the driver has it
//	// reductions (backend.Reducer): Reduce, Divide
//	// attributes (backend.Attributes): DeviceAttributes, every
//	// cuDeviceGetAttribute value of the GPU, read once per GPU
//
// Open reserves the Device's whole address window at spec.WindowBase with
// cuMemAddressReserve and fails if the driver places it elsewhere, so that
// device pointers are the same cluster-wide. Allocations are mapped inside
// it with cuMemCreate, cuMemMap and cuMemSetAccess (read-write for the
// device and every peer that can access it): granule-aligned, one physical
// allocation each, from half a granule up; smaller ones packed into shared
// granules (see arena.go). All Devices on one physical device share its
// primary context, so a context lost to a sticky error (an illegal address
// in a kernel) is lost for all of them; the context is released when the
// last of them closes.
//
// When a GPU starts, its context loads the element-wise kernels the
// collectives use (kernels/reduce.cu, embedded as PTX that `make
// generate-ptx` makes on a machine with the CUDA toolkit; the driver
// compiles it for the GPU and caches the result): Reduce and Divide run
// them. A GPU whose driver cannot load them still serves everything else;
// ReducerErr says why.
//
// Work that only queues (copies, memsets, event records and waits, host
// functions, launches) is checked at once and handed to the Executor
// without waiting for it; an error the driver reports while issuing it is
// returned by the Device's next synchronizing or querying call, as CUDA
// reports asynchronous errors. Host-device copies stage through pinned host
// memory (staging.go) in stream order: a host function copies the source
// of a host-to-device copy when the stream reaches it, as backend.Device
// requires (the worker fills payloads that arrive over the network after
// it queued their copy); host functions run on their own goroutines while
// their stream waits on a word of pinned memory (cuStreamWaitValue32), so
// that one slow host function does not hold up the others (hostfunc in
// device.go). Free synchronizes the context first, as cudaFree does.
//
// # Concurrency
//
// Driver, Backend and DeviceContext are safe for concurrent use. Executor's
// Go and Do are too; Close must not be called from a function running on
// the Executor.
package cuda
