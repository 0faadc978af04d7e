/*
 * driver.c: the CUDA driver API functions libcuda.so.1 serves through
 * xgpu: what PyTorch and similar frameworks call beside the runtime
 * (devices, primary contexts, the current context, pointer queries,
 * modules they compile at run time and their launches). Each converts the
 * driver ABI to libxgpu.so's (include/xgpu.h) and its cudaError_t results
 * to CUresult; every other exported name is a generated stub
 * (zz_generated_stubs.c) returning CUDA_ERROR_NOT_SUPPORTED.
 *
 * Contexts: each device has one context, its primary context, whose
 * CUcontext is an address inside this library (never dereferenced). The
 * calling thread's current context is kept in libxgpu.so with the
 * runtime's current device, so the two APIs agree as they do in CUDA:
 * cudaSetDevice makes the device's primary context current, and
 * cuCtxSetCurrent changes cudaGetDevice. The driver needs no cuInit here:
 * every function initializes what it uses, as the runtime would have.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../facade/launch_structs.h"
#include "../facade/occupancy.h"
#include "driver.h"

#define DRIVER_VERSION_SERVED 13000

/* cudaError_t values of libxgpu.so that have no CUresult of equal value. */
enum {
  rtInvalidConfiguration = 9,
  rtInvalidPitchValue = 12,
  rtInvalidSymbol = 13,
  rtInvalidMemcpyDirection = 21,
  rtInsufficientDriver = 35,
  rtMissingConfiguration = 52,
  rtInvalidDeviceFunction = 98
};

/* drv converts a libxgpu.so status (a cudaError_t) to the CUresult of the
 * same meaning: CUDA numbers the two alike from 100 on and for the first
 * few values. */
static CUresult drv(int e) {
  switch (e) {
    case rtInvalidConfiguration:
    case rtInvalidPitchValue:
    case rtInvalidMemcpyDirection:
    case rtMissingConfiguration:
      return CUDA_ERROR_INVALID_VALUE;
    case rtInvalidSymbol:
      return CUDA_ERROR_NOT_FOUND;
    case rtInsufficientDriver:
      return CUDA_ERROR_SYSTEM_DRIVER_MISMATCH;
    case rtInvalidDeviceFunction:
      return CUDA_ERROR_INVALID_HANDLE;
  }
  if (e <= 8 || e == 34 || e == 36 || e == 46 || e >= 100) return e;
  return CUDA_ERROR_UNKNOWN;
}

CUresult drv_unsupported(const char *name) { return drv(xgpu_log_unsupported((char *)name)); }

__attribute__((destructor)) static void drv_fini(void) { (void)xgpu_shutdown(); }

/* ---- initialization, versions ---- */

XGPU_EXPORT CUresult cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  return drv(xgpu_init());
}

XGPU_EXPORT CUresult cuDriverGetVersion(int *v) {
  if (!v) return CUDA_ERROR_INVALID_VALUE;
  *v = DRIVER_VERSION_SERVED;
  return CUDA_SUCCESS;
}

/* ---- devices ---- */

static CUresult dev_info(CUdevice dev, xgpu_device_info_t **in) { return drv(xgpu_device_info(dev, in)); }

XGPU_EXPORT CUresult cuDeviceGetCount(int *count) {
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  int n = 0, e = xgpu_device_count(&n);
  *count = e ? 0 : n;
  return drv(e);
}

XGPU_EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
  if (!dev) return CUDA_ERROR_INVALID_VALUE;
  int n = 0, e = xgpu_device_count(&n);
  if (e) return drv(e);
  if (ordinal < 0 || ordinal >= n) return CUDA_ERROR_INVALID_DEVICE;
  *dev = ordinal;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
  if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  snprintf(name, (size_t)len, "%s", in->name);
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) {
  if (!uuid) return CUDA_ERROR_INVALID_VALUE;
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  memcpy(uuid->bytes, in->uuid, sizeof uuid->bytes);
  return CUDA_SUCCESS;
}

/* The second version differs for MIG instances, which xgpu's devices are
 * not: both give the GPU's UUID. */
XGPU_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) { return cuDeviceGetUuid(uuid, dev); }

