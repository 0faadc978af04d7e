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

#define SAME(real, ours, f)                                                                   \
  _Static_assert(offsetof(struct real, f) == offsetof(struct ours, f), #real "." #f " offset"); \
  _Static_assert(sizeof(((struct real *)0)->f) == sizeof(((struct ours *)0)->f), #real "." #f " size");
#define PROP(f) SAME(cudaDeviceProp, xgpu_prop, f)
#define PTR(f) SAME(cudaPointerAttributes, xgpu_ptr_attrs, f)
#define FUNC(f) SAME(cudaFuncAttributes, xgpu_func_attrs, f)
XGPU_DEVICE_PROP_FIELDS(PROP)
XGPU_POINTER_ATTRIBUTES_FIELDS(PTR)
XGPU_FUNC_ATTRIBUTES_FIELDS(FUNC)
_Static_assert(sizeof(struct cudaDeviceProp) == sizeof(struct xgpu_prop), "cudaDeviceProp size");
_Static_assert(sizeof(struct cudaPointerAttributes) == sizeof(struct xgpu_ptr_attrs), "cudaPointerAttributes size");
_Static_assert(sizeof(struct cudaFuncAttributes) == sizeof(struct xgpu_func_attrs), "cudaFuncAttributes size");

int main(void) {
  int n = 0;
#define COUNT(f) n++;
  XGPU_DEVICE_PROP_FIELDS(COUNT)
#define SHOW(f) printf("cudaDeviceProp.%s offset %zu size %zu\n", #f, offsetof(struct cudaDeviceProp, f), sizeof(((struct cudaDeviceProp *)0)->f));
  XGPU_DEVICE_PROP_FIELDS(SHOW)
  printf("layout_check: cudaDeviceProp (%d fields, %zu bytes), cudaPointerAttributes (%zu bytes), cudaFuncAttributes (%zu bytes) match CUDA %d\n",
         n, sizeof(struct cudaDeviceProp), sizeof(struct cudaPointerAttributes), sizeof(struct cudaFuncAttributes), CUDART_VERSION);
  return 0;
}
