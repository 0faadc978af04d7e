/*
 * facade_kernels.c: fat binary registration and kernel launches as nvcc 13
 * emits them (crt/host_runtime.h, crt/device_functions.h; see
 * docs/cuda-shim.md), and the functions that name kernels and device
 * variables by their host-side addresses.
 *
 * nvcc's constructor calls __cudaRegisterFatBinary(&wrapper), then
 * __cudaRegisterFunction / __cudaRegisterVar for each kernel and variable,
 * then __cudaRegisterFatBinaryEnd. A <<<>>> launch calls
 * __cudaPushCallConfiguration; the host stub pops it
 * (__cudaPopCallConfiguration), looks its kernel up once
 * (__cudaGetKernel) and launches with __cudaLaunchKernel (_ptsz when
 * built with --default-stream per-thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudart.h"
#include "launch_structs.h"
#include "occupancy.h"

#define FATBINC_MAGIC 0x466243b1

/* What __cudaRegisterFatBinary hands back: the application keeps it and
 * passes it to the other registration functions. */
struct fatbin_handle {
  const void *wrapper;
  uint64_t module; /* 0: the wrapper could not be registered */
};

struct fatbin_wrapper {
  int magic;
  int version;
  const unsigned long long *data;
  void *filename_or_fatbins;
};

static uint64_t module_of(void **handle) {
  return handle ? ((struct fatbin_handle *)handle)->module : 0;
}

XGPU_EXPORT void **__cudaRegisterFatBinary(void *fatCubin) {
  struct fatbin_handle *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->wrapper = fatCubin;
  const struct fatbin_wrapper *w = fatCubin;
  if (!w || w->magic != FATBINC_MAGIC || !w->data) {
    fprintf(stderr, "xgpu: __cudaRegisterFatBinary: %p is not a fat binary wrapper; its kernels will not launch\n", fatCubin);
    return (void **)h;
  }
  uint64_t m = 0;
  if (xgpu_register_fatbin((void *)w->data, &m) == cudaSuccess) h->module = m;
  return (void **)h;
}

XGPU_EXPORT void __cudaRegisterFatBinaryEnd(void **handle) { (void)handle; }

XGPU_EXPORT void __cudaUnregisterFatBinary(void **handle) {
  if (!handle) return;
  struct fatbin_handle *h = (struct fatbin_handle *)handle;
  if (h->module) (void)xgpu_unregister_fatbin(h->module);
  free(h);
}

XGPU_EXPORT char __cudaInitModule(void **handle) { return handle != NULL; }

XGPU_EXPORT void __cudaRegisterFunction(void **handle, const char *hostFun, char *deviceFun, const char *deviceName,
                                        int threadLimit, uint3 *tid, uint3 *bid, dim3 *bDim, dim3 *gDim, int *wSize) {
  (void)deviceFun, (void)threadLimit, (void)tid, (void)bid, (void)bDim, (void)gDim, (void)wSize;
  uint64_t m = module_of(handle);
  if (m && hostFun && deviceName) (void)xgpu_register_function(m, (void *)hostFun, (char *)deviceName);
}

XGPU_EXPORT void __cudaRegisterVar(void **handle, char *hostVar, char *deviceAddress, const char *deviceName, int ext,
                                   size_t size, int constant, int global) {
  (void)deviceAddress, (void)ext, (void)global;
  uint64_t m = module_of(handle);
  if (m && hostVar && deviceName) (void)xgpu_register_var(m, hostVar, (char *)deviceName, size, constant);
}

/* ---- launch configuration stack, per thread ---- */

#define CFG_DEPTH 32
struct launch_cfg {
  dim3 grid, block;
  size_t shmem;
  cudaStream_t stream;
};
static __thread struct launch_cfg tls_cfg[CFG_DEPTH];
static __thread int tls_cfg_n;

XGPU_EXPORT unsigned __cudaPushCallConfiguration(dim3 grid, dim3 block, size_t shmem, cudaStream_t stream) {
  if (tls_cfg_n >= CFG_DEPTH) {
    facade_ret(cudaErrorInvalidConfiguration);
    return 1;
  }
  struct launch_cfg *c = &tls_cfg[tls_cfg_n++];
  c->grid = grid;
  c->block = block;
  c->shmem = shmem;
  c->stream = stream;
  return 0;
}