XGPU_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
  if (!bytes) return CUDA_ERROR_INVALID_VALUE;
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  *bytes = (size_t)in->total_mem;
  return CUDA_SUCCESS;
}

/* hidden_attr reports the attributes of features whose driver entry points
 * xgpu does not serve (virtual memory management, multicast, shareable
 * handles, DMA-BUF): 0 here, whatever the GPU has, so that frameworks do
 * not choose them. */
static int hidden_attr(int a) {
  switch (a) {
    case 102: /* VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED */
    case 103: /* HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED */
    case 110: /* GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED */
    case 124: /* DMA_BUF_SUPPORTED */
    case 128: /* HANDLE_TYPE_FABRIC_SUPPORTED */
    case 132: /* MULTICAST_SUPPORTED */
    case 141: /* HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED */
    case 145: /* HOST_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED */
      return 1;
  }
  return 0;
}

XGPU_EXPORT CUresult cuDeviceGetAttribute(int *value, int a, CUdevice dev) {
  if (!value) return CUDA_ERROR_INVALID_VALUE;
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  if (a <= 0 || a >= XGPU_ATTR_COUNT || !in->attr_valid[a]) return CUDA_ERROR_INVALID_VALUE;
  *value = hidden_attr(a) ? 0 : in->attrs[a];
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev) {
  if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
  CUresult e = cuDeviceGetAttribute(major, 75, dev);
  return e ? e : cuDeviceGetAttribute(minor, 76, dev);
}

XGPU_EXPORT CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice dev) {
  if (!id || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  snprintf(id, (size_t)len, "%s", in->pci_bus_id);
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuDeviceGetByPCIBusId(CUdevice *dev, const char *id) {
  if (!dev || !id) return CUDA_ERROR_INVALID_VALUE;
  return drv(xgpu_device_by_pci_bus_id((char *)id, dev));
}

XGPU_EXPORT CUresult cuDeviceCanAccessPeer(int *can, CUdevice dev, CUdevice peer) {
  if (!can) return CUDA_ERROR_INVALID_VALUE;
  return drv(xgpu_device_can_access_peer(dev, peer, can));
}

/* ---- contexts ---- */

/* One byte per device: the address of ctx_anchor[d] is device d's
 * primary context. */
static char ctx_anchor[XGPU_MAX_DEVICES];

static CUcontext ctx_of(int dev) { return (CUcontext)(void *)&ctx_anchor[dev]; }

static int dev_of_ctx(CUcontext c, int *dev) {
  uintptr_t p = (uintptr_t)(void *)c, base = (uintptr_t)(void *)ctx_anchor;
  if (p < base || p >= base + XGPU_MAX_DEVICES) return 0;
  *dev = (int)(p - base);
  return 1;
}

/* check_dev fails for a device outside the map (or past XGPU_MAX_DEVICES). */
static CUresult check_dev(CUdevice dev) {
  xgpu_device_info_t *in;
  CUresult e = dev_info(dev, &in);
  if (e) return e;
  return dev < XGPU_MAX_DEVICES ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

/* cur_dev is the current context's device. */
static CUresult cur_dev(int *dev) { return xgpu_thread_context(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }

/* A primary context is active once the runtime used its device or the
 * driver API retained it; it stays active for the process. */
XGPU_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
  if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
  CUresult e = check_dev(dev);
  if (e) return e;
  return drv(xgpu_primary_ctx_state(dev, flags, active));
}

XGPU_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
  if (!ctx) return CUDA_ERROR_INVALID_VALUE;
  CUresult e = check_dev(dev);
  if (e) return e;
  e = drv(xgpu_primary_ctx_retain(dev));
  if (e) return e;
  *ctx = ctx_of(dev);
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  CUresult e = check_dev(dev);
  if (e) return e;
  return drv(xgpu_primary_ctx_release(dev));
}

XGPU_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { return cuDevicePrimaryCtxRelease_v2(dev); }

XGPU_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
  if (flags & ~0xffu) return CUDA_ERROR_INVALID_VALUE;
  CUresult e = check_dev(dev);
  if (e) return e;
  return drv(xgpu_primary_ctx_set_flags(dev, flags));
}

XGPU_EXPORT CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) {
  return cuDevicePrimaryCtxSetFlags_v2(dev, flags);
}

