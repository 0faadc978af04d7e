package main

/*
#cgo CFLAGS: -I${SRCDIR}/include
#include "xgpu.h"
*/
import "C"

import (
	"os"
	"unsafe"

	"github.com/xgpu/xgpu/runtime/cudart/core"
)

// shim is the process's CUDA runtime state. It reads its configuration
// from the environment at the first call that needs a device.
var shim = core.New(func() (core.Config, error) { return core.ConfigFromEnv(os.LookupEnv) })

// ret turns an error into the cudaError_t the C side returns.
func ret(err error) C.int { return C.int(core.Code(err)) }

//export xgpu_abi_version
func xgpu_abi_version() C.int { return C.XGPU_ABI_VERSION }

//export xgpu_init
func xgpu_init() C.int {
	_, err := shim.Client()
	return ret(err)
}

//export xgpu_shutdown
func xgpu_shutdown() C.int { return ret(shim.Close()) }

//export xgpu_log_unsupported
func xgpu_log_unsupported(name *C.char) C.int { return ret(shim.Unsupported(C.GoString(name))) }

//export xgpu_device_count
func xgpu_device_count(count *C.int) C.int {
	n, err := shim.DeviceCount()
	if err != nil {
		return ret(err)
	}
	*count = C.int(n)
	return 0
}

//export xgpu_device_info_get
func xgpu_device_info_get(dev C.int, info *C.xgpu_device_info_t) C.int {
	d, err := shim.Device(int(dev))
	if err != nil {
		return ret(err)
	}
	name := unsafe.Slice((*byte)(unsafe.Pointer(&info.name[0])), len(info.name))
	clear(name)
	copy(name[:len(name)-1], d.Name)
	for i, b := range d.UUID {
		info.uuid[i] = C.uchar(b)
	}
	info.total_mem = C.uint64_t(d.TotalMem)
	bus := unsafe.Slice((*byte)(unsafe.Pointer(&info.pci_bus_id[0])), len(info.pci_bus_id))
	clear(bus)
	copy(bus[:len(bus)-1], d.PCIBusID)
	for a := range min(core.MaxAttr, len(info.attrs)) {
		info.attrs[a] = C.int(d.Attrs[a])
		info.attr_valid[a] = 0
		if d.Valid[a] {
			info.attr_valid[a] = 1
		}
	}
	n, _ := shim.DeviceCount()
	info.peer_count = C.int(n)
	return 0
}

//export xgpu_device_can_access_peer
func xgpu_device_can_access_peer(dev, peer C.int, can *C.int) C.int {
	ok, err := shim.CanAccessPeer(int(dev), int(peer))
	if err != nil {
		return ret(err)
	}
	*can = 0
	if ok {
		*can = 1
	}
	return 0
}

//export xgpu_device_synchronize
func xgpu_device_synchronize(dev C.int) C.int { return ret(shim.Synchronize(int(dev))) }

//export xgpu_device_by_pci_bus_id
func xgpu_device_by_pci_bus_id(id *C.char, dev *C.int) C.int {
	d, err := shim.DeviceByPCIBusID(C.GoString(id))
	if err != nil {
		return ret(err)
	}
	*dev = C.int(d)
	return 0
}

//export xgpu_malloc
func xgpu_malloc(dev C.int, size C.uint64_t, ptr *C.uint64_t) C.int {
	p, err := shim.Malloc(int(dev), uint64(size))
	if err != nil {
		return ret(err)
	}
	*ptr = C.uint64_t(p)
	return 0
}

//export xgpu_free
func xgpu_free(ptr C.uint64_t) C.int { return ret(shim.Free(uint64(ptr))) }

//export xgpu_mem_get_info
func xgpu_mem_get_info(dev C.int, free, total *C.uint64_t) C.int {
	f, t, err := shim.MemGetInfo(int(dev))
	if err != nil {
		return ret(err)
	}
	*free, *total = C.uint64_t(f), C.uint64_t(t)
	return 0
}

//export xgpu_memcpy
func xgpu_memcpy(dst, src unsafe.Pointer, n C.uint64_t, kind, dev C.int, stream C.uint64_t, async C.int) C.int {
	return ret(shim.Memcpy(dst, src, uint64(n), int(kind), int(dev), uint64(stream), async != 0))
}