XGPU_EXPORT cudaError_t __cudaPopCallConfiguration(dim3 *grid, dim3 *block, size_t *shmem, void *stream) {
  if (tls_cfg_n == 0) return facade_ret(cudaErrorMissingConfiguration);
  struct launch_cfg *c = &tls_cfg[--tls_cfg_n];
  if (grid) *grid = c->grid;
  if (block) *block = c->block;
  if (shmem) *shmem = c->shmem;
  if (stream) *(cudaStream_t *)stream = c->stream;
  return cudaSuccess;
}

/* ---- kernels ---- */

XGPU_EXPORT cudaError_t __cudaGetKernel(cudaKernel_t *k, const void *hostFun) {
  if (!k) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_get_kernel((void *)hostFun, &h);
  if (e) return facade_ret(e);
  *k = (cudaKernel_t)(uintptr_t)h;
  return cudaSuccess;
}

static int launch(uint64_t k, dim3 grid, dim3 block, void **args, size_t shmem, cudaStream_t s) {
  unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  return xgpu_launch_kernel(k, facade_current_device(), g, b, shmem, sh(s), args);
}

static int launch_ex(uint64_t k, dim3 grid, dim3 block, void **args, size_t shmem, cudaStream_t s, unsigned flags) {
  unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  return xgpu_launch_kernel_ex(k, facade_current_device(), g, b, shmem, sh(s), args, flags);
}

XGPU_EXPORT cudaError_t __cudaLaunchKernel(cudaKernel_t k, dim3 grid, dim3 block, void **args, size_t shmem, cudaStream_t s) {
  if (!k) return facade_ret(cudaErrorInvalidDeviceFunction);
  return facade_ret(launch((uint64_t)(uintptr_t)k, grid, block, args, shmem, s));
}

XGPU_EXPORT cudaError_t __cudaLaunchKernel_ptsz(cudaKernel_t k, dim3 grid, dim3 block, void **args, size_t shmem,
                                                cudaStream_t s) {
  return __cudaLaunchKernel(k, grid, block, args, shmem, s);
}

static int kernel_of(const void *func, uint64_t *k) {
  if (!func) return cudaErrorInvalidDeviceFunction;
  return xgpu_get_kernel((void *)func, k);
}

XGPU_EXPORT cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block, void **args, size_t shmem, cudaStream_t s) {
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  return facade_ret(launch(k, grid, block, args, shmem, s));
}

XGPU_EXPORT cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 grid, dim3 block, void **args, size_t shmem,
                                              cudaStream_t s) {
  return cudaLaunchKernel(func, grid, block, args, shmem, s);
}

/* coop_fits refuses a cooperative grid that cannot be resident at once, as
 * the launch itself does in CUDA: more blocks than the SMs hold by the
 * occupancy computation cudaOccupancyMaxActiveBlocksPerMultiprocessor
 * answers. (The server's driver checks again when the stream gets there.) */
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, const void *func, int blockSize,
                                                                   size_t dynSmem, unsigned int flags);

static cudaError_t coop_fits(const void *func, dim3 grid, dim3 block, size_t shmem) {
  long threads = (long)block.x * block.y * block.z;
  if (threads <= 0 || threads > 0x7fffffff) return cudaSuccess; /* the launch refuses it */
  int per_sm = 0, sms = 0;
  cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&per_sm, func, (int)threads, shmem, 0);
  if (e) return e;
  e = cudaDeviceGetAttribute(&sms, 16 /* cudaDevAttrMultiProcessorCount */, facade_current_device());
  if (e) return e;
  unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
  if (blocks > (unsigned long long)per_sm * (unsigned long long)sms) return cudaErrorCooperativeLaunchTooLarge;
  return cudaSuccess;
}

/* A cooperative launch: every block of the grid resident at once, so that
 * cooperative_groups::this_grid().sync() works; the server's driver
 * launches it with cuLaunchCooperativeKernel and refuses a grid it cannot
 * hold (cudaErrorCooperativeLaunchTooLarge, reported as launch errors
 * are). A captured one stays cooperative in its graph node. */
