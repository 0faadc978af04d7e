/*
 * launch_structs.h: the extensible launch's structures of CUDA 13, laid
 * out as in the toolkit (cudaLaunchAttribute and cudaLaunchConfig_t of
 * driver_types.h; CUlaunchAttribute and CUlaunchConfig of cuda.h; checked
 * field by field by layout_check.c against the real headers, and by the
 * static assertions below in every build), and the rules both facades
 * apply to launch attributes (cudaLaunchKernelExC, cuLaunchKernelEx).
 * Plain C types only; each name can be changed before inclusion, as in
 * cudart_structs.h, so that the header sits next to the real ones.
 */
#ifndef XGPU_LAUNCH_STRUCTS_H
#define XGPU_LAUNCH_STRUCTS_H

#ifndef XGPU_LAUNCH_ATTRIBUTE
#define XGPU_LAUNCH_ATTRIBUTE cudaLaunchAttribute_st
#define XGPU_LAUNCH_CONFIG cudaLaunchConfig_st
#define XGPU_CU_LAUNCH_CONFIG CUlaunchConfig_st
#define XGPU_LAUNCH_DIM3 xgpu_launch_dim3
#endif

#include <stddef.h>

#include "../include/xgpu.h"

struct XGPU_LAUNCH_DIM3 {
  unsigned int x, y, z;
};

/* cudaLaunchAttribute and CUlaunchAttribute (the same layout): an id
 * (cudaLaunchAttributeID), padding to 8 bytes, a 64-byte value union.
 * Only the members the facades read are named. */
struct XGPU_LAUNCH_ATTRIBUTE {
  int id;
  char pad[8 - sizeof(int)];
  union {
    char pad[64];
    int cooperative;
    struct {
      unsigned int x, y, z;
    } clusterDim;
  } val;
};
#define XGPU_LAUNCH_ATTRIBUTE_FIELDS(X) X(id) X(pad)

/* cudaLaunchConfig_t. */
struct XGPU_LAUNCH_CONFIG {
  struct XGPU_LAUNCH_DIM3 gridDim;
  struct XGPU_LAUNCH_DIM3 blockDim;
  size_t dynamicSmemBytes;
  void *stream; /* cudaStream_t */
  struct XGPU_LAUNCH_ATTRIBUTE *attrs;
  unsigned int numAttrs;
};
#define XGPU_LAUNCH_CONFIG_FIELDS(X) X(gridDim) X(blockDim) X(dynamicSmemBytes) X(stream) X(attrs) X(numAttrs)

/* CUlaunchConfig. */
struct XGPU_CU_LAUNCH_CONFIG {
  unsigned int gridDimX, gridDimY, gridDimZ;
  unsigned int blockDimX, blockDimY, blockDimZ;
  unsigned int sharedMemBytes;
  void *hStream; /* CUstream */
  struct XGPU_LAUNCH_ATTRIBUTE *attrs;
  unsigned int numAttrs;
};
#define XGPU_CU_LAUNCH_CONFIG_FIELDS(X) \
  X(gridDimX) X(gridDimY) X(gridDimZ) X(blockDimX) X(blockDimY) X(blockDimZ) X(sharedMemBytes) X(hStream) X(attrs) X(numAttrs)

_Static_assert(sizeof(struct XGPU_LAUNCH_ATTRIBUTE) == 72, "cudaLaunchAttribute size");
_Static_assert(offsetof(struct XGPU_LAUNCH_ATTRIBUTE, val) == 8, "cudaLaunchAttribute.val offset");
_Static_assert(sizeof(struct XGPU_LAUNCH_CONFIG) == 56, "cudaLaunchConfig_t size");
_Static_assert(offsetof(struct XGPU_LAUNCH_CONFIG, attrs) == 40, "cudaLaunchConfig_t.attrs offset");
_Static_assert(sizeof(struct XGPU_CU_LAUNCH_CONFIG) == 56, "CUlaunchConfig size");
_Static_assert(offsetof(struct XGPU_CU_LAUNCH_CONFIG, hStream) == 32, "CUlaunchConfig.hStream offset");

