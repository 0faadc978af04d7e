/*
 * xgpu.h: the C ABI of libxgpu.so, the one Go runtime of an xgpu client
 * process. The generated CUDA facades (libcudart.so.13, later cuBLAS and
 * NCCL) call these functions; applications never do.
 *
 * Most functions are Go (package runtime/cudart). The "thread and context
 * state" and xgpu_device_info are plain C in the same library (state.c):
 * the facades call them on hot paths, and they never enter Go once set up.
 *
 * Rules of the ABI:
 *  - Every function returns a cudaError_t value (0 on success) unless it
 *    says otherwise, and writes its results only on success.
 *  - Devices are logical device indices 0..n-1 of the client's device map.
 *  - Device pointers are uint64_t addresses in the devices' windows; host
 *    memory is passed as pointers, which libxgpu reads or writes only
 *    during the call, or, for an asynchronous device-to-host copy, until
 *    the stream it was queued on has been synchronized (as in CUDA).
 *  - Streams, events, modules and kernels are integer handles that
 *    libxgpu hands out; no Go pointer ever crosses to C. Stream handle 0
 *    is the legacy default stream of the device passed with it.
 *  - Every function may be called from any thread at any time; libxgpu
 *    opens the client's sessions on the first call that needs them.
 *  - Pointer parameters are not const-qualified, so that the declarations
 *    match the ones cgo generates for the Go definitions exactly (the Go
 *    side includes this header and the C compiler checks the two agree);
 *    libxgpu never writes through a pointer it only reads.
 */
#ifndef XGPU_H
#define XGPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XGPU_ABI_VERSION changes whenever a declaration below does. */
#define XGPU_ABI_VERSION 3

/* XGPU_ATTR_COUNT bounds the cudaDeviceAttr values xgpu_device_info_t holds. */
#define XGPU_ATTR_COUNT 256

/* What xgpu_device_info_get reports about one logical device. */
typedef struct {
  char name[256];            /* product name, NUL-terminated */
  unsigned char uuid[16];    /* the physical GPU's UUID */
  uint64_t total_mem;        /* the device's memory quota, bytes */
  char pci_bus_id[32];       /* "0000:00:06.0"; empty when unknown */
  int attr_valid[XGPU_ATTR_COUNT]; /* 1 where attrs[a] holds cudaDeviceAttr a */
  int attrs[XGPU_ATTR_COUNT];
  int peer_count;            /* number of logical devices */
} xgpu_device_info_t;

/* Kernel attributes, as cudaFuncAttributes reports them. */
typedef struct {
  uint64_t shared_size_bytes;
  uint64_t const_size_bytes;
  uint64_t local_size_bytes;
  int max_threads_per_block;
  int num_regs;
  int ptx_version;
  int binary_version;
  int cache_mode_ca;
  int max_dynamic_shared_size_bytes;
  int preferred_shmem_carveout;
} xgpu_func_attributes_t;

/* XGPU_MAX_DEVICES bounds the logical device indices the thread and
 * context state below handles. */
#define XGPU_MAX_DEVICES 1024

/* What xgpu_pointer_info reports about an address. */
typedef struct {
  int type;          /* a cudaMemoryType: 0 unregistered host, 1 host, 2 device */
  int device;        /* the device of device memory; -2 for unregistered host memory */
  uint64_t dev_ptr;  /* the address itself for device memory, else 0 */
  uint64_t host_ptr; /* the address itself for host memory, else 0 */
  uint64_t base;     /* the allocation (or registered host range) holding it; 0 if unknown */
  uint64_t size;     /* its size in bytes; 0 if unknown */
} xgpu_pointer_info_t;

/* Memcpy directions: the values of cudaMemcpyKind. */
enum {
  XGPU_COPY_HOST_TO_HOST = 0,
  XGPU_COPY_HOST_TO_DEVICE = 1,
  XGPU_COPY_DEVICE_TO_HOST = 2,
  XGPU_COPY_DEVICE_TO_DEVICE = 3,
  XGPU_COPY_DEFAULT = 4
};

/* Version and lifecycle. */
int xgpu_abi_version(void);                 /* returns XGPU_ABI_VERSION */
int xgpu_init(void);                        /* opens the sessions if not yet open; idempotent */
int xgpu_shutdown(void);                    /* closes every session (process exit) */
int xgpu_log_unsupported(char *name);       /* logs, once per name, that name is not served; returns 801 */

