/*
 * facade.c: the CUDA runtime functions libcudart.so.13 serves through
 * xgpu. Each one converts the CUDA ABI to libxgpu.so's (include/xgpu.h)
 * and keeps the state CUDA keeps per host thread: the current device, the
 * last error and the launch configurations nvcc's <<<>>> pushes. Every
 * other exported name is a generated stub (zz_generated_stubs.c).
 *
 * The per-thread default stream (cudaStreamPerThread, the _ptsz and
 * _ptds entry points) is served as the legacy default stream: stronger
 * ordering than CUDA's, never weaker (docs/cuda-shim.md).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudart.h"

_Static_assert(sizeof(struct cudaDeviceProp) == 1008, "cudaDeviceProp is 1008 bytes in CUDA 13");
_Static_assert(offsetof(struct cudaDeviceProp, totalGlobalMem) == 288, "cudaDeviceProp.totalGlobalMem");
_Static_assert(offsetof(struct cudaDeviceProp, multiProcessorCount) == 384, "cudaDeviceProp.multiProcessorCount");
_Static_assert(offsetof(struct cudaDeviceProp, hostNumaMultinodeIpcSupported) == 780, "cudaDeviceProp tail");
_Static_assert(sizeof(struct cudaPointerAttributes) == 88, "cudaPointerAttributes is 88 bytes");
_Static_assert(sizeof(struct cudaFuncAttributes) == 144, "cudaFuncAttributes is 144 bytes");

#define CUDART_VERSION_SERVED 13000

/* ---- per-thread state ----
 *
 * The current device lives in libxgpu.so (xgpu_thread_*), shared with
 * libcuda.so.1: a thread's current device is its current context's device
 * in both APIs. use_dev() is the device for a call that uses it: like
 * CUDA's runtime, it makes the device's primary context current (and
 * active, for cuDevicePrimaryCtxGetState). */

static __thread cudaError_t tls_err; /* last error */

static inline int use_dev(void) { return xgpu_thread_use_device(); }

cudaError_t facade_ret(int e) {
  if (e != cudaSuccess && !facade_is_sticky(tls_err)) tls_err = e;
  return e;
}

cudaError_t facade_unsupported(const char *name) { return facade_ret(xgpu_log_unsupported((char *)name)); }

int facade_current_device(void) { return use_dev(); }

__attribute__((destructor)) static void facade_fini(void) { (void)xgpu_shutdown(); }

/* ---- device information, fetched once per device (xgpu_device_info) ---- */

static int device_count(int *n) { return xgpu_device_count(n); }

static int dev_info(int dev, const xgpu_device_info_t **out) {
  xgpu_device_info_t *p = NULL;
  int e = xgpu_device_info(dev, &p);
  if (e == cudaSuccess) *out = p;
  return e;
}

static int attr(const xgpu_device_info_t *in, int a) { return (a > 0 && a < XGPU_ATTR_COUNT && in->attr_valid[a]) ? in->attrs[a] : 0; }

/* ---- versions and errors ---- */

XGPU_EXPORT cudaError_t cudaDriverGetVersion(int *v) {
  if (!v) return facade_ret(cudaErrorInvalidValue);
  *v = CUDART_VERSION_SERVED;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaRuntimeGetVersion(int *v) {
  if (!v) return facade_ret(cudaErrorInvalidValue);
  *v = CUDART_VERSION_SERVED;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGetLastError(void) {
  cudaError_t e = tls_err;
  if (!facade_is_sticky(e)) tls_err = cudaSuccess;
  return e;
}

XGPU_EXPORT cudaError_t cudaPeekAtLastError(void) { return tls_err; }

XGPU_EXPORT cudaError_t cudaProfilerStart(void) { return cudaSuccess; }

XGPU_EXPORT cudaError_t cudaProfilerStop(void) { return cudaSuccess; }

/* ---- devices ---- */

XGPU_EXPORT cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return facade_ret(cudaErrorInvalidValue);
  int n = 0, e = device_count(&n);
  *count = e ? 0 : n;
  return facade_ret(e);
}

static int check_device(int dev) {
  int n = 0, e = device_count(&n);
  if (e) return e;
  return (dev < 0 || dev >= n) ? cudaErrorInvalidDevice : cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaSetDevice(int dev) {
  int e = check_device(dev);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_thread_set_device(dev));
}

XGPU_EXPORT cudaError_t cudaGetDevice(int *dev) {
  if (!dev) return facade_ret(cudaErrorInvalidValue);
  int n = 0, e = device_count(&n);
  if (e) return facade_ret(e);
  *dev = xgpu_thread_device();
  return cudaSuccess;
}

/* cudaInitDevice initializes dev's primary context without making it
 * current. */
XGPU_EXPORT cudaError_t cudaInitDevice(int dev, unsigned int deviceFlags, unsigned int flags) {
  (void)deviceFlags;
  if (flags != 0) return facade_ret(cudaErrorInvalidValue);
  int e = check_device(dev);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_primary_ctx_activate(dev));
}

