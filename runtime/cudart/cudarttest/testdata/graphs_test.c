/*
 * graphs_test.c exercises stream capture, CUDA graphs and stream-ordered
 * memory pools of libcudart.so.13 (the xgpu facade) as a CUDA program
 * does, against the device map in XGPU_DEVICE_MAP, with the host
 * backend's built-in kernels. It declares the CUDA prototypes it calls
 * (CI has no CUDA toolkit), with the toolkit's ABI. It prints one line
 * per check and "PASS" at the end; any failure prints "FAIL" and exits 1.
 *
 * Usage: graphs_test DOTFILE
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../facade/cudart_graph_structs.h"

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUkern_st *cudaKernel_t;
typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphNode_st *cudaGraphNode_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct CUmemPoolHandle_st *cudaMemPool_t;
typedef struct xgpu_dim3 dim3;

const char *cudaGetErrorName(cudaError_t);
cudaError_t cudaGetLastError(void);
cudaError_t cudaSetDevice(int);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, int, cudaStream_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);
cudaError_t cudaStreamCreate(cudaStream_t *);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaEventCreate(cudaEvent_t *);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventQuery(cudaEvent_t);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaLaunchHostFunc(cudaStream_t, void (*)(void *), void *);
cudaError_t cudaDeviceSynchronize(void);
void **__cudaRegisterFatBinary(void *);
void __cudaRegisterFatBinaryEnd(void **);
void __cudaUnregisterFatBinary(void **);
void __cudaRegisterFunction(void **, const char *, char *, const char *, int, void *, void *, void *, void *, int *);
unsigned __cudaPushCallConfiguration(dim3, dim3, size_t, cudaStream_t);
cudaError_t __cudaPopCallConfiguration(dim3 *, dim3 *, size_t *, void *);
cudaError_t __cudaGetKernel(cudaKernel_t *, const void *);
cudaError_t __cudaLaunchKernel(cudaKernel_t, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);

cudaError_t cudaStreamBeginCapture(cudaStream_t, int);
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *);
cudaError_t cudaStreamIsCapturing(cudaStream_t, int *);
cudaError_t cudaStreamGetCaptureInfo(cudaStream_t, int *, unsigned long long *, cudaGraph_t *, const cudaGraphNode_t **,
                                     const struct cudaGraphEdgeData **, size_t *);
cudaError_t cudaThreadExchangeStreamCaptureMode(int *);
cudaError_t cudaGraphCreate(cudaGraph_t *, unsigned);
cudaError_t cudaGraphDestroy(cudaGraph_t);
cudaError_t cudaGraphAddKernelNode(cudaGraphNode_t *, cudaGraph_t, const cudaGraphNode_t *, size_t,
                                   const struct cudaKernelNodeParams *);
cudaError_t cudaGraphAddMemcpyNode1D(cudaGraphNode_t *, cudaGraph_t, const cudaGraphNode_t *, size_t, void *, const void *,
                                     size_t, int);
cudaError_t cudaGraphAddMemsetNode(cudaGraphNode_t *, cudaGraph_t, const cudaGraphNode_t *, size_t,
                                   const struct cudaMemsetParams *);
cudaError_t cudaGraphAddEmptyNode(cudaGraphNode_t *, cudaGraph_t, const cudaGraphNode_t *, size_t);
cudaError_t cudaGraphAddHostNode(cudaGraphNode_t *, cudaGraph_t, const cudaGraphNode_t *, size_t,
                                 const struct cudaHostNodeParams *);
cudaError_t cudaGraphAddDependencies(cudaGraph_t, const cudaGraphNode_t *, const cudaGraphNode_t *,
                                     const struct cudaGraphEdgeData *, size_t);
cudaError_t cudaGraphGetNodes(cudaGraph_t, cudaGraphNode_t *, size_t *);
cudaError_t cudaGraphGetRootNodes(cudaGraph_t, cudaGraphNode_t *, size_t *);
cudaError_t cudaGraphGetEdges(cudaGraph_t, cudaGraphNode_t *, cudaGraphNode_t *, struct cudaGraphEdgeData *, size_t *);
cudaError_t cudaGraphNodeGetDependencies(cudaGraphNode_t, cudaGraphNode_t *, struct cudaGraphEdgeData *, size_t *);
cudaError_t cudaGraphNodeGetType(cudaGraphNode_t, int *);
cudaError_t cudaGraphDebugDotPrint(cudaGraph_t, const char *, unsigned);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *, cudaGraph_t, unsigned long long);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *, cudaGraph_t, unsigned long long);
cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t);
cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t, cudaGraphNode_t, const struct cudaKernelNodeParams *);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t, cudaGraph_t, struct cudaGraphExecUpdateResultInfo_st *);

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *, int);
cudaError_t cudaDeviceGetMemPool(cudaMemPool_t *, int);
cudaError_t cudaDeviceSetMemPool(int, cudaMemPool_t);
cudaError_t cudaMemPoolCreate(cudaMemPool_t *, const struct cudaMemPoolProps *);
cudaError_t cudaMemPoolDestroy(cudaMemPool_t);
cudaError_t cudaMallocAsync(void **, size_t, cudaStream_t);
cudaError_t cudaMallocFromPoolAsync(void **, size_t, cudaMemPool_t, cudaStream_t);
cudaError_t cudaFreeAsync(void *, cudaStream_t);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, int, void *);
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t, int, void *);
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t);
cudaError_t cudaMemPoolSetAccess(cudaMemPool_t, const struct cudaMemAccessDesc *, size_t);
cudaError_t cudaMemPoolGetAccess(int *, cudaMemPool_t, struct cudaMemLocation *);

#include "check.h"

#define OK(call)                                                                 \
  do {                                                                           \
    cudaError_t e_ = (call);                                                     \
    CHECK(e_ == 0, "%s = %d (%s)", #call, e_, cudaGetErrorName(e_));             \
  } while (0)

#define ERR(call, want)                                                                     \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    CHECK(e_ == (want), "%s = %d (%s), want %d (%s)", #call, e_, cudaGetErrorName(e_), want, \
          cudaGetErrorName(want));                                                          \
    (void)cudaGetLastError();                                                               \
  } while (0)

enum { H2D = 1, D2H = 2, D2D = 3 };
enum { modeGlobal = 0, modeThreadLocal = 1, modeRelaxed = 2 };
enum { statusNone = 0, statusActive = 1, statusInvalidated = 2 };
enum {
  errInvalidValue = 1,
  errIllegalState = 401,
  errCaptureUnsupported = 900,
  errCaptureInvalidated = 901,
  errCaptureUnjoined = 904,
  errCaptureIsolation = 905,
  errCaptureImplicit = 906,
  errCapturedEvent = 907,
  errExecUpdateFailure = 910,
};
enum { N = 4096 };

/* The host backend's built-in kernels, registered as nvcc registers a fat
 * binary. */
