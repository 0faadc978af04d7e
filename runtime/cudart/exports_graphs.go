package main

/*
#cgo CFLAGS: -I${SRCDIR}/include
#include "xgpu.h"
*/
import "C"

import (
	"unsafe"

	"github.com/xgpu/xgpu/runtime/cudart/core"
)

// handles views n handles the C side passed (nil when n is 0).
func handles(p *C.uint64_t, n C.uint64_t) []uint64 {
	if n == 0 || p == nil {
		return nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(p)), int(n))
}

// putList writes list into the C buffer of cap entries and its length
// into *n.
func putList(list []uint64, buf *C.uint64_t, capacity C.uint64_t, n *C.uint64_t) {
	if buf != nil {
		copy(unsafe.Slice((*uint64)(unsafe.Pointer(buf)), int(capacity)), list)
	}
	*n = C.uint64_t(len(list))
}

func dim3(p *C.uint) [3]uint32 {
	d := (*[3]C.uint)(unsafe.Pointer(p))
	return [3]uint32{uint32(d[0]), uint32(d[1]), uint32(d[2])}
}

//export xgpu_capture_begin
func xgpu_capture_begin(dev C.int, stream C.uint64_t, mode C.int, thread, graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t) C.int {
	return ret(shim.BeginCapture(int(dev), uint64(stream), int(mode), uint64(thread), uint64(graph), handles(deps, ndeps)))
}

//export xgpu_capture_end
func xgpu_capture_end(stream, thread C.uint64_t, graph *C.uint64_t) C.int {
	g, err := shim.EndCapture(uint64(stream), uint64(thread))
	if err != nil {
		return ret(err)
	}
	*graph = C.uint64_t(g)
	return 0
}

//export xgpu_capture_info
func xgpu_capture_info(dev C.int, stream C.uint64_t, status *C.int, id, graph, deps *C.uint64_t, capacity C.uint64_t, n *C.uint64_t) C.int {
	info, err := shim.CaptureInfo(int(dev), uint64(stream), nil)
	if err != nil {
		return ret(err)
	}
	*status, *id, *graph = C.int(info.Status), C.uint64_t(info.ID), C.uint64_t(info.Graph)
	putList(info.Deps, deps, capacity, n)
	return 0
}

//export xgpu_capture_update_deps
func xgpu_capture_update_deps(stream C.uint64_t, deps *C.uint64_t, n C.uint64_t, flags C.uint) C.int {
	return ret(shim.UpdateCaptureDependencies(uint64(stream), handles(deps, n), uint32(flags)))
}

//export xgpu_capture_unsafe
func xgpu_capture_unsafe(op *C.char, thread C.uint64_t, mode C.int) C.int {
	return ret(shim.CheckUnsafe(C.GoString(op), uint64(thread), int(mode)))
}

//export xgpu_capture_refuse
func xgpu_capture_refuse(op *C.char, dev C.int, stream C.uint64_t) C.int {
	return ret(shim.RefuseCaptured(C.GoString(op), int(dev), uint64(stream)))
}

//export xgpu_host_func
func xgpu_host_func(dev C.int, stream C.uint64_t, fn, arg unsafe.Pointer, captured *C.int) C.int {
	ok, err := shim.HostFunc(int(dev), uint64(stream), fn, arg)
	if err != nil {
		return ret(err)
	}
	*captured = 0
	if ok {
		*captured = 1
	}
	return 0
}

//export xgpu_graph_create
func xgpu_graph_create(flags C.uint, graph *C.uint64_t) C.int {
	g, err := shim.GraphCreate(uint32(flags))
	if err != nil {
		return ret(err)
	}
	*graph = C.uint64_t(g)
	return 0
}

//export xgpu_graph_destroy
func xgpu_graph_destroy(graph C.uint64_t) C.int { return ret(shim.GraphDestroy(uint64(graph))) }

// newNode stores the handle of a node just added.
func newNode(h uint64, err error, node *C.uint64_t) C.int {
	if err != nil {
		return ret(err)
	}
	*node = C.uint64_t(h)
	return 0
}

//export xgpu_graph_add_empty
func xgpu_graph_add_empty(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, node *C.uint64_t) C.int {
	h, err := shim.GraphAddEmpty(uint64(graph), handles(deps, ndeps))
	return newNode(h, err, node)
}

//export xgpu_graph_add_host
func xgpu_graph_add_host(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, fn, arg unsafe.Pointer, node *C.uint64_t) C.int {
	h, err := shim.GraphAddHost(uint64(graph), handles(deps, ndeps), fn, arg)
	return newNode(h, err, node)
}

