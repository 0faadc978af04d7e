// many_kernels: 20,000 tiny launches in a row (each adds its index to a
// counter array), then one copy back: measures the launch path and checks
// that every launch ran, in order.
#include <chrono>
#include <vector>
#include "common.h"

__global__ void step(unsigned long long* acc, unsigned int i, int n) {
  int t = threadIdx.x;
  if (t < n) acc[t] = acc[t] * 3 + i + t;  // order-dependent
}

int main() {
  const int kLaunches = 20000, n = 32;
  unsigned long long* d;
  CHECK(cudaMalloc(&d, sizeof(unsigned long long) * n));
  CHECK(cudaMemset(d, 0, sizeof(unsigned long long) * n));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kLaunches; i++) {
    step<<<1, n>>>(d, (unsigned)i, n);
  }
  CHECK_LAUNCH();
  CHECK(cudaDeviceSynchronize());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<unsigned long long> got(n), want(n, 0);
  CHECK(cudaMemcpy(got.data(), d, sizeof(unsigned long long) * n, cudaMemcpyDeviceToHost));
  for (int i = 0; i < kLaunches; i++)
    for (int t = 0; t < n; t++) want[t] = want[t] * 3 + (unsigned)i + t;
  for (int t = 0; t < n; t++) REQUIRE(got[t] == want[t], "acc[%d] = %llu, want %llu", t, got[t], want[t]);
  std::fprintf(stderr, "many_kernels: %d launches in %.3f s (%.0f launches/s)\n", kLaunches, s, kLaunches / s);
  CHECK(cudaFree(d));
  std::printf("many_kernels: %d launches OK, checksum %016llx\n", kLaunches, fnv1a(got.data(), sizeof(unsigned long long) * n));
  return 0;
}
