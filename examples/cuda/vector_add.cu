// vector_add: c = a*x + b*y + k over 16 Mi floats, with a struct argument
// passed by value, checked element by element on the host.
#include <vector>
#include "common.h"

struct Coeffs {
  float a;
  double b;  // forces 8-byte alignment inside the struct
  char tag;
};

__global__ void axpby(const float* x, const float* y, float* out, Coeffs c, int k, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) out[i] = c.a * x[i] + (float)c.b * y[i] + (float)k + (float)(c.tag - 'A');
}

int main() {
  const size_t n = 16u << 20;
  std::vector<float> x(n), y(n), out(n);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)(i % 1000);
    y[i] = (float)(i % 7);
  }
  float *dx, *dy, *dout;
  CHECK(cudaMalloc(&dx, n * sizeof(float)));
  CHECK(cudaMalloc(&dy, n * sizeof(float)));
  CHECK(cudaMalloc(&dout, n * sizeof(float)));
  CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemset(dout, 0xff, n * sizeof(float)));
  Coeffs c{2.0f, 3.0, 'C'};
  axpby<<<(unsigned)((n + 255) / 256), 256>>>(dx, dy, dout, c, 5, n);
  CHECK_LAUNCH();
  CHECK(cudaMemcpy(out.data(), dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < n; i++) {
    float want = 2.0f * x[i] + 3.0f * y[i] + 5.0f + 2.0f;
    REQUIRE(out[i] == want, "out[%zu] = %f, want %f", i, out[i], want);
  }
  CHECK(cudaFree(dx));
  CHECK(cudaFree(dy));
  CHECK(cudaFree(dout));
  std::printf("vector_add: %zu elements OK, checksum %016llx\n", n, fnv1a(out.data(), n * sizeof(float)));
  return 0;
}
