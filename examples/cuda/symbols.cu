// symbols: __constant__ and __device__ variables through
// cudaMemcpyToSymbol, cudaMemcpyFromSymbol and cudaGetSymbolAddress.
#include "common.h"

__constant__ float coef[16];
__device__ unsigned long long total;
__device__ int table[256];

__global__ void use(int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    table[i] = (int)(coef[i % 16] * i);
    atomicAdd(&total, (unsigned long long)table[i]);
  }
}

int main() {
  float h[16];
  for (int i = 0; i < 16; i++) h[i] = (float)(i + 1);
  CHECK(cudaMemcpyToSymbol(coef, h, sizeof(h)));
  unsigned long long zero = 0;
  CHECK(cudaMemcpyToSymbol(total, &zero, sizeof(zero)));
  use<<<1, 256>>>(256);
  CHECK_LAUNCH();
  unsigned long long got = 0;
  CHECK(cudaMemcpyFromSymbol(&got, total, sizeof(got)));
  unsigned long long want = 0;
  for (int i = 0; i < 256; i++) want += (unsigned long long)((i % 16 + 1) * i);
  REQUIRE(got == want, "total = %llu, want %llu", got, want);
  void* p = nullptr;
  CHECK(cudaGetSymbolAddress(&p, table));
  size_t size = 0;
  CHECK(cudaGetSymbolSize(&size, table));
  REQUIRE(size == sizeof(int) * 256, "cudaGetSymbolSize = %zu", size);
  int t[256];
  CHECK(cudaMemcpy(t, p, sizeof(t), cudaMemcpyDeviceToHost));
  for (int i = 0; i < 256; i++) REQUIRE(t[i] == (i % 16 + 1) * i, "table[%d] = %d", i, t[i]);
  int part[4];
  CHECK(cudaMemcpyFromSymbol(part, table, sizeof(part), 100 * sizeof(int)));
  REQUIRE(part[0] == t[100] && part[3] == t[103], "offset read %d %d", part[0], part[3]);
  std::printf("symbols: total %llu OK, checksum %016llx\n", got, fnv1a(t, sizeof(t)));
  return 0;
}
