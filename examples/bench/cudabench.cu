// cudabench measures the figures of the project's benchmark table that a
// CUDA program sees natively: sync round trip, call and launch rates, copy
// throughput and peer copy bandwidth. Built with
// `nvcc -O2 -arch=sm_90 -cudart=shared`, it runs in three ways:
//
//   cudabench                       every figure once, then exit; also runs
//                                   unmodified through xgpu's libcudart.so.13
//                                   (examples/bench/run.sh)
//   cudabench OP COUNT [BYTES [DEV [PEER]]]
//                                   one measurement, then exit
//   cudabench serve                 one measurement per line of standard
//                                   input ("OP COUNT BYTES DEV PEER"), each
//                                   answered by its figures and a line "ok"
//                                   (or "error message"); `xgpu bench
//                                   --backend cuda --native` drives it so, one
//                                   command per round, between xgpu's rounds
//
// Output: one "name value unit" line per figure. A latency operation prints
// one figure per call; the others print one figure for the whole command.
// Operations (the Native* constants of package bench):
//
//   info            devices N count
//   d2h-4B          COUNT timed cudaMemcpy of 4 B, device DEV to pageable host (us)
//   stream-sync     COUNT timed cudaStreamSynchronize of an idle stream (us)
//   memset-256B     COUNT cudaMemsetAsync of 256 B, then one stream sync (calls/s)
//   launch-empty    COUNT empty kernel launches <<<1, 1>>>, then one stream sync (calls/s)
//   h2d-pageable, h2d-pinned, d2h-pageable, d2h-pinned
//                   COUNT cudaMemcpy of BYTES between DEV and pageable (malloc)
//                   or pinned (cudaMallocHost) memory, then a device sync (GB/s)
//   peer            COUNT cudaMemcpyPeer of BYTES from DEV to PEER, each followed
//                   by a sync of DEV (GB/s)
//
// GB/s is 10^9 bytes per second. Buffers grow to the largest size asked
// for and are kept, so a measurement after the first of its size finds
// them allocated and faulted in. A CUDA error ends the process (exit 1,
// message on standard error); a malformed command is answered "error".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>
#include "../cuda/common.h"

__global__ void empty_kernel() {}

using clk = std::chrono::steady_clock;

static double us_since(clk::time_point t0) {
  return std::chrono::duration<double, std::micro>(clk::now() - t0).count();
}

static void report(const char* name, double v, const char* unit) { std::printf("%s %.3f %s\n", name, v, unit); }

// ---- state kept across commands ----------------------------------------

// Grown is a buffer that grows to the largest size asked for.
struct Grown {
  void* p = nullptr;
  size_t n = 0;
};

struct DevState {
  cudaStream_t stream = nullptr;
  void* small = nullptr;  // 4 KiB of device memory
  Grown buf;              // device memory for copies
  Grown peer_src;         // source of peer copies
};

static int g_devices = 0;
static std::map<int, DevState> g_dev;
static Grown g_pageable, g_pinned;
static unsigned char g_host4[4];
static std::map<std::pair<int, int>, bool> g_peer_enabled;

// fill writes a non-zero pattern, so that no copy reads pages never touched.
static void fill(void* p, size_t n) {
  unsigned char* b = static_cast<unsigned char*>(p);
  unsigned x = 2463534242u;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = static_cast<unsigned char>(x);
  }
}

static DevState& dev(int d) {
  CHECK(cudaSetDevice(d));
  DevState& s = g_dev[d];
  if (s.stream == nullptr) {
    CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    CHECK(cudaMalloc(&s.small, 4 << 10));
    CHECK(cudaMemset(s.small, 1, 4 << 10));
  }
  return s;
}

static void* device_buf(Grown& g, size_t n) {
  if (g.n < n) {
    if (g.p) CHECK(cudaFree(g.p));
    CHECK(cudaMalloc(&g.p, n));
    CHECK(cudaMemset(g.p, 1, n));
    g.n = n;
  }
  return g.p;
}