/* Launch attribute ids (cudaLaunchAttributeID; CUlaunchAttributeID has
 * the same values). */
enum {
  xgpu_launch_attr_ignore = 0,
  xgpu_launch_attr_access_policy_window = 1,
  xgpu_launch_attr_cooperative = 2,
  xgpu_launch_attr_synchronization_policy = 3,
  xgpu_launch_attr_cluster_dimension = 4,
  xgpu_launch_attr_cluster_scheduling_policy_preference = 5,
  xgpu_launch_attr_programmatic_stream_serialization = 6,
  xgpu_launch_attr_programmatic_event = 7,
  xgpu_launch_attr_priority = 8,
  xgpu_launch_attr_mem_sync_domain_map = 9,
  xgpu_launch_attr_mem_sync_domain = 10,
  xgpu_launch_attr_preferred_cluster_dimension = 11,
  xgpu_launch_attr_launch_completion_event = 12,
  xgpu_launch_attr_device_updatable_kernel_node = 13,
  xgpu_launch_attr_preferred_shared_memory_carveout = 14,
  xgpu_launch_attr_nvlink_util_centric_scheduling = 16
};

/* Results of xgpu_launch_attrs: cudaError_t and CUresult agree on both. */
enum { xgpu_launch_attrs_invalid_value = 1, xgpu_launch_attrs_not_supported = 801 };

/*
 * xgpu_launch_attrs reads the n attributes at a into XGPU_LAUNCH_* flags
 * for xgpu_launch_kernel_ex and xgpu_function_launch_ex. It returns 0, or
 * 1 (invalid value: attributes missing, n > 0 with a NULL a) or 801 (not
 * supported; *refused is the attribute's id, for the log), the values
 * cudaError_t and CUresult share. The rules:
 *
 *   ignore                                   skipped
 *   cooperative                              nonzero: a cooperative launch; 0: ordinary (the last one given counts)
 *   access policy window, priority,          hints, accepted and not applied: the server's driver schedules
 *   preferred shared memory carveout,
 *   NVLink-centric scheduling
 *   programmatic stream serialization        accepted: the kernel runs after the previous one, without overlap,
 *                                            a schedule CUDA allows
 *   cluster dimension                        1x1x1: an ordinary launch; any other: not supported
 *   anything else (synchronization policy, a stream attribute; cluster scheduling policy, programmatic and
 *   launch completion events, memory synchronization domains, preferred cluster dimension, device-updatable
 *   nodes, unknown ids)                      not supported
 */
static inline int xgpu_launch_attrs(const struct XGPU_LAUNCH_ATTRIBUTE *a, unsigned int n, unsigned int *flags,
                                    int *refused) {
  *flags = 0;
  *refused = 0;
  if (n > 0 && !a) return xgpu_launch_attrs_invalid_value;
  for (unsigned int i = 0; i < n; i++) {
    switch (a[i].id) {
      case xgpu_launch_attr_ignore:
      case xgpu_launch_attr_access_policy_window:
      case xgpu_launch_attr_priority:
      case xgpu_launch_attr_preferred_shared_memory_carveout:
      case xgpu_launch_attr_nvlink_util_centric_scheduling:
      case xgpu_launch_attr_programmatic_stream_serialization:
        break;
      case xgpu_launch_attr_cooperative:
        if (a[i].val.cooperative)
          *flags |= XGPU_LAUNCH_COOPERATIVE;
        else
          *flags &= ~XGPU_LAUNCH_COOPERATIVE;
        break;
      case xgpu_launch_attr_cluster_dimension:
        if (a[i].val.clusterDim.x != 1 || a[i].val.clusterDim.y != 1 || a[i].val.clusterDim.z != 1) {
          *refused = a[i].id;
          return xgpu_launch_attrs_not_supported;
        }
        break;
      default:
        *refused = a[i].id;
        return xgpu_launch_attrs_not_supported;
    }
  }
  return 0;
}

#endif /* XGPU_LAUNCH_STRUCTS_H */