static const char host_module[] = "xgpu-host-module v1\nkernel fill_u32\nkernel add_one_u32\n";
static const struct {
  int magic, version;
  const char *data;
  void *file;
} host_wrapper = {0x466243b1, 1, host_module, 0};
static void fill_u32_stub(void) {}
static void add_one_u32_stub(void) {}

static const dim3 grid = {(N + 255) / 256, 1, 1}, block = {256, 1, 1};

/* What nvcc's host stub for add_one_u32<<<grid, block, 0, s>>>(p, n) does. */
static void add_one(unsigned *p, cudaStream_t s) {
  unsigned n = N;
  void *args[2] = {&p, &n};
  static cudaKernel_t handle;
  if (!handle) (void)__cudaGetKernel(&handle, (const void *)add_one_u32_stub);
  dim3 g, b;
  size_t shmem;
  cudaStream_t st;
  if (__cudaPushCallConfiguration(grid, block, 0, s) != 0) return;
  if (__cudaPopCallConfiguration(&g, &b, &shmem, &st) != 0) return;
  (void)__cudaLaunchKernel(handle, g, b, args, shmem, st);
}

static cudaError_t fill(unsigned *p, unsigned v, cudaStream_t s) {
  unsigned n = N;
  void *args[3] = {&p, &n, &v};
  return cudaLaunchKernel((const void *)fill_u32_stub, grid, block, args, 0, s);
}