static unsigned int device_flags; /* cudaSetDeviceFlags, process-wide as in CUDA */

XGPU_EXPORT cudaError_t cudaSetDeviceFlags(unsigned int flags) {
  if (flags & ~0x1fu) return facade_ret(cudaErrorInvalidValue);
  int e = check_device(xgpu_thread_device());
  if (e) return facade_ret(e);
  __atomic_store_n(&device_flags, flags, __ATOMIC_RELAXED);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGetDeviceFlags(unsigned int *flags) {
  if (!flags) return facade_ret(cudaErrorInvalidValue);
  int e = check_device(xgpu_thread_device());
  if (e) return facade_ret(e);
  *flags = __atomic_load_n(&device_flags, __ATOMIC_RELAXED) | 0x8u; /* cudaDeviceMapHost, always on */
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int dev) {
  if (!p) return facade_ret(cudaErrorInvalidValue);
  const xgpu_device_info_t *in;
  int e = dev_info(dev, &in);
  if (e) return facade_ret(e);
  memset(p, 0, sizeof *p);
  memcpy(p->name, in->name, sizeof p->name);
  p->name[sizeof p->name - 1] = 0;
  memcpy(p->uuid.bytes, in->uuid, sizeof p->uuid.bytes);
  p->totalGlobalMem = in->total_mem;
  p->sharedMemPerBlock = (size_t)attr(in, 8);
  p->regsPerBlock = attr(in, 12);
  p->warpSize = attr(in, 10);
  p->memPitch = (size_t)attr(in, 11);
  p->maxThreadsPerBlock = attr(in, 1);
  p->maxThreadsDim[0] = attr(in, 2);
  p->maxThreadsDim[1] = attr(in, 3);
  p->maxThreadsDim[2] = attr(in, 4);
  p->maxGridSize[0] = attr(in, 5);
  p->maxGridSize[1] = attr(in, 6);
  p->maxGridSize[2] = attr(in, 7);
  p->totalConstMem = (size_t)attr(in, 9);
  p->major = attr(in, 75);
  p->minor = attr(in, 76);
  p->textureAlignment = (size_t)attr(in, 14);
  p->texturePitchAlignment = (size_t)attr(in, 51);
  p->multiProcessorCount = attr(in, 16);
  p->integrated = attr(in, 18);
  p->canMapHostMemory = attr(in, 19);
  p->maxTexture1D = attr(in, 21);
  p->maxTexture1DMipmap = attr(in, 77);
  p->maxTexture2D[0] = attr(in, 22);
  p->maxTexture2D[1] = attr(in, 23);
  p->maxTexture2DMipmap[0] = attr(in, 73);
  p->maxTexture2DMipmap[1] = attr(in, 74);
  p->maxTexture2DLinear[0] = attr(in, 70);
  p->maxTexture2DLinear[1] = attr(in, 71);
  p->maxTexture2DLinear[2] = attr(in, 72);
  p->maxTexture2DGather[0] = attr(in, 45);
  p->maxTexture2DGather[1] = attr(in, 46);
  p->maxTexture3D[0] = attr(in, 24);
  p->maxTexture3D[1] = attr(in, 25);
  p->maxTexture3D[2] = attr(in, 26);
  p->maxTexture3DAlt[0] = attr(in, 47);
  p->maxTexture3DAlt[1] = attr(in, 48);
  p->maxTexture3DAlt[2] = attr(in, 49);
  p->maxTextureCubemap = attr(in, 52);
  p->maxTexture1DLayered[0] = attr(in, 42);
  p->maxTexture1DLayered[1] = attr(in, 43);
  p->maxTexture2DLayered[0] = attr(in, 27);
  p->maxTexture2DLayered[1] = attr(in, 28);
  p->maxTexture2DLayered[2] = attr(in, 29);
  p->maxTextureCubemapLayered[0] = attr(in, 53);
  p->maxTextureCubemapLayered[1] = attr(in, 54);
  p->maxSurface1D = attr(in, 55);
  p->maxSurface2D[0] = attr(in, 56);
  p->maxSurface2D[1] = attr(in, 57);
  p->maxSurface3D[0] = attr(in, 58);
  p->maxSurface3D[1] = attr(in, 59);
  p->maxSurface3D[2] = attr(in, 60);
  p->maxSurface1DLayered[0] = attr(in, 61);
  p->maxSurface1DLayered[1] = attr(in, 62);
  p->maxSurface2DLayered[0] = attr(in, 63);
  p->maxSurface2DLayered[1] = attr(in, 64);
  p->maxSurface2DLayered[2] = attr(in, 65);
  p->maxSurfaceCubemap = attr(in, 66);
  p->maxSurfaceCubemapLayered[0] = attr(in, 67);
  p->maxSurfaceCubemapLayered[1] = attr(in, 68);
  p->surfaceAlignment = (size_t)attr(in, 30);
  p->concurrentKernels = attr(in, 31);
  p->ECCEnabled = attr(in, 32);
  p->pciBusID = attr(in, 33);
  p->pciDeviceID = attr(in, 34);
  p->pciDomainID = attr(in, 50);
  p->tccDriver = attr(in, 35);
  p->asyncEngineCount = attr(in, 40);
  p->unifiedAddressing = attr(in, 41);
  p->memoryBusWidth = attr(in, 37);
  p->l2CacheSize = attr(in, 38);
  p->persistingL2CacheMaxSize = attr(in, 108);
  p->maxThreadsPerMultiProcessor = attr(in, 39);
  p->streamPrioritiesSupported = attr(in, 78);
  p->globalL1CacheSupported = attr(in, 79);
  p->localL1CacheSupported = attr(in, 80);
  p->sharedMemPerMultiprocessor = (size_t)attr(in, 81);
  p->regsPerMultiprocessor = attr(in, 82);
  p->managedMemory = attr(in, 83);
  p->isMultiGpuBoard = attr(in, 84);
  p->multiGpuBoardGroupID = attr(in, 85);
  p->hostNativeAtomicSupported = attr(in, 86);
  p->pageableMemoryAccess = attr(in, 88);
  p->concurrentManagedAccess = attr(in, 89);
  p->computePreemptionSupported = attr(in, 90);
  p->canUseHostPointerForRegisteredMem = attr(in, 91);
  p->cooperativeLaunch = attr(in, 95);
  p->sharedMemPerBlockOptin = (size_t)attr(in, 97);
  p->pageableMemoryAccessUsesHostPageTables = attr(in, 100);
  p->directManagedMemAccessFromHost = attr(in, 101);
  p->maxBlocksPerMultiProcessor = attr(in, 106);
  p->accessPolicyMaxWindowSize = attr(in, 109);
  p->reservedSharedMemPerBlock = (size_t)attr(in, 111);
  p->hostRegisterSupported = attr(in, 99);
  p->sparseCudaArraySupported = attr(in, 112);
  p->hostRegisterReadOnlySupported = attr(in, 113);
  p->timelineSemaphoreInteropSupported = attr(in, 114);
  p->memoryPoolsSupported = attr(in, 115);
  p->gpuDirectRDMASupported = attr(in, 116);
  p->gpuDirectRDMAFlushWritesOptions = (unsigned)attr(in, 117);
  p->gpuDirectRDMAWritesOrdering = attr(in, 118);
  p->memoryPoolSupportedHandleTypes = (unsigned)attr(in, 119);
  p->deferredMappingCudaArraySupported = attr(in, 121);
  p->ipcEventSupported = attr(in, 125);
  p->clusterLaunch = attr(in, 120);
  p->unifiedFunctionPointers = attr(in, 122); /* cudaDevAttrReserved122 in CUDA 13's enum */
  p->deviceNumaConfig = attr(in, 130);
  p->deviceNumaId = attr(in, 131);
  p->mpsEnabled = attr(in, 133);
  p->hostNumaId = attr(in, 134);
  p->gpuPciDeviceID = (unsigned)attr(in, 139);
  p->gpuPciSubsystemID = (unsigned)attr(in, 140);
  p->hostNumaMultinodeIpcSupported = attr(in, 143);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetAttribute(int *value, int a, int dev) {
  if (!value) return facade_ret(cudaErrorInvalidValue);
  const xgpu_device_info_t *in;
  int e = dev_info(dev, &in);
  if (e) return facade_ret(e);
  if (a <= 0 || a >= XGPU_ATTR_COUNT || !in->attr_valid[a]) return facade_ret(cudaErrorInvalidValue);
  *value = in->attrs[a];
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetPCIBusId(char *id, int len, int dev) {
  if (!id || len <= 0) return facade_ret(cudaErrorInvalidValue);
  const xgpu_device_info_t *in;
  int e = dev_info(dev, &in);
  if (e) return facade_ret(e);
  snprintf(id, (size_t)len, "%s", in->pci_bus_id);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetByPCIBusId(int *dev, const char *id) {
  if (!dev || !id) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_device_by_pci_bus_id((char *)id, dev));
}

XGPU_EXPORT cudaError_t cudaDeviceCanAccessPeer(int *can, int dev, int peer) {
  if (!can) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_device_can_access_peer(dev, peer, can));
}

/* Peer access enabled from device a to device b, process-wide as in CUDA. */
#define MAX_PEER 1024
static pthread_mutex_t peer_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *peer_on; /* MAX_PEER x MAX_PEER bits, allocated on first use */

static int peer_bit(int a, int b, int set, int value) {
  pthread_mutex_lock(&peer_mu);
  if (!peer_on) peer_on = calloc((size_t)MAX_PEER * MAX_PEER / 8, 1);
  int old = 0;
  if (peer_on) {
    size_t i = (size_t)a * MAX_PEER + (size_t)b;
    old = (peer_on[i / 8] >> (i % 8)) & 1;
    if (set) peer_on[i / 8] = (unsigned char)((peer_on[i / 8] & ~(1u << (i % 8))) | ((unsigned)value << (i % 8)));
  }
  pthread_mutex_unlock(&peer_mu);
  return old;
}

XGPU_EXPORT cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int flags) {
  if (flags != 0) return facade_ret(cudaErrorInvalidValue);
  int can = 0, dev = use_dev(), e = xgpu_device_can_access_peer(dev, peer, &can);
  if (e) return facade_ret(e);
  if (!can || dev >= MAX_PEER || peer >= MAX_PEER) return facade_ret(cudaErrorPeerAccessUnsupported);
  if (peer_bit(dev, peer, 1, 1)) return facade_ret(cudaErrorPeerAccessAlreadyEnabled);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceDisablePeerAccess(int peer) {
  int dev = use_dev(), e = check_device(peer);
  if (e) return facade_ret(e);
  if (dev >= MAX_PEER || peer >= MAX_PEER || !peer_bit(dev, peer, 1, 0)) return facade_ret(cudaErrorPeerAccessNotEnabled);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetP2PAttribute(int *value, int a, int src, int dst) {
  if (!value || src == dst) return facade_ret(cudaErrorInvalidDevice);
  int can = 0, e = xgpu_device_can_access_peer(src, dst, &can);
  if (e) return facade_ret(e);
  switch (a) {
    case 1: /* cudaDevP2PAttrPerformanceRank */
      *value = 0;
      return cudaSuccess;
    case 2: /* cudaDevP2PAttrAccessSupported */
    case 3: /* cudaDevP2PAttrNativeAtomicSupported */
    case 4: /* cudaDevP2PAttrCudaArrayAccessSupported */
      *value = can;
      return cudaSuccess;
  }
  return facade_ret(cudaErrorInvalidValue);
}

XGPU_EXPORT cudaError_t cudaDeviceSynchronize(void) { return facade_ret(xgpu_device_synchronize(use_dev())); }

/* cudaDeviceReset waits for the device; the allocations and streams of the
 * process stay (see docs/cuda-shim.md). */
XGPU_EXPORT cudaError_t cudaDeviceReset(void) { return facade_ret(xgpu_device_synchronize(use_dev())); }

XGPU_EXPORT cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) {
  int e = check_device(xgpu_thread_device());
  if (e) return facade_ret(e);
  if (least) *least = 0;
  if (greatest) *greatest = -5;
  return cudaSuccess;
}

static int cache_config; /* cudaDeviceSetCacheConfig: a preference only */

XGPU_EXPORT cudaError_t cudaDeviceSetCacheConfig(int c) {
  if (c < 0 || c > 3) return facade_ret(cudaErrorInvalidValue);
  __atomic_store_n(&cache_config, c, __ATOMIC_RELAXED);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetCacheConfig(int *c) {
  if (!c) return facade_ret(cudaErrorInvalidValue);
  *c = __atomic_load_n(&cache_config, __ATOMIC_RELAXED);
  return cudaSuccess;
}

/* ---- memory ---- */

/* Allocation, freeing and page-locked host memory are potentially unsafe
 * during stream capture (facade_capture_unsafe). */

XGPU_EXPORT cudaError_t cudaMalloc(void **p, size_t size) {
  if (!p) return facade_ret(cudaErrorInvalidValue);
  int e = facade_capture_unsafe("cudaMalloc");
  if (e) return facade_ret(e);
  uint64_t ptr = 0;
  e = xgpu_malloc(use_dev(), size, &ptr);
  if (e) return facade_ret(e);
  *p = (void *)(uintptr_t)ptr;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaFree(void *p) {
  /* cudaFree(NULL) is the customary way to initialize CUDA (and to make
   * the current device's primary context current). */
  int e = facade_capture_unsafe("cudaFree");
  if (e) return facade_ret(e);
  if (!p) {
    e = xgpu_init();
    if (e == cudaSuccess) (void)use_dev();
    return facade_ret(e);
  }
  return facade_ret(xgpu_free((uint64_t)(uintptr_t)p));
}

XGPU_EXPORT cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  uint64_t f = 0, t = 0;
  int e = xgpu_mem_get_info(use_dev(), &f, &t);
  if (e) return facade_ret(e);
  if (free_bytes) *free_bytes = (size_t)f;
  if (total_bytes) *total_bytes = (size_t)t;
  return cudaSuccess;
}

/* Page-locked host memory is ordinary memory here (the network, not DMA,
 * moves it), recorded so that pointer queries report it as host memory. */
XGPU_EXPORT cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags) {
  if (!p || (flags & ~0xfu)) return facade_ret(cudaErrorInvalidValue);
  int e = facade_capture_unsafe("cudaHostAlloc");
  if (e) return facade_ret(e);
  e = xgpu_init();
  if (e) return facade_ret(e);
  if (size == 0) {
    *p = NULL;
    return cudaSuccess;
  }
  void *m = NULL;
  if (posix_memalign(&m, 4096, size) != 0) return facade_ret(cudaErrorMemoryAllocation);
  e = xgpu_host_register(m, size, flags);
  if (e) {
    free(m);
    return facade_ret(e);
  }
  *p = m;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaMallocHost(void **p, size_t size) { return cudaHostAlloc(p, size, 0); }

XGPU_EXPORT cudaError_t cudaFreeHost(void *p) {
  if (!p) return cudaSuccess;
  int e = facade_capture_unsafe("cudaFreeHost");
  if (e) return facade_ret(e);
  e = xgpu_host_unregister(p);
  if (e) return facade_ret(cudaErrorInvalidValue);
  free(p);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaHostRegister(void *p, size_t size, unsigned int flags) {
  int e = facade_capture_unsafe("cudaHostRegister");
  if (e) return facade_ret(e);
  return facade_ret(xgpu_host_register(p, size, flags));
}

XGPU_EXPORT cudaError_t cudaHostUnregister(void *p) {
  int e = facade_capture_unsafe("cudaHostUnregister");
  if (e) return facade_ret(e);
  return facade_ret(xgpu_host_unregister(p));
}

static int copy(void *dst, const void *src, size_t n, int kind, cudaStream_t s, int async) {
  if (n && (!dst || !src)) return cudaErrorInvalidValue;
  return xgpu_memcpy(dst, (void *)src, n, kind, use_dev(), sh(s), async);
}

XGPU_EXPORT cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, int kind) {
  return facade_ret(copy(dst, src, n, kind, NULL, 0));
}

XGPU_EXPORT cudaError_t cudaMemcpy_ptds(void *dst, const void *src, size_t n, int kind) { return cudaMemcpy(dst, src, n, kind); }

XGPU_EXPORT cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, cudaStream_t s) {
  return facade_ret(copy(dst, src, n, kind, s, 1));
}

XGPU_EXPORT cudaError_t cudaMemcpyAsync_ptsz(void *dst, const void *src, size_t n, int kind, cudaStream_t s) {
  return cudaMemcpyAsync(dst, src, n, kind, s);
}

/* 2D copies: one copy when both pitches equal the width, else a copy per
 * row, queued on the stream. */
static int copy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height, int kind,
                  cudaStream_t s, int async) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  if (width == 0 || height == 0) return cudaSuccess;
  if (dpitch == width && spitch == width) return copy(dst, src, width * height, kind, s, async);
  for (size_t r = 0; r < height; r++) {
    int e = copy((char *)dst + r * dpitch, (const char *)src + r * spitch, width, kind, s, 1);
    if (e) return e;
  }
  return async ? cudaSuccess : xgpu_stream_synchronize(use_dev(), sh(s));
}

