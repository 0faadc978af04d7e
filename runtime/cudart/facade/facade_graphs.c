/*
 * facade_graphs.c: stream capture, CUDA graphs and stream-ordered memory
 * pools (docs/cuda-shim.md, "Graphs and memory pools").
 *
 * Graphs, nodes, executable graphs and memory pools are libxgpu.so
 * handles, passed to the application as its opaque pointer types. The
 * per-thread state CUDA keeps for capture lives here: the thread's capture
 * interaction mode (cudaThreadExchangeStreamCaptureMode) and an id of the
 * thread, by which libxgpu.so tells which thread began a capture.
 */
#include <stdlib.h>
#include <string.h>

#include "cudart.h"
#include "cudart_graph_structs.h"

_Static_assert(sizeof(struct cudaKernelNodeParams) == 56, "cudaKernelNodeParams is 56 bytes");
_Static_assert(sizeof(struct cudaMemsetParams) == 40, "cudaMemsetParams is 40 bytes");
_Static_assert(sizeof(struct cudaMemPoolProps) == 88, "cudaMemPoolProps is 88 bytes");
_Static_assert(sizeof(struct cudaGraphEdgeData) == 8, "cudaGraphEdgeData is 8 bytes");
_Static_assert(sizeof(struct cudaMemAccessDesc) == 12, "cudaMemAccessDesc is 12 bytes");
_Static_assert(sizeof(struct cudaGraphExecUpdateResultInfo_st) == 24, "cudaGraphExecUpdateResultInfo is 24 bytes");

typedef struct CUgraph_st *cudaGraph_t;
typedef struct CUgraphNode_st *cudaGraphNode_t;
typedef struct CUgraphExec_st *cudaGraphExec_t;
typedef struct CUmemPoolHandle_st *cudaMemPool_t;

enum {
  captureModeGlobal = 0,
  captureModeRelaxed = 2,
  nodeTypeWaitEvent = 6,
  nodeTypeEventRecord = 7,
  memLocationTypeDevice = 1,
  memAllocationTypePinned = 1,
  execUpdateErrorNotSupported = 6,
};

/* ---- per-thread capture state ---- */

static __thread int tls_capture_mode; /* cudaStreamCaptureModeGlobal in every new thread */
static __thread uint64_t tls_thread_id;
static uint64_t next_thread_id;

static uint64_t thread_id(void) {
  if (!tls_thread_id) tls_thread_id = __atomic_add_fetch(&next_thread_id, 1, __ATOMIC_RELAXED);
  return tls_thread_id;
}

int facade_capture_unsafe(const char *op) { return xgpu_capture_unsafe((char *)op, thread_id(), tls_capture_mode); }

XGPU_EXPORT cudaError_t cudaThreadExchangeStreamCaptureMode(int *mode) {
  if (!mode || *mode < captureModeGlobal || *mode > captureModeRelaxed) return facade_ret(cudaErrorInvalidValue);
  int old = tls_capture_mode;
  tls_capture_mode = *mode;
  *mode = old;
  return cudaSuccess;
}

/* Lists libxgpu.so returns, in a per-thread buffer that stays valid until
 * the thread's next call that returns a list this way (CUDA's
 * cudaStreamGetCaptureInfo keeps its array valid until the stream's
 * dependencies change; the thread's next capture call is sooner). */
static __thread uint64_t *tls_list;
static __thread size_t tls_list_cap;
static __thread struct cudaGraphEdgeData *tls_edges;
static __thread size_t tls_edges_cap;

static int grow(void **buf, size_t *cap, size_t n, size_t size) {
  if (n <= *cap) return 1;
  void *p = realloc(*buf, n * size);
  if (!p) return 0;
  *buf = p;
  *cap = n;
  return 1;
}

/* zero_edges returns n default (all-zero) edge data, the only edges the
 * facade makes. */
static const struct cudaGraphEdgeData *zero_edges(size_t n) {
  if (n == 0) return NULL;
  if (!grow((void **)&tls_edges, &tls_edges_cap, n, sizeof *tls_edges)) return NULL;
  memset(tls_edges, 0, n * sizeof *tls_edges);
  return tls_edges;
}

