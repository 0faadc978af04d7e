/*
 * cooperative_test.c exercises cooperative launches and the extensible
 * launch of libcudart.so.13 and libcuda.so.1 (the xgpu facades) against
 * the device map in XGPU_DEVICE_MAP, with the host backend's built-in
 * kernels: cudaLaunchCooperativeKernel, cudaLaunchKernelExC with each
 * class of launch attribute (and the refused ones), cuLaunchCooperativeKernel
 * and cuLaunchKernelEx, and a captured cooperative launch replayed. The
 * host backend's devices have no grid-wide barrier but refuse a
 * cooperative grid larger than they hold at once, as a GPU does
 * (cudaErrorCooperativeLaunchTooLarge, reported by the next synchronizing
 * call): that refusal is how the program tells a cooperative launch from
 * an ordinary one. It declares the prototypes it calls (CI has no CUDA
 * toolkit), with the toolkit's ABI. It prints one line per check and
 * "PASS" at the end; any failure prints "FAIL" and exits 1.
 *
 * Usage: cooperative_test DOTFILE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../facade/launch_structs.h"

typedef int cudaError_t;
typedef int CUresult;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct xgpu_launch_dim3 dim3;
typedef struct cudaLaunchAttribute_st cudaLaunchAttribute;
typedef struct cudaLaunchConfig_st cudaLaunchConfig_t;
typedef struct CUlaunchConfig_st CUlaunchConfig;

const char *cudaGetErrorName(cudaError_t);
cudaError_t cudaGetLastError(void);
cudaError_t cudaSetDevice(int);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaMemset(void *, int, size_t);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaDeviceSynchronize(void);
void **__cudaRegisterFatBinary(void *);
void __cudaRegisterFatBinaryEnd(void **);
void __cudaUnregisterFatBinary(void **);
void __cudaRegisterFunction(void **, const char *, char *, const char *, int, void *, void *, void *, void *, int *);
cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchCooperativeKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchCooperativeKernel_ptsz(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t *, const void *, void **);
cudaError_t cudaLaunchKernelExC_ptsz(const cudaLaunchConfig_t *, const void *, void **);
cudaError_t cudaStreamBeginCapture(cudaStream_t, int);
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *);
cudaError_t cudaGraphGetNodes(cudaGraph_t, void **, size_t *);
cudaError_t cudaGraphDebugDotPrint(cudaGraph_t, const char *, unsigned);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *, cudaGraph_t, unsigned long long);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t);
cudaError_t cudaGraphDestroy(cudaGraph_t);

CUresult cuModuleLoadData(CUmodule *, const void *);
CUresult cuModuleGetFunction(CUfunction *, CUmodule, const char *);
CUresult cuModuleUnload(CUmodule);
CUresult cuCtxSynchronize(void);
CUresult cuLaunchCooperativeKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                   CUstream, void **);
CUresult cuLaunchCooperativeKernel_ptsz(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                        CUstream, void **);
CUresult cuLaunchKernelEx(const CUlaunchConfig *, CUfunction, void **, void **);
CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *, CUfunction, void **, void **);

#include "check.h"

#define IS(call, want)                                                                       \
  do {                                                                                       \
    int e_ = (call);                                                                         \
    CHECK(e_ == (want), "%s = %d, want %d", #call, e_, (int)(want));                         \
  } while (0)
#define OK(call) IS(call, 0)

enum { H2D = 1, D2H = 2 };
enum {
  errInvalidValue = 1,
  errInvalidHandle = 400, /* CUDA_ERROR_INVALID_HANDLE */
  errTooLarge = 720,      /* cudaErrorCooperativeLaunchTooLarge, CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE */
  errNotSupported = 801
};
enum {
  attrIgnore = 0,
  attrAccessPolicyWindow = 1,
  attrCooperative = 2,
  attrSynchronizationPolicy = 3,
  attrClusterDimension = 4,
  attrClusterSchedulingPolicy = 5,
  attrProgrammaticStreamSerialization = 6,
  attrProgrammaticEvent = 7,
  attrPriority = 8,
  attrMemSyncDomain = 10,
  attrPreferredSharedMemoryCarveout = 14
};
enum { N = 4096 };

/* The host backend's kernels, registered as nvcc registers a fat binary. */
static const char host_module[] = "xgpu-host-module v1\nkernel fill_u32\nkernel add_one_u32\n";
static const struct {
  int magic, version;
  const char *data;
  void *file;
} host_wrapper = {0x466243b1, 1, host_module, 0};
static void fill_u32_stub(void) {}
static void add_one_u32_stub(void) {}

/* A grid that fits on an emulated H200 (8 blocks of 256 threads per SM),
 * and one that no GPU holds at once. */