XGPU_EXPORT cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                                     int kind) {
  return facade_ret(copy2d(dst, dpitch, src, spitch, width, height, kind, NULL, 0));
}

XGPU_EXPORT cudaError_t cudaMemcpy2D_ptds(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                          size_t height, int kind) {
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}

XGPU_EXPORT cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                          size_t height, int kind, cudaStream_t s) {
  return facade_ret(copy2d(dst, dpitch, src, spitch, width, height, kind, s, 1));
}

XGPU_EXPORT cudaError_t cudaMemcpy2DAsync_ptsz(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                               size_t height, int kind, cudaStream_t s) {
  return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, s);
}

XGPU_EXPORT cudaError_t cudaMemcpyPeer(void *dst, int dstDev, const void *src, int srcDev, size_t n) {
  return facade_ret(xgpu_memcpy_peer((uint64_t)(uintptr_t)dst, dstDev, (uint64_t)(uintptr_t)src, srcDev, n, 0, 0));
}

XGPU_EXPORT cudaError_t cudaMemcpyPeerAsync(void *dst, int dstDev, const void *src, int srcDev, size_t n, cudaStream_t s) {
  return facade_ret(xgpu_memcpy_peer((uint64_t)(uintptr_t)dst, dstDev, (uint64_t)(uintptr_t)src, srcDev, n, sh(s), 1));
}