/* Devices. */
int xgpu_device_count(int *count);
int xgpu_device_info_get(int dev, xgpu_device_info_t *info);
int xgpu_device_can_access_peer(int dev, int peer, int *can);
int xgpu_device_synchronize(int dev);
int xgpu_device_by_pci_bus_id(char *id, int *dev);

/* Memory. */
int xgpu_malloc(int dev, uint64_t size, uint64_t *ptr);
int xgpu_free(uint64_t ptr);
int xgpu_mem_get_info(int dev, uint64_t *free_bytes, uint64_t *total_bytes);
int xgpu_memcpy(void *dst, void *src, uint64_t n, int kind, int dev, uint64_t stream, int async);
int xgpu_memcpy_peer(uint64_t dst, int dst_dev, uint64_t src, int src_dev, uint64_t n, uint64_t stream, int async);
int xgpu_memset(uint64_t dst, int value, uint64_t n, int dev, uint64_t stream, int async);
int xgpu_host_register(void *ptr, uint64_t size, unsigned flags); /* pinned host memory, for pointer queries */
int xgpu_host_unregister(void *ptr);
/* type: a cudaMemoryType; dev: the device (-2 for unregistered host memory). */
int xgpu_pointer_attributes(void *ptr, int *type, int *dev, uint64_t *dev_ptr, uint64_t *host_ptr);
/* xgpu_pointer_info is xgpu_pointer_attributes with the allocation's range;
 * pinned host memory reports dev (the caller's current device) as its device. */
int xgpu_pointer_info(void *ptr, int dev, xgpu_pointer_info_t *info);

/* Streams and events; stream 0 is the legacy stream of dev. */
int xgpu_stream_create(int dev, unsigned flags, int priority, uint64_t *stream);
int xgpu_stream_destroy(uint64_t stream);
int xgpu_stream_synchronize(int dev, uint64_t stream);
int xgpu_stream_query(int dev, uint64_t stream);
int xgpu_stream_wait_event(int dev, uint64_t stream, uint64_t event, unsigned flags); /* flags: cudaEventWaitExternal */
int xgpu_stream_info(uint64_t stream, int *dev, unsigned *flags, int *priority);
int xgpu_event_create(int dev, unsigned flags, uint64_t *event);
int xgpu_event_record(uint64_t event, int dev, uint64_t stream, unsigned flags); /* flags: cudaEventRecordExternal */
int xgpu_event_query(uint64_t event);
int xgpu_event_synchronize(uint64_t event);
int xgpu_event_elapsed_time(float *ms, uint64_t start, uint64_t end);
int xgpu_event_destroy(uint64_t event);

/* Stream capture (CUDA graphs). thread is any value unique to the calling
 * thread; mode the thread's cudaStreamCaptureMode. While a stream
 * captures, the asynchronous calls above queued on it (kernel launches,
 * copies, memsets, event records and waits) become nodes of the capture's
 * graph instead of running. Lists are returned into caller buffers of cap
 * entries: up to cap are written, *n is the count of all. */
int xgpu_capture_begin(int dev, uint64_t stream, int mode, uint64_t thread, uint64_t graph, uint64_t *deps,
                       uint64_t ndeps); /* graph 0: a new graph; else capture into graph after deps */
int xgpu_capture_end(uint64_t stream, uint64_t thread, uint64_t *graph);
/* status: a cudaStreamCaptureStatus; id, graph and deps only while capturing. */
int xgpu_capture_info(int dev, uint64_t stream, int *status, uint64_t *id, uint64_t *graph, uint64_t *deps,
                      uint64_t cap, uint64_t *n);
int xgpu_capture_update_deps(uint64_t stream, uint64_t *deps, uint64_t n, unsigned flags);
/* A potentially unsafe call (op, for the message) is about to be made by thread in mode. */
int xgpu_capture_unsafe(char *op, uint64_t thread, int mode);
/* op (asynchronous, not capturable) is about to be queued on stream of dev. */
int xgpu_capture_refuse(char *op, int dev, uint64_t stream);
/* cudaLaunchHostFunc: *captured 1 if it became a node; else the caller runs fn after the stream's work. */
int xgpu_host_func(int dev, uint64_t stream, void *fn, void *arg, int *captured);