/* edges_default checks that caller-given edge data are all default: the
 * only kind of edge xgpu serves (programmatic ports are not). */
static int edges_default(const struct cudaGraphEdgeData *e, size_t n) {
  for (size_t i = 0; e && i < n; i++) {
    static const struct cudaGraphEdgeData zero;
    if (memcmp(&e[i], &zero, sizeof zero) != 0) return 0;
  }
  return 1;
}

static int stream_dev(cudaStream_t s, int *dev) {
  if (is_special_stream(s)) {
    *dev = facade_current_device();
    return cudaSuccess;
  }
  unsigned flags;
  int prio;
  return xgpu_stream_info(sh(s), dev, &flags, &prio);
}

/* ---- stream capture ---- */

static cudaError_t begin_capture(cudaStream_t s, cudaGraph_t g, const cudaGraphNode_t *deps,
                                 const struct cudaGraphEdgeData *edges, size_t n, int mode) {
  if ((n && !deps) || !edges_default(edges, n)) return facade_ret(cudaErrorInvalidValue);
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  return facade_ret(
      xgpu_capture_begin(dev, sh(s), mode, thread_id(), (uint64_t)(uintptr_t)g, (uint64_t *)(uintptr_t)deps, n));
}

XGPU_EXPORT cudaError_t cudaStreamBeginCapture(cudaStream_t s, int mode) { return begin_capture(s, NULL, NULL, NULL, 0, mode); }

XGPU_EXPORT cudaError_t cudaStreamBeginCapture_ptsz(cudaStream_t s, int mode) { return cudaStreamBeginCapture(s, mode); }

XGPU_EXPORT cudaError_t cudaStreamBeginCaptureToGraph(cudaStream_t s, cudaGraph_t g, const cudaGraphNode_t *deps,
                                                      const struct cudaGraphEdgeData *edges, size_t n, int mode) {
  if (!g) return facade_ret(cudaErrorInvalidValue);
  return begin_capture(s, g, deps, edges, n, mode);
}

XGPU_EXPORT cudaError_t cudaStreamBeginCaptureToGraph_ptsz(cudaStream_t s, cudaGraph_t g, const cudaGraphNode_t *deps,
                                                           const struct cudaGraphEdgeData *edges, size_t n, int mode) {
  return cudaStreamBeginCaptureToGraph(s, g, deps, edges, n, mode);
}

XGPU_EXPORT cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
  if (!g) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_capture_end(sh(s), thread_id(), &h);
  *g = e ? NULL : (cudaGraph_t)(uintptr_t)h;
  return facade_ret(e);
}

XGPU_EXPORT cudaError_t cudaStreamEndCapture_ptsz(cudaStream_t s, cudaGraph_t *g) { return cudaStreamEndCapture(s, g); }

XGPU_EXPORT cudaError_t cudaStreamIsCapturing(cudaStream_t s, int *status) {
  if (!status) return facade_ret(cudaErrorInvalidValue);
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  uint64_t id = 0, g = 0, n = 0;
  e = xgpu_capture_info(dev, sh(s), status, &id, &g, NULL, 0, &n);
  return facade_ret(e);
}

XGPU_EXPORT cudaError_t cudaStreamIsCapturing_ptsz(cudaStream_t s, int *status) { return cudaStreamIsCapturing(s, status); }

