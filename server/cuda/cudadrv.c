//go:build cgo

// Run-time loading of libcuda.so.1 and the thin wrappers that call through
// the resolved entry points. See cudadrv.h.

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudadrv.h"
#include "_cgo_export.h"

_Static_assert(sizeof(CUuuid) == 16, "CUuuid layout");
_Static_assert(sizeof(CUmemLocation) == 8, "CUmemLocation layout");
_Static_assert(sizeof(CUmemAllocationProp) == 32, "CUmemAllocationProp layout");
_Static_assert(offsetof(CUmemAllocationProp, location) == 8, "CUmemAllocationProp.location offset");
_Static_assert(offsetof(CUmemAllocationProp, win32HandleMetaData) == 16, "CUmemAllocationProp.win32HandleMetaData offset");
_Static_assert(offsetof(CUmemAllocationProp, allocFlags) == 24, "CUmemAllocationProp.allocFlags offset");
_Static_assert(sizeof(CUmemAccessDesc) == 12, "CUmemAccessDesc layout");
_Static_assert(sizeof(CUdeviceptr) == 8, "CUdeviceptr is 64-bit");

static void *lib;

static CUresult (*p_cuInit)(unsigned int);
static CUresult (*p_cuDriverGetVersion)(int *);
static CUresult (*p_cuDeviceGetCount)(int *);
static CUresult (*p_cuDeviceGet)(CUdevice *, int);
static CUresult (*p_cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*p_cuDeviceGetUuid)(CUuuid *, CUdevice);
static CUresult (*p_cuDeviceGetAttribute)(int *, int, CUdevice);
static CUresult (*p_cuDeviceTotalMem)(size_t *, CUdevice);
static CUresult (*p_cuDeviceGetPCIBusId)(char *, int, CUdevice);
static CUresult (*p_cuDeviceCanAccessPeer)(int *, CUdevice, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRelease)(CUdevice);
static CUresult (*p_cuCtxSetCurrent)(CUcontext);
static CUresult (*p_cuCtxGetDevice)(CUdevice *);
static CUresult (*p_cuCtxSynchronize)(void);
static CUresult (*p_cuCtxEnablePeerAccess)(CUcontext, unsigned int);

