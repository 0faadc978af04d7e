/*
 * layout_check.c compares the facade's copies of the CUDA runtime's
 * structures (cudart_structs.h, cudart_graph_structs.h, launch_structs.h)
 * with the toolkit's own, field by field.
 * Build it against a CUDA 13 toolkit's headers; it fails to compile on any
 * difference and prints the checked layout when run:
 *
 *   gcc -I/usr/local/cuda/include -o layout_check layout_check.c && ./layout_check
 */
#include <cuda.h>
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

#define XGPU_LAUNCH_ATTRIBUTE xgpu_la
#define XGPU_LAUNCH_CONFIG xgpu_lc
#define XGPU_CU_LAUNCH_CONFIG xgpu_culc
#define XGPU_LAUNCH_DIM3 xgpu_ldim3
#include "launch_structs.h"

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
#define LA(f) SAME(cudaLaunchAttribute_st, xgpu_la, f)
#define CULA(f) SAME(CUlaunchAttribute_st, xgpu_la, f)
#define LC(f) SAME(cudaLaunchConfig_st, xgpu_lc, f)
#define CULC(f) SAME(CUlaunchConfig_st, xgpu_culc, f)
XGPU_LAUNCH_ATTRIBUTE_FIELDS(LA)
XGPU_LAUNCH_ATTRIBUTE_FIELDS(CULA)
XGPU_LAUNCH_CONFIG_FIELDS(LC)
XGPU_CU_LAUNCH_CONFIG_FIELDS(CULC)
/* The value union: where it lies, its size, and the members the facades read. */
_Static_assert(offsetof(struct cudaLaunchAttribute_st, val) == offsetof(struct xgpu_la, val), "cudaLaunchAttribute.val offset");
_Static_assert(sizeof(((struct cudaLaunchAttribute_st *)0)->val) == sizeof(((struct xgpu_la *)0)->val), "cudaLaunchAttribute.val size");
_Static_assert(offsetof(struct CUlaunchAttribute_st, value) == offsetof(struct xgpu_la, val), "CUlaunchAttribute.value offset");
_Static_assert(sizeof(((struct CUlaunchAttribute_st *)0)->value) == sizeof(((struct xgpu_la *)0)->val), "CUlaunchAttribute.value size");
_Static_assert(offsetof(struct cudaLaunchAttribute_st, val.cooperative) == offsetof(struct xgpu_la, val.cooperative), "cooperative offset");
_Static_assert(offsetof(struct cudaLaunchAttribute_st, val.clusterDim) == offsetof(struct xgpu_la, val.clusterDim), "clusterDim offset");
_Static_assert(sizeof(((struct cudaLaunchAttribute_st *)0)->val.clusterDim) == sizeof(((struct xgpu_la *)0)->val.clusterDim), "clusterDim size");
_Static_assert(sizeof(struct cudaLaunchAttribute_st) == sizeof(struct xgpu_la), "cudaLaunchAttribute size");
_Static_assert(sizeof(struct CUlaunchAttribute_st) == sizeof(struct xgpu_la), "CUlaunchAttribute size");
_Static_assert(sizeof(struct cudaLaunchConfig_st) == sizeof(struct xgpu_lc), "cudaLaunchConfig_t size");
_Static_assert(sizeof(struct CUlaunchConfig_st) == sizeof(struct xgpu_culc), "CUlaunchConfig size");
/* The attribute ids the facades name, in both APIs. */
#define ATTR_ID(rt, drv, ours) \
  _Static_assert((int)(rt) == (int)(ours) && (int)(drv) == (int)(ours), #rt " and " #drv " id");
ATTR_ID(cudaLaunchAttributeIgnore, CU_LAUNCH_ATTRIBUTE_IGNORE, xgpu_launch_attr_ignore)
ATTR_ID(cudaLaunchAttributeAccessPolicyWindow, CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW, xgpu_launch_attr_access_policy_window)
ATTR_ID(cudaLaunchAttributeCooperative, CU_LAUNCH_ATTRIBUTE_COOPERATIVE, xgpu_launch_attr_cooperative)
ATTR_ID(cudaLaunchAttributeSynchronizationPolicy, CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY, xgpu_launch_attr_synchronization_policy)
ATTR_ID(cudaLaunchAttributeClusterDimension, CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION, xgpu_launch_attr_cluster_dimension)
ATTR_ID(cudaLaunchAttributeClusterSchedulingPolicyPreference, CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE,
        xgpu_launch_attr_cluster_scheduling_policy_preference)
ATTR_ID(cudaLaunchAttributeProgrammaticStreamSerialization, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        xgpu_launch_attr_programmatic_stream_serialization)
ATTR_ID(cudaLaunchAttributeProgrammaticEvent, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT, xgpu_launch_attr_programmatic_event)
ATTR_ID(cudaLaunchAttributePriority, CU_LAUNCH_ATTRIBUTE_PRIORITY, xgpu_launch_attr_priority)
ATTR_ID(cudaLaunchAttributeMemSyncDomainMap, CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP, xgpu_launch_attr_mem_sync_domain_map)
ATTR_ID(cudaLaunchAttributeMemSyncDomain, CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN, xgpu_launch_attr_mem_sync_domain)
ATTR_ID(cudaLaunchAttributePreferredClusterDimension, CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION,
        xgpu_launch_attr_preferred_cluster_dimension)
ATTR_ID(cudaLaunchAttributeLaunchCompletionEvent, CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT, xgpu_launch_attr_launch_completion_event)
ATTR_ID(cudaLaunchAttributeDeviceUpdatableKernelNode, CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE,
        xgpu_launch_attr_device_updatable_kernel_node)
ATTR_ID(cudaLaunchAttributePreferredSharedMemoryCarveout, CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
        xgpu_launch_attr_preferred_shared_memory_carveout)
ATTR_ID(cudaLaunchAttributeNvlinkUtilCentricScheduling, CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING,
        xgpu_launch_attr_nvlink_util_centric_scheduling)
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
  printf("layout_check: cudaDeviceProp (%d fields, %zu bytes), cudaPointerAttributes (%zu bytes), cudaFuncAttributes (%zu bytes), the graph and memory pool structures and the launch configurations and attributes match CUDA %d\n",
         n, sizeof(struct cudaDeviceProp), sizeof(struct cudaPointerAttributes), sizeof(struct cudaFuncAttributes), CUDART_VERSION);
  return 0;
}