XGPU_EXPORT cudaError_t cudaStreamGetCaptureInfo(cudaStream_t s, int *status, unsigned long long *id, cudaGraph_t *graph,
                                                 const cudaGraphNode_t **deps, const struct cudaGraphEdgeData **edges,
                                                 size_t *ndeps) {
  if (!status) return facade_ret(cudaErrorInvalidValue);
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  int st = 0;
  uint64_t cid = 0, g = 0, n = 0;
  for (;;) {
    e = xgpu_capture_info(dev, sh(s), &st, &cid, &g, tls_list, tls_list_cap, &n);
    if (e || n <= tls_list_cap) break;
    if (!grow((void **)&tls_list, &tls_list_cap, n, sizeof *tls_list)) return facade_ret(cudaErrorMemoryAllocation);
  }
  if (e) return facade_ret(e);
  *status = st;
  if (id) *id = cid;
  if (graph) *graph = (cudaGraph_t)(uintptr_t)g;
  if (deps) *deps = n ? (const cudaGraphNode_t *)tls_list : NULL;
  if (edges) *edges = zero_edges(n);
  if (ndeps) *ndeps = n;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaStreamGetCaptureInfo_ptsz(cudaStream_t s, int *status, unsigned long long *id,
                                                      cudaGraph_t *graph, const cudaGraphNode_t **deps,
                                                      const struct cudaGraphEdgeData **edges, size_t *ndeps) {
  return cudaStreamGetCaptureInfo(s, status, id, graph, deps, edges, ndeps);
}

XGPU_EXPORT cudaError_t cudaStreamUpdateCaptureDependencies(cudaStream_t s, cudaGraphNode_t *deps,
                                                            const struct cudaGraphEdgeData *edges, size_t n,
                                                            unsigned int flags) {
  if ((n && !deps) || !edges_default(edges, n)) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_capture_update_deps(sh(s), (uint64_t *)(uintptr_t)deps, n, flags));
}

XGPU_EXPORT cudaError_t cudaStreamUpdateCaptureDependencies_ptsz(cudaStream_t s, cudaGraphNode_t *deps,
                                                                 const struct cudaGraphEdgeData *edges, size_t n,
                                                                 unsigned int flags) {
  return cudaStreamUpdateCaptureDependencies(s, deps, edges, n, flags);
}

/* ---- graphs ---- */

#define GH(g) ((uint64_t)(uintptr_t)(g))
#define DEPS(d) ((uint64_t *)(uintptr_t)(d))