XGPU_EXPORT CUresult cuCtxGetCurrent(CUcontext *ctx) {
  if (!ctx) return CUDA_ERROR_INVALID_VALUE;
  int dev;
  *ctx = xgpu_thread_context(&dev) ? ctx_of(dev) : NULL;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (!ctx) {
    xgpu_thread_clear_context();
    return CUDA_SUCCESS;
  }
  int dev;
  if (!dev_of_ctx(ctx, &dev)) return CUDA_ERROR_INVALID_CONTEXT;
  CUresult e = check_dev(dev);
  if (e) return e;
  return drv(xgpu_thread_set_device(dev));
}

XGPU_EXPORT CUresult cuCtxGetDevice(CUdevice *dev) {
  if (!dev) return CUDA_ERROR_INVALID_VALUE;
  int d;
  CUresult e = cur_dev(&d);
  if (e) return e;
  *dev = d;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuCtxSynchronize(void) {
  int dev;
  CUresult e = cur_dev(&dev);
  return e ? e : drv(xgpu_device_synchronize(dev));
}

/* ---- memory ---- */

XGPU_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t size) {
  if (!p || size == 0) return CUDA_ERROR_INVALID_VALUE;
  int dev;
  CUresult e = cur_dev(&dev);
  if (e) return e;
  uint64_t ptr = 0;
  e = drv(xgpu_malloc(dev, size, &ptr));
  if (e) return e;
  *p = ptr;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { return drv(xgpu_free(p)); }

XGPU_EXPORT CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes) {
  if (!free_bytes || !total_bytes) return CUDA_ERROR_INVALID_VALUE;
  int dev;
  CUresult e = cur_dev(&dev);
  if (e) return e;
  uint64_t f = 0, t = 0;
  e = drv(xgpu_mem_get_info(dev, &f, &t));
  if (e) return e;
  *free_bytes = (size_t)f;
  *total_bytes = (size_t)t;
  return CUDA_SUCCESS;
}

enum { copyHostToDevice = 1, copyDeviceToHost = 2 };

static CUresult copy(void *dst, const void *src, size_t n, int kind) {
  int dev;
  CUresult e = cur_dev(&dev);
  if (e) return e;
  if (n && (!dst || !src)) return CUDA_ERROR_INVALID_VALUE;
  return drv(xgpu_memcpy(dst, (void *)src, n, kind, dev, 0, 0));
}

XGPU_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
  return copy((void *)(uintptr_t)dst, src, n, copyHostToDevice);
}

XGPU_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void *src, size_t n) { return cuMemcpyHtoD_v2(dst, src, n); }

XGPU_EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
  return copy(dst, (const void *)(uintptr_t)src, n, copyDeviceToHost);
}

XGPU_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dst, CUdeviceptr src, size_t n) { return cuMemcpyDtoH_v2(dst, src, n); }

/* ---- streams ---- */

/* Special stream handles: NULL, CU_STREAM_LEGACY and CU_STREAM_PER_THREAD
 * are all the legacy stream of the current context's device (handle 0). */
static int special_stream(CUstream s) { return (uintptr_t)s <= 2; }

static uint64_t stream_handle(CUstream s) { return special_stream(s) ? 0 : (uint64_t)(uintptr_t)s; }

XGPU_EXPORT CUresult cuStreamSynchronize(CUstream s) {
  int dev;
  if (special_stream(s)) {
    CUresult e = cur_dev(&dev);
    if (e) return e;
  } else {
    unsigned flags;
    int prio;
    CUresult e = drv(xgpu_stream_info(stream_handle(s), &dev, &flags, &prio));
    if (e) return e;
  }
  return drv(xgpu_stream_synchronize(dev, stream_handle(s)));
}

XGPU_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s) { return cuStreamSynchronize(s); }

/* ---- pointers ---- */

enum {
  ptrContext = 1,
  ptrMemoryType = 2,
  ptrDevicePointer = 3,
  ptrHostPointer = 4,
  ptrIsManaged = 8,
  ptrDeviceOrdinal = 9,
  ptrRangeStart = 11,
  ptrRangeSize = 12,
  ptrMapped = 13
};
enum { memTypeHost = 1, memTypeDevice = 2 };