XGPU_EXPORT cudaError_t cudaMemset(void *p, int value, size_t n) {
  return facade_ret(xgpu_memset((uint64_t)(uintptr_t)p, value, n, use_dev(), 0, 0));
}

XGPU_EXPORT cudaError_t cudaMemset_ptds(void *p, int value, size_t n) { return cudaMemset(p, value, n); }

XGPU_EXPORT cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t s) {
  return facade_ret(xgpu_memset((uint64_t)(uintptr_t)p, value, n, use_dev(), sh(s), 1));
}

XGPU_EXPORT cudaError_t cudaMemsetAsync_ptsz(void *p, int value, size_t n, cudaStream_t s) {
  return cudaMemsetAsync(p, value, n, s);
}

XGPU_EXPORT cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p) {
  if (!a) return facade_ret(cudaErrorInvalidValue);
  int type = 0, dev = 0;
  uint64_t dptr = 0, hptr = 0;
  int e = xgpu_pointer_attributes((void *)p, &type, &dev, &dptr, &hptr);
  if (e) return facade_ret(e);
  memset(a, 0, sizeof *a);
  a->type = type;
  a->device = type == 0 ? -2 : (type == 1 ? xgpu_thread_device() : dev);
  a->devicePointer = (void *)(uintptr_t)dptr;
  a->hostPointer = (void *)(uintptr_t)hptr;
  return cudaSuccess;
}

