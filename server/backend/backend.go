package backend

import "context"

// DevicePtr is a device virtual address. Pointers are cluster-wide unique:
// a Device places every allocation inside its DeviceSpec window, so a
// pointer has the same value in the client and on the server and names its
// device.
type DevicePtr uint64

// Stream is a handle to a stream of one Device. The zero value,
// LegacyStream, is the device's legacy default stream. Handles of destroyed
// streams are not reused while the Device is open.
type Stream uint64

// LegacyStream is the legacy default stream (cudaStreamLegacy, the NULL
// stream). It synchronizes with the device's blocking streams: an operation
// enqueued on it waits for all work enqueued earlier on every blocking
// stream of the device, and an operation enqueued on a blocking stream waits
// for all work enqueued earlier on the legacy stream. Streams created with
// StreamNonBlocking take no part in this. The per-thread default stream
// (cudaStreamPerThread) behaves as a blocking stream and is modelled by the
// caller as one stream created with StreamDefault per client thread.
const LegacyStream Stream = 0

// Event is a handle to an event. An event belongs to the Device that created
// it, but StreamWaitEvent accepts an event of any Device opened from the
// same Backend, as cudaStreamWaitEvent accepts an event of another device.
// Handles are never zero and are not reused while the Backend is open.
type Event uint64

// Stream creation flags (CU_STREAM_*, cudaStream*).
const (
	// StreamDefault creates a blocking stream: it synchronizes with the
	// legacy default stream.
	StreamDefault uint32 = 0x0
	// StreamNonBlocking creates a stream that runs independently of the
	// legacy default stream.
	StreamNonBlocking uint32 = 0x1
)

// Stream priorities follow CUDA: lower numbers are higher priorities. A
// priority outside [StreamPriorityGreatest, StreamPriorityLeast] is clamped
// to that range, as cudaStreamCreateWithPriority does. Backends may treat
// priorities as hints (the host backend records them and does not
// schedule by them).
const (
	StreamPriorityLeast    = 0
	StreamPriorityGreatest = -5
)

// Event creation flags (CU_EVENT_*, cudaEvent*).
const (
	// EventDefault creates an event that records timestamps.
	EventDefault uint32 = 0x0
	// EventBlockingSync asks that EventSynchronize block rather than spin.
	EventBlockingSync uint32 = 0x1
	// EventDisableTiming creates an event that records no timestamp:
	// EventElapsedTime on it fails with cudaErrorInvalidResourceHandle.
	EventDisableTiming uint32 = 0x2
	// EventInterprocess marks an event for use across processes; it must be
	// combined with EventDisableTiming.
	EventInterprocess uint32 = 0x4
)

// Alignment is the alignment every pointer Malloc returns has at least, as
// cudaMalloc guarantees.
const Alignment = 256

// WindowAlignment is the alignment required of DeviceSpec.WindowBase and
// WindowSize: the 2 MiB granularity at which the driver's VMM API reserves
// and maps device address space.
const WindowAlignment = 2 << 20

// PeerInfo describes the link from one physical device to another of the
// same host.
type PeerInfo struct {
	// UUID names the peer device, as Info.UUID does.
	UUID string `json:"uuid"`
	// NVLinks is the number of NVLink links between the two devices; 0 when
	// they are not linked by NVLink.
	NVLinks int `json:"nvlinks"`
	// PCIePath is the PCIe relation between the two devices, as
	// `nvidia-smi topo -m` names it: "PIX", "PXB", "PHB", "NODE" or "SYS".
	PCIePath string `json:"pcie_path"`
}

// Info describes one physical device of a Backend.
type Info struct {
	// Name is the device's product name, such as "NVIDIA H200".
	Name string `json:"name"`
	// UUID is the device's stable identity, "GPU-" and a UUID.
	UUID string `json:"uuid"`
	// PCIBusID is the PCI address in NVML's form, "00000000:19:00.0".
	PCIBusID string `json:"pci_bus_id"`
	// ComputeMajor and ComputeMinor are the compute capability.
	ComputeMajor int `json:"compute_major"`
	ComputeMinor int `json:"compute_minor"`
	// Multiprocessors is the number of streaming multiprocessors.
	Multiprocessors int `json:"multiprocessors"`
	// TotalMemory is the device's memory in bytes.
	TotalMemory uint64 `json:"total_memory"`
	// Peers lists every other device of the Backend, in device order.
	Peers []PeerInfo `json:"peers"`
}