static int all(const unsigned *h, unsigned want) {
  for (int i = 0; i < N; i++)
    if (h[i] != want) return 0;
  return 1;
}

static int host_calls;
static void count_call(void *arg) { __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST); }

/* capture: memset, kernels (both launch paths), copies in both directions
 * and a host function captured on one stream, replayed three times with
 * new host input. */
static void capture(const char *dot) {
  unsigned *d = NULL, *d2 = NULL, *in = malloc(N * 4), *out = malloc(N * 4), *out2 = malloc(N * 4);
  OK(cudaMalloc((void **)&d, N * 4));
  OK(cudaMalloc((void **)&d2, N * 4));
  OK(cudaMemcpy(d, (unsigned[]){7}, 4, H2D));
  cudaStream_t s;
  OK(cudaStreamCreateWithFlags(&s, 1));
  memset(out, 0xff, N * 4);
  host_calls = 0;

  OK(cudaStreamBeginCapture(s, modeGlobal));
  int status = -1;
  OK(cudaStreamIsCapturing(s, &status));
  CHECK(status == statusActive, "status %d", status);
  OK(cudaMemsetAsync(d, 0, N * 4, s));
  add_one(d, s);
  OK(cudaGetLastError());
  OK(cudaLaunchKernel((const void *)add_one_u32_stub, grid, block, (void *[]){&d, &(unsigned){N}}, 0, s));
  OK(cudaMemcpyAsync(d2, in, N * 4, H2D, s));
  add_one(d2, s);
  OK(cudaMemcpyAsync(out, d, N * 4, D2H, s));
  OK(cudaMemcpyAsync(out2, d2, N * 4, D2H, s));
  OK(cudaLaunchHostFunc(s, count_call, &host_calls));
  unsigned long long id = 0;
  cudaGraph_t cg = NULL;
  const cudaGraphNode_t *deps = NULL;
  size_t ndeps = 0;
  OK(cudaStreamGetCaptureInfo(s, &status, &id, &cg, &deps, NULL, &ndeps));
  CHECK(status == statusActive && id != 0 && cg != NULL && ndeps == 1 && deps && deps[0], "capture info %d %llu %p %zu",
        status, id, (void *)cg, ndeps);
  cudaGraph_t g = NULL;
  OK(cudaStreamEndCapture(s, &g));
  CHECK(g == cg, "graph %p, capture info said %p", (void *)g, (void *)cg);
  OK(cudaStreamIsCapturing(s, &status));
  CHECK(status == statusNone, "status after capture %d", status);
  OK(cudaStreamSynchronize(s));
  unsigned first = 0;
  OK(cudaMemcpy(&first, d, 4, D2H));
  CHECK(first == 7 && out[0] == 0xffffffffu && host_calls == 0, "captured work ran: d[0]=%u out[0]=%x calls=%d", first,
        out[0], host_calls);

  size_t n = 0;
  OK(cudaGraphGetNodes(g, NULL, &n));
  CHECK(n == 8, "%zu nodes, want 8", n);
  cudaGraphNode_t nodes[8];
  OK(cudaGraphGetNodes(g, nodes, &n));
  int types[8];
  for (int i = 0; i < 8; i++) OK(cudaGraphNodeGetType(nodes[i], &types[i]));
  CHECK(types[0] == 2 && types[1] == 0 && types[2] == 0 && types[3] == 1 && types[7] == 3, "types %d %d %d %d %d", types[0],
        types[1], types[2], types[3], types[7]);
  OK(cudaGraphDebugDotPrint(g, dot, 0));

  cudaGraphExec_t x = NULL;
  OK(cudaGraphInstantiateWithFlags(&x, g, 1 /* cudaGraphInstantiateFlagAutoFreeOnLaunch */));
  for (unsigned it = 0; it < 3; it++) {
    for (int i = 0; i < N; i++) in[i] = it * 100 + (unsigned)i;
    OK(cudaGraphLaunch(x, s));
    OK(cudaStreamSynchronize(s));
    int bad = 0;
    for (int i = 0; i < N; i++) bad += out2[i] != it * 100 + (unsigned)i + 1;
    CHECK(all(out, 2) && bad == 0 && host_calls == (int)it + 1, "launch %u: out[0]=%u, %d bad, %d host calls", it, out[0],
          bad, host_calls);
  }
  OK(cudaGraphExecDestroy(x));
  OK(cudaGraphDestroy(g));
  OK(cudaStreamDestroy(s));
  OK(cudaFree(d));
  OK(cudaFree(d2));
  free(in), free(out), free(out2);
}

