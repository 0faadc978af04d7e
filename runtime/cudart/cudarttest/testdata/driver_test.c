/*
 * driver_test.c exercises libcuda.so.1 (the xgpu driver facade) beside
 * libcudart.so.13 as PyTorch uses them, against the device map in
 * XGPU_DEVICE_MAP: no cuInit before the first driver calls, primary
 * context state that follows the runtime, the current context shared with
 * the runtime's current device, pointer queries, modules loaded and
 * launched through the driver, and driver functions found through
 * cudaGetDriverEntryPointByVersion and cuGetProcAddress. It declares the
 * few prototypes it calls itself (CI has no CUDA toolkit), with the
 * toolkit's ABI. It prints one line per check and "PASS" at the end; any
 * failure prints "FAIL" and exits 1.
 *
 * Usage: driver_test [all | noconfig] [module-file]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../facade/cudart_structs.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct {
  char bytes[16];
} CUuuid;

CUresult cuInit(unsigned);
CUresult cuDriverGetVersion(int *);
CUresult cuGetErrorName(CUresult, const char **);
CUresult cuGetErrorString(CUresult, const char **);
CUresult cuDeviceGet(CUdevice *, int);
CUresult cuDeviceGetCount(int *);
CUresult cuDeviceGetName(char *, int, CUdevice);
CUresult cuDeviceGetUuid(CUuuid *, CUdevice);
CUresult cuDeviceGetUuid_v2(CUuuid *, CUdevice);
CUresult cuDeviceTotalMem_v2(size_t *, CUdevice);
CUresult cuDeviceGetAttribute(int *, int, CUdevice);
CUresult cuDevicePrimaryCtxGetState(CUdevice, unsigned *, int *);
CUresult cuDevicePrimaryCtxRetain(CUcontext *, CUdevice);
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice);
CUresult cuCtxGetCurrent(CUcontext *);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuCtxGetDevice(CUdevice *);
CUresult cuCtxSynchronize(void);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void *, size_t);
CUresult cuMemcpyDtoH_v2(void *, CUdeviceptr, size_t);
CUresult cuStreamSynchronize(CUstream);
CUresult cuPointerGetAttribute(void *, int, CUdeviceptr);
CUresult cuPointerGetAttributes(unsigned, int *, void **, CUdeviceptr);
CUresult cuModuleLoad(CUmodule *, const char *);
CUresult cuModuleLoadData(CUmodule *, const void *);
CUresult cuModuleLoadDataEx(CUmodule *, const void *, unsigned, int *, void **);
CUresult cuModuleGetFunction(CUfunction *, CUmodule, const char *);
CUresult cuModuleGetGlobal_v2(CUdeviceptr *, size_t *, CUmodule, const char *);
CUresult cuModuleUnload(CUmodule);
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                        void **, void **);
CUresult cuFuncGetAttribute(int *, int, CUfunction);
CUresult cuFuncSetAttribute(CUfunction, int, int);
CUresult cuFuncSetCacheConfig(CUfunction, int);
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *, CUfunction, int, size_t);
CUresult cuGetProcAddress_v2(const char *, void **, int, unsigned long long, int *);
CUresult cuLinkCreate_v2(unsigned, void *, void **, void *);

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct { unsigned x, y, z; } dim3;
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDevice(int *);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *, int);
cudaError_t cudaDeviceGetAttribute(int *, int, int);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMallocHost(void **, size_t);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaStreamCreate(cudaStream_t *);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDriverEntryPoint(const char *, void **, unsigned long long, int *);
cudaError_t cudaGetDriverEntryPointByVersion(const char *, void **, unsigned, unsigned long long, int *);
void **__cudaRegisterFatBinary(void *);
void __cudaRegisterFatBinaryEnd(void **);
void __cudaUnregisterFatBinary(void **);
void __cudaRegisterFunction(void **, const char *, char *, const char *, int, void *, void *, void *, void *, int *);
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *, const void *, int, size_t);

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_INVALID_CONTEXT = 201,
  CUDA_ERROR_FILE_NOT_FOUND = 301,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_NOT_FOUND = 500,
  CUDA_ERROR_NOT_SUPPORTED = 801
};
enum { H2D = 1, D2H = 2 };

#include "check.h"

static const char *name_of(CUresult e) {
  const char *s = NULL;
  return cuGetErrorName(e, &s) == CUDA_SUCCESS ? s : "?";
}

#define OK(call)                                                   \
  do {                                                             \
    CUresult e_ = (call);                                          \
    CHECK(e_ == 0, "%s = %d (%s)", #call, e_, name_of(e_));        \
  } while (0)

#define IS(call, want)                                                               \
  do {                                                                               \
    CUresult e_ = (call);                                                            \
    CHECK(e_ == (want), "%s = %d (%s), want %d", #call, e_, name_of(e_), (int)(want)); \
  } while (0)

static int active(int dev) {
  unsigned flags = 99;
  int a = -1;
  CUresult e = cuDevicePrimaryCtxGetState(dev, &flags, &a);
  return e == CUDA_SUCCESS ? a : -100 - e;
}

static CUcontext current(void) {
  CUcontext c = (CUcontext)(uintptr_t)0xdead;
  return cuCtxGetCurrent(&c) == CUDA_SUCCESS ? c : (CUcontext)(uintptr_t)0xdead;
}

/* What a new thread sees, and what cudaSetDevice does there. */
struct thread_view {
  CUcontext before, after, main_ctx1;
};

