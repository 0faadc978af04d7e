/*
 * layout_check.c compares the facade's copies of the CUDA runtime's
 * structures (cudart_structs.h) with the toolkit's own, field by field.
 * Build it against a CUDA 13 toolkit's headers; it fails to compile on any
 * difference and prints the checked layout when run:
 *
 *   gcc -I/usr/local/cuda/include -o layout_check layout_check.c && ./layout_check
 */
#include <cuda_runtime_api.h>
#include <stdio.h>

#define XGPU_DEVICE_PROP xgpu_prop
#define XGPU_POINTER_ATTRIBUTES xgpu_ptr_attrs
#define XGPU_FUNC_ATTRIBUTES xgpu_func_attrs
#define XGPU_UUID xgpu_uuid
#include "cudart_structs.h"

#define XGPU_KERNEL_NODE_PARAMS xgpu_knp
#define XGPU_MEMSET_PARAMS xgpu_msp
#define XGPU_HOST_NODE_PARAMS xgpu_hnp
#define XGPU_GRAPH_EDGE_DATA xgpu_ged
#define XGPU_MEM_LOCATION xgpu_mloc
#define XGPU_MEM_ACCESS_DESC xgpu_mad
#define XGPU_MEM_POOL_PROPS xgpu_mpp
#define XGPU_EXEC_UPDATE_RESULT_INFO xgpu_euri
#define XGPU_DIM3 xgpu_dim3
#include "cudart_graph_structs.h"

#define SAME(real, ours, f)                                                                   \
  _Static_assert(offsetof(struct real, f) == offsetof(struct ours, f), #real "." #f " offset"); \
  _Static_assert(sizeof(((struct real *)0)->f) == sizeof(((struct ours *)0)->f), #real "." #f " size");
#define PROP(f) SAME(cudaDeviceProp, xgpu_prop, f)
#define PTR(f) SAME(cudaPointerAttributes, xgpu_ptr_attrs, f)
#define FUNC(f) SAME(cudaFuncAttributes, xgpu_func_attrs, f)
XGPU_DEVICE_PROP_FIELDS(PROP)
XGPU_POINTER_ATTRIBUTES_FIELDS(PTR)
XGPU_FUNC_ATTRIBUTES_FIELDS(FUNC)
#define KNP(f) SAME(cudaKernelNodeParams, xgpu_knp, f)
#define MSP(f) SAME(cudaMemsetParams, xgpu_msp, f)
#define HNP(f) SAME(cudaHostNodeParams, xgpu_hnp, f)
#define GED(f) SAME(cudaGraphEdgeData_st, xgpu_ged, f)
#define MLOC(f) SAME(cudaMemLocation, xgpu_mloc, f)
#define MAD(f) SAME(cudaMemAccessDesc, xgpu_mad, f)
#define MPP(f) SAME(cudaMemPoolProps, xgpu_mpp, f)
#define EURI(f) SAME(cudaGraphExecUpdateResultInfo_st, xgpu_euri, f)
XGPU_KERNEL_NODE_PARAMS_FIELDS(KNP)
XGPU_MEMSET_PARAMS_FIELDS(MSP)
XGPU_HOST_NODE_PARAMS_FIELDS(HNP)
XGPU_GRAPH_EDGE_DATA_FIELDS(GED)
XGPU_MEM_LOCATION_FIELDS(MLOC)
XGPU_MEM_ACCESS_DESC_FIELDS(MAD)
XGPU_MEM_POOL_PROPS_FIELDS(MPP)
XGPU_EXEC_UPDATE_RESULT_INFO_FIELDS(EURI)
_Static_assert(sizeof(struct cudaKernelNodeParams) == sizeof(struct xgpu_knp), "cudaKernelNodeParams size");
_Static_assert(sizeof(struct cudaMemsetParams) == sizeof(struct xgpu_msp), "cudaMemsetParams size");
_Static_assert(sizeof(struct cudaMemPoolProps) == sizeof(struct xgpu_mpp), "cudaMemPoolProps size");
_Static_assert(sizeof(struct cudaGraphEdgeData_st) == sizeof(struct xgpu_ged), "cudaGraphEdgeData size");
_Static_assert(sizeof(struct cudaDeviceProp) == sizeof(struct xgpu_prop), "cudaDeviceProp size");
_Static_assert(sizeof(struct cudaPointerAttributes) == sizeof(struct xgpu_ptr_attrs), "cudaPointerAttributes size");
_Static_assert(sizeof(struct cudaFuncAttributes) == sizeof(struct xgpu_func_attrs), "cudaFuncAttributes size");

int main(void) {
  int n = 0;
#define COUNT(f) n++;
  XGPU_DEVICE_PROP_FIELDS(COUNT)
#define SHOW(f) printf("cudaDeviceProp.%s offset %zu size %zu\n", #f, offsetof(struct cudaDeviceProp, f), sizeof(((struct cudaDeviceProp *)0)->f));
  XGPU_DEVICE_PROP_FIELDS(SHOW)
  printf("layout_check: cudaDeviceProp (%d fields, %zu bytes), cudaPointerAttributes (%zu bytes), cudaFuncAttributes (%zu bytes) and the graph and memory pool structures match CUDA %d\n",
         n, sizeof(struct cudaDeviceProp), sizeof(struct cudaPointerAttributes), sizeof(struct cudaFuncAttributes), CUDART_VERSION);
  return 0;
}