/* pointer_attr writes attribute a of the pointer pi describes into data.
 * valid is 0 for memory CUDA does not know: cuPointerGetAttributes writes
 * zeros then, and cuPointerGetAttribute fails. */
static CUresult pointer_attr(const xgpu_pointer_info_t *pi, int valid, int a, void *data) {
  if (!data) return CUDA_ERROR_INVALID_VALUE;
  switch (a) {
    case ptrContext:
      *(CUcontext *)data = valid ? ctx_of(pi->device) : NULL;
      return CUDA_SUCCESS;
    case ptrMemoryType:
      *(unsigned int *)data = !valid ? 0 : pi->type == 2 ? memTypeDevice : memTypeHost;
      return CUDA_SUCCESS;
    case ptrDevicePointer:
      *(CUdeviceptr *)data = valid ? pi->dev_ptr : 0;
      return CUDA_SUCCESS;
    case ptrHostPointer:
      /* Device memory has no host address: cuPointerGetAttribute fails. */
      *(void **)data = valid ? (void *)(uintptr_t)pi->host_ptr : NULL;
      return CUDA_SUCCESS;
    case ptrIsManaged:
      *(unsigned int *)data = 0;
      return CUDA_SUCCESS;
    case ptrDeviceOrdinal:
      *(int *)data = valid ? pi->device : -2;
      return CUDA_SUCCESS;
    case ptrRangeStart:
      *(CUdeviceptr *)data = valid ? pi->base : 0;
      return CUDA_SUCCESS;
    case ptrRangeSize:
      *(size_t *)data = valid ? (size_t)pi->size : 0;
      return CUDA_SUCCESS;
    case ptrMapped:
      *(unsigned int *)data = valid;
      return CUDA_SUCCESS;
  }
  char name[64];
  snprintf(name, sizeof name, "cuPointerGetAttribute(attribute %d)", a);
  return drv_unsupported(name);
}

static CUresult pointer_info(CUdeviceptr p, xgpu_pointer_info_t *pi, int *valid) {
  memset(pi, 0, sizeof *pi);
  int e = xgpu_pointer_info((void *)(uintptr_t)p, xgpu_thread_device(), pi);
  if (e) return drv(e);
  *valid = pi->type != 0; /* 0: host memory CUDA does not know */
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuPointerGetAttribute(void *data, int a, CUdeviceptr p) {
  xgpu_pointer_info_t pi;
  int valid = 0;
  CUresult e = pointer_info(p, &pi, &valid);
  if (e) return e;
  if (!valid || (a == ptrHostPointer && pi.type == 2)) return CUDA_ERROR_INVALID_VALUE;
  return pointer_attr(&pi, valid, a, data);
}

XGPU_EXPORT CUresult cuPointerGetAttributes(unsigned int n, int *attrs, void **data, CUdeviceptr p) {
  if (n > 0 && (!attrs || !data)) return CUDA_ERROR_INVALID_VALUE;
  xgpu_pointer_info_t pi;
  int valid = 0;
  CUresult e = pointer_info(p, &pi, &valid);
  if (e) return e;
  for (unsigned int i = 0; i < n; i++) {
    e = pointer_attr(&pi, valid, attrs[i], data[i]);
    if (e) return e;
  }
  return CUDA_SUCCESS;
}

/* ---- modules and functions ---- */

static CUresult module_load(CUmodule *m, const void *image) {
  if (!m || !image) return CUDA_ERROR_INVALID_VALUE;
  int dev;
  CUresult e = cur_dev(&dev);
  if (e) return e;
  uint64_t h = 0;
  e = drv(xgpu_module_load(dev, (void *)image, &h));
  if (e) return e;
  *m = (CUmodule)(uintptr_t)h;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) { return module_load(m, image); }

/* JIT options that report back (CUjit_option values). */
enum { jitWallTime = 2, jitInfoLog = 3, jitInfoLogSize = 4, jitErrorLog = 5, jitErrorLogSize = 6 };

/* cuModuleLoadDataEx: the server's driver compiles PTX with its own
 * options; the options that report back report an empty log and no time. */
XGPU_EXPORT CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned int n, int *options, void **values) {
  if (n > 0 && (!options || !values)) return CUDA_ERROR_INVALID_VALUE;
  CUresult e = module_load(m, image);
  for (unsigned int i = 0; i < n; i++) {
    switch (options[i]) {
      case jitWallTime: {
        float zero = 0;
        memcpy(&values[i], &zero, sizeof zero);
        break;
      }
      case jitInfoLog:
      case jitErrorLog:
        if (values[i]) *(char *)values[i] = 0;
        break;
      case jitInfoLogSize:
      case jitErrorLogSize:
        values[i] = NULL;
        break;
    }
  }
  return e;
}