/* Graphs, nodes (deps: ndeps node handles) and executable graphs. */
int xgpu_graph_create(unsigned flags, uint64_t *graph);
int xgpu_graph_destroy(uint64_t graph);
int xgpu_graph_add_empty(uint64_t graph, uint64_t *deps, uint64_t ndeps, uint64_t *node);
int xgpu_graph_add_host(uint64_t graph, uint64_t *deps, uint64_t ndeps, void *fn, void *arg, uint64_t *node);
int xgpu_graph_add_event(uint64_t graph, uint64_t *deps, uint64_t ndeps, int type, uint64_t event,
                         uint64_t *node); /* type: cudaGraphNodeTypeEventRecord or WaitEvent */
int xgpu_graph_add_memcpy(uint64_t graph, uint64_t *deps, uint64_t ndeps, void *dst, void *src, uint64_t n, int kind,
                          int dev, uint64_t *node);
int xgpu_graph_add_memset(uint64_t graph, uint64_t *deps, uint64_t ndeps, uint64_t dst, uint64_t pitch,
                          unsigned value, unsigned elem, uint64_t width, uint64_t height, uint64_t *node);
int xgpu_graph_add_kernel(uint64_t graph, uint64_t *deps, uint64_t ndeps, uint64_t kernel, int dev, unsigned *grid,
                          unsigned *block, uint64_t shared_mem, void **args, uint64_t *node);
int xgpu_graph_change_edges(uint64_t graph, uint64_t *from, uint64_t *to, uint64_t n, int remove);
int xgpu_graph_nodes(uint64_t graph, int roots, uint64_t *list, uint64_t cap, uint64_t *n);
int xgpu_graph_edges(uint64_t graph, uint64_t *from, uint64_t *to, uint64_t cap, uint64_t *n);
int xgpu_graph_node_deps(uint64_t node, int dependents, uint64_t *list, uint64_t cap, uint64_t *n);
int xgpu_graph_node_type(uint64_t node, int *type);
int xgpu_graph_destroy_node(uint64_t node);
int xgpu_graph_dot(uint64_t graph, char *path);
int xgpu_graph_instantiate(uint64_t graph, uint64_t flags, uint64_t *exec);
int xgpu_graph_exec_destroy(uint64_t exec);
int xgpu_graph_exec_flags(uint64_t exec, uint64_t *flags);
int xgpu_graph_exec_kernel_params(uint64_t exec, uint64_t node, uint64_t kernel, int dev, unsigned *grid,
                                  unsigned *block, uint64_t shared_mem, void **args);
int xgpu_graph_launch(uint64_t exec, int dev, uint64_t stream);

/* Stream-ordered memory pools; pool 0 in xgpu_malloc_async is dev's current pool. */
int xgpu_mempool_default(int dev, uint64_t *pool);
int xgpu_mempool_current(int dev, uint64_t *pool);
int xgpu_mempool_set_current(int dev, uint64_t pool);
int xgpu_mempool_create(int dev, uint64_t max_size, uint64_t *pool);
int xgpu_mempool_destroy(uint64_t pool);
int xgpu_malloc_async(int dev, uint64_t pool, uint64_t size, uint64_t stream, uint64_t *ptr);
int xgpu_free_async(uint64_t ptr, int dev, uint64_t stream);
int xgpu_mempool_trim(uint64_t pool, uint64_t keep);
int xgpu_mempool_attr(uint64_t pool, int attr, uint64_t *value); /* attr: a cudaMemPoolAttr */
int xgpu_mempool_set_attr(uint64_t pool, int attr, uint64_t value);
int xgpu_mempool_set_access(uint64_t pool, int *devs, int *flags, uint64_t n); /* flags: cudaMemAccessFlags */
int xgpu_mempool_access(uint64_t pool, int dev, int *flags);

/* Modules and kernels. A module is one registered fat binary; its
 * container stays in the application's memory (it is static data of a
 * loaded object) until xgpu_unregister_fatbin. */
int xgpu_register_fatbin(void *container, uint64_t *module);
int xgpu_unregister_fatbin(uint64_t module);
int xgpu_register_function(uint64_t module, void *host_fun, char *device_name);
int xgpu_register_var(uint64_t module, void *host_var, char *device_name, uint64_t size, int constant);
int xgpu_get_kernel(void *host_fun, uint64_t *kernel);
/* args: one pointer per kernel parameter, as cudaLaunchKernel takes them. */
int xgpu_launch_kernel(uint64_t kernel, int dev, unsigned *grid, unsigned *block, uint64_t shared_mem,
                       uint64_t stream, void **args);