static void *other_thread(void *arg) {
  struct thread_view *v = arg;
  v->before = current();
  if (cudaSetDevice(1) == 0) v->after = current();
  return NULL;
}

/* The sequence PyTorch runs at its first tensor: device count through the
 * runtime, then primary context queries through the driver, with no
 * cuInit; then the context follows the runtime's current device. */
static void contexts(void) {
  int n = -1;
  CHECK(cudaGetDeviceCount(&n) == 0 && n == 2, "cudaGetDeviceCount %d", n);
  CHECK(active(0) == 0 && active(1) == 0, "primary contexts active before use: %d %d", active(0), active(1));
  CHECK(current() == NULL, "a current context before any use: %p", (void *)current());
  CUdevice d = -1;
  IS(cuCtxGetDevice(&d), CUDA_ERROR_INVALID_CONTEXT);
  IS(cuDevicePrimaryCtxGetState(2, (unsigned[]){0}, (int[]){0}), CUDA_ERROR_INVALID_DEVICE);

  OK(cudaSetDevice(1));
  CHECK(active(1) == 1 && active(0) == 0, "after cudaSetDevice(1): active %d %d", active(0), active(1));
  CUcontext c1 = current();
  CHECK(c1 != NULL && c1 != (CUcontext)(uintptr_t)0xdead, "current context %p", (void *)c1);
  OK(cuCtxGetDevice(&d));
  CHECK(d == 1, "cuCtxGetDevice %d", d);

  CUcontext c0 = NULL;
  OK(cuDevicePrimaryCtxRetain(&c0, 0));
  CHECK(c0 != NULL && c0 != c1 && active(0) == 1, "retained %p (device 1's %p), active %d", (void *)c0, (void *)c1,
        active(0));
  CUcontext again = NULL;
  OK(cuDevicePrimaryCtxRetain(&again, 0));
  CHECK(again == c0, "second retain %p, first %p", (void *)again, (void *)c0);
  OK(cuCtxSetCurrent(c0));
  int rd = -1;
  CHECK(cudaGetDevice(&rd) == 0 && rd == 0, "cudaGetDevice after cuCtxSetCurrent(device 0) = %d", rd);
  OK(cuDevicePrimaryCtxRelease_v2(0));
  OK(cuDevicePrimaryCtxRelease_v2(0));
  IS(cuDevicePrimaryCtxRelease_v2(0), CUDA_ERROR_INVALID_CONTEXT);
  IS(cuCtxSetCurrent((CUcontext)(uintptr_t)0x1234), CUDA_ERROR_INVALID_CONTEXT);

  OK(cuCtxSetCurrent(NULL));
  CHECK(current() == NULL, "current context after cuCtxSetCurrent(NULL): %p", (void *)current());
  IS(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
  void *p = NULL;
  CHECK(cudaMalloc(&p, 256) == 0, "cudaMalloc");
  CHECK(current() == c0, "a runtime call binds the current device's context: %p, want %p", (void *)current(), (void *)c0);
  OK(cuCtxSynchronize());
  CHECK(cudaFree(p) == 0, "cudaFree");

  struct thread_view v = {0};
  pthread_t t;
  pthread_create(&t, NULL, other_thread, &v);
  pthread_join(t, NULL);
  CHECK(v.before == NULL && v.after == c1, "new thread: %p, then %p after cudaSetDevice(1) (want NULL, %p)",
        (void *)v.before, (void *)v.after, (void *)c1);
}

static void devices(void) {
  int v = 0, n = 0;
  OK(cuInit(0));
  IS(cuInit(1), CUDA_ERROR_INVALID_VALUE);
  OK(cuDriverGetVersion(&v));
  CHECK(v == 13000, "driver version %d", v);
  OK(cuDeviceGetCount(&n));
  CHECK(n == 2, "cuDeviceGetCount %d", n);
  CUdevice d = -1;
  OK(cuDeviceGet(&d, 1));
  CHECK(d == 1, "cuDeviceGet %d", d);
  IS(cuDeviceGet(&d, 2), CUDA_ERROR_INVALID_DEVICE);
  char name[256];
  OK(cuDeviceGetName(name, sizeof name, 1));
  CHECK(strcmp(name, "xgpu host device") == 0, "name %s", name);
  char small[5];
  OK(cuDeviceGetName(small, sizeof small, 1));
  CHECK(strcmp(small, "xgpu") == 0, "truncated name %s", small);
  struct cudaDeviceProp p;
  CHECK(cudaGetDeviceProperties(&p, 1) == 0, "cudaGetDeviceProperties");
  CUuuid u, u2;
  OK(cuDeviceGetUuid(&u, 1));
  OK(cuDeviceGetUuid_v2(&u2, 1));
  CHECK(memcmp(u.bytes, p.uuid.bytes, 16) == 0 && memcmp(u2.bytes, u.bytes, 16) == 0, "UUIDs differ");
  size_t total = 0;
  OK(cuDeviceTotalMem_v2(&total, 1));
  CHECK(total == p.totalGlobalMem && total == (1u << 30), "total memory %zu", total);
  int a = 0, ra = 0;
  OK(cuDeviceGetAttribute(&a, 16 /* MULTIPROCESSOR_COUNT */, 1));
  CHECK(cudaDeviceGetAttribute(&ra, 16, 1) == 0 && a == ra && a > 0, "SMs %d, runtime %d", a, ra);
  OK(cuDeviceGetAttribute(&a, 75 /* COMPUTE_CAPABILITY_MAJOR */, 0));
  CHECK(a == 9, "major %d", a);
  a = -1;
  OK(cuDeviceGetAttribute(&a, 132 /* MULTICAST_SUPPORTED */, 0));
  CHECK(a == 0, "multicast %d: xgpu serves no multicast objects", a);
  IS(cuDeviceGetAttribute(&a, 9999, 0), CUDA_ERROR_INVALID_VALUE);
  IS(cuDeviceGetAttribute(&a, 16, 7), CUDA_ERROR_INVALID_DEVICE);

  const char *s = NULL;
  OK(cuGetErrorName(CUDA_ERROR_NOT_SUPPORTED, &s));
  CHECK(s && strcmp(s, "CUDA_ERROR_NOT_SUPPORTED") == 0, "name %s", s ? s : "(null)");
  OK(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s));
  CHECK(s && strcmp(s, "invalid argument") == 0, "string %s", s ? s : "(null)");
  OK(cuGetErrorString(CUDA_ERROR_INVALID_CONTEXT, &s));
  CHECK(s && strcmp(s, "invalid device context") == 0, "string %s", s ? s : "(null)");
  IS(cuGetErrorString(123456, &s), CUDA_ERROR_INVALID_VALUE);
  CHECK(s == NULL, "unknown error's string %s", s);
}