static CUresult (*p_cuMemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
static CUresult (*p_cuMemAddressFree)(CUdeviceptr, size_t);
static CUresult (*p_cuMemCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
static CUresult (*p_cuMemRelease)(CUmemGenericAllocationHandle);
static CUresult (*p_cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
static CUresult (*p_cuMemUnmap)(CUdeviceptr, size_t);
static CUresult (*p_cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
static CUresult (*p_cuMemGetAllocationGranularity)(size_t *, const CUmemAllocationProp *, int);
static CUresult (*p_cuMemGetInfo)(size_t *, size_t *);

static CUresult (*p_cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
static CUresult (*p_cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);
static CUresult (*p_cuMemsetD32Async)(CUdeviceptr, unsigned int, size_t, CUstream);
static CUresult (*p_cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyPeerAsync)(CUdeviceptr, CUcontext, CUdeviceptr, CUcontext, size_t, CUstream);
static CUresult (*p_cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemHostAlloc)(void **, size_t, unsigned int);
static CUresult (*p_cuMemFreeHost)(void *);
static CUresult (*p_cuMemHostGetDevicePointer)(CUdeviceptr *, void *, unsigned int);

static CUresult (*p_cuStreamCreateWithPriority)(CUstream *, unsigned int, int);
static CUresult (*p_cuStreamDestroy)(CUstream);
static CUresult (*p_cuStreamSynchronize)(CUstream);
static CUresult (*p_cuStreamQuery)(CUstream);
static CUresult (*p_cuStreamWaitEvent)(CUstream, CUevent, unsigned int);
static CUresult (*p_cuLaunchHostFunc)(CUstream, CUhostFn, void *);
static CUresult (*p_cuStreamWaitValue32)(CUstream, CUdeviceptr, unsigned int, unsigned int);

static CUresult (*p_cuEventCreate)(CUevent *, unsigned int);
static CUresult (*p_cuEventRecord)(CUevent, CUstream);
static CUresult (*p_cuEventQuery)(CUevent);
static CUresult (*p_cuEventSynchronize)(CUevent);
static CUresult (*p_cuEventElapsedTime)(float *, CUevent, CUevent);
static CUresult (*p_cuEventDestroy)(CUevent);

static CUresult (*p_cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*p_cuModuleUnload)(CUmodule);
static CUresult (*p_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*p_cuModuleGetGlobal)(CUdeviceptr *, size_t *, CUmodule, const char *);
static CUresult (*p_cuFuncGetParamInfo)(CUfunction, size_t, size_t *, size_t *);
static CUresult (*p_cuFuncGetAttribute)(int *, int, CUfunction);
static CUresult (*p_cuFuncSetAttribute)(CUfunction, int, int);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int,
	unsigned int, unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
static CUresult (*p_cuLaunchCooperativeKernel)(CUfunction, unsigned int, unsigned int, unsigned int,
	unsigned int, unsigned int, unsigned int, unsigned int, CUstream, void **);

// One entry point: the names to try in order (the versioned export first
// where the plain name has the same ABI; no fallback where the plain name is
// the pre-CUDA-3.2 32-bit ABI, such as cuMemGetInfo), and whether loading
// fails without it.
struct sym {
	void **slot;
	int required;
	const char *names[3];
};

#define SYM(p, req, ...) {(void **)&(p), (req), {__VA_ARGS__}}

static struct sym syms[] = {
	SYM(p_cuInit, 1, "cuInit"),
	SYM(p_cuDriverGetVersion, 1, "cuDriverGetVersion"),
	SYM(p_cuDeviceGetCount, 1, "cuDeviceGetCount"),
	SYM(p_cuDeviceGet, 1, "cuDeviceGet"),
	SYM(p_cuDeviceGetName, 1, "cuDeviceGetName"),
	SYM(p_cuDeviceGetUuid, 1, "cuDeviceGetUuid_v2"),
	SYM(p_cuDeviceGetAttribute, 1, "cuDeviceGetAttribute"),
	SYM(p_cuDeviceTotalMem, 1, "cuDeviceTotalMem_v2"),
	SYM(p_cuDeviceGetPCIBusId, 1, "cuDeviceGetPCIBusId"),
	SYM(p_cuDeviceCanAccessPeer, 1, "cuDeviceCanAccessPeer"),
	SYM(p_cuDevicePrimaryCtxRetain, 1, "cuDevicePrimaryCtxRetain"),
	SYM(p_cuDevicePrimaryCtxRelease, 1, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
	SYM(p_cuCtxSetCurrent, 1, "cuCtxSetCurrent"),
	SYM(p_cuCtxGetDevice, 1, "cuCtxGetDevice"),
	SYM(p_cuCtxSynchronize, 1, "cuCtxSynchronize"),
	SYM(p_cuCtxEnablePeerAccess, 1, "cuCtxEnablePeerAccess"),

	SYM(p_cuMemAddressReserve, 1, "cuMemAddressReserve"),
	SYM(p_cuMemAddressFree, 1, "cuMemAddressFree"),
	SYM(p_cuMemCreate, 1, "cuMemCreate"),
	SYM(p_cuMemRelease, 1, "cuMemRelease"),
	SYM(p_cuMemMap, 1, "cuMemMap"),
	SYM(p_cuMemUnmap, 1, "cuMemUnmap"),
	SYM(p_cuMemSetAccess, 1, "cuMemSetAccess"),
	SYM(p_cuMemGetAllocationGranularity, 1, "cuMemGetAllocationGranularity"),
	SYM(p_cuMemGetInfo, 1, "cuMemGetInfo_v2"),

	SYM(p_cuMemsetD8Async, 1, "cuMemsetD8Async"),
	SYM(p_cuMemsetD16Async, 1, "cuMemsetD16Async"),
	SYM(p_cuMemsetD32Async, 1, "cuMemsetD32Async"),
	SYM(p_cuMemcpyHtoDAsync, 1, "cuMemcpyHtoDAsync_v2"),
	SYM(p_cuMemcpyDtoHAsync, 1, "cuMemcpyDtoHAsync_v2"),
	SYM(p_cuMemcpyDtoDAsync, 1, "cuMemcpyDtoDAsync_v2"),
	SYM(p_cuMemcpyPeerAsync, 1, "cuMemcpyPeerAsync"),
	SYM(p_cuMemcpyAsync, 1, "cuMemcpyAsync"),
	SYM(p_cuMemHostAlloc, 1, "cuMemHostAlloc"),
	SYM(p_cuMemFreeHost, 1, "cuMemFreeHost"),
	SYM(p_cuMemHostGetDevicePointer, 1, "cuMemHostGetDevicePointer_v2"),

	SYM(p_cuStreamCreateWithPriority, 1, "cuStreamCreateWithPriority"),
	SYM(p_cuStreamDestroy, 1, "cuStreamDestroy_v2", "cuStreamDestroy"),
	SYM(p_cuStreamSynchronize, 1, "cuStreamSynchronize"),
	SYM(p_cuStreamQuery, 1, "cuStreamQuery"),
	SYM(p_cuStreamWaitEvent, 1, "cuStreamWaitEvent"),
	SYM(p_cuLaunchHostFunc, 1, "cuLaunchHostFunc"),
	// Stream memory operations: optional; without them host functions run
	// on the driver's callback thread (see hostfunc.go).
	SYM(p_cuStreamWaitValue32, 0, "cuStreamWaitValue32_v2", "cuStreamWaitValue32"),

	SYM(p_cuEventCreate, 1, "cuEventCreate"),
	SYM(p_cuEventRecord, 1, "cuEventRecord"),
	SYM(p_cuEventQuery, 1, "cuEventQuery"),
	SYM(p_cuEventSynchronize, 1, "cuEventSynchronize"),
	// cuEventElapsedTime_v2 (CUDA 12.8+) fixes the measurement between events
	// of different contexts; the ABI is the same as cuEventElapsedTime.
	SYM(p_cuEventElapsedTime, 1, "cuEventElapsedTime_v2", "cuEventElapsedTime"),
	SYM(p_cuEventDestroy, 1, "cuEventDestroy_v2", "cuEventDestroy"),

	SYM(p_cuModuleLoadData, 1, "cuModuleLoadData"),
	SYM(p_cuModuleUnload, 1, "cuModuleUnload"),
	SYM(p_cuModuleGetFunction, 1, "cuModuleGetFunction"),
	SYM(p_cuModuleGetGlobal, 1, "cuModuleGetGlobal_v2"),
	// CUDA 12.4+: optional, so that an older driver still runs everything
	// but the argument-layout query.
	SYM(p_cuFuncGetParamInfo, 0, "cuFuncGetParamInfo"),
	SYM(p_cuFuncGetAttribute, 1, "cuFuncGetAttribute"),
	SYM(p_cuFuncSetAttribute, 1, "cuFuncSetAttribute"),
	SYM(p_cuLaunchKernel, 1, "cuLaunchKernel"),
	// Optional: a driver without it runs everything but cooperative
	// launches.
	SYM(p_cuLaunchCooperativeKernel, 0, "cuLaunchCooperativeKernel"),
};

#define NSYMS (sizeof(syms) / sizeof(syms[0]))

static void copy_msg(char *dst, size_t n, const char *src) {
	if (n == 0) {
		return;
	}
	snprintf(dst, n, "%s", src ? src : "unknown error");
}

static void reset(void) {
	for (size_t i = 0; i < NSYMS; i++) {
		*syms[i].slot = NULL;
	}
}

int xgpu_cuda_load(const char *path, char *err, size_t errlen, char *sym, size_t symlen) {
	if (lib != NULL) {
		return 0;
	}
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		copy_msg(err, errlen, dlerror());
		return 1;
	}
	for (size_t i = 0; i < NSYMS; i++) {
		void *p = NULL;
		for (int j = 0; j < 3 && syms[i].names[j] != NULL && p == NULL; j++) {
			dlerror();
			p = dlsym(h, syms[i].names[j]);
		}
		if (p == NULL && syms[i].required) {
			copy_msg(err, errlen, dlerror());
			copy_msg(sym, symlen, syms[i].names[0]);
			reset();
			dlclose(h);
			return 2;
		}
		*syms[i].slot = p;
	}
	lib = h;
	return 0;
}

int xgpu_cuda_has(const char *name) {
	for (size_t i = 0; i < NSYMS; i++) {
		for (int j = 0; j < 3 && syms[i].names[j] != NULL; j++) {
			if (strcmp(syms[i].names[j], name) == 0) {
				return *syms[i].slot != NULL;
			}
		}
	}
	return 0;
}

// hostfn_trampoline is the CUhostFn given to cuLaunchHostFunc: userData
// carries an integer id from the Go handle table, never a Go pointer.
static void hostfn_trampoline(void *userData) {
	xgpuHostFn((uintptr_t)userData);
}

static void *selftest_thread(void *arg) {
	hostfn_trampoline(arg);
	return NULL;
}

int xgpu_hostfn_selftest(uintptr_t id) {
	pthread_t t;
	if (pthread_create(&t, NULL, selftest_thread, (void *)id) != 0) {
		return 1;
	}
	return pthread_join(t, NULL) != 0;
}

// Wrappers. Each calls one resolved entry point; the Go side only calls them
// after a successful xgpu_cuda_load, so every required pointer is set.

CUresult xcu_Init(unsigned int flags) { return p_cuInit(flags); }
CUresult xcu_DriverGetVersion(int *v) { return p_cuDriverGetVersion(v); }
CUresult xcu_DeviceGetCount(int *n) { return p_cuDeviceGetCount(n); }
CUresult xcu_DeviceGet(int *dev, int ordinal) { return p_cuDeviceGet(dev, ordinal); }
CUresult xcu_DeviceGetName(char *name, int len, int dev) { return p_cuDeviceGetName(name, len, dev); }

CUresult xcu_DeviceGetUuid(unsigned char *uuid16, int dev) {
	CUuuid u;
	CUresult r = p_cuDeviceGetUuid(&u, dev);
	if (r == 0) {
		memcpy(uuid16, u.bytes, 16);
	}
	return r;
}

CUresult xcu_DeviceGetAttribute(int *v, int attr, int dev) { return p_cuDeviceGetAttribute(v, attr, dev); }
CUresult xcu_DeviceTotalMem(size_t *bytes, int dev) { return p_cuDeviceTotalMem(bytes, dev); }
CUresult xcu_DeviceGetPCIBusId(char *bus, int len, int dev) { return p_cuDeviceGetPCIBusId(bus, len, dev); }
CUresult xcu_DeviceCanAccessPeer(int *can, int dev, int peer) { return p_cuDeviceCanAccessPeer(can, dev, peer); }

CUresult xcu_DevicePrimaryCtxRetain(uintptr_t *ctx, int dev) {
	CUcontext c = NULL;
	CUresult r = p_cuDevicePrimaryCtxRetain(&c, dev);
	*ctx = (uintptr_t)c;
	return r;
}

CUresult xcu_DevicePrimaryCtxRelease(int dev) { return p_cuDevicePrimaryCtxRelease(dev); }
CUresult xcu_CtxSetCurrent(uintptr_t ctx) { return p_cuCtxSetCurrent((CUcontext)ctx); }
CUresult xcu_CtxGetDevice(int *dev) { return p_cuCtxGetDevice(dev); }
CUresult xcu_CtxSynchronize(void) { return p_cuCtxSynchronize(); }
CUresult xcu_CtxEnablePeerAccess(uintptr_t peer, unsigned int flags) { return p_cuCtxEnablePeerAccess((CUcontext)peer, flags); }

CUresult xcu_MemAddressReserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags) {
	return p_cuMemAddressReserve(ptr, size, align, addr, flags);
}

CUresult xcu_MemAddressFree(CUdeviceptr ptr, size_t size) { return p_cuMemAddressFree(ptr, size); }

static void device_prop(CUmemAllocationProp *prop, int dev, int handleTypes) {
	memset(prop, 0, sizeof(*prop));
	prop->type = XCU_MEM_ALLOCATION_TYPE_PINNED;
	prop->requestedHandleTypes = handleTypes;
	prop->location.type = XCU_MEM_LOCATION_TYPE_DEVICE;
	prop->location.id = dev;
}

CUresult xcu_MemCreate(CUmemGenericAllocationHandle *h, size_t size, int dev, int handleTypes) {
	CUmemAllocationProp prop;
	device_prop(&prop, dev, handleTypes);
	return p_cuMemCreate(h, size, &prop, 0);
}

CUresult xcu_MemRelease(CUmemGenericAllocationHandle h) { return p_cuMemRelease(h); }

CUresult xcu_MemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle h) {
	return p_cuMemMap(ptr, size, offset, h, 0);
}

CUresult xcu_MemUnmap(CUdeviceptr ptr, size_t size) { return p_cuMemUnmap(ptr, size); }

CUresult xcu_MemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count) {
	return p_cuMemSetAccess(ptr, size, desc, count);
}

CUresult xcu_MemGetAllocationGranularity(size_t *g, int dev, int handleTypes, int option) {
	CUmemAllocationProp prop;
	device_prop(&prop, dev, handleTypes);
	return p_cuMemGetAllocationGranularity(g, &prop, option);
}

CUresult xcu_MemGetInfo(size_t *free, size_t *total) { return p_cuMemGetInfo(free, total); }

CUresult xcu_MemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, uintptr_t s) {
	return p_cuMemsetD8Async(dst, v, n, (CUstream)s);
}
CUresult xcu_MemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, uintptr_t s) {
	return p_cuMemsetD16Async(dst, v, n, (CUstream)s);
}
CUresult xcu_MemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, uintptr_t s) {
	return p_cuMemsetD32Async(dst, v, n, (CUstream)s);
}
CUresult xcu_MemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, uintptr_t s) {
	return p_cuMemcpyHtoDAsync(dst, src, n, (CUstream)s);
}
CUresult xcu_MemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, uintptr_t s) {
	return p_cuMemcpyDtoHAsync(dst, src, n, (CUstream)s);
}
CUresult xcu_MemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, uintptr_t s) {
	return p_cuMemcpyDtoDAsync(dst, src, n, (CUstream)s);
}
CUresult xcu_MemcpyPeerAsync(CUdeviceptr dst, uintptr_t dstCtx, CUdeviceptr src, uintptr_t srcCtx, size_t n, uintptr_t s) {
	return p_cuMemcpyPeerAsync(dst, (CUcontext)dstCtx, src, (CUcontext)srcCtx, n, (CUstream)s);
}
CUresult xcu_MemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, uintptr_t s) {
	return p_cuMemcpyAsync(dst, src, n, (CUstream)s);
}
CUresult xcu_MemHostAlloc(void **p, size_t n, unsigned int flags) { return p_cuMemHostAlloc(p, n, flags); }
CUresult xcu_MemFreeHost(void *p) { return p_cuMemFreeHost(p); }
CUresult xcu_MemHostGetDevicePointer(CUdeviceptr *d, void *p) { return p_cuMemHostGetDevicePointer(d, p, 0); }