/* maxModuleFile bounds a module file cuModuleLoad reads. */
#define MAX_MODULE_FILE (1L << 30)

XGPU_EXPORT CUresult cuModuleLoad(CUmodule *m, const char *path) {
  if (!m || !path) return CUDA_ERROR_INVALID_VALUE;
  FILE *f = fopen(path, "rb");
  if (!f) return CUDA_ERROR_FILE_NOT_FOUND;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || n > MAX_MODULE_FILE || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return CUDA_ERROR_INVALID_IMAGE;
  }
  char *buf = malloc((size_t)n + 1); /* NUL-terminated, in case it is PTX */
  if (!buf) {
    fclose(f);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  CUresult e = CUDA_ERROR_INVALID_IMAGE;
  if (got == (size_t)n && n > 0) {
    buf[n] = 0;
    e = module_load(m, buf);
  }
  free(buf);
  return e;
}

XGPU_EXPORT CUresult cuModuleUnload(CUmodule m) { return drv(xgpu_module_unload((uint64_t)(uintptr_t)m)); }

XGPU_EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  if (!f || !name) return CUDA_ERROR_INVALID_VALUE;
  uint64_t h = 0;
  int e = xgpu_module_function((uint64_t)(uintptr_t)m, (char *)name, &h);
  if (e == rtInvalidDeviceFunction) return CUDA_ERROR_NOT_FOUND;
  if (e) return drv(e);
  *f = (CUfunction)(uintptr_t)h;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *bytes, CUmodule m, const char *name) {
  if (!name) return CUDA_ERROR_INVALID_VALUE;
  uint64_t addr = 0, size = 0;
  CUresult e = drv(xgpu_module_global((uint64_t)(uintptr_t)m, (char *)name, &addr, &size));
  if (e) return e;
  if (p) *p = addr;
  if (bytes) *bytes = (size_t)size;
  return CUDA_SUCCESS;
}

/* cuLaunchKernel's extra options. */
#define LAUNCH_PARAM_END ((void *)0)
#define LAUNCH_PARAM_BUFFER_POINTER ((void *)1)
#define LAUNCH_PARAM_BUFFER_SIZE ((void *)2)

/* launch_extra reads cuLaunchKernel's extra options: the packed argument
 * buffer and its size. */
static CUresult launch_extra(void **params, void **extra, void **packed, size_t *packed_size) {
  *packed = NULL;
  *packed_size = 0;
  if (params && extra) return CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; extra && extra[i] != LAUNCH_PARAM_END; i += 2) {
    if (extra[i] == LAUNCH_PARAM_BUFFER_POINTER) {
      *packed = extra[i + 1];
    } else if (extra[i] == LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) {
      *packed_size = *(size_t *)extra[i + 1];
    } else {
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                    unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,
                                    void **extra) {
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  void *packed;
  size_t packed_size;
  CUresult e = launch_extra(params, extra, &packed, &packed_size);
  if (e) return e;
  unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
  return drv(xgpu_function_launch((uint64_t)(uintptr_t)f, grid, block, shmem, stream_handle(s), params, packed,
                                  packed_size));
}

/* A cooperative launch (every block resident at once); it takes kernel
 * parameters only, as the driver's does. */
/* coop_fits refuses a cooperative grid that cannot be resident at once, as
 * the driver's launch does: more blocks than the SMs hold by
 * cuOccupancyMaxActiveBlocksPerMultiprocessor. (The server's driver checks
 * again when the stream gets there.) */
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, CUfunction f, int blockSize, size_t dynSmem,
                                                              unsigned int flags);