enum { ATTR_CONTEXT = 1, ATTR_MEMORY_TYPE = 2, ATTR_DEVICE_POINTER = 3, ATTR_HOST_POINTER = 4, ATTR_BUFFER_ID = 7,
       ATTR_DEVICE_ORDINAL = 9, ATTR_RANGE_START = 11, ATTR_RANGE_SIZE = 12, ATTR_MAPPED = 13 };

static void pointers(void) {
  enum { N = 1 << 16 };
  OK(cudaSetDevice(1) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
  CUcontext c1 = current();
  void *d = NULL;
  CHECK(cudaMalloc(&d, N) == 0, "cudaMalloc");
  CUdeviceptr inner = (CUdeviceptr)(uintptr_t)d + 100;
  unsigned type = 0;
  int ord = -1;
  CUcontext ctx = NULL;
  CUdeviceptr start = 0, dp = 0;
  size_t size = 0;
  OK(cuPointerGetAttribute(&type, ATTR_MEMORY_TYPE, inner));
  OK(cuPointerGetAttribute(&ord, ATTR_DEVICE_ORDINAL, inner));
  OK(cuPointerGetAttribute(&ctx, ATTR_CONTEXT, inner));
  OK(cuPointerGetAttribute(&dp, ATTR_DEVICE_POINTER, inner));
  OK(cuPointerGetAttribute(&start, ATTR_RANGE_START, inner));
  OK(cuPointerGetAttribute(&size, ATTR_RANGE_SIZE, inner));
  CHECK(type == 2 && ord == 1 && ctx == c1 && dp == inner, "device pointer: type %u device %d ctx %p", type, ord,
        (void *)ctx);
  CHECK(start == (CUdeviceptr)(uintptr_t)d && size >= N, "range %#llx+%zu, want %p+%d", start, size, d, N);
  void *hp = NULL;
  IS(cuPointerGetAttribute(&hp, ATTR_HOST_POINTER, inner), CUDA_ERROR_INVALID_VALUE);

  char *host = malloc(64);
  IS(cuPointerGetAttribute(&type, ATTR_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)host), CUDA_ERROR_INVALID_VALUE);
  int attrs[3] = {ATTR_MEMORY_TYPE, ATTR_DEVICE_ORDINAL, ATTR_MAPPED};
  unsigned mapped = 7;
  type = 7;
  void *data[3] = {&type, &ord, &mapped};
  OK(cuPointerGetAttributes(3, attrs, data, (CUdeviceptr)(uintptr_t)host));
  CHECK(type == 0 && ord == -2 && mapped == 0, "unknown host memory: type %u device %d mapped %u", type, ord, mapped);
  free(host);

  void *pinned = NULL;
  CHECK(cudaMallocHost(&pinned, 4096) == 0, "cudaMallocHost");
  OK(cuPointerGetAttribute(&type, ATTR_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)pinned + 8));
  OK(cuPointerGetAttribute(&hp, ATTR_HOST_POINTER, (CUdeviceptr)(uintptr_t)pinned + 8));
  OK(cuPointerGetAttribute(&start, ATTR_RANGE_START, (CUdeviceptr)(uintptr_t)pinned + 8));
  CHECK(type == 1 && hp == (char *)pinned + 8 && start == (CUdeviceptr)(uintptr_t)pinned, "pinned: type %u", type);
  CHECK(cudaFreeHost(pinned) == 0, "cudaFreeHost");

  unsigned long long id = 0;
  IS(cuPointerGetAttribute(&id, ATTR_BUFFER_ID, inner), CUDA_ERROR_NOT_SUPPORTED);
  CHECK(cudaFree(d) == 0, "cudaFree");

  /* Memory through the driver, on the current context's device. */
  CUdeviceptr m = 0;
  OK(cuMemAlloc_v2(&m, N));
  OK(cuPointerGetAttribute(&ord, ATTR_DEVICE_ORDINAL, m));
  CHECK(ord == 1, "cuMemAlloc on device %d, want the current context's 1", ord);
  unsigned char *in = malloc(N), *out = malloc(N);
  for (int i = 0; i < N; i++) in[i] = (unsigned char)(i * 13);
  OK(cuMemcpyHtoD_v2(m, in, N));
  OK(cuMemcpyDtoH_v2(out, m, N));
  CHECK(memcmp(in, out, N) == 0, "cuMemcpy round trip differs");
  size_t fr = 0, tot = 0;
  OK(cuMemGetInfo_v2(&fr, &tot));
  CHECK(tot == (1u << 30) && fr < tot, "free %zu total %zu", fr, tot);
  OK(cuMemFree_v2(m));
  free(in);
  free(out);
}