static const dim3 fits = {N / 256, 1, 1}, block = {256, 1, 1}, huge = {1u << 20, 1, 1};

static unsigned *dev;
static unsigned host[N];

static int all(unsigned want) {
  if (cudaMemcpy(host, dev, sizeof host, D2H) != 0) return 0;
  for (int i = 0; i < N; i++)
    if (host[i] != want) return 0;
  return 1;
}

static void reset(unsigned v) {
  for (int i = 0; i < N; i++) host[i] = v;
  (void)cudaMemcpy(dev, host, sizeof host, H2D);
}

static void runtime_launches(cudaStream_t s) {
  unsigned n = N, v = 5;
  void *fill_args[3] = {&dev, &n, &v};
  void *add_args[2] = {&dev, &n};

  OK(cudaLaunchCooperativeKernel((const void *)fill_u32_stub, fits, block, fill_args, 0, s));
  OK(cudaLaunchCooperativeKernel_ptsz((const void *)add_one_u32_stub, fits, block, add_args, 0, s));
  OK(cudaStreamSynchronize(s));
  CHECK(all(6), "after a cooperative fill and add_one: %u", host[0]);

  /* Too large: the launch refuses it, as CUDA's does, and the kernel does
   * not run. */
  v = 99;
  IS(cudaLaunchCooperativeKernel((const void *)fill_u32_stub, huge, block, fill_args, 0, s), errTooLarge);
  IS(cudaGetLastError(), errTooLarge);
  OK(cudaStreamSynchronize(s));
  CHECK(all(6), "after the refused cooperative launch: %u", host[0]);
  /* The same grid launched ordinarily runs. */
  OK(cudaLaunchKernel((const void *)fill_u32_stub, huge, block, fill_args, 0, s));
  OK(cudaStreamSynchronize(s));
  CHECK(all(99), "after an ordinary launch of the large grid: %u", host[0]);
  IS(cudaLaunchCooperativeKernel(NULL, fits, block, fill_args, 0, s), 98 /* cudaErrorInvalidDeviceFunction */);
  (void)cudaGetLastError();
}

/* ex launches fill_u32(dev, N, v) over grid with the n attributes at a
 * through cudaLaunchKernelExC and returns its result and that of the
 * stream's synchronization after it. */
static int ex(dim3 grid, cudaLaunchAttribute *a, unsigned n, unsigned v, cudaStream_t s, int *sync) {
  unsigned cnt = N;
  void *args[3] = {&dev, &cnt, &v};
  cudaLaunchConfig_t c = {grid, block, 0, s, a, n};
  int e = cudaLaunchKernelExC(&c, (const void *)fill_u32_stub, args);
  *sync = cudaStreamSynchronize(s);
  (void)cudaGetLastError();
  return e;
}

