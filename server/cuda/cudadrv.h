// The part of the CUDA driver API (cuda.h, CUDA 13) that xgpu's worker
// calls, declared here so that the package builds without the CUDA toolkit.
// The driver is loaded at run time with dlopen (xgpu_cuda_load); every entry
// point is reached through a function pointer resolved with dlsym, behind
// the xcu_* wrappers below. Handles cross to Go as integers (uintptr_t,
// unsigned long long), never as Go pointers.

#ifndef XGPU_CUDADRV_H
#define XGPU_CUDADRV_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;      // enum cudaError_enum: int-sized
typedef int CUdevice;      // CUdevice_v1
typedef unsigned long long CUdeviceptr;                  // CUdeviceptr_v2
typedef unsigned long long CUmemGenericAllocationHandle; // _v1
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef void (*CUhostFn)(void *userData);

typedef struct CUuuid_st {
	char bytes[16];
} CUuuid;

// CUmemLocation_v1: {CUmemLocationType type; int id;}
typedef struct CUmemLocation_st {
	int type;
	int id;
} CUmemLocation;

// CUmemAllocationProp_v1.
typedef struct CUmemAllocationProp_st {
	int type;                 // CUmemAllocationType
	int requestedHandleTypes; // CUmemAllocationHandleType
	CUmemLocation location;
	void *win32HandleMetaData;
	struct {
		unsigned char compressionType;
		unsigned char gpuDirectRDMACapable;
		unsigned short usage;
		unsigned char reserved[4];
	} allocFlags;
} CUmemAllocationProp;

// CUmemAccessDesc_v1.
typedef struct CUmemAccessDesc_st {
	CUmemLocation location;
	int flags; // CUmemAccess_flags
} CUmemAccessDesc;

#define XCU_MEM_ALLOCATION_TYPE_PINNED 0x1
#define XCU_MEM_LOCATION_TYPE_DEVICE 0x1

// Returned by a wrapper whose optional entry point the driver lacks. No
// CUresult is negative.
#define XCU_NO_SYMBOL (-1)

// xgpu_cuda_load dlopens path and resolves every entry point. It returns 0
// on success (or if already loaded), 1 if dlopen failed, 2 if a required
// symbol is missing; on failure it writes the reason to err and, for 2, the
// symbol's name to sym. Not safe for concurrent use: the Go side serializes.
int xgpu_cuda_load(const char *path, char *err, size_t errlen, char *sym, size_t symlen);

// xgpu_cuda_has reports whether the optional entry point name was resolved.
int xgpu_cuda_has(const char *name);

// xgpu_hostfn_selftest runs the cuLaunchHostFunc trampoline for id on a new
// POSIX thread, as the driver does, and waits for it. Returns 0 on success.
int xgpu_hostfn_selftest(uintptr_t id);

CUresult xcu_Init(unsigned int flags);
CUresult xcu_DriverGetVersion(int *v);
CUresult xcu_DeviceGetCount(int *n);
CUresult xcu_DeviceGet(int *dev, int ordinal);
CUresult xcu_DeviceGetName(char *name, int len, int dev);
CUresult xcu_DeviceGetUuid(unsigned char *uuid16, int dev);
CUresult xcu_DeviceGetAttribute(int *v, int attr, int dev);
CUresult xcu_DeviceTotalMem(size_t *bytes, int dev);
CUresult xcu_DeviceGetPCIBusId(char *bus, int len, int dev);
CUresult xcu_DeviceCanAccessPeer(int *can, int dev, int peer);
CUresult xcu_DevicePrimaryCtxRetain(uintptr_t *ctx, int dev);
CUresult xcu_DevicePrimaryCtxRelease(int dev);
CUresult xcu_CtxSetCurrent(uintptr_t ctx);
CUresult xcu_CtxGetDevice(int *dev);
CUresult xcu_CtxSynchronize(void);
CUresult xcu_CtxEnablePeerAccess(uintptr_t peer, unsigned int flags);