//export xgpu_graph_add_event
func xgpu_graph_add_event(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, typ C.int, event C.uint64_t, node *C.uint64_t) C.int {
	h, err := shim.GraphAddEvent(uint64(graph), handles(deps, ndeps), int(typ), uint64(event))
	return newNode(h, err, node)
}

//export xgpu_graph_add_memcpy
func xgpu_graph_add_memcpy(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, dst, src unsafe.Pointer, n C.uint64_t, kind, dev C.int, node *C.uint64_t) C.int {
	h, err := shim.GraphAddMemcpy(uint64(graph), handles(deps, ndeps), dst, src, uint64(n), int(kind), int(dev))
	return newNode(h, err, node)
}

//export xgpu_graph_add_memset
func xgpu_graph_add_memset(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, dst, pitch C.uint64_t, value, elem C.uint, width, height C.uint64_t, node *C.uint64_t) C.int {
	h, err := shim.GraphAddMemset(uint64(graph), handles(deps, ndeps), core.MemsetParams{
		Dst: uint64(dst), Pitch: uint64(pitch), Value: uint32(value), ElementSize: uint32(elem),
		Width: uint64(width), Height: uint64(height)})
	return newNode(h, err, node)
}

//export xgpu_graph_add_kernel
func xgpu_graph_add_kernel(graph C.uint64_t, deps *C.uint64_t, ndeps C.uint64_t, kernel C.uint64_t, dev C.int, grid, block *C.uint, sharedMem C.uint64_t, args *unsafe.Pointer, node *C.uint64_t) C.int {
	h, err := shim.GraphAddKernel(uint64(graph), handles(deps, ndeps), uint64(kernel), int(dev), dim3(grid), dim3(block),
		uint64(sharedMem), unsafe.Pointer(args))
	return newNode(h, err, node)
}

//export xgpu_graph_change_edges
func xgpu_graph_change_edges(graph C.uint64_t, from, to *C.uint64_t, n C.uint64_t, remove C.int) C.int {
	if remove != 0 {
		return ret(shim.GraphRemoveDependencies(uint64(graph), handles(from, n), handles(to, n)))
	}
	return ret(shim.GraphAddDependencies(uint64(graph), handles(from, n), handles(to, n)))
}

//export xgpu_graph_nodes
func xgpu_graph_nodes(graph C.uint64_t, roots C.int, list *C.uint64_t, capacity C.uint64_t, n *C.uint64_t) C.int {
	hs, err := shim.GraphNodes(uint64(graph), roots != 0)
	if err != nil {
		return ret(err)
	}
	putList(hs, list, capacity, n)
	return 0
}

//export xgpu_graph_edges
func xgpu_graph_edges(graph C.uint64_t, from, to *C.uint64_t, capacity C.uint64_t, n *C.uint64_t) C.int {
	f, t, err := shim.GraphEdges(uint64(graph))
	if err != nil {
		return ret(err)
	}
	putList(f, from, capacity, n)
	putList(t, to, capacity, n)
	return 0
}

//export xgpu_graph_node_deps
func xgpu_graph_node_deps(node C.uint64_t, dependents C.int, list *C.uint64_t, capacity C.uint64_t, n *C.uint64_t) C.int {
	hs, err := shim.NodeDependencies(uint64(node), dependents != 0)
	if err != nil {
		return ret(err)
	}
	putList(hs, list, capacity, n)
	return 0
}

//export xgpu_graph_node_type
func xgpu_graph_node_type(node C.uint64_t, typ *C.int) C.int {
	t, err := shim.NodeType(uint64(node))
	if err != nil {
		return ret(err)
	}
	*typ = C.int(t)
	return 0
}

//export xgpu_graph_destroy_node
func xgpu_graph_destroy_node(node C.uint64_t) C.int { return ret(shim.GraphDestroyNode(uint64(node))) }

//export xgpu_graph_dot
func xgpu_graph_dot(graph C.uint64_t, path *C.char) C.int {
	return ret(shim.GraphDot(uint64(graph), C.GoString(path)))
}

//export xgpu_graph_instantiate
func xgpu_graph_instantiate(graph, flags C.uint64_t, exec *C.uint64_t) C.int {
	x, err := shim.GraphInstantiate(uint64(graph), uint64(flags))
	if err != nil {
		return ret(err)
	}
	*exec = C.uint64_t(x)
	return 0
}

//export xgpu_graph_exec_destroy
func xgpu_graph_exec_destroy(exec C.uint64_t) C.int { return ret(shim.GraphExecDestroy(uint64(exec))) }

