//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl -lpthread
#cgo noescape xcu_MemcpyHtoDAsync
#cgo nocallback xcu_MemcpyHtoDAsync
#cgo noescape xcu_MemcpyDtoHAsync
#cgo nocallback xcu_MemcpyDtoHAsync
#cgo noescape xcu_LaunchKernel
#cgo nocallback xcu_LaunchKernel
#cgo noescape xcu_LaunchCooperativeKernel
#cgo nocallback xcu_LaunchCooperativeKernel
#cgo noescape xcu_DeviceGetAttribute
#cgo nocallback xcu_DeviceGetAttribute
#cgo noescape xcu_FuncGetAttribute
#cgo nocallback xcu_FuncGetAttribute
#cgo noescape xcu_FuncGetParamInfo
#cgo nocallback xcu_FuncGetParamInfo
#cgo noescape xcu_EventElapsedTime
#cgo nocallback xcu_EventElapsedTime
#include <stdlib.h>
#include "cudadrv.h"
*/
import "C"

import (
	"errors"
	"strings"
	"sync"
	"unsafe"
)

// Driver is the loaded CUDA driver library. Its methods are thin wrappers of
// the driver API: Go types in, Go types out, a Result error for a failed
// call. Calls that act on a context (memory, streams, events, modules,
// launches) need that context current on the calling OS thread: run them on
// the device's Executor. Device queries and Init need no context.
//
// A Driver is safe for concurrent use to the extent the CUDA driver is; it
// holds no Go state of its own. The library stays loaded for the life of the
// process.
type Driver struct {
	path string
	// cooperative is set when the driver has what LaunchCooperativeKernel
	// calls (cuLaunchCooperativeKernel, cuFuncGetParamInfo).
	cooperative bool
}

var (
	loadMu sync.Mutex // guards loaded
	loaded *Driver
)