CUresult xcu_MemAddressReserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags);
CUresult xcu_MemAddressFree(CUdeviceptr ptr, size_t size);
CUresult xcu_MemCreate(CUmemGenericAllocationHandle *h, size_t size, int dev, int handleTypes);
CUresult xcu_MemRelease(CUmemGenericAllocationHandle h);
CUresult xcu_MemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle h);
CUresult xcu_MemUnmap(CUdeviceptr ptr, size_t size);
CUresult xcu_MemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count);
CUresult xcu_MemGetAllocationGranularity(size_t *g, int dev, int handleTypes, int option);
CUresult xcu_MemGetInfo(size_t *free, size_t *total);

CUresult xcu_MemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, uintptr_t s);
CUresult xcu_MemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, uintptr_t s);
CUresult xcu_MemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, uintptr_t s);
CUresult xcu_MemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, uintptr_t s);
CUresult xcu_MemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, uintptr_t s);
CUresult xcu_MemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, uintptr_t s);
CUresult xcu_MemcpyPeerAsync(CUdeviceptr dst, uintptr_t dstCtx, CUdeviceptr src, uintptr_t srcCtx, size_t n, uintptr_t s);
CUresult xcu_MemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, uintptr_t s);
CUresult xcu_MemHostAlloc(void **p, size_t n, unsigned int flags);
CUresult xcu_MemFreeHost(void *p);
CUresult xcu_MemHostGetDevicePointer(CUdeviceptr *d, void *p);

CUresult xcu_StreamCreateWithPriority(uintptr_t *s, unsigned int flags, int priority);
CUresult xcu_StreamDestroy(uintptr_t s);
CUresult xcu_StreamSynchronize(uintptr_t s);
CUresult xcu_StreamQuery(uintptr_t s);
CUresult xcu_StreamWaitEvent(uintptr_t s, uintptr_t e, unsigned int flags);
CUresult xcu_LaunchHostFunc(uintptr_t s, uintptr_t id);
CUresult xcu_StreamWaitValue32(uintptr_t s, CUdeviceptr addr, unsigned int value, unsigned int flags);

CUresult xcu_EventCreate(uintptr_t *e, unsigned int flags);
CUresult xcu_EventRecord(uintptr_t e, uintptr_t s);
CUresult xcu_EventQuery(uintptr_t e);
CUresult xcu_EventSynchronize(uintptr_t e);
CUresult xcu_EventElapsedTime(float *ms, uintptr_t start, uintptr_t end);
CUresult xcu_EventDestroy(uintptr_t e);

CUresult xcu_ModuleLoadData(uintptr_t *m, const void *image);
CUresult xcu_ModuleUnload(uintptr_t m);
CUresult xcu_ModuleGetFunction(uintptr_t *f, uintptr_t m, const char *name);
CUresult xcu_ModuleGetGlobal(CUdeviceptr *p, size_t *bytes, uintptr_t m, const char *name);
CUresult xcu_FuncGetParamInfo(uintptr_t f, size_t index, size_t *offset, size_t *size);
CUresult xcu_FuncGetAttribute(int *v, int attr, uintptr_t f);
CUresult xcu_FuncSetAttribute(uintptr_t f, int attr, int v);
CUresult xcu_LaunchKernel(uintptr_t f, unsigned int gx, unsigned int gy, unsigned int gz,
	unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, uintptr_t s,
	void *args, size_t argsSize);
// xcu_LaunchCooperativeKernel launches f cooperatively from the packed
// argument buffer args; XCU_NO_SYMBOL when the driver lacks
// cuLaunchCooperativeKernel or cuFuncGetParamInfo.
CUresult xcu_LaunchCooperativeKernel(uintptr_t f, unsigned int gx, unsigned int gy, unsigned int gz,
	unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, uintptr_t s,
	void *args, size_t argsSize);

#endif
