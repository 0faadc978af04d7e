// device_query: what an application learns about its devices. Standard
// output holds what must not change under xgpu; memory sizes (a vGPU's
// quota, not the GPU's memory) and peer access (which depends on how the
// devices are split over servers) go to standard error. With --attrs it
// also prints every cudaDeviceAttr value of each device.
#include <cstring>
#include "common.h"

int main(int argc, char** argv) {
  bool attrs = argc > 1 && std::strcmp(argv[1], "--attrs") == 0;
  int rt = 0, drv = 0, n = 0;
  CHECK(cudaRuntimeGetVersion(&rt));
  CHECK(cudaDriverGetVersion(&drv));
  CHECK(cudaGetDeviceCount(&n));
  std::printf("runtime %d driver %d devices %d\n", rt, drv, n);
  for (int d = 0; d < n; d++) {
    cudaDeviceProp p;
    CHECK(cudaGetDeviceProperties(&p, d));
    char bus[32];
    CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), d));
    std::printf("device %d: %s, cc %d.%d, %d SMs, bus %s\n", d, p.name, p.major, p.minor, p.multiProcessorCount, bus);
    std::fprintf(stderr, "device %d: %zu bytes\n", d, p.totalGlobalMem);
    std::printf("  warp %d, maxThreadsPerBlock %d, maxThreadsDim %d %d %d, maxGridSize %d %d %d\n", p.warpSize,
                p.maxThreadsPerBlock, p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2], p.maxGridSize[0],
                p.maxGridSize[1], p.maxGridSize[2]);
    std::printf("  sharedMemPerBlock %zu, sharedMemPerBlockOptin %zu, sharedMemPerMultiprocessor %zu, regsPerBlock %d\n",
                p.sharedMemPerBlock, p.sharedMemPerBlockOptin, p.sharedMemPerMultiprocessor, p.regsPerBlock);
    std::printf("  l2CacheSize %d, memoryBusWidth %d, totalConstMem %zu, unifiedAddressing %d, managedMemory %d\n",
                p.l2CacheSize, p.memoryBusWidth, p.totalConstMem, p.unifiedAddressing, p.managedMemory);
    std::printf("  asyncEngineCount %d, concurrentKernels %d, pciBusID %d pciDeviceID %d pciDomainID %d, ECCEnabled %d\n",
                p.asyncEngineCount, p.concurrentKernels, p.pciBusID, p.pciDeviceID, p.pciDomainID, p.ECCEnabled);
    std::printf("  uuid ");
    for (int i = 0; i < 16; i++) std::printf("%02x", (unsigned char)p.uuid.bytes[i]);
    std::printf("\n");
    int v = 0;
    CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, d));
    REQUIRE(v == p.multiProcessorCount, "attribute SMs %d != prop %d", v, p.multiProcessorCount);
    CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, d));
    REQUIRE(v == p.major, "attribute major %d != prop %d", v, p.major);
    CHECK(cudaSetDevice(d));
    size_t fr = 0, tot = 0;
    CHECK(cudaMemGetInfo(&fr, &tot));
    REQUIRE(fr <= tot && tot <= p.totalGlobalMem, "memGetInfo %zu/%zu, totalGlobalMem %zu", fr, tot, p.totalGlobalMem);
    int lo = 0, hi = 0;
    CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    std::printf("  stream priorities %d..%d\n", lo, hi);
    for (int e = 0; e < n; e++) {
      if (e == d) continue;
      int can = 0;
      CHECK(cudaDeviceCanAccessPeer(&can, d, e));
      std::fprintf(stderr, "  peer %d: %d\n", e, can);
    }
    if (attrs) {
      for (int a = 1; a < 256; a++) {
        cudaError_t err = cudaDeviceGetAttribute(&v, (cudaDeviceAttr)a, d);
        if (err == cudaSuccess) std::printf("  attr %d %d\n", a, v);
        else (void)cudaGetLastError();
      }
    }
  }
  cudaError_t e = cudaSetDevice(n);
  REQUIRE(e == cudaErrorInvalidDevice, "cudaSetDevice(%d) = %d", n, (int)e);
  REQUIRE(cudaGetLastError() == cudaErrorInvalidDevice, "last error not kept");
  REQUIRE(cudaGetLastError() == cudaSuccess, "last error not cleared");
  std::printf("device_query: OK\n");
  return 0;
}
