// matmul: C = A*B for 512x512 floats with a shared-memory tiled kernel,
// compared with a host product (integers small enough to be exact).
#include <vector>
#include "common.h"

constexpr int TILE = 16;

__global__ void matmul(const float* A, const float* B, float* C, int n) {
  __shared__ float as[TILE][TILE];
  __shared__ float bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0;
  for (int t = 0; t < n / TILE; t++) {
    as[threadIdx.y][threadIdx.x] = A[row * n + t * TILE + threadIdx.x];
    bs[threadIdx.y][threadIdx.x] = B[(t * TILE + threadIdx.y) * n + col];
    __syncthreads();
    for (int k = 0; k < TILE; k++) acc += as[threadIdx.y][k] * bs[k][threadIdx.x];
    __syncthreads();
  }
  C[row * n + col] = acc;
}

int main() {
  const int n = 512;
  std::vector<float> a(n * n), b(n * n), c(n * n), want(n * n, 0);
  for (int i = 0; i < n * n; i++) {
    a[i] = (float)(i % 13) - 6;
    b[i] = (float)(i % 7) - 3;
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++)
      for (int j = 0; j < n; j++) want[i * n + j] += a[i * n + k] * b[k * n + j];
  float *da, *db, *dc;
  size_t bytes = sizeof(float) * n * n;
  CHECK(cudaMalloc(&da, bytes));
  CHECK(cudaMalloc(&db, bytes));
  CHECK(cudaMalloc(&dc, bytes));
  CHECK(cudaMemcpy(da, a.data(), bytes, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b.data(), bytes, cudaMemcpyHostToDevice));
  dim3 block(TILE, TILE), grid(n / TILE, n / TILE);
  matmul<<<grid, block>>>(da, db, dc, n);
  CHECK_LAUNCH();
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaMemcpy(c.data(), dc, bytes, cudaMemcpyDeviceToHost));
  for (int i = 0; i < n * n; i++) REQUIRE(c[i] == want[i], "C[%d] = %f, want %f", i, c[i], want[i]);
  cudaFuncAttributes fa;
  CHECK(cudaFuncGetAttributes(&fa, matmul));
  REQUIRE(fa.sharedSizeBytes == 2 * TILE * TILE * sizeof(float), "static shared memory %zu", fa.sharedSizeBytes);
  REQUIRE(fa.maxThreadsPerBlock >= TILE * TILE, "maxThreadsPerBlock %d", fa.maxThreadsPerBlock);
  CHECK(cudaFree(da));
  CHECK(cudaFree(db));
  CHECK(cudaFree(dc));
  std::printf("matmul: %dx%d OK, shared %zu bytes, checksum %016llx\n", n, n, fa.sharedSizeBytes, fnv1a(c.data(), bytes));
  return 0;
}