/* fork_join: a second stream joins the capture by waiting for an event
 * recorded in it, and joins back through another event. */
static void fork_join(void) {
  unsigned *a = NULL, *b = NULL, *h = malloc(N * 4);
  OK(cudaMalloc((void **)&a, N * 4));
  OK(cudaMalloc((void **)&b, N * 4));
  cudaStream_t s1, s2;
  OK(cudaStreamCreateWithFlags(&s1, 1));
  OK(cudaStreamCreateWithFlags(&s2, 1));
  cudaEvent_t forked, joined;
  OK(cudaEventCreate(&forked));
  OK(cudaEventCreate(&joined));
  OK(cudaStreamBeginCapture(s1, modeThreadLocal));
  OK(fill(a, 5, s1));
  OK(cudaEventRecord(forked, s1));
  OK(cudaStreamWaitEvent(s2, forked, 0));
  int status = -1;
  unsigned long long id1 = 0, id2 = 0;
  OK(cudaStreamGetCaptureInfo(s1, &status, &id1, NULL, NULL, NULL, NULL));
  OK(cudaStreamGetCaptureInfo(s2, &status, &id2, NULL, NULL, NULL, NULL));
  CHECK(status == statusActive && id1 == id2, "forked stream: status %d, ids %llu %llu", status, id1, id2);
  OK(fill(b, 9, s2));
  OK(cudaEventRecord(joined, s2));
  OK(cudaStreamWaitEvent(s1, joined, 0));
  add_one(a, s1);
  cudaGraph_t g = NULL;
  OK(cudaStreamEndCapture(s1, &g));
  OK(cudaStreamIsCapturing(s2, &status));
  CHECK(status == statusNone, "joined stream still capturing: %d", status);
  size_t n = 0, roots = 0, edges = 0, ndeps = 0;
  OK(cudaGraphGetNodes(g, NULL, &n));
  OK(cudaGraphGetRootNodes(g, NULL, &roots));
  OK(cudaGraphGetEdges(g, NULL, NULL, NULL, &edges));
  cudaGraphNode_t nodes[3], deps[2];
  OK(cudaGraphGetNodes(g, nodes, &n));
  ndeps = 2;
  OK(cudaGraphNodeGetDependencies(nodes[2], deps, NULL, &ndeps));
  CHECK(n == 3 && roots == 1 && edges == 3 && ndeps == 2, "nodes %zu roots %zu edges %zu deps of the last %zu", n, roots,
        edges, ndeps);
  cudaGraphExec_t x;
  OK(cudaGraphInstantiate(&x, g, 0));
  OK(cudaGraphLaunch(x, s1));
  OK(cudaStreamSynchronize(s1));
  OK(cudaMemcpy(h, a, N * 4, D2H));
  CHECK(all(h, 6), "a[0] = %u, want 6", h[0]);
  OK(cudaMemcpy(h, b, N * 4, D2H));
  CHECK(all(h, 9), "b[0] = %u, want 9", h[0]);
  OK(cudaGraphExecDestroy(x));
  OK(cudaGraphDestroy(g));
  OK(cudaEventDestroy(forked));
  OK(cudaEventDestroy(joined));
  OK(cudaStreamDestroy(s1));
  OK(cudaStreamDestroy(s2));
  OK(cudaFree(a));
  OK(cudaFree(b));
  free(h);
}

struct malloc_try {
  int mode;
  cudaError_t err;
};

static void *malloc_in_thread(void *arg) {
  struct malloc_try *t = arg;
  int mode = t->mode;
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  void *p = NULL;
  t->err = cudaMalloc(&p, 256);
  if (p) (void)cudaFree(p);
  return NULL;
}

static cudaError_t other_thread_malloc(int mode) {
  struct malloc_try t = {mode, -1};
  pthread_t th;
  pthread_create(&th, NULL, malloc_in_thread, &t);
  pthread_join(th, NULL);
  return t.err;
}