//export xgpu_memcpy_peer
func xgpu_memcpy_peer(dst C.uint64_t, dstDev C.int, src C.uint64_t, srcDev C.int, n, stream C.uint64_t, async C.int) C.int {
	return ret(shim.MemcpyPeer(uint64(dst), int(dstDev), uint64(src), int(srcDev), uint64(n), uint64(stream), async != 0))
}

//export xgpu_memset
func xgpu_memset(dst C.uint64_t, value C.int, n C.uint64_t, dev C.int, stream C.uint64_t, async C.int) C.int {
	return ret(shim.Memset(uint64(dst), int(value), uint64(n), int(dev), uint64(stream), async != 0))
}

//export xgpu_host_register
func xgpu_host_register(ptr unsafe.Pointer, size C.uint64_t, flags C.uint) C.int {
	return ret(shim.HostRegister(ptr, uint64(size)))
}

//export xgpu_host_unregister
func xgpu_host_unregister(ptr unsafe.Pointer) C.int { return ret(shim.HostUnregister(ptr)) }

//export xgpu_pointer_attributes
func xgpu_pointer_attributes(ptr unsafe.Pointer, typ, dev *C.int, devPtr, hostPtr *C.uint64_t) C.int {
	a, err := shim.PointerAttributes(ptr, -1)
	if err != nil {
		return ret(err)
	}
	*typ, *dev = C.int(a.Type), C.int(a.Device)
	*devPtr, *hostPtr = C.uint64_t(a.DevicePointer), C.uint64_t(a.HostPointer)
	return 0
}

//export xgpu_stream_create
func xgpu_stream_create(dev C.int, flags C.uint, priority C.int, stream *C.uint64_t) C.int {
	h, err := shim.StreamCreate(int(dev), uint32(flags), int(priority))
	if err != nil {
		return ret(err)
	}
	*stream = C.uint64_t(h)
	return 0
}

//export xgpu_stream_destroy
func xgpu_stream_destroy(stream C.uint64_t) C.int { return ret(shim.StreamDestroy(uint64(stream))) }

//export xgpu_stream_synchronize
func xgpu_stream_synchronize(dev C.int, stream C.uint64_t) C.int {
	return ret(shim.StreamSynchronize(int(dev), uint64(stream)))
}

//export xgpu_stream_query
func xgpu_stream_query(dev C.int, stream C.uint64_t) C.int {
	return ret(shim.StreamQuery(int(dev), uint64(stream)))
}

//export xgpu_stream_wait_event
func xgpu_stream_wait_event(dev C.int, stream, event C.uint64_t, flags C.uint) C.int {
	return ret(shim.StreamWaitEventFlags(int(dev), uint64(stream), uint64(event), uint32(flags)))
}

//export xgpu_stream_info
func xgpu_stream_info(stream C.uint64_t, dev *C.int, flags *C.uint, priority *C.int) C.int {
	d, f, p, err := shim.StreamInfo(uint64(stream))
	if err != nil {
		return ret(err)
	}
	*dev, *flags, *priority = C.int(d), C.uint(f), C.int(p)
	return 0
}

//export xgpu_event_create
func xgpu_event_create(dev C.int, flags C.uint, event *C.uint64_t) C.int {
	h, err := shim.EventCreate(int(dev), uint32(flags))
	if err != nil {
		return ret(err)
	}
	*event = C.uint64_t(h)
	return 0
}

//export xgpu_event_record
func xgpu_event_record(event C.uint64_t, dev C.int, stream C.uint64_t, flags C.uint) C.int {
	return ret(shim.EventRecordFlags(uint64(event), int(dev), uint64(stream), uint32(flags)))
}

//export xgpu_event_query
func xgpu_event_query(event C.uint64_t) C.int { return ret(shim.EventQuery(uint64(event))) }

//export xgpu_event_synchronize
func xgpu_event_synchronize(event C.uint64_t) C.int { return ret(shim.EventSynchronize(uint64(event))) }

//export xgpu_event_elapsed_time
func xgpu_event_elapsed_time(ms *C.float, start, end C.uint64_t) C.int {
	v, err := shim.EventElapsedTime(uint64(start), uint64(end))
	if err != nil {
		return ret(err)
	}
	*ms = C.float(v)
	return 0
}

//export xgpu_event_destroy
func xgpu_event_destroy(event C.uint64_t) C.int { return ret(shim.EventDestroy(uint64(event))) }