static CUresult coop_fits(CUfunction f, const unsigned grid[3], const unsigned block[3], unsigned shmem) {
  long threads = (long)block[0] * block[1] * block[2];
  if (threads <= 0 || threads > 0x7fffffff) return CUDA_SUCCESS; /* the launch refuses it */
  int per_sm = 0, sms = 0;
  CUresult e = cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&per_sm, f, (int)threads, shmem, 0);
  if (e) return e;
  CUdevice dev;
  e = cuCtxGetDevice(&dev);
  if (!e) e = cuDeviceGetAttribute(&sms, 16 /* MULTIPROCESSOR_COUNT */, dev);
  if (e) return e;
  unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
  if (blocks > (unsigned long long)per_sm * (unsigned long long)sms) return CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                               unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                               CUstream s, void **params) {
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
  CUresult fit = coop_fits(f, grid, block, shmem);
  if (fit) return fit;
  return drv(xgpu_function_launch_ex((uint64_t)(uintptr_t)f, grid, block, shmem, stream_handle(s), params, NULL, 0,
                                     XGPU_LAUNCH_COOPERATIVE));
}

XGPU_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                                    unsigned int bx, unsigned int by, unsigned int bz,
                                                    unsigned int shmem, CUstream s, void **params) {
  return cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

/* The extensible launch: arguments as cuLaunchKernel takes them, the
 * attributes by xgpu_launch_attrs (launch_structs.h); one refused is
 * logged once per attribute id. */
XGPU_EXPORT CUresult cuLaunchKernelEx(const struct CUlaunchConfig_st *config, CUfunction f, void **params,
                                      void **extra) {
  if (!config) return CUDA_ERROR_INVALID_VALUE;
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  unsigned flags = 0;
  int refused = 0;
  int e = xgpu_launch_attrs(config->attrs, config->numAttrs, &flags, &refused);
  if (e == xgpu_launch_attrs_not_supported) {
    char name[64];
    snprintf(name, sizeof name, "cuLaunchKernelEx(attribute %d)", refused);
    return drv_unsupported(name);
  }
  if (e) return e;
  void *packed;
  size_t packed_size;
  CUresult r = launch_extra(params, extra, &packed, &packed_size);
  if (r) return r;
  unsigned grid[3] = {config->gridDimX, config->gridDimY, config->gridDimZ};
  unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
  if (flags & XGPU_LAUNCH_COOPERATIVE) {
    r = coop_fits(f, grid, block, config->sharedMemBytes);
    if (r) return r;
  }
  return drv(xgpu_function_launch_ex((uint64_t)(uintptr_t)f, grid, block, config->sharedMemBytes,
                                     stream_handle((CUstream)config->hStream), params, packed, packed_size, flags));
}

XGPU_EXPORT CUresult cuLaunchKernelEx_ptsz(const struct CUlaunchConfig_st *config, CUfunction f, void **params,
                                           void **extra) {
  return cuLaunchKernelEx(config, f, params, extra);
}

XGPU_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                         unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,
                                         void **extra) {
  return cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

XGPU_EXPORT CUresult cuFuncGetAttribute(int *value, int a, CUfunction f) {
  if (!value) return CUDA_ERROR_INVALID_VALUE;
  return drv(xgpu_function_get_attribute((uint64_t)(uintptr_t)f, a, value));
}

XGPU_EXPORT CUresult cuFuncSetAttribute(CUfunction f, int a, int value) {
  return drv(xgpu_function_set_attribute((uint64_t)(uintptr_t)f, a, value));
}

/* The cache configuration is a preference; the server's driver picks. */
XGPU_EXPORT CUresult cuFuncSetCacheConfig(CUfunction f, int config) {
  if (config < 0 || config > 3) return CUDA_ERROR_INVALID_VALUE;
  int dev;
  return drv(xgpu_function_device((uint64_t)(uintptr_t)f, &dev));
}

/* Function attributes (CUfunction_attribute values). */
enum { funcMaxThreads = 0, funcSharedSize = 1, funcNumRegs = 4 };

XGPU_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, CUfunction f, int blockSize,
                                                                          size_t dynSmem, unsigned int flags) {
  if (!n || blockSize <= 0 || flags > 1) return CUDA_ERROR_INVALID_VALUE;
  uint64_t h = (uint64_t)(uintptr_t)f;
  int dev, lim[6], max_threads, shared, regs;
  CUresult e = drv(xgpu_function_device(h, &dev));
  for (int i = 0; !e && i < 6; i++) e = cuDeviceGetAttribute(&lim[i], xgpu_occupancy_attrs[i], dev);
  if (!e) e = drv(xgpu_function_get_attribute(h, funcMaxThreads, &max_threads));
  if (!e) e = drv(xgpu_function_get_attribute(h, funcSharedSize, &shared));
  if (!e) e = drv(xgpu_function_get_attribute(h, funcNumRegs, &regs));
  if (e) return e;
  *n = xgpu_occupancy(lim, max_threads, regs, (long)shared + (long)dynSmem, blockSize);
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUfunction f, int blockSize, size_t dynSmem) {
  return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n, f, blockSize, dynSmem, 0);
}