//export xgpu_graph_exec_flags
func xgpu_graph_exec_flags(exec C.uint64_t, flags *C.uint64_t) C.int {
	f, err := shim.GraphExecFlags(uint64(exec))
	if err != nil {
		return ret(err)
	}
	*flags = C.uint64_t(f)
	return 0
}

//export xgpu_graph_exec_kernel_params
func xgpu_graph_exec_kernel_params(exec, node, kernel C.uint64_t, dev C.int, grid, block *C.uint, sharedMem C.uint64_t, args *unsafe.Pointer) C.int {
	return ret(shim.GraphExecKernelParams(uint64(exec), uint64(node), uint64(kernel), int(dev), dim3(grid), dim3(block),
		uint64(sharedMem), unsafe.Pointer(args)))
}

//export xgpu_graph_launch
func xgpu_graph_launch(exec C.uint64_t, dev C.int, stream C.uint64_t) C.int {
	return ret(shim.GraphLaunch(uint64(exec), int(dev), uint64(stream)))
}

//export xgpu_mempool_default
func xgpu_mempool_default(dev C.int, pool *C.uint64_t) C.int {
	p, err := shim.DefaultMemPool(int(dev))
	if err != nil {
		return ret(err)
	}
	*pool = C.uint64_t(p)
	return 0
}

//export xgpu_mempool_current
func xgpu_mempool_current(dev C.int, pool *C.uint64_t) C.int {
	p, err := shim.MemPool(int(dev))
	if err != nil {
		return ret(err)
	}
	*pool = C.uint64_t(p)
	return 0
}

//export xgpu_mempool_set_current
func xgpu_mempool_set_current(dev C.int, pool C.uint64_t) C.int {
	return ret(shim.SetMemPool(int(dev), uint64(pool)))
}

//export xgpu_mempool_create
func xgpu_mempool_create(dev C.int, maxSize C.uint64_t, pool *C.uint64_t) C.int {
	p, err := shim.MemPoolCreate(int(dev), uint64(maxSize))
	if err != nil {
		return ret(err)
	}
	*pool = C.uint64_t(p)
	return 0
}

//export xgpu_mempool_destroy
func xgpu_mempool_destroy(pool C.uint64_t) C.int { return ret(shim.MemPoolDestroy(uint64(pool))) }

//export xgpu_malloc_async
func xgpu_malloc_async(dev C.int, pool, size, stream C.uint64_t, ptr *C.uint64_t) C.int {
	p, err := shim.MallocAsync(int(dev), uint64(pool), uint64(size), uint64(stream))
	if err != nil {
		return ret(err)
	}
	*ptr = C.uint64_t(p)
	return 0
}

//export xgpu_free_async
func xgpu_free_async(ptr C.uint64_t, dev C.int, stream C.uint64_t) C.int {
	return ret(shim.FreeAsync(uint64(ptr), int(dev), uint64(stream)))
}

//export xgpu_mempool_trim
func xgpu_mempool_trim(pool, keep C.uint64_t) C.int {
	return ret(shim.MemPoolTrimTo(uint64(pool), uint64(keep)))
}

//export xgpu_mempool_attr
func xgpu_mempool_attr(pool C.uint64_t, attr C.int, value *C.uint64_t) C.int {
	v, err := shim.MemPoolAttribute(uint64(pool), int(attr))
	if err != nil {
		return ret(err)
	}
	*value = C.uint64_t(v)
	return 0
}

//export xgpu_mempool_set_attr
func xgpu_mempool_set_attr(pool C.uint64_t, attr C.int, value C.uint64_t) C.int {
	return ret(shim.SetMemPoolAttribute(uint64(pool), int(attr), uint64(value)))
}

//export xgpu_mempool_set_access
func xgpu_mempool_set_access(pool C.uint64_t, devs, flags *C.int, n C.uint64_t) C.int {
	var descs []core.AccessDesc
	if n > 0 {
		ds := unsafe.Slice(devs, int(n))
		fs := unsafe.Slice(flags, int(n))
		descs = make([]core.AccessDesc, n)
		for i := range descs {
			descs[i] = core.AccessDesc{Dev: int(ds[i]), Flags: int(fs[i])}
		}
	}
	return ret(shim.MemPoolSetAccess(uint64(pool), descs))
}

//export xgpu_mempool_access
func xgpu_mempool_access(pool C.uint64_t, dev C.int, flags *C.int) C.int {
	f, err := shim.MemPoolAccess(uint64(pool), int(dev))
	if err != nil {
		return ret(err)
	}
	*flags = C.int(f)
	return 0
}