//export xgpu_register_fatbin
func xgpu_register_fatbin(container unsafe.Pointer, module *C.uint64_t) C.int {
	m, err := shim.RegisterFatbin(container)
	if err != nil {
		return ret(err)
	}
	*module = C.uint64_t(m)
	return 0
}

//export xgpu_unregister_fatbin
func xgpu_unregister_fatbin(module C.uint64_t) C.int {
	return ret(shim.UnregisterFatbin(uint64(module)))
}

//export xgpu_register_function
func xgpu_register_function(module C.uint64_t, hostFun unsafe.Pointer, name *C.char) C.int {
	return ret(shim.RegisterFunction(uint64(module), uintptr(hostFun), C.GoString(name), unsafe.Pointer(name)))
}

//export xgpu_register_var
func xgpu_register_var(module C.uint64_t, hostVar unsafe.Pointer, name *C.char, size C.uint64_t, constant C.int) C.int {
	return ret(shim.RegisterVar(uint64(module), uintptr(hostVar), C.GoString(name), uint64(size)))
}

//export xgpu_get_kernel
func xgpu_get_kernel(hostFun unsafe.Pointer, kernel *C.uint64_t) C.int {
	k, err := shim.Kernel(uintptr(hostFun))
	if err != nil {
		return ret(err)
	}
	*kernel = C.uint64_t(k)
	return 0
}

//export xgpu_launch_kernel
func xgpu_launch_kernel(kernel C.uint64_t, dev C.int, grid, block *C.uint, sharedMem, stream C.uint64_t, args *unsafe.Pointer) C.int {
	g := (*[3]C.uint)(unsafe.Pointer(grid))
	b := (*[3]C.uint)(unsafe.Pointer(block))
	return ret(shim.Launch(uint64(kernel), int(dev),
		[3]uint32{uint32(g[0]), uint32(g[1]), uint32(g[2])}, [3]uint32{uint32(b[0]), uint32(b[1]), uint32(b[2])},
		uint64(sharedMem), uint64(stream), unsafe.Pointer(args)))
}

//export xgpu_launch_kernel_ex
func xgpu_launch_kernel_ex(kernel C.uint64_t, dev C.int, grid, block *C.uint, sharedMem, stream C.uint64_t, args *unsafe.Pointer, flags C.unsigned) C.int {
	g := (*[3]C.uint)(unsafe.Pointer(grid))
	b := (*[3]C.uint)(unsafe.Pointer(block))
	return ret(shim.LaunchEx(uint64(kernel), int(dev),
		[3]uint32{uint32(g[0]), uint32(g[1]), uint32(g[2])}, [3]uint32{uint32(b[0]), uint32(b[1]), uint32(b[2])},
		uint64(sharedMem), uint64(stream), unsafe.Pointer(args), core.LaunchFlags(flags)))
}

//export xgpu_func_get_attributes
func xgpu_func_get_attributes(kernel C.uint64_t, dev C.int, out *C.xgpu_func_attributes_t) C.int {
	a, err := shim.FuncAttributes(uint64(kernel), int(dev))
	if err != nil {
		return ret(err)
	}
	out.shared_size_bytes = C.uint64_t(a.SharedSizeBytes)
	out.const_size_bytes = C.uint64_t(a.ConstSizeBytes)
	out.local_size_bytes = C.uint64_t(a.LocalSizeBytes)
	out.max_threads_per_block = C.int(a.MaxThreadsPerBlock)
	out.num_regs = C.int(a.NumRegs)
	out.ptx_version = C.int(a.PTXVersion)
	out.binary_version = C.int(a.BinaryVersion)
	out.cache_mode_ca = C.int(a.CacheModeCA)
	out.max_dynamic_shared_size_bytes = C.int(a.MaxDynamicSharedSizeBytes)
	out.preferred_shmem_carveout = C.int(a.PreferredShmemCarveout)
	return 0
}

//export xgpu_func_set_attribute
func xgpu_func_set_attribute(kernel C.uint64_t, dev, attr, value C.int) C.int {
	return ret(shim.FuncSetAttribute(uint64(kernel), int(dev), int(attr), int(value)))
}

//export xgpu_func_name
func xgpu_func_name(kernel C.uint64_t, name **C.char) C.int {
	p, err := shim.KernelName(uint64(kernel))
	if err != nil {
		return ret(err)
	}
	// p is the name's address in the application's own memory (the
	// string nvcc registered), not Go memory.
	*name = (*C.char)(p)
	return 0
}

