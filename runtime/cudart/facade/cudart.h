/*
 * cudart.h: what the libcudart.so.13 facade's C files share: the few CUDA
 * runtime types they need, declared here with the toolkit's ABI (the
 * facade builds without a CUDA toolkit), and the per-thread state.
 */
#ifndef XGPU_CUDART_H
#define XGPU_CUDART_H

#include <stddef.h>
#include <stdint.h>

#include "../include/xgpu.h"
#include "cudart_structs.h"
#include "zz_generated_errors.h"

#define XGPU_EXPORT __attribute__((visibility("default")))

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUkern_st *cudaKernel_t;
typedef struct CUfunc_st *cudaFunction_t;
typedef struct {
  unsigned int x, y, z;
} dim3;
typedef struct {
  unsigned int x, y, z;
} uint3;
typedef void (*cudaHostFn_t)(void *userData);
typedef void (*cudaStreamCallback_t)(cudaStream_t stream, cudaError_t status, void *userData);

struct cudaChannelFormatDesc {
  int x, y, z, w;
  int f; /* enum cudaChannelFormatKind */
};

/* Special stream handles of the CUDA API. */
#define XGPU_STREAM_LEGACY ((cudaStream_t)0x1)
#define XGPU_STREAM_PER_THREAD ((cudaStream_t)0x2)

/* sh converts a cudaStream_t to libxgpu's handle: NULL, cudaStreamLegacy
 * and cudaStreamPerThread are all the legacy stream (handle 0). */
static inline uint64_t sh(cudaStream_t s) {
  uintptr_t v = (uintptr_t)s;
  return v <= (uintptr_t)XGPU_STREAM_PER_THREAD ? 0 : (uint64_t)v;
}

static inline int is_special_stream(cudaStream_t s) { return (uintptr_t)s <= (uintptr_t)XGPU_STREAM_PER_THREAD; }

/* facade_current_device is the calling thread's current device. */
int facade_current_device(void);

cudaError_t cudaDeviceGetAttribute(int *value, int attr, int dev);

/* facade_ret records e as the calling thread's last error when it is one,
 * and returns it. A sticky error stays the last error for good. */
cudaError_t facade_ret(int e);

/* facade_unsupported logs (once per name) and records
 * cudaErrorNotSupported for a function the facade does not serve. */
cudaError_t facade_unsupported(const char *name);

/* facade_capture_unsafe checks a potentially unsafe call (op names it)
 * of the calling thread against the stream captures in progress
 * (facade_graphs.c). */
int facade_capture_unsafe(const char *op);

/* Generated from internal/cudaerr. */
int facade_is_sticky(int e);

#endif /* XGPU_CUDART_H */