/* Host-backend module images: kernels of its built-in library, and a
 * global. */
static const char module_image[] = "xgpu-host-module v1\nkernel fill_u32\nkernel add_one_u32\nglobal counter 8\n";
static const struct {
  int magic, version;
  const char *data;
  void *file;
} wrapper = {0x466243b1, 1, module_image, 0};
static void fill_u32_stub(void) {}

static void *load_without_context(void *arg) {
  CUmodule m = NULL;
  *(CUresult *)arg = cuModuleLoadData(&m, module_image);
  return NULL;
}

static void modules(const char *module_file) {
  enum { N = 10000, LAUNCHES = 100 };
  OK(cudaSetDevice(1) == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
  CUmodule mod = NULL;
  OK(cuModuleLoadData(&mod, module_image));
  CUfunction fill = NULL, add = NULL, again = NULL;
  OK(cuModuleGetFunction(&fill, mod, "fill_u32"));
  OK(cuModuleGetFunction(&add, mod, "add_one_u32"));
  OK(cuModuleGetFunction(&again, mod, "fill_u32"));
  CHECK(fill && add && again == fill && add != fill, "functions %p %p %p", (void *)fill, (void *)add, (void *)again);
  IS(cuModuleGetFunction(&again, mod, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);

  int v = 0;
  OK(cuFuncGetAttribute(&v, 0 /* MAX_THREADS_PER_BLOCK */, fill));
  CHECK(v == 1024, "max threads %d", v);
  OK(cuFuncSetAttribute(fill, 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */, 64 << 10));
  OK(cuFuncGetAttribute(&v, 8, fill));
  CHECK(v == 64 << 10, "max dynamic shared %d", v);
  OK(cuFuncSetCacheConfig(fill, 1));
  IS(cuFuncSetCacheConfig((CUfunction)(uintptr_t)0x99, 1), CUDA_ERROR_INVALID_HANDLE);

  /* Occupancy: the H200's 2048 threads per SM, 16 registers a thread. */
  int blocks = -1, rt_blocks = -2;
  OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fill, 256, 0));
  CHECK(blocks == 8, "blocks of 256 threads per SM %d, want 8", blocks);
  OK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fill, 1024, 0));
  CHECK(blocks == 2, "blocks of 1024 threads per SM %d, want 2", blocks);
  void **fb = __cudaRegisterFatBinary((void *)&wrapper);
  __cudaRegisterFunction(fb, (const char *)fill_u32_stub, (char *)"fill_u32", "fill_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFatBinaryEnd(fb);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&rt_blocks, (const void *)fill_u32_stub, 1024, 0) == 0 &&
            rt_blocks == blocks,
        "runtime occupancy %d, driver %d", rt_blocks, blocks);
  __cudaUnregisterFatBinary(fb);

  /* Launches: kernel parameters, then a packed buffer, on the legacy
   * stream and on a runtime stream. */
  unsigned *d = NULL, n = N, val = 41;
  CHECK(cudaMalloc((void **)&d, N * sizeof *d) == 0, "cudaMalloc");
  void *fill_args[3] = {&d, &n, &val};
  OK(cuLaunchKernel(fill, (N + 255) / 256, 1, 1, 256, 1, 1, 0, NULL, fill_args, NULL));
  cudaStream_t s = NULL;
  CHECK(cudaStreamCreate(&s) == 0, "cudaStreamCreate");
  void *add_args[2] = {&d, &n};
  for (int i = 0; i < LAUNCHES; i++) OK(cuLaunchKernel(add, (N + 255) / 256, 1, 1, 256, 1, 1, 0, (CUstream)s, add_args, NULL));
  struct {
    unsigned *p;
    unsigned n, pad;
  } packed = {d, N, 0};
  size_t packed_size = sizeof packed;
  void *extra[] = {(void *)1 /* BUFFER_POINTER */, &packed, (void *)2 /* BUFFER_SIZE */, &packed_size, (void *)0};
  OK(cuLaunchKernel(add, (N + 255) / 256, 1, 1, 256, 1, 1, 0, (CUstream)s, NULL, extra));
  OK(cuStreamSynchronize((CUstream)s));
  unsigned *back = malloc(N * sizeof *back);
  CHECK(cudaMemcpy(back, d, N * sizeof *back, D2H) == 0, "cudaMemcpy");
  int bad = 0;
  for (int i = 0; i < N; i++) bad += back[i] != 41 + LAUNCHES + 1;
  CHECK(bad == 0, "%d of %d wrong: [0] = %u, want %u", bad, N, back[0], 41 + LAUNCHES + 1);
  IS(cuLaunchKernel(add, 1, 1, 1, 1, 1, 1, 0, NULL, add_args, extra), CUDA_ERROR_INVALID_VALUE);
  IS(cuLaunchKernel((CUfunction)(uintptr_t)0x99, 1, 1, 1, 1, 1, 1, 0, NULL, add_args, NULL), CUDA_ERROR_INVALID_HANDLE);
  IS(cuLaunchKernel(add, 0, 1, 1, 1, 1, 1, 0, NULL, add_args, NULL), CUDA_ERROR_INVALID_VALUE);
  CHECK(cudaStreamDestroy(s) == 0, "cudaStreamDestroy");

  /* A module global, copied to and from through the driver. */
  CUdeviceptr g = 0;
  size_t gsize = 0;
  OK(cuModuleGetGlobal_v2(&g, &gsize, mod, "counter"));
  CHECK(g != 0 && gsize == 8, "global %#llx size %zu", g, gsize);
  unsigned long long in = 0x1122334455667788ull, out = 0;
  OK(cuMemcpyHtoD_v2(g, &in, sizeof in));
  OK(cuMemcpyDtoH_v2(&out, g, sizeof out));
  CHECK(out == in, "global read back %#llx", out);
  IS(cuModuleGetGlobal_v2(&g, &gsize, mod, "no_such_global"), CUDA_ERROR_NOT_FOUND);

  OK(cuModuleUnload(mod));
  IS(cuModuleGetFunction(&again, mod, "fill_u32"), CUDA_ERROR_INVALID_HANDLE);
  IS(cuLaunchKernel(fill, 1, 1, 1, 1, 1, 1, 0, NULL, fill_args, NULL), CUDA_ERROR_INVALID_HANDLE);
  IS(cuModuleUnload(mod), CUDA_ERROR_INVALID_HANDLE);

  /* JIT options that report back are answered. */
  char log[16] = "garbage";
  int opts[2] = {3 /* INFO_LOG_BUFFER */, 4 /* INFO_LOG_BUFFER_SIZE_BYTES */};
  void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
  OK(cuModuleLoadDataEx(&mod, module_image, 2, opts, vals));
  CHECK(log[0] == 0 && vals[1] == NULL, "log '%s' size %p", log, vals[1]);
  OK(cuModuleUnload(mod));

  if (module_file) {
    OK(cuModuleLoad(&mod, module_file));
    OK(cuModuleGetFunction(&fill, mod, "fill_u32"));
    OK(cuModuleUnload(mod));
  }
  IS(cuModuleLoad(&mod, "/nonexistent/module.cubin"), CUDA_ERROR_FILE_NOT_FOUND);
  IS(cuModuleLoadData(&mod, "not a module"), 200 /* CUDA_ERROR_INVALID_IMAGE */);

  CUresult no_ctx = 0;
  pthread_t t;
  pthread_create(&t, NULL, load_without_context, &no_ctx);
  pthread_join(t, NULL);
  CHECK(no_ctx == CUDA_ERROR_INVALID_CONTEXT, "module load without a current context: %d", no_ctx);
  CHECK(cudaFree(d) == 0, "cudaFree");
  free(back);
}

