/*
 * driver.h: what the libcuda.so.1 facade's C files share: the few driver
 * API types they need, declared with the driver's ABI (the facade builds
 * without a CUDA toolkit), and the helpers of driver.c.
 */
#ifndef XGPU_DRIVER_H
#define XGPU_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "../include/xgpu.h"
#include "zz_generated_errors.h"

#define XGPU_EXPORT __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr; /* CUdeviceptr_v2 on 64-bit hosts */
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct {
  char bytes[16];
} CUuuid;

/* drv_unsupported logs (once per name) that the facade does not serve
 * name and returns CUDA_ERROR_NOT_SUPPORTED. */
CUresult drv_unsupported(const char *name);

/* The versioned entry points and the CUDA version that introduced each,
 * sorted by name (zz_generated_versions.c). */
struct drv_versioned {
  const char *name;
  int version;
};
extern const struct drv_versioned drv_versioned[];
extern const int drv_nversioned;

#endif /* XGPU_DRIVER_H */