CUresult xcu_StreamCreateWithPriority(uintptr_t *s, unsigned int flags, int priority) {
	CUstream st = NULL;
	CUresult r = p_cuStreamCreateWithPriority(&st, flags, priority);
	*s = (uintptr_t)st;
	return r;
}
CUresult xcu_StreamDestroy(uintptr_t s) { return p_cuStreamDestroy((CUstream)s); }
CUresult xcu_StreamSynchronize(uintptr_t s) { return p_cuStreamSynchronize((CUstream)s); }
CUresult xcu_StreamQuery(uintptr_t s) { return p_cuStreamQuery((CUstream)s); }
CUresult xcu_StreamWaitEvent(uintptr_t s, uintptr_t e, unsigned int flags) {
	return p_cuStreamWaitEvent((CUstream)s, (CUevent)e, flags);
}
CUresult xcu_LaunchHostFunc(uintptr_t s, uintptr_t id) {
	return p_cuLaunchHostFunc((CUstream)s, hostfn_trampoline, (void *)id);
}

CUresult xcu_StreamWaitValue32(uintptr_t s, CUdeviceptr addr, unsigned int value, unsigned int flags) {
	if (p_cuStreamWaitValue32 == NULL) {
		return XCU_NO_SYMBOL;
	}
	return p_cuStreamWaitValue32((CUstream)s, addr, value, flags);
}