/* errors: what CUDA documents for calls that conflict with a capture. */
static void errors(void) {
  unsigned *d = NULL;
  OK(cudaMalloc((void **)&d, N * 4));
  cudaStream_t s, s2, blocking;
  OK(cudaStreamCreateWithFlags(&s, 1));
  OK(cudaStreamCreateWithFlags(&s2, 1));
  OK(cudaStreamCreate(&blocking));
  cudaGraph_t g = (cudaGraph_t)1;
  int status = -1;

  ERR(cudaStreamEndCapture(s, &g), errIllegalState);
  CHECK(g == NULL, "graph %p after a failed end", (void *)g);
  ERR(cudaStreamBeginCapture(0, modeGlobal), errCaptureUnsupported);
  ERR(cudaStreamBeginCapture(s, 7), errInvalidValue);

  /* Synchronizing a capturing stream fails and invalidates the capture. */
  OK(cudaStreamBeginCapture(s, modeGlobal));
  ERR(cudaStreamBeginCapture(s, modeGlobal), errIllegalState);
  OK(fill(d, 1, s));
  ERR(cudaStreamSynchronize(s), errCaptureUnsupported);
  OK(cudaStreamIsCapturing(s, &status));
  CHECK(status == statusInvalidated, "status %d after a sync", status);
  ERR(cudaMemsetAsync(d, 0, 16, s), errCaptureInvalidated);
  ERR(cudaStreamEndCapture(s, &g), errCaptureInvalidated);
  CHECK(g == NULL, "graph of an invalidated capture");
  OK(cudaStreamIsCapturing(s, &status));
  CHECK(status == statusNone, "status %d after the end", status);

  /* A forked stream that does not join back. */
  cudaEvent_t e;
  OK(cudaEventCreate(&e));
  OK(cudaStreamBeginCapture(s, modeGlobal));
  OK(cudaEventRecord(e, s));
  OK(cudaStreamWaitEvent(s2, e, 0));
  OK(fill(d, 2, s2));
  ERR(cudaStreamEndCapture(s, &g), errCaptureUnjoined);
  OK(cudaStreamIsCapturing(s2, &status));
  CHECK(status == statusNone, "unjoined stream status %d", status);

  /* An event recorded in a capture cannot be queried. */
  OK(cudaStreamBeginCapture(s, modeGlobal));
  OK(cudaEventRecord(e, s));
  ERR(cudaEventQuery(e), errCapturedEvent);
  ERR(cudaStreamEndCapture(s, &g), errCaptureInvalidated);

  /* Waiting for an event recorded outside the capture. */
  OK(cudaEventRecord(e, s2));
  OK(cudaStreamBeginCapture(s, modeGlobal));
  ERR(cudaStreamWaitEvent(s, e, 0), errCaptureIsolation);
  ERR(cudaStreamEndCapture(s, &g), errCaptureInvalidated);

  /* Potentially unsafe calls: cudaMalloc under the capturing thread's
   * global mode fails and invalidates; relaxed is allowed; another thread
   * is bound by a global capture only in global mode. */
  void *p = NULL;
  OK(cudaStreamBeginCapture(s, modeThreadLocal));
  CHECK(other_thread_malloc(modeGlobal) == 0, "another thread's cudaMalloc refused during a thread-local capture");
  int mode = modeRelaxed;
  OK(cudaThreadExchangeStreamCaptureMode(&mode));
  CHECK(mode == modeGlobal, "previous mode %d", mode);
  OK(cudaMalloc(&p, 256));
  OK(cudaFree(p));
  OK(cudaThreadExchangeStreamCaptureMode(&mode));
  OK(fill(d, 3, s));
  ERR(cudaMalloc(&p, 256), errCaptureUnsupported);
  ERR(cudaStreamEndCapture(s, &g), errCaptureInvalidated);
  OK(cudaStreamBeginCapture(s, modeGlobal));
  CHECK(other_thread_malloc(modeRelaxed) == 0, "a relaxed thread's cudaMalloc refused");
  CHECK(other_thread_malloc(modeGlobal) == errCaptureUnsupported, "another global thread's cudaMalloc allowed");
  ERR(cudaStreamEndCapture(s, &g), errCaptureInvalidated);

  /* The legacy stream while a blocking stream captures. */
  OK(cudaStreamBeginCapture(blocking, modeRelaxed));
  ERR(cudaStreamIsCapturing(0, &status), errCaptureImplicit);
  ERR(cudaMemcpy(d, (unsigned[]){1}, 4, H2D), errCaptureImplicit);
  ERR(cudaStreamEndCapture(blocking, &g), errCaptureInvalidated);
  /* ... and a non-blocking one, which the legacy stream does not wait for. */
  OK(cudaStreamBeginCapture(s, modeRelaxed));
  OK(cudaMemcpy(d, (unsigned[]){1}, 4, H2D));
  OK(cudaStreamIsCapturing(0, &status));
  CHECK(status == statusNone, "legacy stream status %d", status);
  OK(cudaStreamEndCapture(s, &g));
  OK(cudaGraphDestroy(g));

  OK(cudaEventDestroy(e));
  OK(cudaStreamDestroy(s));
  OK(cudaStreamDestroy(s2));
  OK(cudaStreamDestroy(blocking));
  OK(cudaFree(d));
}

