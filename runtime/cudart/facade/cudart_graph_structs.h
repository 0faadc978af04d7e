/*
 * The CUDA 13 runtime's structures of graphs and memory pools that the
 * facade reads or fills, laid out as in the toolkit's driver_types.h
 * (checked field by field by layout_check.c against the real headers).
 * Plain C types only; each name can be changed before inclusion, as in
 * cudart_structs.h, so that the header sits next to the real one.
 */
#ifndef XGPU_KERNEL_NODE_PARAMS
#define XGPU_KERNEL_NODE_PARAMS cudaKernelNodeParams
#define XGPU_MEMSET_PARAMS cudaMemsetParams
#define XGPU_HOST_NODE_PARAMS cudaHostNodeParams
#define XGPU_GRAPH_EDGE_DATA cudaGraphEdgeData
#define XGPU_MEM_LOCATION cudaMemLocation
#define XGPU_MEM_ACCESS_DESC cudaMemAccessDesc
#define XGPU_MEM_POOL_PROPS cudaMemPoolProps
#define XGPU_EXEC_UPDATE_RESULT_INFO cudaGraphExecUpdateResultInfo_st
#define XGPU_DIM3 xgpu_dim3
#endif

#include <stddef.h>

struct XGPU_DIM3 {
  unsigned int x, y, z;
};

struct XGPU_KERNEL_NODE_PARAMS {
  void *func;
  struct XGPU_DIM3 gridDim;
  struct XGPU_DIM3 blockDim;
  unsigned int sharedMemBytes;
  void **kernelParams;
  void **extra;
};
#define XGPU_KERNEL_NODE_PARAMS_FIELDS(X) X(func) X(gridDim) X(blockDim) X(sharedMemBytes) X(kernelParams) X(extra)

struct XGPU_MEMSET_PARAMS {
  void *dst;
  size_t pitch;
  unsigned int value;
  unsigned int elementSize;
  size_t width;
  size_t height;
};
#define XGPU_MEMSET_PARAMS_FIELDS(X) X(dst) X(pitch) X(value) X(elementSize) X(width) X(height)

struct XGPU_HOST_NODE_PARAMS {
  void (*fn)(void *);
  void *userData;
};
#define XGPU_HOST_NODE_PARAMS_FIELDS(X) X(fn) X(userData)

struct XGPU_GRAPH_EDGE_DATA {
  unsigned char from_port;
  unsigned char to_port;
  unsigned char type;
  unsigned char reserved[5];
};
#define XGPU_GRAPH_EDGE_DATA_FIELDS(X) X(from_port) X(to_port) X(type) X(reserved)

struct XGPU_MEM_LOCATION {
  int type; /* enum cudaMemLocationType: 1 device */
  int id;
};
#define XGPU_MEM_LOCATION_FIELDS(X) X(type) X(id)

struct XGPU_MEM_ACCESS_DESC {
  struct XGPU_MEM_LOCATION location;
  int flags; /* enum cudaMemAccessFlags */
};
#define XGPU_MEM_ACCESS_DESC_FIELDS(X) X(location) X(flags)

struct XGPU_MEM_POOL_PROPS {
  int allocType;   /* enum cudaMemAllocationType: 1 pinned */
  int handleTypes; /* enum cudaMemAllocationHandleType: 0 none */
  struct XGPU_MEM_LOCATION location;
  void *win32SecurityAttributes;
  size_t maxSize;
  unsigned short usage;
  unsigned char reserved[54];
};
#define XGPU_MEM_POOL_PROPS_FIELDS(X) \
  X(allocType) X(handleTypes) X(location) X(win32SecurityAttributes) X(maxSize) X(usage) X(reserved)

struct XGPU_EXEC_UPDATE_RESULT_INFO {
  int result; /* enum cudaGraphExecUpdateResult */
  void *errorNode;
  void *errorFromNode;
};
#define XGPU_EXEC_UPDATE_RESULT_INFO_FIELDS(X) X(result) X(errorNode) X(errorFromNode)