// DeviceSpec says what Backend.Open opens: one context (one vGPU) on a
// physical device, with its own address window and memory quota. Several
// Devices may be opened on one physical device; their windows must not
// overlap.
type DeviceSpec struct {
	// Index is the physical device's index in Backend.Devices.
	Index int `json:"index"`
	// WindowBase and WindowSize bound the virtual addresses the Device may
	// hand out: every allocation lies in [WindowBase, WindowBase+WindowSize).
	// Both must be non-zero multiples of WindowAlignment.
	WindowBase uint64 `json:"window_base"`
	WindowSize uint64 `json:"window_size"`
	// MemoryQuota bounds the bytes the Device may hold allocated at once;
	// an allocation counts at its size rounded up to the backend's
	// allocation granularity (Alignment for the host backend). Zero means
	// the whole physical device's memory, or WindowSize if that is smaller.
	// It may not exceed the physical device's memory nor WindowSize.
	MemoryQuota uint64 `json:"memory_quota"`
}

// Backend is a set of physical devices and the way to run work on them.
type Backend interface {
	// Name names the implementation: "host", "cuda".
	Name() string

	// Devices describes the physical devices, in index order.
	Devices() ([]Info, error)

	// Open creates a context on physical device spec.Index. It fails with
	// cudaErrorInvalidDevice for an index out of range and with
	// cudaErrorInvalidValue for a spec that fails DeviceSpec.Validate, a
	// quota larger than the device or the window, or a window that overlaps
	// the window of another open Device of this Backend.
	Open(spec DeviceSpec) (Device, error)

	// Close closes every Device still open (see Device.Close) and releases
	// the Backend. Later calls fail with cudaErrorCudartUnloading.
	Close() error
}