/* ---- entry points ---- */

/* This library, opened by its own path, for dlsym. */
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static void *self;

static void self_open(void) {
  Dl_info info;
  if (dladdr((void *)&self_open, &info) && info.dli_fname) self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
}

/* versioned_since returns the CUDA version that introduced name, or 0 if
 * it is not a versioned entry point. */
static int versioned_since(const char *name) {
  int lo = 0, hi = drv_nversioned;
  while (lo < hi) {
    int mid = (lo + hi) / 2, c = strcmp(drv_versioned[mid].name, name);
    if (c == 0) return drv_versioned[mid].version;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

/* Flags and results of cuGetProcAddress. */
enum { procLegacyStream = 1, procPerThreadStream = 2 };
enum { procSuccess = 0, procSymbolNotFound = 1, procVersionNotSufficient = 2 };

/* cuGetProcAddress_v2 returns this library's function for symbol (a base
 * name: "cuMemAlloc") at version: the newest versioned entry point
 * (cuMemAlloc_v2, ...) introduced at or before version, else the base
 * name; with CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM its _ptsz or
 * _ptds variant where one exists. */
XGPU_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags,
                                         int *status) {
  if (!symbol || !pfn || flags > procPerThreadStream) return CUDA_ERROR_INVALID_VALUE;
  *pfn = NULL;
  if (status) *status = procSymbolNotFound;
  pthread_once(&self_once, self_open);
  if (!self) return CUDA_ERROR_NOT_FOUND;
  /* Names are short: cuGraphExecExternalSemaphoresSignalNodeSetParams is the
   * longest at 48 characters. */
  enum { maxName = 100 };
  if (strlen(symbol) > maxName) return CUDA_ERROR_NOT_FOUND;
  char best[128], name[128];
  snprintf(best, sizeof best, "%.*s", maxName, symbol);
  int best_since = 0, newer = 0;
  for (int k = 2; k <= 9; k++) {
    snprintf(name, sizeof name, "%.*s_v%d", maxName, symbol, k);
    int since = versioned_since(name);
    if (since == 0) continue;
    if (since > version) {
      newer = 1;
    } else if (since > best_since) {
      best_since = since;
      memcpy(best, name, sizeof best);
    }
  }
  void *p = NULL;
  if (flags == procPerThreadStream) {
    snprintf(name, sizeof name, "%.*s_ptsz", maxName + 3, best);
    p = dlsym(self, name);
    if (!p) {
      snprintf(name, sizeof name, "%.*s_ptds", maxName + 3, best);
      p = dlsym(self, name);
    }
  }
  if (!p) p = dlsym(self, best);
  if (!p) {
    if (status && newer) *status = procVersionNotSufficient;
    return CUDA_ERROR_NOT_FOUND;
  }
  *pfn = p;
  if (status) *status = procSuccess;
  return CUDA_SUCCESS;
}

XGPU_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
  return cuGetProcAddress_v2(symbol, pfn, version, flags, NULL);
}