static void ex_attributes(cudaStream_t s) {
  static const struct {
    const char *name;
    int id;
    int value[3];
    int launch, huge; /* the launch's result; a grid too large's launch result */
  } tests[] = {
      {"no attribute", -1, {0}, 0, 0},
      {"ignore", attrIgnore, {0}, 0, 0},
      {"cooperative", attrCooperative, {1}, 0, errTooLarge},
      {"cooperative off", attrCooperative, {0}, 0, 0},
      {"access policy window (a hint)", attrAccessPolicyWindow, {0}, 0, 0},
      {"priority (a hint)", attrPriority, {-5}, 0, 0},
      {"preferred shared memory carveout (a hint)", attrPreferredSharedMemoryCarveout, {50}, 0, 0},
      {"programmatic stream serialization", attrProgrammaticStreamSerialization, {1}, 0, 0},
      {"cluster 1x1x1", attrClusterDimension, {1, 1, 1}, 0, 0},
      {"cluster 2x1x1", attrClusterDimension, {2, 1, 1}, errNotSupported, 0},
      {"synchronization policy (a stream attribute)", attrSynchronizationPolicy, {1}, errNotSupported, 0},
      {"cluster scheduling policy", attrClusterSchedulingPolicy, {1}, errNotSupported, 0},
      {"programmatic event", attrProgrammaticEvent, {0}, errNotSupported, 0},
      {"memory synchronization domain", attrMemSyncDomain, {1}, errNotSupported, 0},
      {"unknown attribute", 99, {0}, errNotSupported, 0},
  };
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    cudaLaunchAttribute a;
    memset(&a, 0, sizeof a);
    a.id = tests[i].id;
    memcpy(a.val.pad, tests[i].value, sizeof tests[i].value);
    unsigned na = tests[i].id < 0 ? 0 : 1;
    printf("---- %s\n", tests[i].name);
    reset(0);
    int sync = -1;
    int e = ex(fits, na ? &a : NULL, na, 7, s, &sync);
    CHECK(e == tests[i].launch && sync == 0, "%s: launch %d (want %d), sync %d", tests[i].name, e, tests[i].launch, sync);
    CHECK(all(e == 0 ? 7 : 0), "%s: memory %u", tests[i].name, host[0]);
    if (tests[i].launch != 0) {
      IS(cudaGetLastError(), 0); /* ex read it already */
      continue;
    }
    e = ex(huge, na ? &a : NULL, na, 8, s, &sync);
    CHECK(e == tests[i].huge && sync == 0, "%s, a grid too large: launch %d (want %d), sync %d", tests[i].name, e,
          tests[i].huge, sync);
    CHECK(all(e == 0 ? 8 : 7), "%s, a grid too large: memory %u", tests[i].name, host[0]);
  }

  /* Several attributes: the cooperative one counts with the hints. */
  cudaLaunchAttribute many[3];
  memset(many, 0, sizeof many);
  many[0].id = attrPriority;
  many[1].id = attrCooperative;
  many[1].val.cooperative = 1;
  many[2].id = attrClusterDimension;
  many[2].val.clusterDim.x = many[2].val.clusterDim.y = many[2].val.clusterDim.z = 1;
  int sync = -1;
  IS(ex(huge, many, 3, 9, s, &sync), errTooLarge);
  IS(sync, 0);

  /* The refused calls record their error as the thread's last. */
  cudaLaunchAttribute cluster;
  memset(&cluster, 0, sizeof cluster);
  cluster.id = attrClusterDimension;
  cluster.val.clusterDim.x = 4;
  cluster.val.clusterDim.y = cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t c = {fits, block, 0, s, &cluster, 1};
  unsigned cnt = N, v = 1;
  void *args[3] = {&dev, &cnt, &v};
  IS(cudaLaunchKernelExC(&c, (const void *)fill_u32_stub, args), errNotSupported);
  IS(cudaGetLastError(), errNotSupported);
  IS(cudaLaunchKernelExC(NULL, (const void *)fill_u32_stub, args), errInvalidValue);
  IS(cudaGetLastError(), errInvalidValue);
  c.attrs = NULL;
  IS(cudaLaunchKernelExC_ptsz(&c, NULL, args), errInvalidValue);
  IS(cudaLaunchKernelExC_ptsz(&c, (const void *)fill_u32_stub, args), errInvalidValue); /* one attribute, none given */
  c.numAttrs = 0;
  OK(cudaLaunchKernelExC_ptsz(&c, (const void *)fill_u32_stub, args));
  OK(cudaStreamSynchronize(s));
  (void)cudaGetLastError();
}

static void driver_launches(cudaStream_t s) {
  CUmodule mod = NULL;
  CUfunction fill = NULL, add = NULL;
  OK(cuModuleLoadData(&mod, host_module));
  OK(cuModuleGetFunction(&fill, mod, "fill_u32"));
  OK(cuModuleGetFunction(&add, mod, "add_one_u32"));
  unsigned n = N, v = 3;
  void *fill_args[3] = {&dev, &n, &v};
  void *add_args[2] = {&dev, &n};

  OK(cuLaunchCooperativeKernel(fill, fits.x, 1, 1, block.x, 1, 1, 0, (CUstream)s, fill_args));
  OK(cuLaunchCooperativeKernel_ptsz(add, fits.x, 1, 1, block.x, 1, 1, 0, (CUstream)s, add_args));
  OK(cuCtxSynchronize());
  CHECK(all(4), "after cuLaunchCooperativeKernel: %u", host[0]);
  IS(cuLaunchCooperativeKernel(fill, huge.x, 1, 1, block.x, 1, 1, 0, (CUstream)s, fill_args), errTooLarge);
  OK(cuCtxSynchronize());
  CHECK(all(4), "after a refused cuLaunchCooperativeKernel: %u", host[0]);
  IS(cuLaunchCooperativeKernel(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, fill_args), errInvalidHandle);
  IS(cuLaunchCooperativeKernel(fill, 1, 1, 1, 1, 1, 1, 0, NULL, NULL), errInvalidValue); /* no arguments */

  struct cudaLaunchAttribute_st coop;
  memset(&coop, 0, sizeof coop);
  coop.id = attrCooperative;
  coop.val.cooperative = 1;
  CUlaunchConfig c = {fits.x, 1, 1, block.x, 1, 1, 0, (void *)s, &coop, 1};
  v = 11;
  OK(cuLaunchKernelEx(&c, fill, fill_args, NULL));
  OK(cuCtxSynchronize());
  CHECK(all(11), "after cuLaunchKernelEx with kernel parameters: %u", host[0]);
  /* Arguments in a packed buffer. */
  struct {
    unsigned *p;
    unsigned n;
  } packed = {dev, N};
  size_t size = 12;
  void *extra[] = {(void *)1, &packed, (void *)2, &size, (void *)0};
  OK(cuLaunchKernelEx_ptsz(&c, add, NULL, extra));
  OK(cuCtxSynchronize());
  CHECK(all(12), "after cuLaunchKernelEx with a packed buffer: %u", host[0]);
  c.gridDimX = huge.x;
  IS(cuLaunchKernelEx(&c, fill, fill_args, NULL), errTooLarge);
  OK(cuCtxSynchronize());
  coop.val.cooperative = 0;
  OK(cuLaunchKernelEx(&c, fill, fill_args, NULL));
  OK(cuCtxSynchronize());
  CHECK(all(11), "after an ordinary cuLaunchKernelEx of the large grid: %u", host[0]);
  coop.id = attrClusterDimension;
  coop.val.clusterDim.x = 2;
  coop.val.clusterDim.y = coop.val.clusterDim.z = 1;
  IS(cuLaunchKernelEx(&c, fill, fill_args, NULL), errNotSupported);
  IS(cuLaunchKernelEx(NULL, fill, fill_args, NULL), errInvalidValue);
  IS(cuLaunchKernelEx(&c, NULL, fill_args, NULL), errInvalidHandle);
  c.numAttrs = 0;
  IS(cuLaunchKernelEx(&c, fill, fill_args, extra), errInvalidValue); /* both argument forms */
  OK(cuModuleUnload(mod));
}