// Open loads the CUDA driver library at path (DefaultLibrary when empty)
// with dlopen and resolves every entry point this package calls. It returns
// a *LoadError when the library cannot be loaded or lacks a required entry
// point; Open may be called again after a failure. The driver is loaded once
// per process: a later Open returns the same Driver, or an error if it names
// a different library. Open does not call cuInit: call Init.
func Open(path string) (*Driver, error) {
	if path == "" {
		path = DefaultLibrary
	}
	if strings.IndexByte(path, 0) >= 0 {
		return nil, &LoadError{Library: path, Reason: "path contains a NUL byte"}
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if loaded != nil {
		if loaded.path != path {
			return nil, errors.New("cuda: driver already loaded from " + loaded.path + ", cannot load " + path)
		}
		return loaded, nil
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var errBuf [512]C.char
	var symBuf [128]C.char
	switch C.xgpu_cuda_load(cpath, &errBuf[0], C.size_t(len(errBuf)), &symBuf[0], C.size_t(len(symBuf))) {
	case 0:
	case 2:
		return nil, &LoadError{Library: path, Symbol: C.GoString(&symBuf[0]), Reason: C.GoString(&errBuf[0])}
	default:
		return nil, &LoadError{Library: path, Reason: C.GoString(&errBuf[0])}
	}
	loaded = &Driver{path: path}
	loaded.cooperative = loaded.Has("cuLaunchCooperativeKernel") && loaded.Has("cuFuncGetParamInfo")
	return loaded, nil
}

// Path returns the library the driver was loaded from.
func (d *Driver) Path() string { return d.path }

// Has reports whether the loaded driver exports the optional entry point
// name (for example "cuFuncGetParamInfo").
func (d *Driver) Has(name string) bool {
	if strings.IndexByte(name, 0) >= 0 {
		return false
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	return C.xgpu_cuda_has(cname) != 0
}

func res(r C.CUresult) error { return check(Result(r)) }

// Init initializes the driver (cuInit(0)). It is cheap after the first call.
func (d *Driver) Init() error { return res(C.xcu_Init(0)) }

// Version returns the CUDA version the driver supports, as 1000*major +
// 10*minor (13000 for CUDA 13.0).
func (d *Driver) Version() (int, error) {
	var v C.int
	if err := res(C.xcu_DriverGetVersion(&v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

// DeviceCount returns the number of CUDA devices.
func (d *Driver) DeviceCount() (int, error) {
	var n C.int
	if err := res(C.xcu_DeviceGetCount(&n)); err != nil {
		return 0, err
	}
	return int(n), nil
}

// DeviceGet returns the device of the given ordinal.
func (d *Driver) DeviceGet(ordinal int) (Device, error) {
	if ordinal < 0 || ordinal > 1<<20 {
		return 0, badArg("DeviceGet", "ordinal out of range")
	}
	var dev C.int
	if err := res(C.xcu_DeviceGet(&dev, C.int(ordinal))); err != nil {
		return 0, err
	}
	return Device(dev), nil
}

// DeviceName returns the device's product name, such as "NVIDIA H200".
func (d *Driver) DeviceName(dev Device) (string, error) {
	var buf [256]C.char
	if err := res(C.xcu_DeviceGetName(&buf[0], C.int(len(buf)), C.int(dev))); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

// DeviceUUID returns the device's UUID (cuDeviceGetUuid_v2).
func (d *Driver) DeviceUUID(dev Device) (UUID, error) {
	var u UUID
	err := res(C.xcu_DeviceGetUuid((*C.uchar)(unsafe.Pointer(&u[0])), C.int(dev)))
	return u, err
}

// DeviceAttribute returns one attribute of the device.
func (d *Driver) DeviceAttribute(dev Device, attr DeviceAttribute) (int, error) {
	var v C.int
	if err := res(C.xcu_DeviceGetAttribute(&v, C.int(attr), C.int(dev))); err != nil {
		return 0, err
	}
	return int(v), nil
}

// DeviceTotalMem returns the device's memory in bytes.
func (d *Driver) DeviceTotalMem(dev Device) (uint64, error) {
	var n C.size_t
	if err := res(C.xcu_DeviceTotalMem(&n, C.int(dev))); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// DevicePCIBusID returns the device's PCI address, "dddd:bb:dd.f".
func (d *Driver) DevicePCIBusID(dev Device) (string, error) {
	var buf [64]C.char
	if err := res(C.xcu_DeviceGetPCIBusId(&buf[0], C.int(len(buf)), C.int(dev))); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

// DeviceCanAccessPeer reports whether dev can map memory of peer.
func (d *Driver) DeviceCanAccessPeer(dev, peer Device) (bool, error) {
	var can C.int
	if err := res(C.xcu_DeviceCanAccessPeer(&can, C.int(dev), C.int(peer))); err != nil {
		return false, err
	}
	return can != 0, nil
}

// PrimaryCtxRetain retains the device's primary context, creating it on
// first use. Pair each call with PrimaryCtxRelease.
func (d *Driver) PrimaryCtxRetain(dev Device) (Context, error) {
	var c C.uintptr_t
	if err := res(C.xcu_DevicePrimaryCtxRetain(&c, C.int(dev))); err != nil {
		return 0, err
	}
	return Context(c), nil
}

// PrimaryCtxRelease releases one retain of the device's primary context
// (cuDevicePrimaryCtxRelease_v2); the last release destroys it.
func (d *Driver) PrimaryCtxRelease(dev Device) error {
	return res(C.xcu_DevicePrimaryCtxRelease(C.int(dev)))
}

// CtxSetCurrent makes c current on the calling OS thread (0: none).
func (d *Driver) CtxSetCurrent(c Context) error { return res(C.xcu_CtxSetCurrent(C.uintptr_t(c))) }

// CtxGetDevice returns the device of the calling thread's current context.
func (d *Driver) CtxGetDevice() (Device, error) {
	var dev C.int
	if err := res(C.xcu_CtxGetDevice(&dev)); err != nil {
		return 0, err
	}
	return Device(dev), nil
}

// CtxSynchronize waits for all work of the current context.
func (d *Driver) CtxSynchronize() error { return res(C.xcu_CtxSynchronize()) }

// CtxEnablePeerAccess lets the current context access memory of peer.
func (d *Driver) CtxEnablePeerAccess(peer Context) error {
	return res(C.xcu_CtxEnablePeerAccess(C.uintptr_t(peer), 0))
}

// MemAddressReserve reserves size bytes of virtual address space, aligned
// to align (0: the granularity), preferably at addr (0: anywhere). The
// driver may return another address than addr: callers that need addr must
// compare.
func (d *Driver) MemAddressReserve(size, align uint64, addr DevicePtr) (DevicePtr, error) {
	var p C.CUdeviceptr
	if err := res(C.xcu_MemAddressReserve(&p, C.size_t(size), C.size_t(align), C.CUdeviceptr(addr), 0)); err != nil {
		return 0, err
	}
	return DevicePtr(p), nil
}

// MemAddressFree frees a range reserved with MemAddressReserve. Every
// mapping inside it must have been unmapped.
func (d *Driver) MemAddressFree(p DevicePtr, size uint64) error {
	return res(C.xcu_MemAddressFree(C.CUdeviceptr(p), C.size_t(size)))
}

// MemCreate allocates size bytes of physical memory on dev
// (CU_MEM_ALLOCATION_TYPE_PINNED, no shareable handle type). size must be a
// multiple of the allocation granularity.
func (d *Driver) MemCreate(size uint64, dev Device) (MemHandle, error) {
	var h C.CUmemGenericAllocationHandle
	if err := res(C.xcu_MemCreate(&h, C.size_t(size), C.int(dev), 0)); err != nil {
		return 0, err
	}
	return MemHandle(h), nil
}

// MemRelease releases a handle from MemCreate; the memory is freed once it
// is also unmapped everywhere.
func (d *Driver) MemRelease(h MemHandle) error {
	return res(C.xcu_MemRelease(C.CUmemGenericAllocationHandle(h)))
}

// MemMap maps size bytes of h, from offset, at p inside a reserved range.
func (d *Driver) MemMap(p DevicePtr, size, offset uint64, h MemHandle) error {
	return res(C.xcu_MemMap(C.CUdeviceptr(p), C.size_t(size), C.size_t(offset), C.CUmemGenericAllocationHandle(h)))
}

// MemUnmap unmaps size bytes at p.
func (d *Driver) MemUnmap(p DevicePtr, size uint64) error {
	return res(C.xcu_MemUnmap(C.CUdeviceptr(p), C.size_t(size)))
}

// AccessDesc grants one device an access protection to a mapped range
// (CUmemAccessDesc with a device location).
type AccessDesc struct {
	Device Device
	Flags  Access
}

// MemSetAccess sets the access of each listed device to the mapped range
// [p, p+size). A new mapping is inaccessible until this is called.
func (d *Driver) MemSetAccess(p DevicePtr, size uint64, descs ...AccessDesc) error {
	if len(descs) == 0 {
		return badArg("MemSetAccess", "no access descriptor")
	}
	var small [4]C.CUmemAccessDesc
	cd := small[:0]
	if len(descs) > len(small) {
		cd = make([]C.CUmemAccessDesc, 0, len(descs))
	}
	for _, ad := range descs {
		var c C.CUmemAccessDesc
		c.location._type = C.XCU_MEM_LOCATION_TYPE_DEVICE
		c.location.id = C.int(ad.Device)
		c.flags = C.int(ad.Flags)
		cd = append(cd, c)
	}
	return res(C.xcu_MemSetAccess(C.CUdeviceptr(p), C.size_t(size), &cd[0], C.size_t(len(cd))))
}

// MemGetAllocationGranularity returns the granularity of MemCreate and
// MemMap sizes and addresses for dev.
func (d *Driver) MemGetAllocationGranularity(dev Device, g Granularity) (uint64, error) {
	var n C.size_t
	if err := res(C.xcu_MemGetAllocationGranularity(&n, C.int(dev), 0, C.int(g))); err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// MemGetInfo returns the free and total memory of the current context's
// device.
func (d *Driver) MemGetInfo() (free, total uint64, err error) {
	var f, t C.size_t
	if err := res(C.xcu_MemGetInfo(&f, &t)); err != nil {
		return 0, 0, err
	}
	return uint64(f), uint64(t), nil
}

// MemsetD8Async sets n bytes at dst to v, in stream order.
func (d *Driver) MemsetD8Async(dst DevicePtr, v uint8, n uint64, s Stream) error {
	return res(C.xcu_MemsetD8Async(C.CUdeviceptr(dst), C.uchar(v), C.size_t(n), C.uintptr_t(s)))
}

// MemsetD16Async sets n 16-bit words at dst (2-byte aligned) to v.
func (d *Driver) MemsetD16Async(dst DevicePtr, v uint16, n uint64, s Stream) error {
	return res(C.xcu_MemsetD16Async(C.CUdeviceptr(dst), C.ushort(v), C.size_t(n), C.uintptr_t(s)))
}

// MemsetD32Async sets n 32-bit words at dst (4-byte aligned) to v.
func (d *Driver) MemsetD32Async(dst DevicePtr, v uint32, n uint64, s Stream) error {
	return res(C.xcu_MemsetD32Async(C.CUdeviceptr(dst), C.uint(v), C.size_t(n), C.uintptr_t(s)))
}

// MemcpyHtoDAsync copies src to dst in stream order
// (cuMemcpyHtoDAsync_v2). The driver may read src after the call returns
// (CUDA documents async copies from host memory as possibly asynchronous to
// the host), so src must be pinned memory from MemHostAlloc, or Go memory
// held by a runtime.Pinner, and must stay unchanged until the stream has
// passed the copy.
func (d *Driver) MemcpyHtoDAsync(dst DevicePtr, src []byte, s Stream) error {
	if len(src) == 0 {
		return nil
	}
	return res(C.xcu_MemcpyHtoDAsync(C.CUdeviceptr(dst), unsafe.Pointer(unsafe.SliceData(src)), C.size_t(len(src)), C.uintptr_t(s)))
}

// MemcpyDtoHAsync copies len(dst) bytes from src to dst in stream order
// (cuMemcpyDtoHAsync_v2). The same lifetime rule as for MemcpyHtoDAsync's
// src holds for dst, which must not be read before the stream has passed
// the copy.
func (d *Driver) MemcpyDtoHAsync(dst []byte, src DevicePtr, s Stream) error {
	if len(dst) == 0 {
		return nil
	}
	return res(C.xcu_MemcpyDtoHAsync(unsafe.Pointer(unsafe.SliceData(dst)), C.CUdeviceptr(src), C.size_t(len(dst)), C.uintptr_t(s)))
}

// MemcpyDtoDAsync copies n bytes between device addresses of the current
// context's device, in stream order.
func (d *Driver) MemcpyDtoDAsync(dst, src DevicePtr, n uint64, s Stream) error {
	return res(C.xcu_MemcpyDtoDAsync(C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n), C.uintptr_t(s)))
}

// MemcpyPeerAsync copies n bytes from src in srcCtx to dst in dstCtx, in
// stream order.
func (d *Driver) MemcpyPeerAsync(dst DevicePtr, dstCtx Context, src DevicePtr, srcCtx Context, n uint64, s Stream) error {
	return res(C.xcu_MemcpyPeerAsync(C.CUdeviceptr(dst), C.uintptr_t(dstCtx), C.CUdeviceptr(src), C.uintptr_t(srcCtx), C.size_t(n), C.uintptr_t(s)))
}

// MemcpyAsync copies n bytes between any two addresses of the unified
// address space (the driver infers the direction), in stream order.
func (d *Driver) MemcpyAsync(dst, src DevicePtr, n uint64, s Stream) error {
	return res(C.xcu_MemcpyAsync(C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n), C.uintptr_t(s)))
}

// MemHostAlloc allocates n bytes of page-locked host memory, returned as a
// byte slice over C memory. Free it with MemFreeHost, passing the slice
// unsliced.
func (d *Driver) MemHostAlloc(n uint64, flags uint32) ([]byte, error) {
	if n == 0 || n > 1<<46 {
		return nil, badArg("MemHostAlloc", "size out of range")
	}
	var p unsafe.Pointer
	if err := res(C.xcu_MemHostAlloc(&p, C.size_t(n), C.uint(flags))); err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// MemFreeHost frees memory from MemHostAlloc.
func (d *Driver) MemFreeHost(b []byte) error {
	if len(b) == 0 {
		return badArg("MemFreeHost", "empty buffer")
	}
	return res(C.xcu_MemFreeHost(unsafe.Pointer(unsafe.SliceData(b))))
}

// MemHostGetDevicePointer returns the device address of pinned memory
// from MemHostAlloc with HostAllocDeviceMap (cuMemHostGetDevicePointer_v2).
func (d *Driver) MemHostGetDevicePointer(b []byte) (DevicePtr, error) {
	if len(b) == 0 {
		return 0, badArg("MemHostGetDevicePointer", "empty buffer")
	}
	var p C.CUdeviceptr
	if err := res(C.xcu_MemHostGetDevicePointer(&p, unsafe.Pointer(unsafe.SliceData(b)))); err != nil {
		return 0, err
	}
	return DevicePtr(p), nil
}

// StreamCreate creates a stream with the given flags (StreamNonBlocking)
// and priority (lower numbers run first; 0 is the default).
func (d *Driver) StreamCreate(flags uint32, priority int) (Stream, error) {
	var s C.uintptr_t
	if err := res(C.xcu_StreamCreateWithPriority(&s, C.uint(flags), C.int(priority))); err != nil {
		return 0, err
	}
	return Stream(s), nil
}

// StreamDestroy destroys s (cuStreamDestroy_v2); work already queued on it
// still completes.
func (d *Driver) StreamDestroy(s Stream) error { return res(C.xcu_StreamDestroy(C.uintptr_t(s))) }

// StreamSynchronize waits for all work queued on s.
func (d *Driver) StreamSynchronize(s Stream) error {
	return res(C.xcu_StreamSynchronize(C.uintptr_t(s)))
}

// StreamQuery returns nil if all work on s is complete, ErrNotReady if not.
func (d *Driver) StreamQuery(s Stream) error { return res(C.xcu_StreamQuery(C.uintptr_t(s))) }

// StreamWaitEvent makes later work on s wait for the work recorded in e.
func (d *Driver) StreamWaitEvent(s Stream, e Event) error {
	return res(C.xcu_StreamWaitEvent(C.uintptr_t(s), C.uintptr_t(e), 0))
}

// LaunchHostFunc queues fn on s: it runs on a driver thread once the work
// before it completes, and later work waits for it to return. fn must not
// call the driver (CUDA forbids it in a host function) and should return
// quickly; to do more, hand the work to another goroutine.
func (d *Driver) LaunchHostFunc(s Stream, fn func()) error {
	if fn == nil {
		return badArg("LaunchHostFunc", "nil function")
	}
	id := hostFns.put(fn)
	if err := res(C.xcu_LaunchHostFunc(C.uintptr_t(s), C.uintptr_t(id))); err != nil {
		hostFns.take(id)
		return err
	}
	return nil
}

// StreamWaitValueGEQ (CU_STREAM_WAIT_VALUE_GEQ) makes StreamWaitValue32
// wait until (int32)(*addr - value) >= 0, a comparison that survives
// wrap-around.
const StreamWaitValueGEQ uint32 = 0x0

// StreamWaitValue32 makes later work on s wait until the 32-bit word at
// addr (device memory, or pinned host memory through its device address)
// satisfies flags against value (cuStreamWaitValue32_v2). It returns a
// *SymbolError if the driver lacks stream memory operations.
func (d *Driver) StreamWaitValue32(s Stream, addr DevicePtr, value, flags uint32) error {
	r := C.xcu_StreamWaitValue32(C.uintptr_t(s), C.CUdeviceptr(addr), C.uint(value), C.uint(flags))
	if r == C.XCU_NO_SYMBOL {
		return &SymbolError{Symbol: "cuStreamWaitValue32_v2"}
	}
	return res(r)
}

//export xgpuHostFn
func xgpuHostFn(id C.uintptr_t) {
	if fn, ok := hostFns.take(uintptr(id)); ok {
		fn()
	}
}

// hostFnSelfTest runs the host-function trampoline for fn on a fresh POSIX
// thread, as the driver would, and waits for it: it checks the C to Go path
// on machines without a GPU.
func hostFnSelfTest(fn func()) error {
	id := hostFns.put(fn)
	if C.xgpu_hostfn_selftest(C.uintptr_t(id)) != 0 {
		hostFns.take(id)
		return errors.New("cuda: host function self-test: cannot start a thread")
	}
	return nil
}

// EventCreate creates an event (flags: EventDisableTiming, EventBlockingSync).
func (d *Driver) EventCreate(flags uint32) (Event, error) {
	var e C.uintptr_t
	if err := res(C.xcu_EventCreate(&e, C.uint(flags))); err != nil {
		return 0, err
	}
	return Event(e), nil
}

// EventRecord records e at the current end of s.
func (d *Driver) EventRecord(e Event, s Stream) error {
	return res(C.xcu_EventRecord(C.uintptr_t(e), C.uintptr_t(s)))
}

// EventQuery returns nil if the work recorded in e is complete, ErrNotReady
// if not.
func (d *Driver) EventQuery(e Event) error { return res(C.xcu_EventQuery(C.uintptr_t(e))) }

// EventSynchronize waits for the work recorded in e.
func (d *Driver) EventSynchronize(e Event) error { return res(C.xcu_EventSynchronize(C.uintptr_t(e))) }

// EventElapsedTime returns the time between two completed events in
// milliseconds (cuEventElapsedTime_v2 where the driver has it).
func (d *Driver) EventElapsedTime(start, end Event) (float32, error) {
	var ms C.float
	if err := res(C.xcu_EventElapsedTime(&ms, C.uintptr_t(start), C.uintptr_t(end))); err != nil {
		return 0, err
	}
	return float32(ms), nil
}

// EventDestroy destroys e (cuEventDestroy_v2).
func (d *Driver) EventDestroy(e Event) error { return res(C.xcu_EventDestroy(C.uintptr_t(e))) }

// ModuleLoadData loads a module from a cubin, fatbin or PTX image into the
// current context. PTX text needs no trailing NUL: one is added if missing.
func (d *Driver) ModuleLoadData(image []byte) (Module, error) {
	if len(image) == 0 {
		return 0, badArg("ModuleLoadData", "empty image")
	}
	var m C.uintptr_t
	if image[len(image)-1] == 0 {
		if err := res(C.xcu_ModuleLoadData(&m, unsafe.Pointer(unsafe.SliceData(image)))); err != nil {
			return 0, err
		}
		return Module(m), nil
	}
	buf := C.malloc(C.size_t(len(image) + 1))
	if buf == nil {
		return 0, ErrOutOfMemory
	}
	defer C.free(buf)
	cb := unsafe.Slice((*byte)(buf), len(image)+1)
	copy(cb, image)
	cb[len(image)] = 0
	if err := res(C.xcu_ModuleLoadData(&m, buf)); err != nil {
		return 0, err
	}
	return Module(m), nil
}

// ModuleUnload unloads m.
func (d *Driver) ModuleUnload(m Module) error { return res(C.xcu_ModuleUnload(C.uintptr_t(m))) }

func cName(op, name string) (*C.char, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return nil, badArg(op, "invalid name")
	}
	return C.CString(name), nil
}

// ModuleGetFunction returns the kernel of m with the given (mangled) name.
func (d *Driver) ModuleGetFunction(m Module, name string) (Function, error) {
	cname, err := cName("ModuleGetFunction", name)
	if err != nil {
		return 0, err
	}
	defer C.free(unsafe.Pointer(cname))
	var f C.uintptr_t
	if err := res(C.xcu_ModuleGetFunction(&f, C.uintptr_t(m), cname)); err != nil {
		return 0, err
	}
	return Function(f), nil
}

// ModuleGetGlobal returns the address and size of the global variable name
// of m (cuModuleGetGlobal_v2).
func (d *Driver) ModuleGetGlobal(m Module, name string) (DevicePtr, uint64, error) {
	cname, err := cName("ModuleGetGlobal", name)
	if err != nil {
		return 0, 0, err
	}
	defer C.free(unsafe.Pointer(cname))
	var p C.CUdeviceptr
	var n C.size_t
	if err := res(C.xcu_ModuleGetGlobal(&p, &n, C.uintptr_t(m), cname)); err != nil {
		return 0, 0, err
	}
	return DevicePtr(p), uint64(n), nil
}

// FuncGetParamInfo returns the offset and size of parameter index of f in
// the packed argument buffer. It returns ErrInvalidValue past the last
// parameter, and a *SymbolError on a driver older than CUDA 12.4.
func (d *Driver) FuncGetParamInfo(f Function, index int) (ParamInfo, error) {
	if index < 0 {
		return ParamInfo{}, badArg("FuncGetParamInfo", "negative index")
	}
	var off, size C.size_t
	r := C.xcu_FuncGetParamInfo(C.uintptr_t(f), C.size_t(index), &off, &size)
	if r == C.XCU_NO_SYMBOL {
		return ParamInfo{}, &SymbolError{Symbol: "cuFuncGetParamInfo"}
	}
	if err := res(r); err != nil {
		return ParamInfo{}, err
	}
	return ParamInfo{Offset: uint64(off), Size: uint64(size)}, nil
}

// maxParams bounds FuncParams: the parameter space of a launch is at most
// 32764 bytes, and every parameter takes at least one.
const maxParams = 32764

// FuncParams returns the layout of every parameter of f, in order.
func (d *Driver) FuncParams(f Function) ([]ParamInfo, error) {
	var params []ParamInfo
	for i := 0; i <= maxParams; i++ {
		p, err := d.FuncGetParamInfo(f, i)
		if errors.Is(err, ErrInvalidValue) {
			return params, nil
		}
		if err != nil {
			return nil, err
		}
		params = append(params, p)
	}
	return nil, errors.New("cuda: FuncParams: more parameters than a launch can pass")
}

// FuncGetAttribute returns one attribute of f.
func (d *Driver) FuncGetAttribute(f Function, attr FuncAttribute) (int, error) {
	var v C.int
	if err := res(C.xcu_FuncGetAttribute(&v, C.int(attr), C.uintptr_t(f))); err != nil {
		return 0, err
	}
	return int(v), nil
}

// FuncSetAttribute sets one attribute of f, such as
// FuncAttrMaxDynamicSharedSizeBytes.
func (d *Driver) FuncSetAttribute(f Function, attr FuncAttribute, v int) error {
	return res(C.xcu_FuncSetAttribute(C.uintptr_t(f), C.int(attr), C.int(v)))
}

// LaunchKernel launches f on s. args is the packed parameter buffer: each
// argument's bytes at the offset FuncParams reports, len(args) the end of
// the last one (empty for a kernel without parameters). The driver copies
// args before LaunchKernel returns.
func (d *Driver) LaunchKernel(f Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	var p unsafe.Pointer
	if len(args) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(args))
	}
	return res(C.xcu_LaunchKernel(C.uintptr_t(f),
		C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z),
		C.uint(sharedMem), C.uintptr_t(s), p, C.size_t(len(args))))
}

// LaunchCooperativeKernel launches f on s with cuLaunchCooperativeKernel:
// every block of the grid is resident at once, so that blocks may
// synchronize grid-wide. args is the packed parameter buffer, as for
// LaunchKernel; the pointers the driver needs to each parameter are made
// from the layout cuFuncGetParamInfo reports. It returns
// ErrCooperativeLaunchTooLarge for a grid the device cannot hold at once,
// and a *SymbolError when the driver lacks cuLaunchCooperativeKernel or
// cuFuncGetParamInfo (see CanLaunchCooperative).
func (d *Driver) LaunchCooperativeKernel(f Function, grid, block Dim3, sharedMem uint32, s Stream, args []byte) error {
	var p unsafe.Pointer
	if len(args) > 0 {
		p = unsafe.Pointer(unsafe.SliceData(args))
	}
	r := C.xcu_LaunchCooperativeKernel(C.uintptr_t(f),
		C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z),
		C.uint(sharedMem), C.uintptr_t(s), p, C.size_t(len(args)))
	if r == C.XCU_NO_SYMBOL {
		if !d.Has("cuLaunchCooperativeKernel") {
			return &SymbolError{Symbol: "cuLaunchCooperativeKernel"}
		}
		return &SymbolError{Symbol: "cuFuncGetParamInfo"}
	}
	return res(r)
}

// CanLaunchCooperative reports whether LaunchCooperativeKernel can work:
// the driver has cuLaunchCooperativeKernel (CUDA 9+) and
// cuFuncGetParamInfo (CUDA 12.4+).
func (d *Driver) CanLaunchCooperative() bool { return d.cooperative }