/* ---- streams ---- */

XGPU_EXPORT cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority) {
  if (!s) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_stream_create(use_dev(), flags, priority, &h);
  if (e) return facade_ret(e);
  *s = (cudaStream_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
  return cudaStreamCreateWithPriority(s, flags, 0);
}

XGPU_EXPORT cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithPriority(s, 0, 0); }

XGPU_EXPORT cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (is_special_stream(s)) return facade_ret(cudaErrorInvalidResourceHandle);
  return facade_ret(xgpu_stream_destroy(sh(s)));
}

XGPU_EXPORT cudaError_t cudaStreamSynchronize(cudaStream_t s) { return facade_ret(xgpu_stream_synchronize(use_dev(), sh(s))); }

XGPU_EXPORT cudaError_t cudaStreamSynchronize_ptsz(cudaStream_t s) { return cudaStreamSynchronize(s); }

XGPU_EXPORT cudaError_t cudaStreamQuery(cudaStream_t s) { return facade_ret(xgpu_stream_query(use_dev(), sh(s))); }

XGPU_EXPORT cudaError_t cudaStreamQuery_ptsz(cudaStream_t s) { return cudaStreamQuery(s); }

XGPU_EXPORT cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t ev, unsigned int flags) {
  if (flags & ~0x1u) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_stream_wait_event(use_dev(), sh(s), (uint64_t)(uintptr_t)ev, flags));
}