/* Flags of xgpu_launch_kernel_ex and xgpu_function_launch_ex; another bit
 * is cudaErrorInvalidValue. */
#define XGPU_LAUNCH_COOPERATIVE 0x1u /* every block resident at once (cudaLaunchCooperativeKernel); a grid the
                                        device cannot hold fails with cudaErrorCooperativeLaunchTooLarge, reported
                                        as launch errors are; kept by a captured launch's node */
int xgpu_launch_kernel_ex(uint64_t kernel, int dev, unsigned *grid, unsigned *block, uint64_t shared_mem,
                          uint64_t stream, void **args, unsigned flags);
int xgpu_func_get_attributes(uint64_t kernel, int dev, xgpu_func_attributes_t *attrs);
int xgpu_func_set_attribute(uint64_t kernel, int dev, int attr, int value);
int xgpu_func_name(uint64_t kernel, char **name); /* *name: the mangled name, valid for the process */
int xgpu_symbol_address(void *host_var, int dev, uint64_t *addr, uint64_t *size);

/* Modules and functions of the driver API (libcuda.so.1). Such a module is
 * loaded on one device, at once; the image is copied during the call. It
 * is a cubin (ELF), a fat binary container or NUL-terminated text (PTX, or
 * a host-backend module image). Functions keep their module's device. */
int xgpu_module_load(int dev, void *image, uint64_t *module);
int xgpu_module_unload(uint64_t module);
int xgpu_module_function(uint64_t module, char *name, uint64_t *fn);
int xgpu_module_global(uint64_t module, char *name, uint64_t *addr, uint64_t *size);
int xgpu_function_device(uint64_t fn, int *dev);
/* Exactly one of args (one pointer per kernel parameter) and packed (the
 * parameters already laid out, packed_size bytes: cuLaunchKernel's
 * CU_LAUNCH_PARAM_BUFFER_POINTER) is used: args unless it is NULL. */
int xgpu_function_launch(uint64_t fn, unsigned *grid, unsigned *block, uint64_t shared_mem, uint64_t stream,
                         void **args, void *packed, uint64_t packed_size);
/* xgpu_function_launch with XGPU_LAUNCH_* flags (cuLaunchCooperativeKernel, cuLaunchKernelEx). */
int xgpu_function_launch_ex(uint64_t fn, unsigned *grid, unsigned *block, uint64_t shared_mem, uint64_t stream,
                            void **args, void *packed, uint64_t packed_size, unsigned flags);
int xgpu_function_get_attribute(uint64_t fn, int attr, int *value); /* attr: a CUfunction_attribute */
int xgpu_function_set_attribute(uint64_t fn, int attr, int value);

/* Thread and context state (plain C; see the top of this file). These
 * functions never block and never open the sessions. */
int xgpu_thread_device(void);     /* returns the thread's current device (0 in a new thread) */
int xgpu_thread_use_device(void); /* returns it too, making its primary context current and active: what a
                                     runtime call that uses the device does */
int xgpu_thread_set_device(int dev); /* makes dev current (cudaSetDevice, cuCtxSetCurrent); dev is not
                                        checked against the device count */
int xgpu_thread_context(int *dev);   /* returns 1 and the device when the thread has a current context, else 0 */
void xgpu_thread_clear_context(void); /* cuCtxSetCurrent(NULL) */
int xgpu_primary_ctx_activate(int dev);   /* the runtime uses dev: its primary context is active for good */
int xgpu_primary_ctx_retain(int dev);     /* cuDevicePrimaryCtxRetain */
int xgpu_primary_ctx_release(int dev);    /* cudaErrorDeviceUninitialized (201) when not retained */
int xgpu_primary_ctx_state(int dev, unsigned *flags, int *active);
int xgpu_primary_ctx_set_flags(int dev, unsigned flags);
/* xgpu_device_info is xgpu_device_info_get fetched once per device: *info
 * stays valid, unchanged, for the life of the process. */
int xgpu_device_info(int dev, xgpu_device_info_t **info);

#ifdef __cplusplus
}
#endif

#endif /* XGPU_H */