static cudaError_t node_out(cudaGraphNode_t *out, int e, uint64_t h) {
  if (e) return facade_ret(e);
  *out = (cudaGraphNode_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphCreate(cudaGraph_t *g, unsigned int flags) {
  if (!g) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_create(flags, &h);
  if (e) return facade_ret(e);
  *g = (cudaGraph_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphDestroy(cudaGraph_t g) { return facade_ret(xgpu_graph_destroy(GH(g))); }

XGPU_EXPORT cudaError_t cudaGraphAddEmptyNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps, size_t n) {
  if (!node || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_empty(GH(g), DEPS(deps), n, &h);
  return node_out(node, e, h);
}

XGPU_EXPORT cudaError_t cudaGraphAddHostNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps, size_t n,
                                             const struct cudaHostNodeParams *p) {
  if (!node || !p || !p->fn || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_host(GH(g), DEPS(deps), n, (void *)p->fn, p->userData, &h);
  return node_out(node, e, h);
}

XGPU_EXPORT cudaError_t cudaGraphAddEventRecordNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps,
                                                    size_t n, cudaEvent_t ev) {
  if (!node || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_event(GH(g), DEPS(deps), n, nodeTypeEventRecord, (uint64_t)(uintptr_t)ev, &h);
  return node_out(node, e, h);
}

XGPU_EXPORT cudaError_t cudaGraphAddEventWaitNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps,
                                                  size_t n, cudaEvent_t ev) {
  if (!node || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_event(GH(g), DEPS(deps), n, nodeTypeWaitEvent, (uint64_t)(uintptr_t)ev, &h);
  return node_out(node, e, h);
}

XGPU_EXPORT cudaError_t cudaGraphAddMemcpyNode1D(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps,
                                                 size_t n, void *dst, const void *src, size_t count, int kind) {
  if (!node || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_memcpy(GH(g), DEPS(deps), n, dst, (void *)src, count, kind, facade_current_device(), &h);
  return node_out(node, e, h);
}

XGPU_EXPORT cudaError_t cudaGraphAddMemsetNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps, size_t n,
                                               const struct cudaMemsetParams *p) {
  if (!node || !p || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_add_memset(GH(g), DEPS(deps), n, (uint64_t)(uintptr_t)p->dst, p->pitch, p->value, p->elementSize,
                                p->width, p->height, &h);
  return node_out(node, e, h);
}

/* kernel_params resolves a kernel node's function: the host stub nvcc
 * registered. Launch arguments through `extra` are not served. */
static int kernel_params(const struct cudaKernelNodeParams *p, uint64_t *k) {
  if (!p || !p->func) return cudaErrorInvalidDeviceFunction;
  if (p->extra) return cudaErrorNotSupported;
  return xgpu_get_kernel(p->func, k);
}

XGPU_EXPORT cudaError_t cudaGraphAddKernelNode(cudaGraphNode_t *node, cudaGraph_t g, const cudaGraphNode_t *deps, size_t n,
                                               const struct cudaKernelNodeParams *p) {
  if (!node || !p || (n && !deps)) return facade_ret(cudaErrorInvalidValue);
  uint64_t k = 0, h = 0;
  int e = kernel_params(p, &k);
  if (e) return facade_ret(e);
  unsigned grid[3] = {p->gridDim.x, p->gridDim.y, p->gridDim.z}, block[3] = {p->blockDim.x, p->blockDim.y, p->blockDim.z};
  e = xgpu_graph_add_kernel(GH(g), DEPS(deps), n, k, facade_current_device(), grid, block, p->sharedMemBytes,
                            p->kernelParams, &h);
  return node_out(node, e, h);
}

static cudaError_t change_edges(cudaGraph_t g, const cudaGraphNode_t *from, const cudaGraphNode_t *to,
                                const struct cudaGraphEdgeData *edges, size_t n, int remove) {
  if (n && (!from || !to)) return facade_ret(cudaErrorInvalidValue);
  if (!edges_default(edges, n)) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_graph_change_edges(GH(g), DEPS(from), DEPS(to), n, remove));
}

XGPU_EXPORT cudaError_t cudaGraphAddDependencies(cudaGraph_t g, const cudaGraphNode_t *from, const cudaGraphNode_t *to,
                                                 const struct cudaGraphEdgeData *edges, size_t n) {
  return change_edges(g, from, to, edges, n, 0);
}

XGPU_EXPORT cudaError_t cudaGraphRemoveDependencies(cudaGraph_t g, const cudaGraphNode_t *from, const cudaGraphNode_t *to,
                                                    const struct cudaGraphEdgeData *edges, size_t n) {
  return change_edges(g, from, to, edges, n, 1);
}

/* list_out follows CUDA's two-call convention: with no array, *n gets the
 * count; with one, up to *n entries are written and *n gets the number
 * written. */
XGPU_EXPORT cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n) {
  if (!n) return facade_ret(cudaErrorInvalidValue);
  uint64_t total = 0;
  int e = xgpu_graph_nodes(GH(g), 0, DEPS(nodes), nodes ? *n : 0, &total);
  if (e) return facade_ret(e);
  if (nodes && total < *n) memset(nodes + total, 0, (*n - total) * sizeof *nodes);
  if (!nodes || total < *n) *n = total;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphGetRootNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n) {
  if (!n) return facade_ret(cudaErrorInvalidValue);
  uint64_t total = 0;
  int e = xgpu_graph_nodes(GH(g), 1, DEPS(nodes), nodes ? *n : 0, &total);
  if (e) return facade_ret(e);
  if (nodes && total < *n) memset(nodes + total, 0, (*n - total) * sizeof *nodes);
  if (!nodes || total < *n) *n = total;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphGetEdges(cudaGraph_t g, cudaGraphNode_t *from, cudaGraphNode_t *to,
                                          struct cudaGraphEdgeData *edges, size_t *n) {
  if (!n || (!from != !to) || (edges && !from)) return facade_ret(cudaErrorInvalidValue);
  uint64_t total = 0;
  size_t cap = from ? *n : 0;
  int e = xgpu_graph_edges(GH(g), DEPS(from), DEPS(to), cap, &total);
  if (e) return facade_ret(e);
  size_t w = total < cap ? total : cap;
  if (edges) memset(edges, 0, w * sizeof *edges);
  if (from && total < cap) {
    memset(from + total, 0, (cap - total) * sizeof *from);
    memset(to + total, 0, (cap - total) * sizeof *to);
  }
  if (!from || total < *n) *n = total;
  return cudaSuccess;
}

static cudaError_t node_list(cudaGraphNode_t node, int dependents, cudaGraphNode_t *out, struct cudaGraphEdgeData *edges,
                             size_t *n) {
  if (!n || (edges && !out)) return facade_ret(cudaErrorInvalidValue);
  uint64_t total = 0;
  size_t cap = out ? *n : 0;
  int e = xgpu_graph_node_deps(GH(node), dependents, DEPS(out), cap, &total);
  if (e) return facade_ret(e);
  if (edges) memset(edges, 0, (total < cap ? total : cap) * sizeof *edges);
  if (out && total < cap) memset(out + total, 0, (cap - total) * sizeof *out);
  if (!out || total < *n) *n = total;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphNodeGetDependencies(cudaGraphNode_t node, cudaGraphNode_t *deps,
                                                     struct cudaGraphEdgeData *edges, size_t *n) {
  return node_list(node, 0, deps, edges, n);
}

XGPU_EXPORT cudaError_t cudaGraphNodeGetDependentNodes(cudaGraphNode_t node, cudaGraphNode_t *out,
                                                       struct cudaGraphEdgeData *edges, size_t *n) {
  return node_list(node, 1, out, edges, n);
}

XGPU_EXPORT cudaError_t cudaGraphNodeGetType(cudaGraphNode_t node, int *type) {
  if (!type) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_graph_node_type(GH(node), type));
}

XGPU_EXPORT cudaError_t cudaGraphDestroyNode(cudaGraphNode_t node) { return facade_ret(xgpu_graph_destroy_node(GH(node))); }

XGPU_EXPORT cudaError_t cudaGraphDebugDotPrint(cudaGraph_t g, const char *path, unsigned int flags) {
  (void)flags; /* every node is printed with its main parameters, whatever the verbosity asked */
  if (!path) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_graph_dot(GH(g), (char *)path));
}

/* ---- executable graphs ---- */

XGPU_EXPORT cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags) {
  if (!x) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_graph_instantiate(GH(g), flags, &h);
  if (e) return facade_ret(e);
  *x = (cudaGraphExec_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags) {
  return cudaGraphInstantiateWithFlags(x, g, flags);
}

XGPU_EXPORT cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) { return facade_ret(xgpu_graph_exec_destroy(GH(x))); }

XGPU_EXPORT cudaError_t cudaGraphExecGetFlags(cudaGraphExec_t x, unsigned long long *flags) {
  if (!flags) return facade_ret(cudaErrorInvalidValue);
  uint64_t f = 0;
  int e = xgpu_graph_exec_flags(GH(x), &f);
  if (e) return facade_ret(e);
  *flags = f;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s) {
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_graph_launch(GH(x), dev, sh(s)));
}

XGPU_EXPORT cudaError_t cudaGraphLaunch_ptsz(cudaGraphExec_t x, cudaStream_t s) { return cudaGraphLaunch(x, s); }

/* Uploading is what a launch does anyway (nodes are queued as they are
 * reached); an upload only checks its arguments. */
XGPU_EXPORT cudaError_t cudaGraphUpload(cudaGraphExec_t x, cudaStream_t s) {
  unsigned long long f;
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  return cudaGraphExecGetFlags(x, &f);
}

XGPU_EXPORT cudaError_t cudaGraphUpload_ptsz(cudaGraphExec_t x, cudaStream_t s) { return cudaGraphUpload(x, s); }

XGPU_EXPORT cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t x, cudaGraphNode_t node,
                                                         const struct cudaKernelNodeParams *p) {
  if (!p) return facade_ret(cudaErrorInvalidValue);
  uint64_t k = 0;
  int e = kernel_params(p, &k);
  if (e) return facade_ret(e);
  unsigned grid[3] = {p->gridDim.x, p->gridDim.y, p->gridDim.z}, block[3] = {p->blockDim.x, p->blockDim.y, p->blockDim.z};
  return facade_ret(xgpu_graph_exec_kernel_params(GH(x), GH(node), k, facade_current_device(), grid, block,
                                                  p->sharedMemBytes, p->kernelParams));
}