static void* pageable_buf(size_t n) {
  if (g_pageable.n < n) {
    std::free(g_pageable.p);
    g_pageable.p = std::malloc(n);
    REQUIRE(g_pageable.p != nullptr, "malloc %zu bytes", n);
    fill(g_pageable.p, n);
    g_pageable.n = n;
  }
  return g_pageable.p;
}

static void* pinned_buf(size_t n) {
  if (g_pinned.n < n) {
    if (g_pinned.p) CHECK(cudaFreeHost(g_pinned.p));
    CHECK(cudaMallocHost(&g_pinned.p, n));
    fill(g_pinned.p, n);
    g_pinned.n = n;
  }
  return g_pinned.p;
}

// ---- operations -------------------------------------------------------------

struct Cmd {
  char op[32];
  long long count, bytes;
  int dev, peer;
};

static void lat_d2h4(const Cmd& c) {
  DevState& s = dev(c.dev);
  for (long long i = 0; i < c.count; i++) {
    auto t0 = clk::now();
    CHECK(cudaMemcpy(g_host4, s.small, 4, cudaMemcpyDeviceToHost));
    report(c.op, us_since(t0), "us");
  }
}

static void lat_stream_sync(const Cmd& c) {
  DevState& s = dev(c.dev);
  for (long long i = 0; i < c.count; i++) {
    auto t0 = clk::now();
    CHECK(cudaStreamSynchronize(s.stream));
    report(c.op, us_since(t0), "us");
  }
}

static void rate_memset(const Cmd& c) {
  DevState& s = dev(c.dev);
  CHECK(cudaStreamSynchronize(s.stream));
  auto t0 = clk::now();
  for (long long i = 0; i < c.count; i++) CHECK(cudaMemsetAsync(s.small, int(i & 0xff), 256, s.stream));
  CHECK(cudaStreamSynchronize(s.stream));
  report(c.op, double(c.count) / us_since(t0) * 1e6, "calls/s");
}

static void rate_launch(const Cmd& c) {
  DevState& s = dev(c.dev);
  CHECK(cudaStreamSynchronize(s.stream));
  auto t0 = clk::now();
  for (long long i = 0; i < c.count; i++) empty_kernel<<<1, 1, 0, s.stream>>>();
  CHECK_LAUNCH();
  CHECK(cudaStreamSynchronize(s.stream));
  report(c.op, double(c.count) / us_since(t0) * 1e6, "calls/s");
}

static void copy(const Cmd& c, bool h2d, bool pinned) {
  size_t n = size_t(c.bytes);
  DevState& s = dev(c.dev);
  void* d = device_buf(s.buf, n);
  void* h = pinned ? pinned_buf(n) : pageable_buf(n);
  CHECK(cudaDeviceSynchronize());
  auto t0 = clk::now();
  for (long long i = 0; i < c.count; i++) {
    if (h2d) {
      CHECK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    } else {
      CHECK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
    }
  }
  CHECK(cudaDeviceSynchronize());
  report(c.op, double(n) * double(c.count) / (us_since(t0) * 1e3), "GB/s");
}

static void peer(const Cmd& c) {
  size_t n = size_t(c.bytes);
  void* dst = device_buf(dev(c.peer).buf, n);
  DevState& s = dev(c.dev);  // current device: the source
  void* src = device_buf(s.peer_src, n);
  auto key = std::make_pair(c.dev, c.peer);
  if (!g_peer_enabled.count(key)) {
    int can = 0;
    CHECK(cudaDeviceCanAccessPeer(&can, c.dev, c.peer));
    if (can) {
      cudaError_t e = cudaDeviceEnablePeerAccess(c.peer, 0);
      REQUIRE(e == cudaSuccess || e == cudaErrorPeerAccessAlreadyEnabled, "enable peer access %d -> %d: %s", c.dev,
              c.peer, cudaGetErrorName(e));
      cudaGetLastError();  // clear cudaErrorPeerAccessAlreadyEnabled
    }
    g_peer_enabled[key] = can != 0;
  }
  CHECK(cudaDeviceSynchronize());
  auto t0 = clk::now();
  for (long long i = 0; i < c.count; i++) {
    CHECK(cudaMemcpyPeer(dst, c.peer, src, c.dev, n));
    CHECK(cudaDeviceSynchronize());
  }
  report(c.op, double(n) * double(c.count) / (us_since(t0) * 1e3), "GB/s");
}