XGPU_EXPORT cudaError_t cudaStreamWaitEvent_ptsz(cudaStream_t s, cudaEvent_t ev, unsigned int flags) {
  return cudaStreamWaitEvent(s, ev, flags);
}

XGPU_EXPORT cudaError_t cudaStreamGetPriority(cudaStream_t s, int *priority) {
  if (!priority) return facade_ret(cudaErrorInvalidValue);
  if (is_special_stream(s)) {
    *priority = 0;
    return cudaSuccess;
  }
  int dev;
  unsigned flags;
  return facade_ret(xgpu_stream_info(sh(s), &dev, &flags, priority));
}

XGPU_EXPORT cudaError_t cudaStreamGetPriority_ptsz(cudaStream_t s, int *priority) { return cudaStreamGetPriority(s, priority); }

XGPU_EXPORT cudaError_t cudaStreamGetFlags(cudaStream_t s, unsigned int *flags) {
  if (!flags) return facade_ret(cudaErrorInvalidValue);
  if (is_special_stream(s)) {
    *flags = 0;
    return cudaSuccess;
  }
  int dev, prio;
  return facade_ret(xgpu_stream_info(sh(s), &dev, flags, &prio));
}

XGPU_EXPORT cudaError_t cudaStreamGetFlags_ptsz(cudaStream_t s, unsigned int *flags) { return cudaStreamGetFlags(s, flags); }