//export xgpu_symbol_address
func xgpu_symbol_address(hostVar unsafe.Pointer, dev C.int, addr, size *C.uint64_t) C.int {
	a, n, err := shim.SymbolAddress(uintptr(hostVar), int(dev))
	if err != nil {
		return ret(err)
	}
	*addr, *size = C.uint64_t(a), C.uint64_t(n)
	return 0
}

//export xgpu_pointer_info
func xgpu_pointer_info(ptr unsafe.Pointer, dev C.int, info *C.xgpu_pointer_info_t) C.int {
	a, err := shim.PointerInfo(ptr, int(dev))
	if err != nil {
		return ret(err)
	}
	info._type, info.device = C.int(a.Type), C.int(a.Device)
	info.dev_ptr, info.host_ptr = C.uint64_t(a.DevicePointer), C.uint64_t(a.HostPointer)
	info.base, info.size = C.uint64_t(a.Base), C.uint64_t(a.Size)
	return 0
}

//export xgpu_module_load
func xgpu_module_load(dev C.int, image unsafe.Pointer, module *C.uint64_t) C.int {
	h, err := shim.ModuleLoad(int(dev), image)
	if err != nil {
		return ret(err)
	}
	*module = C.uint64_t(h)
	return 0
}

//export xgpu_module_unload
func xgpu_module_unload(module C.uint64_t) C.int { return ret(shim.ModuleUnload(uint64(module))) }

//export xgpu_module_function
func xgpu_module_function(module C.uint64_t, name *C.char, fn *C.uint64_t) C.int {
	h, err := shim.ModuleFunction(uint64(module), C.GoString(name))
	if err != nil {
		return ret(err)
	}
	*fn = C.uint64_t(h)
	return 0
}

//export xgpu_module_global
func xgpu_module_global(module C.uint64_t, name *C.char, addr, size *C.uint64_t) C.int {
	a, n, err := shim.ModuleGlobal(uint64(module), C.GoString(name))
	if err != nil {
		return ret(err)
	}
	*addr, *size = C.uint64_t(a), C.uint64_t(n)
	return 0
}

//export xgpu_function_device
func xgpu_function_device(fn C.uint64_t, dev *C.int) C.int {
	d, err := shim.FunctionDevice(uint64(fn))
	if err != nil {
		return ret(err)
	}
	*dev = C.int(d)
	return 0
}

//export xgpu_function_launch
func xgpu_function_launch(fn C.uint64_t, grid, block *C.uint, sharedMem, stream C.uint64_t, args *unsafe.Pointer, packed unsafe.Pointer, packedSize C.uint64_t) C.int {
	g := (*[3]C.uint)(unsafe.Pointer(grid))
	b := (*[3]C.uint)(unsafe.Pointer(block))
	return ret(shim.FunctionLaunch(uint64(fn),
		[3]uint32{uint32(g[0]), uint32(g[1]), uint32(g[2])}, [3]uint32{uint32(b[0]), uint32(b[1]), uint32(b[2])},
		uint64(sharedMem), uint64(stream), unsafe.Pointer(args), packed, uint64(packedSize)))
}

//export xgpu_function_launch_ex
func xgpu_function_launch_ex(fn C.uint64_t, grid, block *C.uint, sharedMem, stream C.uint64_t, args *unsafe.Pointer, packed unsafe.Pointer, packedSize C.uint64_t, flags C.unsigned) C.int {
	g := (*[3]C.uint)(unsafe.Pointer(grid))
	b := (*[3]C.uint)(unsafe.Pointer(block))
	return ret(shim.FunctionLaunchEx(uint64(fn),
		[3]uint32{uint32(g[0]), uint32(g[1]), uint32(g[2])}, [3]uint32{uint32(b[0]), uint32(b[1]), uint32(b[2])},
		uint64(sharedMem), uint64(stream), unsafe.Pointer(args), packed, uint64(packedSize), core.LaunchFlags(flags)))
}

//export xgpu_function_get_attribute
func xgpu_function_get_attribute(fn C.uint64_t, attr C.int, value *C.int) C.int {
	v, err := shim.FunctionAttribute(uint64(fn), int(attr))
	if err != nil {
		return ret(err)
	}
	*value = C.int(v)
	return 0
}

//export xgpu_function_set_attribute
func xgpu_function_set_attribute(fn C.uint64_t, attr, value C.int) C.int {
	return ret(shim.FunctionSetAttribute(uint64(fn), int(attr), int(value)))
}
