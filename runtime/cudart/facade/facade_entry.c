/*
 * facade_entry.c: cudaGetDriverEntryPoint and
 * cudaGetDriverEntryPointByVersion hand out the driver API functions of
 * xgpu's libcuda.so.1, the facade `make shim` builds beside this library
 * (never NVIDIA's driver, whose functions know nothing of xgpu's devices).
 * As NVIDIA's runtime asks the driver, this asks the facade's
 * cuGetProcAddress_v2, which picks the symbol for the version and flags.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cudart.h"

#define CUDART_VERSION_SERVED 13000

/* cuGetProcAddress_v2's status values equal cudaDriverEntryPointQueryResult's,
 * and its flags cudaGetDriverEntryPoint's. */
enum { entrySuccess = 0, entrySymbolNotFound = 1 };
enum { flagDefault = 0, flagLegacyStream = 1, flagPerThreadStream = 2 };
enum { cuErrorInvalidValue = 1, cuErrorNotFound = 500 };

typedef int (*get_proc_fn)(const char *symbol, void **pfn, int version, unsigned long long flags, int *status);

static pthread_once_t drv_once = PTHREAD_ONCE_INIT;
static get_proc_fn drv_get_proc;

/* drv_open finds libcuda.so.1 in this library's directory. */
static void drv_open(void) {
  Dl_info info;
  const char *slash = NULL;
  if (dladdr((void *)&drv_open, &info) && info.dli_fname) slash = strrchr(info.dli_fname, '/');
  if (!slash) {
    fprintf(stderr, "xgpu: cudaGetDriverEntryPoint: cannot tell where libcudart.so.13 lies; no driver functions\n");
    return;
  }
  char path[4096];
  int n = snprintf(path, sizeof path, "%.*s/libcuda.so.1", (int)(slash - info.dli_fname), info.dli_fname);
  if (n <= 0 || (size_t)n >= sizeof path) return;
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "xgpu: cudaGetDriverEntryPoint: %s; no driver functions\n", dlerror());
    return;
  }
  drv_get_proc = (get_proc_fn)dlsym(h, "cuGetProcAddress_v2");
  if (!drv_get_proc) fprintf(stderr, "xgpu: cudaGetDriverEntryPoint: %s lacks cuGetProcAddress_v2\n", path);
}

static cudaError_t entry_point(const char *symbol, void **fn, unsigned int version, unsigned long long flags,
                               int *status) {
  if (!symbol || !fn || flags > flagPerThreadStream) return facade_ret(cudaErrorInvalidValue);
  *fn = NULL;
  if (status) *status = entrySymbolNotFound;
  pthread_once(&drv_once, drv_open);
  if (!drv_get_proc) return cudaSuccess;
  int st = entrySymbolNotFound;
  void *p = NULL;
  int e = drv_get_proc(symbol, &p, (int)version, flags, &st);
  if (e == cuErrorInvalidValue) return facade_ret(cudaErrorInvalidValue);
  /* Not found, or not in this version: success with no function, as the
   * runtime documents it. */
  if (status) *status = st;
  if (e == 0 && st == entrySuccess) *fn = p;
  return cudaSuccess;
}

XGPU_EXPORT cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int version,
                                                         unsigned long long flags, int *status) {
  return entry_point(symbol, fn, version, flags, status);
}

XGPU_EXPORT cudaError_t cudaGetDriverEntryPointByVersion_ptsz(const char *symbol, void **fn, unsigned int version,
                                                              unsigned long long flags, int *status) {
  return entry_point(symbol, fn, version, flags == flagDefault ? flagPerThreadStream : flags, status);
}

/* Deprecated in CUDA 13: the version is the runtime's own. */
XGPU_EXPORT cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **fn, unsigned long long flags, int *status) {
  return entry_point(symbol, fn, CUDART_VERSION_SERVED, flags, status);
}

XGPU_EXPORT cudaError_t cudaGetDriverEntryPoint_ptsz(const char *symbol, void **fn, unsigned long long flags,
                                                     int *status) {
  return entry_point(symbol, fn, CUDART_VERSION_SERVED, flags == flagDefault ? flagPerThreadStream : flags, status);
}
