// cudabench measures the figures of the project's benchmark table that a
// CUDA program sees: sync round trip, launch rate, copy throughput and peer
// copy bandwidth. Built with `nvcc -cudart=shared`, it runs natively and,
// unmodified, through xgpu's libcudart.so.13; examples/bench/run.sh runs
// both in one command and prints the ratios. Output: one "name value unit"
// line per figure.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "../cuda/common.h"

__global__ void empty_kernel() {}

using clk = std::chrono::steady_clock;

static double us_since(clk::time_point t0) {
  return std::chrono::duration<double, std::micro>(clk::now() - t0).count();
}

static void report(const char* name, double v, const char* unit) { std::printf("%s %.3f %s\n", name, v, unit); }

static void latency(const char* name, int iters, void (*fn)(void*), void* arg) {
  std::vector<double> t(iters);
  for (int i = 0; i < 20; i++) fn(arg);  // warm up
  for (int i = 0; i < iters; i++) {
    auto t0 = clk::now();
    fn(arg);
    t[i] = us_since(t0);
  }
  std::sort(t.begin(), t.end());
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s_median", name);
  report(buf, t[iters / 2], "us");
  std::snprintf(buf, sizeof buf, "%s_p99", name);
  report(buf, t[iters * 99 / 100], "us");
}

struct Bufs {
  void* d;
  void* h;
};

static void d2h4(void* a) {
  Bufs* b = static_cast<Bufs*>(a);
  CHECK(cudaMemcpy(b->h, b->d, 4, cudaMemcpyDeviceToHost));
}
static void h2d4(void* a) {
  Bufs* b = static_cast<Bufs*>(a);
  CHECK(cudaMemcpy(b->d, b->h, 4, cudaMemcpyHostToDevice));
}
static void launch_sync(void*) {
  empty_kernel<<<1, 1>>>();
  CHECK(cudaDeviceSynchronize());
}

static double copy_gbps(void* dst, const void* src, size_t n, cudaMemcpyKind kind, int reps) {
  CHECK(cudaMemcpy(dst, src, n, kind));  // warm up
  auto t0 = clk::now();
  for (int i = 0; i < reps; i++) CHECK(cudaMemcpy(dst, src, n, kind));
  return double(n) * reps / (us_since(t0) * 1e3);
}

int main() {
  int n = 0;
  CHECK(cudaGetDeviceCount(&n));
  REQUIRE(n >= 1, "no device");
  CHECK(cudaSetDevice(0));
  Bufs b{};
  CHECK(cudaMalloc(&b.d, 1 << 20));
  b.h = std::malloc(1 << 20);

  latency("d2h_4B", 2000, d2h4, &b);
  latency("h2d_4B", 2000, h2d4, &b);
  latency("launch_sync", 2000, launch_sync, nullptr);

  const int launches = 100000;
  empty_kernel<<<1, 1>>>();
  CHECK(cudaDeviceSynchronize());
  auto t0 = clk::now();
  for (int i = 0; i < launches; i++) empty_kernel<<<1, 1>>>();
  double enqueue = us_since(t0);
  CHECK(cudaDeviceSynchronize());
  double total = us_since(t0);
  report("launch_enqueue_rate", launches / enqueue * 1e6, "launches/s");
  report("launch_complete_rate", launches / total * 1e6, "launches/s");

  const size_t big = 256 << 20;
  void* dbig;
  CHECK(cudaMalloc(&dbig, big));
  void* pageable = std::malloc(big);
  std::fill_n(static_cast<char*>(pageable), big, 1);
  void* pinned;
  CHECK(cudaMallocHost(&pinned, big));
  report("h2d_256MiB_pageable", copy_gbps(dbig, pageable, big, cudaMemcpyHostToDevice, 4), "GB/s");
  report("d2h_256MiB_pageable", copy_gbps(pageable, dbig, big, cudaMemcpyDeviceToHost, 4), "GB/s");
  report("h2d_256MiB_pinned", copy_gbps(dbig, pinned, big, cudaMemcpyHostToDevice, 4), "GB/s");
  report("d2h_256MiB_pinned", copy_gbps(pinned, dbig, big, cudaMemcpyDeviceToHost, 4), "GB/s");

  if (n >= 2) {
    const size_t pn = size_t(1) << 30;
    void *p0, *p1;
    CHECK(cudaSetDevice(1));
    CHECK(cudaMalloc(&p1, pn));
    CHECK(cudaSetDevice(0));
    CHECK(cudaMalloc(&p0, pn));
    int can = 0;
    CHECK(cudaDeviceCanAccessPeer(&can, 0, 1));
    if (can) {
      cudaError_t e = cudaDeviceEnablePeerAccess(1, 0);
      REQUIRE(e == cudaSuccess || e == cudaErrorPeerAccessAlreadyEnabled, "enable peer access: %s", cudaGetErrorName(e));
    }
    CHECK(cudaMemcpyPeer(p1, 1, p0, 0, pn));  // warm up
    CHECK(cudaDeviceSynchronize());
    auto t1 = clk::now();
    const int reps = 4;
    for (int i = 0; i < reps; i++) CHECK(cudaMemcpyPeer(p1, 1, p0, 0, pn));
    CHECK(cudaDeviceSynchronize());
    report("peer_1GiB_0to1", double(pn) * reps / (us_since(t1) * 1e3), "GB/s");
  }
  return 0;
}