/* by_hand: a graph built node by node, with its dependencies. */
static void by_hand(void) {
  unsigned *d = NULL, *d2 = NULL, *h = malloc(N * 4), *h2 = malloc(N * 4);
  OK(cudaMalloc((void **)&d, N * 4));
  OK(cudaMalloc((void **)&d2, N * 4));
  cudaGraph_t g;
  OK(cudaGraphCreate(&g, 0));
  cudaGraphNode_t set, add, fill2, copy, copy2, host, empty;
  struct cudaMemsetParams mp = {.dst = d, .pitch = 0, .value = 40, .elementSize = 4, .width = N, .height = 1};
  OK(cudaGraphAddMemsetNode(&set, g, NULL, 0, &mp));
  unsigned n = N, v = 11;
  void *add_args[2] = {&d, &n}, *fill_args[3] = {&d2, &n, &v};
  struct cudaKernelNodeParams kp = {.func = (void *)add_one_u32_stub, .gridDim = grid, .blockDim = block, .kernelParams = add_args};
  OK(cudaGraphAddKernelNode(&add, g, &set, 1, &kp));
  struct cudaKernelNodeParams fp = {.func = (void *)fill_u32_stub, .gridDim = grid, .blockDim = block, .kernelParams = fill_args};
  OK(cudaGraphAddKernelNode(&fill2, g, NULL, 0, &fp));
  v = 99; /* arguments are copied when the node is added */
  OK(cudaGraphAddMemcpyNode1D(&copy, g, NULL, 0, h, d, N * 4, D2H));
  OK(cudaGraphAddMemcpyNode1D(&copy2, g, &fill2, 1, h2, d2, N * 4, D2H));
  OK(cudaGraphAddEmptyNode(&empty, g, (cudaGraphNode_t[]){copy, copy2}, 2));
  struct cudaHostNodeParams hp = {count_call, &host_calls};
  OK(cudaGraphAddHostNode(&host, g, &empty, 1, &hp));
  OK(cudaGraphAddDependencies(g, &add, &copy, NULL, 1));
  ERR(cudaGraphAddDependencies(g, &add, &copy, NULL, 1), errInvalidValue);
  ERR(cudaGraphAddDependencies(g, &host, &set, NULL, 1), errInvalidValue); /* a cycle */
  size_t roots = 0, edges = 0;
  OK(cudaGraphGetRootNodes(g, NULL, &roots));
  OK(cudaGraphGetEdges(g, NULL, NULL, NULL, &edges));
  CHECK(roots == 2 && edges == 6, "roots %zu edges %zu", roots, edges);

  cudaStream_t s;
  OK(cudaStreamCreate(&s));
  cudaGraphExec_t x;
  OK(cudaGraphInstantiate(&x, g, 0));
  host_calls = 0;
  for (int it = 0; it < 2; it++) {
    memset(h, 0, N * 4);
    OK(cudaGraphLaunch(x, s));
    OK(cudaStreamSynchronize(s));
    CHECK(all(h, 41) && all(h2, 11) && host_calls == it + 1, "launch %d: h[0]=%u h2[0]=%u calls %d", it, h[0], h2[0],
          host_calls);
  }
  /* New kernel parameters for the executable graph only. */
  v = 12;
  OK(cudaGraphExecKernelNodeSetParams(x, fill2, &fp));
  OK(cudaGraphLaunch(x, s));
  OK(cudaStreamSynchronize(s));
  CHECK(all(h2, 12), "h2[0]=%u after new parameters", h2[0]);
  struct cudaGraphExecUpdateResultInfo_st info = {-1, 0, 0};
  ERR(cudaGraphExecUpdate(x, g, &info), errExecUpdateFailure);
  CHECK(info.result == 6, "update result %d, want cudaGraphExecUpdateErrorNotSupported", info.result);
  OK(cudaGraphExecDestroy(x));
  OK(cudaGraphDestroy(g));
  ERR(cudaGraphDestroy(g), errInvalidValue);
  OK(cudaStreamDestroy(s));
  OK(cudaFree(d));
  OK(cudaFree(d2));
  free(h), free(h2);
}