// run executes one command; it returns an error message for a malformed
// one, or nullptr once its figures are printed.
static const char* run(const Cmd& c) {
  static char msg[160];
  std::string op = c.op;
  if (op == "info") {
    report("devices", g_devices, "count");
    return nullptr;
  }
  const bool copy_op = op == "h2d-pageable" || op == "h2d-pinned" || op == "d2h-pageable" || op == "d2h-pinned";
  const bool known = copy_op || op == "peer" || op == "d2h-4B" || op == "stream-sync" || op == "memset-256B" ||
                     op == "launch-empty";
  if (!known) {
    std::snprintf(msg, sizeof msg, "unknown operation %.32s", c.op);
    return msg;
  }
  if (c.count <= 0 || c.count > 100000000LL) return "count outside 1..100000000";
  if ((copy_op || op == "peer") && (c.bytes <= 0 || c.bytes > (4LL << 30))) return "bytes outside 1..4GiB";
  if (c.dev < 0 || c.dev >= g_devices) {
    std::snprintf(msg, sizeof msg, "device %d outside 0..%d", c.dev, g_devices - 1);
    return msg;
  }
  if (op == "peer" && (c.peer < 0 || c.peer >= g_devices || c.peer == c.dev)) {
    std::snprintf(msg, sizeof msg, "peer device %d: want another of 0..%d", c.peer, g_devices - 1);
    return msg;
  }
  if (op == "d2h-4B") lat_d2h4(c);
  if (op == "stream-sync") lat_stream_sync(c);
  if (op == "memset-256B") rate_memset(c);
  if (op == "launch-empty") rate_launch(c);
  if (op == "h2d-pageable") copy(c, true, false);
  if (op == "h2d-pinned") copy(c, true, true);
  if (op == "d2h-pageable") copy(c, false, false);
  if (op == "d2h-pinned") copy(c, false, true);
  if (op == "peer") peer(c);
  return nullptr;
}

// parse reads "OP COUNT [BYTES [DEV [PEER]]]" (missing numbers are 0).
static bool parse(const char* line, Cmd* c) {
  *c = Cmd{};
  char extra[2];
  int n = std::sscanf(line, "%31s %lld %lld %d %d %1s", c->op, &c->count, &c->bytes, &c->dev, &c->peer, extra);
  return n >= 1 && n <= 5;
}

static int serve() {
  char line[256];
  while (std::fgets(line, sizeof line, stdin)) {
    if (!std::strchr(line, '\n') && !std::feof(stdin)) {
      std::printf("error line too long\n");
      int ch;
      while ((ch = std::getchar()) != '\n' && ch != EOF) {
      }
    } else {
      Cmd c;
      const char* err = parse(line, &c) ? run(c) : "want: OP COUNT BYTES DEV PEER";
      if (err) {
        std::printf("error %s\n", err);
      } else {
        std::printf("ok\n");
      }
    }
    std::fflush(stdout);
  }
  return 0;
}

// ---- the default run: every figure once -------------------------------------

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

static int all_figures(int n) {
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

int main(int argc, char** argv) {
  CHECK(cudaGetDeviceCount(&g_devices));
  REQUIRE(g_devices >= 1, "no device");
  if (argc == 1) return all_figures(g_devices);
  if (argc == 2 && std::strcmp(argv[1], "serve") == 0) return serve();
  std::string line;
  for (int i = 1; i < argc; i++) {
    line += argv[i];
    line += ' ';
  }
  Cmd c;
  const char* err = parse(line.c_str(), &c) ? run(c) : "want: OP COUNT [BYTES [DEV [PEER]]]";
  if (err) {
    std::fprintf(stderr, "cudabench: %s\n", err);
    return 2;
  }
  return 0;
}
