/*
 * xgpu.h: the C ABI of libxgpu.so, the one Go runtime of an xgpu client
 * process. The generated CUDA facades (libcudart.so.13, later cuBLAS and
 * NCCL) call these functions; applications never do.
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
#define XGPU_ABI_VERSION 1

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

/* Streams and events; stream 0 is the legacy stream of dev. */
int xgpu_stream_create(int dev, unsigned flags, int priority, uint64_t *stream);
int xgpu_stream_destroy(uint64_t stream);
int xgpu_stream_synchronize(int dev, uint64_t stream);
int xgpu_stream_query(int dev, uint64_t stream);
int xgpu_stream_wait_event(int dev, uint64_t stream, uint64_t event);
int xgpu_stream_info(uint64_t stream, int *dev, unsigned *flags, int *priority);
int xgpu_event_create(int dev, unsigned flags, uint64_t *event);
int xgpu_event_record(uint64_t event, int dev, uint64_t stream);
int xgpu_event_query(uint64_t event);
int xgpu_event_synchronize(uint64_t event);
int xgpu_event_elapsed_time(float *ms, uint64_t start, uint64_t end);
int xgpu_event_destroy(uint64_t event);

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
int xgpu_func_get_attributes(uint64_t kernel, int dev, xgpu_func_attributes_t *attrs);
int xgpu_func_set_attribute(uint64_t kernel, int dev, int attr, int value);
int xgpu_func_name(uint64_t kernel, char **name); /* *name: the mangled name, valid for the process */
int xgpu_symbol_address(void *host_var, int dev, uint64_t *addr, uint64_t *size);

#ifdef __cplusplus
}
#endif

#endif /* XGPU_H */