enum {
  reuseFollow = 1,
  reuseOpportunistic = 2,
  reuseInternal = 3,
  releaseThreshold = 4,
  reservedCurrent = 5,
  reservedHigh = 6,
  usedCurrent = 7,
  usedHigh = 8
};

static uint64_t attr64(cudaMemPool_t p, int a) {
  uint64_t v = ~0ull;
  cudaError_t e = cudaMemPoolGetAttribute(p, a, &v);
  return e ? ~0ull : v;
}

/* pools: the default pool, attributes and counters, reuse in stream
 * order, trimming, a pool of one's own. */
static void pools(void) {
  cudaMemPool_t def = NULL, cur = NULL;
  OK(cudaDeviceGetDefaultMemPool(&def, 0));
  OK(cudaDeviceGetMemPool(&cur, 0));
  CHECK(def && def == cur, "default %p current %p", (void *)def, (void *)cur);
  int flag = -1;
  OK(cudaMemPoolGetAttribute(def, reuseOpportunistic, &flag));
  CHECK(flag == 1, "reuse flag %d", flag);
  flag = 0;
  OK(cudaMemPoolSetAttribute(def, reuseInternal, &flag));
  OK(cudaMemPoolGetAttribute(def, reuseInternal, &flag));
  CHECK(flag == 0, "reuse flag %d after setting 0", flag);
  CHECK(attr64(def, releaseThreshold) == 0, "threshold %llu", (unsigned long long)attr64(def, releaseThreshold));
  uint64_t keep = 1 << 20;
  OK(cudaMemPoolSetAttribute(def, releaseThreshold, &keep));

  cudaStream_t s;
  OK(cudaStreamCreateWithFlags(&s, 1));
  unsigned *a = NULL, *b = NULL, h[4] = {0};
  OK(cudaMallocAsync((void **)&a, 1 << 20, s));
  CHECK(attr64(def, usedCurrent) == 1 << 20 && attr64(def, reservedCurrent) == 1 << 20, "used %llu reserved %llu",
        (unsigned long long)attr64(def, usedCurrent), (unsigned long long)attr64(def, reservedCurrent));
  OK(cudaMemsetAsync(a, 0x5a, 16, s));
  OK(cudaFreeAsync(a, s));
  CHECK(attr64(def, usedCurrent) == 0 && attr64(def, reservedCurrent) == 1 << 20, "after free: used %llu reserved %llu",
        (unsigned long long)attr64(def, usedCurrent), (unsigned long long)attr64(def, reservedCurrent));
  OK(cudaMallocAsync((void **)&b, 1 << 20, s)); /* same stream: the freed block again */
  CHECK(b == a, "not reused: %p then %p", (void *)a, (void *)b);
  OK(cudaMemcpyAsync(h, b, 16, D2H, s));
  OK(cudaStreamSynchronize(s));
  CHECK(h[0] == 0x5a5a5a5a, "stream order lost: %x", h[0]);
  void *c = NULL;
  OK(cudaMallocAsync(&c, 4096, s));
  CHECK(attr64(def, usedHigh) == (1 << 20) + 4096 && attr64(def, reservedCurrent) == (1 << 20) + 4096, "high %llu",
        (unsigned long long)attr64(def, usedHigh));
  OK(cudaFreeAsync(b, s));
  OK(cudaFreeAsync(c, s));
  OK(cudaStreamSynchronize(s)); /* keeps up to the threshold */
  CHECK(attr64(def, reservedCurrent) <= keep && attr64(def, reservedCurrent) > 0, "reserved %llu after a sync",
        (unsigned long long)attr64(def, reservedCurrent));
  OK(cudaMemPoolTrimTo(def, 0));
  CHECK(attr64(def, reservedCurrent) == 0, "reserved %llu after trimming", (unsigned long long)attr64(def, reservedCurrent));
  uint64_t zero = 0, one = 1;
  OK(cudaMemPoolSetAttribute(def, usedHigh, &zero));
  CHECK(attr64(def, usedHigh) == 0, "high mark not reset");
  ERR(cudaMemPoolSetAttribute(def, usedHigh, &one), errInvalidValue);
  ERR(cudaMemPoolSetAttribute(def, usedCurrent, &zero), errInvalidValue);
  ERR(cudaMemPoolDestroy(def), errInvalidValue);

  /* A pool of one's own, current for device 0, with access for device 1. */
  struct cudaMemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = 1;
  props.location.type = 1;
  props.location.id = 0;
  cudaMemPool_t mine = NULL;
  OK(cudaMemPoolCreate(&mine, &props));
  void *m = NULL;
  OK(cudaMallocFromPoolAsync(&m, 8192, mine, s));
  CHECK(attr64(mine, usedCurrent) == 8192 && attr64(def, usedCurrent) == 0, "pool counters %llu %llu",
        (unsigned long long)attr64(mine, usedCurrent), (unsigned long long)attr64(def, usedCurrent));
  struct cudaMemAccessDesc acc = {{1, 1}, 3};
  OK(cudaMemPoolSetAccess(mine, &acc, 1));
  int flags = -1;
  OK(cudaMemPoolGetAccess(&flags, mine, &(struct cudaMemLocation){1, 1}));
  CHECK(flags == 3, "device 1 access %d", flags);
  OK(cudaMemPoolGetAccess(&flags, mine, &(struct cudaMemLocation){1, 0}));
  CHECK(flags == 3, "own device access %d", flags);
  struct cudaMemAccessDesc lower = {{1, 0}, 0};
  ERR(cudaMemPoolSetAccess(mine, &lower, 1), errInvalidValue);
  OK(cudaDeviceSetMemPool(0, mine));
  void *m2 = NULL;
  OK(cudaMallocAsync(&m2, 4096, s));
  CHECK(attr64(mine, usedCurrent) == 8192 + 4096, "cudaMallocAsync did not use the current pool");
  OK(cudaFreeAsync(m, s));
  OK(cudaFree(m2)); /* cudaFree of pool memory */
  CHECK(attr64(mine, usedCurrent) == 0 && attr64(mine, reservedCurrent) == 8192, "after frees: used %llu reserved %llu",
        (unsigned long long)attr64(mine, usedCurrent), (unsigned long long)attr64(mine, reservedCurrent));
  OK(cudaMemPoolDestroy(mine));
  OK(cudaDeviceGetMemPool(&cur, 0));
  CHECK(cur == def, "the current pool after destroying it is not the default");
  OK(cudaStreamDestroy(s));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: graphs_test DOTFILE\n");
    return 2;
  }
  void **h = __cudaRegisterFatBinary((void *)&host_wrapper);
  __cudaRegisterFunction(h, (const char *)fill_u32_stub, (char *)"fill_u32", "fill_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFunction(h, (const char *)add_one_u32_stub, (char *)"add_one_u32", "add_one_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFatBinaryEnd(h);
  OK(cudaSetDevice(0));
  capture(argv[1]);
  fork_join();
  errors();
  by_hand();
  pools();
  OK(cudaDeviceSynchronize());
  __cudaUnregisterFatBinary(h);
  if (failures) {
    printf("FAIL: %d checks failed\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