CUresult xcu_EventCreate(uintptr_t *e, unsigned int flags) {
	CUevent ev = NULL;
	CUresult r = p_cuEventCreate(&ev, flags);
	*e = (uintptr_t)ev;
	return r;
}
CUresult xcu_EventRecord(uintptr_t e, uintptr_t s) { return p_cuEventRecord((CUevent)e, (CUstream)s); }
CUresult xcu_EventQuery(uintptr_t e) { return p_cuEventQuery((CUevent)e); }
CUresult xcu_EventSynchronize(uintptr_t e) { return p_cuEventSynchronize((CUevent)e); }
CUresult xcu_EventElapsedTime(float *ms, uintptr_t start, uintptr_t end) {
	return p_cuEventElapsedTime(ms, (CUevent)start, (CUevent)end);
}
CUresult xcu_EventDestroy(uintptr_t e) { return p_cuEventDestroy((CUevent)e); }

CUresult xcu_ModuleLoadData(uintptr_t *m, const void *image) {
	CUmodule mod = NULL;
	CUresult r = p_cuModuleLoadData(&mod, image);
	*m = (uintptr_t)mod;
	return r;
}
CUresult xcu_ModuleUnload(uintptr_t m) { return p_cuModuleUnload((CUmodule)m); }
CUresult xcu_ModuleGetFunction(uintptr_t *f, uintptr_t m, const char *name) {
	CUfunction fn = NULL;
	CUresult r = p_cuModuleGetFunction(&fn, (CUmodule)m, name);
	*f = (uintptr_t)fn;
	return r;
}
CUresult xcu_ModuleGetGlobal(CUdeviceptr *p, size_t *bytes, uintptr_t m, const char *name) {
	return p_cuModuleGetGlobal(p, bytes, (CUmodule)m, name);
}
CUresult xcu_FuncGetParamInfo(uintptr_t f, size_t index, size_t *offset, size_t *size) {
	if (p_cuFuncGetParamInfo == NULL) {
		return XCU_NO_SYMBOL;
	}
	return p_cuFuncGetParamInfo((CUfunction)f, index, offset, size);
}
CUresult xcu_FuncGetAttribute(int *v, int attr, uintptr_t f) { return p_cuFuncGetAttribute(v, attr, (CUfunction)f); }
CUresult xcu_FuncSetAttribute(uintptr_t f, int attr, int v) { return p_cuFuncSetAttribute((CUfunction)f, attr, v); }