typedef CUresult (*version_fn)(int *);
typedef CUresult (*stub_fn)(void);

static void entry_points(void) {
  void *self = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  CHECK(self != NULL, "libcuda.so.1 not loaded: %s", dlerror());
  void *fn = NULL;
  int st = -1;
  CHECK(cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn, 12000, 0, &st) == 0 && st == 0 &&
            fn == dlsym(self, "cuDevicePrimaryCtxGetState"),
        "cuDevicePrimaryCtxGetState: %p status %d", fn, st);
  CHECK(cudaGetDriverEntryPoint("cuDriverGetVersion", &fn, 0, &st) == 0 && st == 0 && fn, "cuDriverGetVersion: %p", fn);
  int v = 0;
  CHECK(fn && ((version_fn)fn)(&v) == 0 && v == 13000, "cuDriverGetVersion through its entry point: %d", v);

  struct {
    const char *name;
    int version;
    unsigned long long flags;
    const char *want;
  } tests[] = {
      {"cuDeviceGetUuid", 11000, 0, "cuDeviceGetUuid"},
      {"cuDeviceGetUuid", 12000, 0, "cuDeviceGetUuid_v2"},
      {"cuCtxCreate", 11040, 0, "cuCtxCreate_v3"},
      {"cuCtxCreate", 13000, 0, "cuCtxCreate_v4"},
      {"cuLaunchKernel", 12000, 0, "cuLaunchKernel"},
      {"cuLaunchKernel", 12000, 2, "cuLaunchKernel_ptsz"},
      {"cuMemcpyHtoD", 12000, 2, "cuMemcpyHtoD_v2_ptds"},
      {"cuMemcpyHtoD", 12000, 1, "cuMemcpyHtoD_v2"},
      {"cuGetErrorString", 12000, 0, "cuGetErrorString"},
  };
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    fn = NULL;
    st = -1;
    CUresult e = cuGetProcAddress_v2(tests[i].name, &fn, tests[i].version, tests[i].flags, &st);
    void *want = dlsym(self, tests[i].want);
    CHECK(e == 0 && st == 0 && want && fn == want, "cuGetProcAddress_v2(%s, %d, %llu) = %d status %d: %p, want %s %p",
          tests[i].name, tests[i].version, tests[i].flags, e, st, fn, tests[i].want, want);
  }
  fn = (void *)1;
  IS(cuGetProcAddress_v2("cuNoSuchFunction", &fn, 12000, 0, &st), CUDA_ERROR_NOT_FOUND);
  CHECK(fn == NULL && st == 1, "unknown symbol: %p status %d", fn, st);
  IS(cuGetProcAddress_v2("cuDeviceGetUuid", &fn, 12000, 7, &st), CUDA_ERROR_INVALID_VALUE);

  /* An unknown symbol is no error of the runtime: PyTorch asks for
   * optional ones and checks its launches with cudaGetLastError. */
  fn = (void *)1;
  st = -1;
  CHECK(cudaGetDriverEntryPointByVersion("cuNoSuchFunction", &fn, 12000, 0, &st) == 0 && fn == NULL && st == 1,
        "unknown symbol through the runtime: %p status %d", fn, st);
  CHECK(cudaGetLastError() == 0, "last error set by an unknown symbol");

  /* A function xgpu does not serve is found, and says so when called. */
  CHECK(cudaGetDriverEntryPointByVersion("cuMemCreate", &fn, 12000, 0, &st) == 0 && st == 0 && fn,
        "cuMemCreate: %p status %d", fn, st);
  CHECK(fn && ((stub_fn)fn)() == CUDA_ERROR_NOT_SUPPORTED, "cuMemCreate is not served");
  IS(cuLinkCreate_v2(0, NULL, NULL, NULL), CUDA_ERROR_NOT_SUPPORTED);
  IS(cuLinkCreate_v2(0, NULL, NULL, NULL), CUDA_ERROR_NOT_SUPPORTED);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "all";
  if (strcmp(mode, "noconfig") == 0) {
    int n = -1;
    IS(cuDeviceGetCount(&n), CUDA_ERROR_NO_DEVICE);
    CHECK(n == 0, "count %d", n);
    IS(cuInit(0), CUDA_ERROR_NO_DEVICE);
    IS(cuDevicePrimaryCtxGetState(0, (unsigned[]){0}, (int[]){0}), CUDA_ERROR_NO_DEVICE);
  } else {
    contexts(); /* first: it checks the state before any use */
    devices();
    pointers();
    modules(argc > 2 ? argv[2] : NULL);
    entry_points();
  }
  if (failures) {
    printf("FAIL: %d checks failed\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
