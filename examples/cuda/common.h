// Helpers shared by the CUDA examples: error checks that name the call and
// exit non-zero, so that a failing run is never mistaken for a passing one.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(call)                                                              \
  do {                                                                           \
    cudaError_t err_ = (call);                                                   \
    if (err_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__,    \
                   #call, cudaGetErrorName(err_), cudaGetErrorString(err_));     \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

// CHECK_LAUNCH checks a <<<>>> launch: configuration errors now, execution
// errors at the next synchronizing call.
#define CHECK_LAUNCH() CHECK(cudaGetLastError())

#define REQUIRE(cond, ...)                                                       \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                         \
      std::fprintf(stderr, "\n");                                                \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

// fnv1a hashes bytes, for deterministic checksums in the output.
static inline unsigned long long fnv1a(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  unsigned long long h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}