/* Whole-graph updates are not served: CUDA's documented answer to an
 * update it cannot make, after which the application instantiates anew. */
XGPU_EXPORT cudaError_t cudaGraphExecUpdate(cudaGraphExec_t x, cudaGraph_t g, struct cudaGraphExecUpdateResultInfo_st *info) {
  (void)x, (void)g;
  if (info) {
    info->result = execUpdateErrorNotSupported;
    info->errorNode = NULL;
    info->errorFromNode = NULL;
  }
  return facade_ret(cudaErrorGraphExecUpdateFailure);
}

/* ---- memory pools ---- */

#define PH(p) ((uint64_t)(uintptr_t)(p))

static cudaError_t pool_out(cudaMemPool_t *out, int e, uint64_t h) {
  if (e) return facade_ret(e);
  *out = (cudaMemPool_t)(uintptr_t)h;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int dev) {
  if (!pool) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_mempool_default(dev, &h);
  return pool_out(pool, e, h);
}

XGPU_EXPORT cudaError_t cudaDeviceGetMemPool(cudaMemPool_t *pool, int dev) {
  if (!pool) return facade_ret(cudaErrorInvalidValue);
  uint64_t h = 0;
  int e = xgpu_mempool_current(dev, &h);
  return pool_out(pool, e, h);
}

