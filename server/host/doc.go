// Package host is the backend that emulates GPUs in host memory: devices,
// allocations at device addresses, streams, events and CUDA's errors, so
// that xgpu runs, and its tests run, on machines without a GPU.
//
//	b, err := host.New(host.Config{Devices: 4, Memory: 16 << 30, NVLinks: 18, HostID: "node-7"})
//	dev, err := b.Open(backend.DeviceSpec{Index: 0, WindowBase: 0x1000_0000_0000, WindowSize: 1 << 38})
//	p, err := dev.Malloc(1 << 20)
//	err = dev.MemsetD32Async(p, 0x3f800000, 1<<18, backend.LegacyStream)
//	err = dev.MemcpyDtoHAsync(out, p, backend.LegacyStream)
//	err = dev.StreamSynchronize(ctx, backend.LegacyStream)
//
// It cannot run GPU code: its kernels are a small built-in library of Go
// functions that a text module image names (see ModuleImage), enough to
// test the whole launch path, faults included; an image of real GPU code
// fails to load with cudaErrorNoKernelImageForDevice. Cooperative launches
// (backend.CooperativeLauncher) run as ordinary ones, since the library's
// kernels never wait for other blocks, after CUDA's residency check
// (Device.MaxCooperativeBlocks). It runs every memory operation, and the
// collectives' reductions (backend.Reducer), for real.
//
// Its devices answer the attributes of the GPU they emulate
// (backend.Attributes): those an H200 reported (H200Attributes), with the
// Config's SM count and compute capability and each device's PCI location
// put in.
//
// # Memory
//
// An allocation is a Go byte slice standing for a range of the Device's
// address window; no memory is mapped at that address. Allocations are
// placed first fit, 256-byte aligned, and made when Malloc is called, so a
// Backend's nominal memory costs nothing until it is allocated. A sorted
// index, replaced on every Malloc and Free and read without locks, resolves
// device pointers; copies and memsets resolve theirs when enqueued, so a
// range outside the allocations fails the call and touches nothing. Free
// does not wait for queued work: that work holds the memory it resolved and
// completes as though it were still allocated.
//
// # Streams and events
//
// Each stream is a bounded queue (256 operations; an enqueue on a full one
// waits) run in order by its own goroutine. The legacy default stream
// (backend.LegacyStream) synchronizes with the blocking streams as CUDA's
// does: an operation enqueued on it waits for everything enqueued before on
// every blocking stream, and an operation enqueued on a blocking stream
// waits for everything enqueued before on the legacy stream; streams created
// with backend.StreamNonBlocking are independent of it. Enqueues on the
// legacy and blocking streams of a Device are serialized by one lock per
// Device, which keeps these implicit dependencies acyclic; a non-blocking
// stream has a lock of its own. An event record is an operation of its
// stream that takes a timestamp from the monotonic clock when it runs;
// StreamWaitEvent queues a wait for the record current at the call,
// also for events of another Device of the same Backend. Stream priorities
// are accepted and clamped but do not change scheduling.
//
// Host functions run on the stream's goroutine. The host backend never
// faults on its own; InjectFault puts a Device in the state a GPU context is
// in after a sticky error, for testing the layers above.
//
// Backend and Device are safe for concurrent use. There is no lock shared by
// the Devices on the paths that enqueue work.
package host
