// peer_copy: for every ordered pair of devices, copies a 64 MiB buffer
// from one to the other (cudaMemcpyPeer, then cudaMemcpyPeerAsync and a
// cudaMemcpyDefault copy through unified addressing) and checks it.
#include <vector>
#include "common.h"

__global__ void fill(unsigned* p, unsigned seed, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) p[i] = (unsigned)i * 2654435761u + seed;
}

int main() {
  int ndev = 0;
  CHECK(cudaGetDeviceCount(&ndev));
  const size_t n = 16u << 20;  // 64 MiB of unsigned
  std::vector<unsigned*> buf(ndev), dst(ndev);
  for (int d = 0; d < ndev; d++) {
    CHECK(cudaSetDevice(d));
    CHECK(cudaMalloc(&buf[d], n * sizeof(unsigned)));
    CHECK(cudaMalloc(&dst[d], n * sizeof(unsigned)));
    fill<<<(unsigned)((n + 255) / 256), 256>>>(buf[d], 1000u * d, n);
    CHECK_LAUNCH();
    CHECK(cudaDeviceSynchronize());
  }
  std::vector<unsigned> got(n);
  int pairs = 0, peers = 0;
  unsigned long long sum = 0;
  for (int i = 0; i < ndev; i++) {
    for (int j = 0; j < ndev; j++) {
      if (i == j) continue;
      int can = 0;
      CHECK(cudaDeviceCanAccessPeer(&can, j, i));
      peers += can;
      int mode = pairs % 3;
      CHECK(cudaSetDevice(j));
      CHECK(cudaMemset(dst[j], 0, n * sizeof(unsigned)));
      CHECK(cudaDeviceSynchronize());
      if (mode == 0) {
        CHECK(cudaMemcpyPeer(dst[j], j, buf[i], i, n * sizeof(unsigned)));
      } else if (mode == 1) {
        CHECK(cudaSetDevice(i));
        cudaStream_t s;
        CHECK(cudaStreamCreate(&s));
        CHECK(cudaMemcpyPeerAsync(dst[j], j, buf[i], i, n * sizeof(unsigned), s));
        CHECK(cudaStreamSynchronize(s));
        CHECK(cudaStreamDestroy(s));
      } else {
        CHECK(cudaMemcpy(dst[j], buf[i], n * sizeof(unsigned), cudaMemcpyDefault));
      }
      CHECK(cudaSetDevice(j));
      CHECK(cudaMemcpy(got.data(), dst[j], n * sizeof(unsigned), cudaMemcpyDeviceToHost));
      for (size_t k = 0; k < n; k++) {
        unsigned want = (unsigned)k * 2654435761u + 1000u * i;
        REQUIRE(got[k] == want, "pair %d->%d mode %d: [%zu] = %u, want %u", i, j, mode, k, got[k], want);
      }
      sum ^= fnv1a(got.data(), 4096) + pairs;
      pairs++;
    }
  }
  for (int d = 0; d < ndev; d++) {
    CHECK(cudaFree(buf[d]));
    CHECK(cudaFree(dst[d]));
  }
  std::fprintf(stderr, "peer_copy: %d of %d pairs report peer access\n", peers, pairs);
  std::printf("peer_copy: %d ordered pairs of %d devices OK, checksum %016llx\n", pairs, ndev, sum);
  return 0;
}
