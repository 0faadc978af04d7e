//go:build cgo

/*
 * state.c: the part of libxgpu.so that is plain C, shared by every facade
 * of the process (libcudart.so.13, libcuda.so.1): the calling thread's
 * current device and context, the devices' primary contexts, and the
 * device descriptions, cached. The facades read this state on hot paths
 * (every launch reads the current device), so none of it calls into Go
 * once it is set up; include/xgpu.h documents the functions.
 *
 * CUDA's model, which the functions keep: a primary context exists per
 * device once the runtime used the device (cudaSetDevice, cudaFree(NULL),
 * any call that needs the device) or the driver API retained it
 * (cuDevicePrimaryCtxRetain). A thread has at most one current context; the
 * runtime's current device is the current context's device, and a runtime
 * call made with no current context makes its device's primary context
 * current.
 */
#include <pthread.h>
#include <stdlib.h>

#include "xgpu.h"

/* cudaError_t values this file returns. */
enum {
  errInvalidValue = 1,
  errMemoryAllocation = 2,
  errInvalidDevice = 101,
  errContextNotRetained = 201 /* cudaErrorDeviceUninitialized, CUDA_ERROR_INVALID_CONTEXT */
};

/* ---- the calling thread ---- */

static __thread int t_dev;   /* the runtime's current device: 0 in a new thread */
static __thread int t_bound; /* 1: the primary context of t_dev is current */

/* ---- primary contexts, process-wide ---- */

static int p_used[XGPU_MAX_DEVICES];      /* the runtime used the device */
static int p_refs[XGPU_MAX_DEVICES];      /* cuDevicePrimaryCtxRetain count */
static unsigned p_flags[XGPU_MAX_DEVICES]; /* cuDevicePrimaryCtxSetFlags */

static int in_range(int dev) { return dev >= 0 && dev < XGPU_MAX_DEVICES; }

int xgpu_primary_ctx_activate(int dev) {
  if (!in_range(dev)) return errInvalidDevice;
  if (!__atomic_load_n(&p_used[dev], __ATOMIC_RELAXED)) __atomic_store_n(&p_used[dev], 1, __ATOMIC_RELAXED);
  return 0;
}

int xgpu_thread_device(void) { return t_dev; }

int xgpu_thread_use_device(void) {
  if (__builtin_expect(!t_bound, 0)) {
    t_bound = 1;
    (void)xgpu_primary_ctx_activate(t_dev);
  }
  return t_dev;
}

int xgpu_thread_set_device(int dev) {
  if (!in_range(dev)) return errInvalidDevice;
  t_dev = dev;
  t_bound = 1;
  return xgpu_primary_ctx_activate(dev);
}

int xgpu_thread_context(int *dev) {
  if (!t_bound) return 0;
  if (dev) *dev = t_dev;
  return 1;
}

void xgpu_thread_clear_context(void) { t_bound = 0; }

int xgpu_primary_ctx_retain(int dev) {
  if (!in_range(dev)) return errInvalidDevice;
  __atomic_add_fetch(&p_refs[dev], 1, __ATOMIC_RELAXED);
  return 0;
}

int xgpu_primary_ctx_release(int dev) {
  if (!in_range(dev)) return errInvalidDevice;
  int n = __atomic_load_n(&p_refs[dev], __ATOMIC_RELAXED);
  do {
    if (n <= 0) return errContextNotRetained;
  } while (!__atomic_compare_exchange_n(&p_refs[dev], &n, n - 1, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return 0;
}

int xgpu_primary_ctx_state(int dev, unsigned *flags, int *active) {
  if (!in_range(dev)) return errInvalidDevice;
  if (flags) *flags = __atomic_load_n(&p_flags[dev], __ATOMIC_RELAXED);
  if (active)
    *active = __atomic_load_n(&p_used[dev], __ATOMIC_RELAXED) || __atomic_load_n(&p_refs[dev], __ATOMIC_RELAXED) > 0;
  return 0;
}

int xgpu_primary_ctx_set_flags(int dev, unsigned flags) {
  if (!in_range(dev)) return errInvalidDevice;
  __atomic_store_n(&p_flags[dev], flags, __ATOMIC_RELAXED);
  return 0;
}

/* ---- device descriptions, fetched once per device ---- */

static pthread_mutex_t info_mu = PTHREAD_MUTEX_INITIALIZER;
static xgpu_device_info_t **info_cache; /* info_n entries, filled on first use */
static int info_n;

int xgpu_device_info(int dev, xgpu_device_info_t **out) {
  if (!out) return errInvalidValue;
  xgpu_device_info_t **cache = __atomic_load_n(&info_cache, __ATOMIC_ACQUIRE);
  if (cache && dev >= 0 && dev < info_n) {
    xgpu_device_info_t *p = __atomic_load_n(&cache[dev], __ATOMIC_ACQUIRE);
    if (p) {
      *out = p;
      return 0;
    }
  }
  int n = 0, e = xgpu_device_count(&n);
  if (e) return e;
  if (dev < 0 || dev >= n) return errInvalidDevice;
  pthread_mutex_lock(&info_mu);
  if (!info_cache) {
    xgpu_device_info_t **c = calloc((size_t)n, sizeof *c);
    if (!c) {
      pthread_mutex_unlock(&info_mu);
      return errMemoryAllocation;
    }
    info_n = n;
    __atomic_store_n(&info_cache, c, __ATOMIC_RELEASE);
  }
  if (!info_cache[dev]) {
    xgpu_device_info_t *p = calloc(1, sizeof *p);
    if (!p) {
      pthread_mutex_unlock(&info_mu);
      return errMemoryAllocation;
    }
    e = xgpu_device_info_get(dev, p);
    if (e) {
      free(p);
      pthread_mutex_unlock(&info_mu);
      return e;
    }
    __atomic_store_n(&info_cache[dev], p, __ATOMIC_RELEASE);
  }
  *out = info_cache[dev];
  pthread_mutex_unlock(&info_mu);
  return 0;
}
