// cooperative: a reduction in one kernel whose blocks wait for each other
// with cooperative_groups::this_grid().sync(): every block sums a strided
// slice, the first block sums the partial sums after a grid-wide barrier,
// and after a second barrier every block reads the total and writes a
// result that depends on it. The kernel is launched with
// cudaLaunchCooperativeKernel and with cudaLaunchKernelEx and the
// cooperative launch attribute, as many blocks as the occupancy API says
// fit at once; a grid far beyond that must be refused
// (cudaErrorCooperativeLaunchTooLarge, which CUDA reports at the launch
// and xgpu at the next synchronizing call). grid.sync() traps in a kernel
// not launched cooperatively, so a wrong launch cannot pass.
#include <cooperative_groups.h>
#include <vector>
#include "common.h"

namespace cg = cooperative_groups;

constexpr int kThreads = 256;

__global__ void reduce(const unsigned* in, size_t n, unsigned long long* partial, unsigned long long* total,
                       unsigned long long* out) {
  cg::grid_group grid = cg::this_grid();
  __shared__ unsigned long long s[kThreads];
  unsigned long long sum = 0;
  for (size_t i = grid.thread_rank(); i < n; i += grid.size()) sum += in[i];
  s[threadIdx.x] = sum;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
  grid.sync();  // every partial sum is written
  if (blockIdx.x == 0) {
    unsigned long long t = 0;
    for (unsigned b = threadIdx.x; b < gridDim.x; b += kThreads) t += partial[b];
    s[threadIdx.x] = t;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) *total = s[0];
  }
  grid.sync();  // the total is written
  unsigned long long t = *total;
  for (size_t i = grid.thread_rank(); i < n; i += grid.size()) out[i] = in[i] * 2ULL + (t % 1000003ULL);
}

int main() {
  const size_t n = 1 << 22;
  int dev = 0, coop = 0, sms = 0, perSM = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  REQUIRE(coop == 1, "device %d has no cooperative launches", dev);
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSM, reduce, kThreads, 0));
  REQUIRE(perSM >= 1, "occupancy %d", perSM);
  const unsigned blocks = (unsigned)(perSM * sms);
  std::fprintf(stderr, "cooperative: %d SMs x %d blocks of %d threads\n", sms, perSM, kThreads);

  std::vector<unsigned> h(n);
  unsigned long long want = 0;
  for (size_t i = 0; i < n; i++) {
    h[i] = (unsigned)((i * 2654435761u) >> 7);
    want += h[i];
  }
  unsigned* in;
  unsigned long long *partial, *total, *out;
  CHECK(cudaMalloc(&in, n * sizeof(unsigned)));
  CHECK(cudaMalloc(&partial, blocks * sizeof(unsigned long long)));
  CHECK(cudaMalloc(&total, sizeof(unsigned long long)));
  CHECK(cudaMalloc(&out, n * sizeof(unsigned long long)));
  CHECK(cudaMemcpy(in, h.data(), n * sizeof(unsigned), cudaMemcpyHostToDevice));
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

  size_t nn = n;
  void* args[] = {&in, &nn, &partial, &total, &out};
  std::vector<unsigned long long> got(n);
  unsigned long long sums[2], checks[2];
  for (int way = 0; way < 2; way++) {
    CHECK(cudaMemset(total, 0, sizeof(unsigned long long)));
    CHECK(cudaMemset(out, 0, n * sizeof(unsigned long long)));
    if (way == 0) {
      CHECK(cudaLaunchCooperativeKernel((const void*)reduce, dim3(blocks), dim3(kThreads), args, 0, st));
    } else {
      cudaLaunchAttribute attr[1];
      attr[0].id = cudaLaunchAttributeCooperative;
      attr[0].val.cooperative = 1;
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(blocks);
      cfg.blockDim = dim3(kThreads);
      cfg.stream = st;
      cfg.attrs = attr;
      cfg.numAttrs = 1;
      CHECK(cudaLaunchKernelEx(&cfg, reduce, (const unsigned*)in, nn, partial, total, out));
    }
    CHECK(cudaStreamSynchronize(st));
    CHECK(cudaMemcpy(&sums[way], total, sizeof(unsigned long long), cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(got.data(), out, n * sizeof(unsigned long long), cudaMemcpyDeviceToHost));
    REQUIRE(sums[way] == want, "launch %d: total %llu, want %llu", way, sums[way], want);
    for (size_t i = 0; i < n; i++)
      REQUIRE(got[i] == h[i] * 2ULL + (want % 1000003ULL), "launch %d: out[%zu] = %llu", way, i, got[i]);
    checks[way] = fnv1a(got.data(), n * sizeof(unsigned long long));
  }
  REQUIRE(checks[0] == checks[1], "the two launches differ");

  // 64 blocks per SM: more than any GPU holds at once.
  cudaError_t e = cudaLaunchCooperativeKernel((const void*)reduce, dim3(64 * sms), dim3(kThreads), args, 0, st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(st);
  (void)cudaGetLastError();
  REQUIRE(e == cudaErrorCooperativeLaunchTooLarge, "oversized cooperative grid: %s", cudaGetErrorName(e));
  CHECK(cudaStreamSynchronize(st));

  CHECK(cudaStreamDestroy(st));
  CHECK(cudaFree(in));
  CHECK(cudaFree(partial));
  CHECK(cudaFree(total));
  CHECK(cudaFree(out));
  std::printf("cooperative: sum %llu over %zu values, both launches OK, checksum %016llx; oversized grid: %s\n", want, n,
              checks[0], cudaGetErrorName(e));
  return 0;
}