/* A captured cooperative launch replays as one: a grid that fits gives its
 * results every replay, one too large is refused every replay. */
static void captured(cudaStream_t s, const char *dot) {
  unsigned n = N, v = 20;
  void *fill_args[3] = {&dev, &n, &v};
  void *add_args[2] = {&dev, &n};
  cudaLaunchAttribute coop;
  memset(&coop, 0, sizeof coop);
  coop.id = attrCooperative;
  coop.val.cooperative = 1;
  cudaLaunchConfig_t c = {fits, block, 0, s, &coop, 1};

  OK(cudaStreamBeginCapture(s, 0));
  OK(cudaLaunchCooperativeKernel((const void *)fill_u32_stub, fits, block, fill_args, 0, s));
  OK(cudaLaunchKernelExC(&c, (const void *)add_one_u32_stub, add_args));
  cudaGraph_t g = NULL;
  OK(cudaStreamEndCapture(s, &g));
  size_t nodes = 0;
  OK(cudaGraphGetNodes(g, NULL, &nodes));
  CHECK(nodes == 2, "%zu nodes, want 2", nodes);
  OK(cudaGraphDebugDotPrint(g, dot, 0));
  cudaGraphExec_t x = NULL;
  OK(cudaGraphInstantiate(&x, g, 0));
  for (int i = 0; i < 2; i++) {
    reset(0);
    OK(cudaGraphLaunch(x, s));
    OK(cudaStreamSynchronize(s));
    CHECK(all(21), "replay %d: %u", i, host[0]);
  }
  OK(cudaGraphExecDestroy(x));
  OK(cudaGraphDestroy(g));

  /* A grid too large is refused while capturing too; the capture ends
   * with what was captured before. */
  OK(cudaStreamBeginCapture(s, 0));
  IS(cudaLaunchCooperativeKernel((const void *)fill_u32_stub, huge, block, fill_args, 0, s), errTooLarge);
  (void)cudaGetLastError();
  OK(cudaStreamEndCapture(s, &g));
  OK(cudaGraphDestroy(g));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cooperative_test DOTFILE\n");
    return 2;
  }
  void **h = __cudaRegisterFatBinary((void *)&host_wrapper);
  __cudaRegisterFunction(h, (const char *)fill_u32_stub, (char *)"fill_u32", "fill_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFunction(h, (const char *)add_one_u32_stub, (char *)"add_one_u32", "add_one_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFatBinaryEnd(h);
  OK(cudaSetDevice(0));
  OK(cudaMalloc((void **)&dev, N * sizeof(unsigned)));
  cudaStream_t s;
  OK(cudaStreamCreateWithFlags(&s, 1));
  runtime_launches(s);
  ex_attributes(s);
  driver_launches(s);
  captured(s, argv[1]);
  OK(cudaStreamDestroy(s));
  OK(cudaFree(dev));
  OK(cudaDeviceSynchronize());
  __cudaUnregisterFatBinary(h);
  if (failures) {
    printf("FAIL: %d checks failed\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
