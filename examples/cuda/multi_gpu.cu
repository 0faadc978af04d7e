// multi_gpu: splits a 64 Mi-element vector add over every device
// (cudaSetDevice per part, one stream each), then checks the whole result.
#include <vector>
#include "common.h"

__global__ void add(const int* a, const int* b, int* c, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

int main() {
  int ndev = 0;
  CHECK(cudaGetDeviceCount(&ndev));
  REQUIRE(ndev >= 1, "no devices");
  const size_t n = 64u << 20;
  std::vector<int> a(n), b(n), c(n, -1);
  for (size_t i = 0; i < n; i++) {
    a[i] = (int)(i * 7);
    b[i] = (int)(i ^ 0x5555);
  }
  std::vector<int*> da(ndev), db(ndev), dc(ndev);
  std::vector<cudaStream_t> s(ndev);
  size_t per = (n + ndev - 1) / ndev;
  for (int d = 0; d < ndev; d++) {
    size_t lo = d * per, m = lo < n ? std::min(per, n - lo) : 0;
    CHECK(cudaSetDevice(d));
    int cur = -1;
    CHECK(cudaGetDevice(&cur));
    REQUIRE(cur == d, "cudaGetDevice = %d, want %d", cur, d);
    CHECK(cudaStreamCreate(&s[d]));
    CHECK(cudaMalloc(&da[d], m * sizeof(int)));
    CHECK(cudaMalloc(&db[d], m * sizeof(int)));
    CHECK(cudaMalloc(&dc[d], m * sizeof(int)));
    CHECK(cudaMemcpyAsync(da[d], &a[lo], m * sizeof(int), cudaMemcpyHostToDevice, s[d]));
    CHECK(cudaMemcpyAsync(db[d], &b[lo], m * sizeof(int), cudaMemcpyHostToDevice, s[d]));
    add<<<(unsigned)((m + 255) / 256), 256, 0, s[d]>>>(da[d], db[d], dc[d], m);
    CHECK_LAUNCH();
    CHECK(cudaMemcpyAsync(&c[lo], dc[d], m * sizeof(int), cudaMemcpyDeviceToHost, s[d]));
  }
  for (int d = 0; d < ndev; d++) {
    CHECK(cudaSetDevice(d));
    CHECK(cudaStreamSynchronize(s[d]));
    cudaPointerAttributes pa;
    CHECK(cudaPointerGetAttributes(&pa, dc[d]));
    REQUIRE(pa.type == cudaMemoryTypeDevice && pa.device == d, "pointer of device %d: type %d device %d", d, (int)pa.type, pa.device);
    CHECK(cudaFree(da[d]));
    CHECK(cudaFree(db[d]));
    CHECK(cudaFree(dc[d]));
    CHECK(cudaStreamDestroy(s[d]));
  }
  for (size_t i = 0; i < n; i++) REQUIRE(c[i] == a[i] + b[i], "c[%zu] = %d, want %d", i, c[i], a[i] + b[i]);
  std::printf("multi_gpu: %zu elements over %d devices OK, checksum %016llx\n", n, ndev, fnv1a(c.data(), n * sizeof(int)));
  return 0;
}