// Device is one open context: allocations, streams and events of one vGPU.
//
// # Errors
//
// Every error is an *OpError wrapping a cudaerr.Error. A call that is given
// bad arguments (a pointer range outside this Device's allocations, a bad
// handle, a misaligned address) fails at once, enqueues nothing and changes
// nothing. Calls on a closed Device fail with cudaErrorContextIsDestroyed.
//
// A fault while executing enqueued work is reported by the next call that
// synchronizes with it or queries it (the Synchronize and Query methods,
// EventElapsedTime), as CUDA reports asynchronous errors. When the fault is
// cudaerr.Sticky the context is lost: every later call except Owns and Close
// returns that error, work still queued is discarded, and host functions
// still queued may not run. The caller closes the Device.
//
// # Ordering
//
// Operations enqueued on one stream run in the order they were enqueued.
// Operations on different streams may run concurrently and in any order
// unless ordered by events (EventRecord, StreamWaitEvent) or by the legacy
// stream's implicit synchronization (see LegacyStream). Two calls made
// concurrently from different goroutines on the same stream are enqueued in
// an unspecified order.
//
// # Host memory
//
// Asynchronous copies address host memory as []byte. The Device reads a
// source slice, or writes a destination slice, when the stream reaches the
// copy, not when it is enqueued: the caller must not modify a source, nor
// read or modify a destination, until the copy completes (after a
// synchronizing call, or from a host function enqueued after it on the same
// stream). The Device keeps no reference to the slice after the copy.
type Device interface {
	// Malloc allocates size bytes and returns a pointer aligned to at least
	// Alignment, inside the window. size 0 fails with cudaErrorInvalidValue
	// (as cuMemAlloc; the runtime's cudaMalloc(0) yields NULL without
	// calling the backend). An allocation that would exceed the quota or the
	// device's memory, or find no room in the window, fails with
	// cudaErrorMemoryAllocation. The contents are unspecified.
	Malloc(size uint64) (DevicePtr, error)

	// Free releases the allocation that starts at p. Free(0) does nothing
	// (as cuMemFree and cudaFree). A pointer that is not the start of a live
	// allocation of this Device (unknown, interior, already freed) fails
	// with cudaErrorInvalidValue. Work enqueued before Free completes as
	// though the memory were still allocated: the backend waits for it, as
	// cudaFree does, or keeps the memory alive until it is done.
	Free(p DevicePtr) error

	// MemGetInfo returns the bytes this Device can still allocate and its
	// quota.
	MemGetInfo() (free, total uint64, err error)

	// Owns reports whether [p, p+n) lies inside one live allocation of this
	// Device (n == 0: whether p does). It never fails, also after Close
	// (false) or a sticky error.
	Owns(p DevicePtr, n uint64) bool

	// MemsetD8Async sets n bytes at dst to v.
	MemsetD8Async(dst DevicePtr, v uint8, n uint64, s Stream) error
	// MemsetD16Async sets n 16-bit values at dst, which must be 2-byte
	// aligned, to v (little-endian, as the device stores it).
	MemsetD16Async(dst DevicePtr, v uint16, n uint64, s Stream) error
	// MemsetD32Async sets n 32-bit values at dst, which must be 4-byte
	// aligned, to v.
	MemsetD32Async(dst DevicePtr, v uint32, n uint64, s Stream) error

	// MemcpyHtoDAsync copies len(src) bytes from src to dst.
	MemcpyHtoDAsync(dst DevicePtr, src []byte, s Stream) error
	// MemcpyDtoHAsync copies len(dst) bytes from src to dst.
	MemcpyDtoHAsync(dst []byte, src DevicePtr, s Stream) error
	// MemcpyDtoDAsync copies n bytes between two ranges of this Device;
	// the ranges may overlap.
	MemcpyDtoDAsync(dst, src DevicePtr, n uint64, s Stream) error
	// MemcpyPeerAsync copies n bytes from src on this Device to dst on
	// dstDev, another Device (or this one) opened from the same Backend. The
	// copy is ordered in stream s of this Device only: work on dstDev that
	// uses dst must wait for it through an event. A dstDev from another
	// Backend fails with cudaErrorInvalidDevice, a closed one with
	// cudaErrorContextIsDestroyed.
	MemcpyPeerAsync(dst DevicePtr, dstDev Device, src DevicePtr, n uint64, s Stream) error
	//
	// Copies and memsets of zero bytes validate their handles (stream,
	// dstDev) and do nothing else; their pointers are not checked, as CUDA
	// does not check them.

	// LaunchHostFunc enqueues fn to run on a backend goroutine once all
	// earlier work on s has completed; later work on s waits for fn to
	// return. fn must not call into the Device (as cuLaunchHostFunc
	// forbids CUDA calls) and should return promptly: it holds up its
	// stream.
	LaunchHostFunc(s Stream, fn func()) error

	// StreamCreate creates a stream. flags is StreamDefault or
	// StreamNonBlocking; other bits fail with cudaErrorInvalidValue.
	// priority is clamped to [StreamPriorityGreatest, StreamPriorityLeast].
	StreamCreate(flags uint32, priority int) (Stream, error)
	// StreamDestroy destroys s. Work already enqueued on s still runs; the
	// handle is invalid at once. Destroying LegacyStream, or a handle that is
	// not a live stream of this Device, fails with
	// cudaErrorInvalidResourceHandle, as does every call given such a handle.
	StreamDestroy(s Stream) error
	// StreamSynchronize waits until all work enqueued on s before the call
	// has completed, or ctx is done (it then returns context.Cause(ctx); the
	// work goes on).
	StreamSynchronize(ctx context.Context, s Stream) error
	// StreamQuery returns nil if all work enqueued on s has completed and
	// cudaErrorNotReady if not.
	StreamQuery(s Stream) error
	// StreamWaitEvent makes all work enqueued on s after the call wait until
	// the work captured by e's most recent EventRecord (at the time of this
	// call) has completed. e may belong to any Device of the same Backend. An
	// event never recorded imposes no wait.
	StreamWaitEvent(s Stream, e Event) error

	// EventCreate creates an event. flags is a combination of the Event*
	// flags; unknown bits, or EventInterprocess without EventDisableTiming,
	// fail with cudaErrorInvalidValue.
	EventCreate(flags uint32) (Event, error)
	// EventRecord captures in e all work enqueued on s so far, replacing
	// what e captured before. e must belong to this Device.
	EventRecord(e Event, s Stream) error
	// EventQuery returns nil if the work e captured has completed (or e was
	// never recorded) and cudaErrorNotReady if not.
	EventQuery(e Event) error
	// EventSynchronize waits until the work e captured has completed, or
	// ctx is done (it then returns context.Cause(ctx)).
	EventSynchronize(ctx context.Context, e Event) error
	// EventElapsedTime returns the milliseconds between the completion of
	// start's and end's most recent records. It fails with
	// cudaErrorInvalidResourceHandle if either event was never recorded or
	// was created with EventDisableTiming, and with cudaErrorNotReady if
	// either has not completed. Both must belong to this Device.
	EventElapsedTime(start, end Event) (float32, error)
	// EventDestroy destroys e. Records of e still pending complete
	// normally, and StreamWaitEvent calls made before still hold.
	EventDestroy(e Event) error

	// Synchronize waits until all work enqueued on every stream of the
	// Device before the call (including destroyed streams still draining)
	// has completed, or ctx is done (it then returns context.Cause(ctx)).
	Synchronize(ctx context.Context) error

	// Close waits for the work already enqueued to complete (host functions
	// included), then destroys every stream and event and frees every
	// allocation. Calls made after Close begins fail with
	// cudaErrorContextIsDestroyed; a second Close returns that error too.
	Close() error
}
