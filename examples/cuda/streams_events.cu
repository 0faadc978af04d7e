// streams_events: four streams each copy a chunk in from pinned memory,
// scale it, and copy it back; a fifth stream waits on their events and
// sums the chunks. Exercises cudaMallocHost, cudaMemcpyAsync, events,
// cudaStreamWaitEvent, queries and cudaEventElapsedTime.
#include "common.h"

__global__ void scale(float* p, float s, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] *= s;
}

__global__ void sum4(const float* p, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = p[i] + p[i + n] + p[i + 2 * n] + p[i + 3 * n];
}

int main() {
  const int kStreams = 4, n = 1 << 20;
  float *host, *res, *dev, *dsum;
  CHECK(cudaMallocHost(&host, sizeof(float) * n * kStreams));
  CHECK(cudaHostAlloc(&res, sizeof(float) * n, cudaHostAllocDefault));
  CHECK(cudaMalloc(&dev, sizeof(float) * n * kStreams));
  CHECK(cudaMalloc(&dsum, sizeof(float) * n));
  for (int i = 0; i < n * kStreams; i++) host[i] = (float)(i % 100);
  cudaStream_t s[kStreams + 1];
  cudaEvent_t done[kStreams], start, stop;
  for (int k = 0; k <= kStreams; k++) CHECK(cudaStreamCreateWithFlags(&s[k], cudaStreamNonBlocking));
  for (int k = 0; k < kStreams; k++) CHECK(cudaEventCreateWithFlags(&done[k], cudaEventDisableTiming));
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start, s[kStreams]));
  for (int k = 0; k < kStreams; k++) {
    float* d = dev + (size_t)k * n;
    CHECK(cudaMemcpyAsync(d, host + (size_t)k * n, sizeof(float) * n, cudaMemcpyHostToDevice, s[k]));
    scale<<<(n + 255) / 256, 256, 0, s[k]>>>(d, (float)(k + 1), n);
    CHECK_LAUNCH();
    CHECK(cudaEventRecord(done[k], s[k]));
    CHECK(cudaStreamWaitEvent(s[kStreams], done[k], 0));
  }
  sum4<<<(n + 255) / 256, 256, 0, s[kStreams]>>>(dev, dsum, n);
  CHECK_LAUNCH();
  CHECK(cudaMemcpyAsync(res, dsum, sizeof(float) * n, cudaMemcpyDeviceToHost, s[kStreams]));
  CHECK(cudaEventRecord(stop, s[kStreams]));
  CHECK(cudaEventSynchronize(stop));
  CHECK(cudaEventQuery(stop));
  CHECK(cudaStreamQuery(s[kStreams]));
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  REQUIRE(ms >= 0, "elapsed %f ms", ms);
  std::fprintf(stderr, "streams_events: %.3f ms\n", ms);
  // The copy back into res is done once stop has completed.
  for (int i = 0; i < n; i++) {
    float want = 0;
    for (int k = 0; k < kStreams; k++) want += (float)((k * n + i) % 100) * (float)(k + 1);
    REQUIRE(res[i] == want, "res[%d] = %f, want %f", i, res[i], want);
  }
  // A device-to-device copy on one stream, then a synchronous check.
  CHECK(cudaMemcpyAsync(dev, dsum, sizeof(float) * n, cudaMemcpyDeviceToDevice, s[0]));
  CHECK(cudaStreamSynchronize(s[0]));
  CHECK(cudaMemcpy(host, dev, sizeof(float) * n, cudaMemcpyDeviceToHost));
  for (int i = 0; i < n; i++) REQUIRE(host[i] == res[i], "copy[%d] = %f, want %f", i, host[i], res[i]);
  unsigned long long sum = fnv1a(res, sizeof(float) * n);
  for (int k = 0; k <= kStreams; k++) CHECK(cudaStreamDestroy(s[k]));
  for (int k = 0; k < kStreams; k++) CHECK(cudaEventDestroy(done[k]));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  CHECK(cudaFree(dev));
  CHECK(cudaFree(dsum));
  CHECK(cudaFreeHost(host));
  CHECK(cudaFreeHost(res));
  std::printf("streams_events: %d streams OK, checksum %016llx\n", kStreams, sum);
  return 0;
}