XGPU_EXPORT cudaError_t cudaDeviceSetMemPool(int dev, cudaMemPool_t pool) {
  return facade_ret(xgpu_mempool_set_current(dev, PH(pool)));
}

/* The CUDA 13 forms name the memory by location and allocation type:
 * device memory of the pinned type is served. */
static int device_location(const struct cudaMemLocation *loc, int type, int *dev) {
  if (!loc || type != memAllocationTypePinned) return cudaErrorInvalidValue;
  if (loc->type != memLocationTypeDevice) return cudaErrorNotSupported;
  *dev = loc->id;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaMemGetDefaultMemPool(cudaMemPool_t *pool, struct cudaMemLocation *loc, int type) {
  int dev, e = device_location(loc, type, &dev);
  if (e || !pool) return facade_ret(e ? e : cudaErrorInvalidValue);
  return cudaDeviceGetDefaultMemPool(pool, dev);
}

XGPU_EXPORT cudaError_t cudaMemGetMemPool(cudaMemPool_t *pool, struct cudaMemLocation *loc, int type) {
  int dev, e = device_location(loc, type, &dev);
  if (e || !pool) return facade_ret(e ? e : cudaErrorInvalidValue);
  return cudaDeviceGetMemPool(pool, dev);
}

XGPU_EXPORT cudaError_t cudaMemSetMemPool(struct cudaMemLocation *loc, int type, cudaMemPool_t pool) {
  int dev, e = device_location(loc, type, &dev);
  if (e) return facade_ret(e);
  return cudaDeviceSetMemPool(dev, pool);
}

XGPU_EXPORT cudaError_t cudaMemPoolCreate(cudaMemPool_t *pool, const struct cudaMemPoolProps *p) {
  if (!pool || !p) return facade_ret(cudaErrorInvalidValue);
  int e = facade_capture_unsafe("cudaMemPoolCreate");
  if (e) return facade_ret(e);
  int dev;
  if ((e = device_location(&p->location, p->allocType, &dev))) return facade_ret(e);
  if (p->handleTypes != 0) return facade_ret(cudaErrorNotSupported); /* no IPC handles */
  uint64_t h = 0;
  e = xgpu_mempool_create(dev, p->maxSize, &h);
  return pool_out(pool, e, h);
}

XGPU_EXPORT cudaError_t cudaMemPoolDestroy(cudaMemPool_t pool) {
  int e = facade_capture_unsafe("cudaMemPoolDestroy");
  if (e) return facade_ret(e);
  return facade_ret(xgpu_mempool_destroy(PH(pool)));
}

static cudaError_t malloc_async(void **p, size_t size, uint64_t pool, cudaStream_t s) {
  if (!p) return facade_ret(cudaErrorInvalidValue);
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  uint64_t ptr = 0;
  e = xgpu_malloc_async(dev, pool, size, sh(s), &ptr);
  if (e) return facade_ret(e);
  *p = (void *)(uintptr_t)ptr;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) { return malloc_async(p, size, 0, s); }

XGPU_EXPORT cudaError_t cudaMallocAsync_ptsz(void **p, size_t size, cudaStream_t s) { return cudaMallocAsync(p, size, s); }

XGPU_EXPORT cudaError_t cudaMallocFromPoolAsync(void **p, size_t size, cudaMemPool_t pool, cudaStream_t s) {
  if (!pool) return facade_ret(cudaErrorInvalidValue);
  return malloc_async(p, size, PH(pool), s);
}

XGPU_EXPORT cudaError_t cudaMallocFromPoolAsync_ptsz(void **p, size_t size, cudaMemPool_t pool, cudaStream_t s) {
  return cudaMallocFromPoolAsync(p, size, pool, s);
}

/* Pool memory goes back to its pool in stream order; other memory is freed
 * after the work already queued on its device. */
XGPU_EXPORT cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
  if (!p) return cudaSuccess;
  int dev, e = stream_dev(s, &dev);
  if (e) return facade_ret(e);
  return facade_ret(xgpu_free_async((uint64_t)(uintptr_t)p, dev, sh(s)));
}