XGPU_EXPORT cudaError_t cudaStreamGetDevice(cudaStream_t s, int *dev) {
  if (!dev) return facade_ret(cudaErrorInvalidValue);
  if (is_special_stream(s)) {
    *dev = use_dev();
    return cudaSuccess;
  }
  unsigned flags;
  int prio;
  return facade_ret(xgpu_stream_info(sh(s), dev, &flags, &prio));
}

XGPU_EXPORT cudaError_t cudaStreamGetDevice_ptsz(cudaStream_t s, int *dev) { return cudaStreamGetDevice(s, dev); }

/* Host functions run on the calling thread once the stream's earlier work
 * is done, so every later operation of the stream starts after them, as
 * CUDA requires; the call blocks until then. On a capturing stream the
 * call becomes a host node of the capture's graph. */
XGPU_EXPORT cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void *user) {
  if (!fn) return facade_ret(cudaErrorInvalidValue);
  int captured = 0, e = xgpu_host_func(use_dev(), sh(s), (void *)fn, user, &captured);
  if (e || captured) return facade_ret(e);
  e = xgpu_stream_synchronize(use_dev(), sh(s));
  if (e) return facade_ret(e);
  fn(user);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaLaunchHostFunc_ptsz(cudaStream_t s, cudaHostFn_t fn, void *user) {
  return cudaLaunchHostFunc(s, fn, user);
}

XGPU_EXPORT cudaError_t cudaStreamAddCallback(cudaStream_t s, cudaStreamCallback_t cb, void *user, unsigned int flags) {
  if (!cb || flags != 0) return facade_ret(cudaErrorInvalidValue);
  int e = xgpu_capture_refuse("cudaStreamAddCallback", use_dev(), sh(s));
  if (e) return facade_ret(e);
  e = xgpu_stream_synchronize(use_dev(), sh(s));
  cb(s, e, user);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaStreamAddCallback_ptsz(cudaStream_t s, cudaStreamCallback_t cb, void *user, unsigned int flags) {
  return cudaStreamAddCallback(s, cb, user, flags);
}

/* ---- events ---- */

XGPU_EXPORT cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned int flags) {
  if (!ev) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_event_create(use_dev(), flags, &h);
  if (e) return facade_ret(e);
  *ev = (cudaEvent_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaEventCreate(cudaEvent_t *ev) { return cudaEventCreateWithFlags(ev, 0); }

XGPU_EXPORT cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
  return facade_ret(xgpu_event_record((uint64_t)(uintptr_t)ev, use_dev(), sh(s), 0));
}

XGPU_EXPORT cudaError_t cudaEventRecord_ptsz(cudaEvent_t ev, cudaStream_t s) { return cudaEventRecord(ev, s); }

XGPU_EXPORT cudaError_t cudaEventRecordWithFlags(cudaEvent_t ev, cudaStream_t s, unsigned int flags) {
  if (flags & ~0x1u) return facade_ret(cudaErrorInvalidValue); /* cudaEventRecordExternal matters to captures only */
  return facade_ret(xgpu_event_record((uint64_t)(uintptr_t)ev, use_dev(), sh(s), flags));
}

XGPU_EXPORT cudaError_t cudaEventRecordWithFlags_ptsz(cudaEvent_t ev, cudaStream_t s, unsigned int flags) {
  return cudaEventRecordWithFlags(ev, s, flags);
}

XGPU_EXPORT cudaError_t cudaEventQuery(cudaEvent_t ev) { return facade_ret(xgpu_event_query((uint64_t)(uintptr_t)ev)); }

XGPU_EXPORT cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
  return facade_ret(xgpu_event_synchronize((uint64_t)(uintptr_t)ev));
}

XGPU_EXPORT cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_event_elapsed_time(ms, (uint64_t)(uintptr_t)start, (uint64_t)(uintptr_t)end));
}

XGPU_EXPORT cudaError_t cudaEventDestroy(cudaEvent_t ev) { return facade_ret(xgpu_event_destroy((uint64_t)(uintptr_t)ev)); }

/* ---- misc ---- */

XGPU_EXPORT struct cudaChannelFormatDesc cudaCreateChannelDesc(int x, int y, int z, int w, int f) {
  struct cudaChannelFormatDesc d = {x, y, z, w, f};
  return d;
}