// xcu_LaunchKernel passes the arguments as one packed buffer, each argument
// at its offset (CU_LAUNCH_PARAM_BUFFER_POINTER), so no array of pointers to
// Go memory is ever built. cuLaunchKernel copies the buffer before it
// returns.
CUresult xcu_LaunchKernel(uintptr_t f, unsigned int gx, unsigned int gy, unsigned int gz,
	unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, uintptr_t s,
	void *args, size_t argsSize) {
	size_t size = argsSize;
	void *extra[] = {
		(void *)0x01, args,  // CU_LAUNCH_PARAM_BUFFER_POINTER
		(void *)0x02, &size, // CU_LAUNCH_PARAM_BUFFER_SIZE
		(void *)0x00,        // CU_LAUNCH_PARAM_END
	};
	return p_cuLaunchKernel((CUfunction)f, gx, gy, gz, bx, by, bz, shmem, (CUstream)s, NULL,
		argsSize != 0 ? extra : NULL);
}

// Driver results the cooperative launch's parameter walk tells apart.
#define XCU_SUCCESS 0
#define XCU_ERROR_INVALID_VALUE 1
#define XCU_ERROR_OUT_OF_MEMORY 2

// xcu_LaunchCooperativeKernel launches f with cuLaunchCooperativeKernel,
// which takes no packed buffer: it builds the array of pointers to each
// parameter inside args from the kernel's layout (cuFuncGetParamInfo), on
// the stack for up to 32 parameters. A parameter outside args fails with
// CUDA_ERROR_INVALID_VALUE, so the driver never reads past the buffer.
// The driver copies the parameters before it returns; no pointer is kept.
CUresult xcu_LaunchCooperativeKernel(uintptr_t f, unsigned int gx, unsigned int gy, unsigned int gz,
	unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, uintptr_t s,
	void *args, size_t argsSize) {
	if (p_cuLaunchCooperativeKernel == NULL || p_cuFuncGetParamInfo == NULL) {
		return XCU_NO_SYMBOL;
	}
	void *small[32];
	void **params = small;
	size_t cap = sizeof(small) / sizeof(small[0]), n = 0;
	CUresult r = XCU_SUCCESS;
	for (;;) {
		size_t off = 0, size = 0;
		CUresult pr = p_cuFuncGetParamInfo((CUfunction)f, n, &off, &size);
		if (pr == XCU_ERROR_INVALID_VALUE) {
			break; // past the last parameter
		}
		if (pr != XCU_SUCCESS) {
			r = pr;
			goto out;
		}
		if (size == 0 || off > argsSize || size > argsSize - off) {
			r = XCU_ERROR_INVALID_VALUE;
			goto out;
		}
		if (n == cap) {
			// Every parameter takes at least one byte of args, so n stays
			// at most argsSize (at most 32764).
			void **grown = malloc(2 * cap * sizeof(void *));
			if (grown == NULL) {
				r = XCU_ERROR_OUT_OF_MEMORY;
				goto out;
			}
			memcpy(grown, params, n * sizeof(void *));
			if (params != small) {
				free(params);
			}
			params = grown;
			cap *= 2;
		}
		params[n++] = (char *)args + off;
		if (n > argsSize) {
			r = XCU_ERROR_INVALID_VALUE; // more parameters than bytes: a broken layout
			goto out;
		}
	}
	r = p_cuLaunchCooperativeKernel((CUfunction)f, gx, gy, gz, bx, by, bz, shmem, (CUstream)s,
		n != 0 ? params : NULL);
out:
	if (params != small) {
		free(params);
	}
	return r;
}