XGPU_EXPORT cudaError_t cudaFreeAsync_ptsz(void *p, cudaStream_t s) { return cudaFreeAsync(p, s); }

XGPU_EXPORT cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep) {
  int e = facade_capture_unsafe("cudaMemPoolTrimTo");
  if (e) return facade_ret(e);
  return facade_ret(xgpu_mempool_trim(PH(pool), keep));
}

/* The reuse flags (attributes 1 to 3) are ints; the others 64-bit. */
XGPU_EXPORT cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, int attr, void *value) {
  if (!value) return facade_ret(cudaErrorInvalidValue);
  int e = facade_capture_unsafe("cudaMemPoolSetAttribute");
  if (e) return facade_ret(e);
  uint64_t v = (attr >= 1 && attr <= 3) ? (uint64_t)(unsigned)*(int *)value : *(uint64_t *)value;
  return facade_ret(xgpu_mempool_set_attr(PH(pool), attr, v));
}

XGPU_EXPORT cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, int attr, void *value) {
  if (!value) return facade_ret(cudaErrorInvalidValue);
  int e = facade_capture_unsafe("cudaMemPoolGetAttribute");
  if (e) return facade_ret(e);
  uint64_t v = 0;
  if ((e = xgpu_mempool_attr(PH(pool), attr, &v))) return facade_ret(e);
  if (attr >= 1 && attr <= 3)
    *(int *)value = (int)v;
  else
    *(uint64_t *)value = v;
  return cudaSuccess;
}

#define MAX_ACCESS 1024

XGPU_EXPORT cudaError_t cudaMemPoolSetAccess(cudaMemPool_t pool, const struct cudaMemAccessDesc *descs, size_t n) {
  if ((n && !descs) || n > MAX_ACCESS) return facade_ret(cudaErrorInvalidValue);
  int devs[MAX_ACCESS], flags[MAX_ACCESS];
  for (size_t i = 0; i < n; i++) {
    if (descs[i].location.type != memLocationTypeDevice) return facade_ret(cudaErrorInvalidValue);
    devs[i] = descs[i].location.id;
    flags[i] = descs[i].flags;
  }
  return facade_ret(xgpu_mempool_set_access(PH(pool), devs, flags, n));
}

XGPU_EXPORT cudaError_t cudaMemPoolGetAccess(int *flags, cudaMemPool_t pool, struct cudaMemLocation *loc) {
  if (!flags || !loc || loc->type != memLocationTypeDevice) return facade_ret(cudaErrorInvalidValue);
  return facade_ret(xgpu_mempool_access(PH(pool), loc->id, flags));
}