XGPU_EXPORT cudaError_t cudaLaunchCooperativeKernel(const void *func, dim3 grid, dim3 block, void **args, size_t shmem,
                                                    cudaStream_t s) {
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  e = coop_fits(func, grid, block, shmem);
  if (e) return facade_ret(e);
  return facade_ret(launch_ex(k, grid, block, args, shmem, s, XGPU_LAUNCH_COOPERATIVE));
}

XGPU_EXPORT cudaError_t cudaLaunchCooperativeKernel_ptsz(const void *func, dim3 grid, dim3 block, void **args,
                                                         size_t shmem, cudaStream_t s) {
  return cudaLaunchCooperativeKernel(func, grid, block, args, shmem, s);
}

/* The extensible launch (cudaLaunchKernelEx in C++): its attributes follow
 * xgpu_launch_attrs (launch_structs.h); one refused is logged once per
 * attribute id. */
XGPU_EXPORT cudaError_t cudaLaunchKernelExC(const struct cudaLaunchConfig_st *config, const void *func, void **args) {
  if (!config || !func) return facade_ret(cudaErrorInvalidValue);
  unsigned flags = 0;
  int refused = 0;
  int e = xgpu_launch_attrs(config->attrs, config->numAttrs, &flags, &refused);
  if (e == xgpu_launch_attrs_not_supported) {
    char name[64];
    snprintf(name, sizeof name, "cudaLaunchKernelExC(attribute %d)", refused);
    return facade_unsupported(name);
  }
  if (e) return facade_ret(e);
  uint64_t k = 0;
  e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  dim3 grid = {config->gridDim.x, config->gridDim.y, config->gridDim.z};
  dim3 block = {config->blockDim.x, config->blockDim.y, config->blockDim.z};
  if (flags & XGPU_LAUNCH_COOPERATIVE) {
    e = coop_fits(func, grid, block, config->dynamicSmemBytes);
    if (e) return facade_ret(e);
  }
  return facade_ret(launch_ex(k, grid, block, args, config->dynamicSmemBytes, (cudaStream_t)config->stream, flags));
}

XGPU_EXPORT cudaError_t cudaLaunchKernelExC_ptsz(const struct cudaLaunchConfig_st *config, const void *func,
                                                 void **args) {
  return cudaLaunchKernelExC(config, func, args);
}

XGPU_EXPORT cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *a, const void *func) {
  if (!a) return facade_ret(cudaErrorInvalidValue);
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  xgpu_func_attributes_t fa;
  memset(&fa, 0, sizeof fa);
  e = xgpu_func_get_attributes(k, facade_current_device(), &fa);
  if (e) return facade_ret(e);
  memset(a, 0, sizeof *a);
  a->sharedSizeBytes = (size_t)fa.shared_size_bytes;
  a->constSizeBytes = (size_t)fa.const_size_bytes;
  a->localSizeBytes = (size_t)fa.local_size_bytes;
  a->maxThreadsPerBlock = fa.max_threads_per_block;
  a->numRegs = fa.num_regs;
  a->ptxVersion = fa.ptx_version;
  a->binaryVersion = fa.binary_version;
  a->cacheModeCA = fa.cache_mode_ca;
  a->maxDynamicSharedSizeBytes = fa.max_dynamic_shared_size_bytes;
  a->preferredShmemCarveout = fa.preferred_shmem_carveout;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaFuncSetAttribute(const void *func, int attribute, int value) {
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_func_set_attribute(k, facade_current_device(), attribute, value));
}

XGPU_EXPORT cudaError_t cudaFuncGetName(const char **name, const void *func) {
  if (!name) return facade_ret(cudaErrorInvalidValue);
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_func_name(k, (char **)name));
}

/* cudaOccupancyMaxActiveBlocksPerMultiprocessor from the kernel's
 * attributes and the device's limits (occupancy.h). */
XGPU_EXPORT cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, const void *func, int blockSize,
                                                                               size_t dynSmem, unsigned int flags) {
  if (!n || blockSize <= 0 || flags > 1) return facade_ret(cudaErrorInvalidValue);
  uint64_t k = 0;
  int e = kernel_of(func, &k);
  if (e) return facade_ret(e);
  int dev = facade_current_device(), lim[6];
  for (int i = 0; i < 6; i++) {
    e = cudaDeviceGetAttribute(&lim[i], xgpu_occupancy_attrs[i], dev);
    if (e) return e;
  }
  xgpu_func_attributes_t fa;
  memset(&fa, 0, sizeof fa);
  e = xgpu_func_get_attributes(k, dev, &fa);
  if (e) return facade_ret(e);
  *n = xgpu_occupancy(lim, fa.max_threads_per_block, fa.num_regs, (long)fa.shared_size_bytes + (long)dynSmem, blockSize);
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *func, int blockSize, size_t dynSmem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n, func, blockSize, dynSmem, 0);
}

/* ---- device variables ---- */

XGPU_EXPORT cudaError_t cudaGetSymbolAddress(void **p, const void *symbol) {
  if (!p) return facade_ret(cudaErrorInvalidValue);
  uint64_t addr = 0, size = 0;
  int e = xgpu_symbol_address((void *)symbol, facade_current_device(), &addr, &size);
  if (e) return facade_ret(e);
  *p = (void *)(uintptr_t)addr;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGetSymbolSize(size_t *size, const void *symbol) {
  if (!size) return facade_ret(cudaErrorInvalidValue);
  uint64_t addr = 0, n = 0;
  int e = xgpu_symbol_address((void *)symbol, facade_current_device(), &addr, &n);
  if (e) return facade_ret(e);
  *size = (size_t)n;
  return cudaSuccess;
}

static int symbol_copy(void *dst, const void *src, const void *symbol, size_t count, size_t offset, int kind,
                       cudaStream_t s, int async, int to) {
  uint64_t addr = 0, size = 0;
  int e = xgpu_symbol_address((void *)symbol, facade_current_device(), &addr, &size);
  if (e) return e;
  if (offset > size || count > size - offset) return cudaErrorInvalidValue;
  if (to) {
    if (kind != 1 && kind != 3 && kind != 4) return cudaErrorInvalidMemcpyDirection;
    dst = (void *)(uintptr_t)(addr + offset);
  } else {
    if (kind != 2 && kind != 3 && kind != 4) return cudaErrorInvalidMemcpyDirection;
    src = (const void *)(uintptr_t)(addr + offset);
  }
  return xgpu_memcpy(dst, (void *)src, count, 4 /* by the pointers */, facade_current_device(), sh(s), async);
}

XGPU_EXPORT cudaError_t cudaMemcpyToSymbol(const void *symbol, const void *src, size_t count, size_t offset, int kind) {
  return facade_ret(symbol_copy(NULL, src, symbol, count, offset, kind, NULL, 0, 1));
}

XGPU_EXPORT cudaError_t cudaMemcpyToSymbol_ptds(const void *symbol, const void *src, size_t count, size_t offset, int kind) {
  return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}

XGPU_EXPORT cudaError_t cudaMemcpyFromSymbol(void *dst, const void *symbol, size_t count, size_t offset, int kind) {
  return facade_ret(symbol_copy(dst, NULL, symbol, count, offset, kind, NULL, 0, 0));
}

XGPU_EXPORT cudaError_t cudaMemcpyFromSymbol_ptds(void *dst, const void *symbol, size_t count, size_t offset, int kind) {
  return cudaMemcpyFromSymbol(dst, symbol, count, offset, kind);
}

XGPU_EXPORT cudaError_t cudaMemcpyToSymbolAsync(const void *symbol, const void *src, size_t count, size_t offset, int kind,
                                                cudaStream_t s) {
  return facade_ret(symbol_copy(NULL, src, symbol, count, offset, kind, s, 1, 1));
}

XGPU_EXPORT cudaError_t cudaMemcpyToSymbolAsync_ptsz(const void *symbol, const void *src, size_t count, size_t offset,
                                                     int kind, cudaStream_t s) {
  return cudaMemcpyToSymbolAsync(symbol, src, count, offset, kind, s);
}

XGPU_EXPORT cudaError_t cudaMemcpyFromSymbolAsync(void *dst, const void *symbol, size_t count, size_t offset, int kind,
                                                  cudaStream_t s) {
  return facade_ret(symbol_copy(dst, NULL, symbol, count, offset, kind, s, 1, 0));
}

XGPU_EXPORT cudaError_t cudaMemcpyFromSymbolAsync_ptsz(void *dst, const void *symbol, size_t count, size_t offset, int kind,
                                                       cudaStream_t s) {
  return cudaMemcpyFromSymbolAsync(dst, symbol, count, offset, kind, s);
}
