/*
 * shim_test.c exercises libcudart.so.13 (the xgpu facade) as a CUDA
 * program does, against the device map in XGPU_DEVICE_MAP. It declares
 * the few CUDA prototypes it calls itself (CI has no CUDA toolkit), with
 * the toolkit's ABI. It prints one line per check and "PASS" at the end;
 * any failure prints "FAIL" and exits 1.
 *
 * Usage: shim_test [all | noconfig | visible1 | attrs SMS MAJOR MINOR]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../facade/cudart_structs.h"

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUkern_st *cudaKernel_t;
typedef struct { unsigned x, y, z; } dim3;

cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDevice(int *);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *, int);
cudaError_t cudaDeviceGetAttribute(int *, int, int);
cudaError_t cudaDeviceGetPCIBusId(char *, int, int);
cudaError_t cudaDeviceCanAccessPeer(int *, int, int);
cudaError_t cudaDeviceEnablePeerAccess(int, unsigned);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDriverGetVersion(int *);
cudaError_t cudaRuntimeGetVersion(int *);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorName(cudaError_t);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMemGetInfo(size_t *, size_t *);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, int, cudaStream_t);
cudaError_t cudaMemcpy2D(void *, size_t, const void *, size_t, size_t, size_t, int);
cudaError_t cudaMemset(void *, int, size_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);
cudaError_t cudaMemcpyPeer(void *, int, const void *, int, size_t);
cudaError_t cudaMallocHost(void **, size_t);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *, const void *);
cudaError_t cudaStreamCreate(cudaStream_t *);
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *, unsigned, int);
cudaError_t cudaStreamGetPriority(cudaStream_t, int *);
cudaError_t cudaStreamGetDevice(cudaStream_t, int *);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamQuery(cudaStream_t);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaEventCreate(cudaEvent_t *);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaEventQuery(cudaEvent_t);
cudaError_t cudaEventElapsedTime(float *, cudaEvent_t, cudaEvent_t);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaGraphicsUnregisterResource(void *);
void **__cudaRegisterFatBinary(void *);
void __cudaRegisterFatBinaryEnd(void **);
void __cudaUnregisterFatBinary(void **);
void __cudaRegisterFunction(void **, const char *, char *, const char *, int, void *, void *, void *, void *, int *);
unsigned __cudaPushCallConfiguration(dim3, dim3, size_t, cudaStream_t);
cudaError_t __cudaPopCallConfiguration(dim3 *, dim3 *, size_t *, void *);
cudaError_t __cudaGetKernel(cudaKernel_t *, const void *);
cudaError_t cudaFuncGetName(const char **, const void *);
cudaError_t __cudaLaunchKernel(cudaKernel_t, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *, const void *);

#include "check.h"

#define OK(call)                                                                             \
  do {                                                                                       \
    cudaError_t e_ = (call);                                                                 \
    CHECK(e_ == 0, "%s = %d (%s: %s)", #call, e_, cudaGetErrorName(e_), cudaGetErrorString(e_)); \
  } while (0)

enum { H2H, H2D, D2H, D2D, DEFAULT };

static void *other_thread(void *arg) {
  int *dev = arg;
  /* A new thread starts on device 0, whatever other threads chose. */
  cudaGetDevice(dev);
  return NULL;
}

static void devices(void) {
  int n = -1, rt = 0, drv = 0;
  OK(cudaGetDeviceCount(&n));
  CHECK(n == 2, "device count %d", n);
  OK(cudaRuntimeGetVersion(&rt));
  OK(cudaDriverGetVersion(&drv));
  CHECK(rt == 13000 && drv == 13000, "versions %d %d", rt, drv);
  struct cudaDeviceProp p;
  memset(&p, 0xff, sizeof p);
  OK(cudaGetDeviceProperties(&p, 1));
  CHECK(strcmp(p.name, "xgpu host device") == 0, "name %s", p.name);
  CHECK(p.major == 9 && p.minor == 0, "cc %d.%d", p.major, p.minor);
  CHECK(p.totalGlobalMem == (1u << 30), "totalGlobalMem %zu", p.totalGlobalMem);
  CHECK(p.warpSize == 32 && p.maxThreadsPerBlock == 1024 && p.sharedMemPerBlock == 49152, "limits %d %d %zu", p.warpSize,
        p.maxThreadsPerBlock, p.sharedMemPerBlock);
  CHECK(p.unifiedAddressing == 1 && p.reserved[0] == 0, "unifiedAddressing %d", p.unifiedAddressing);
  int v = 0;
  OK(cudaDeviceGetAttribute(&v, 16 /* MultiProcessorCount */, 0));
  CHECK(v == p.multiProcessorCount && v > 0, "SMs %d vs %d", v, p.multiProcessorCount);
  OK(cudaDeviceGetAttribute(&v, 75 /* ComputeCapabilityMajor */, 0));
  CHECK(v == 9, "major %d", v);
  CHECK(cudaDeviceGetAttribute(&v, 200, 0) == 1, "unknown attribute accepted");
  (void)cudaGetLastError();
  char bus[32];
  OK(cudaDeviceGetPCIBusId(bus, sizeof bus, 0));
  printf("     device 0: %s, bus '%s'\n", p.name, bus);

  /* Current device and errors, per thread. */
  int d = -1;
  OK(cudaGetDevice(&d));
  CHECK(d == 0, "initial device %d", d);
  CHECK(cudaSetDevice(2) == 101, "cudaSetDevice(2) not cudaErrorInvalidDevice");
  CHECK(cudaPeekAtLastError() == 101, "peek %d", cudaPeekAtLastError());
  CHECK(cudaGetLastError() == 101, "last error not kept");
  CHECK(cudaGetLastError() == 0, "last error not cleared");
  CHECK(strcmp(cudaGetErrorName(101), "cudaErrorInvalidDevice") == 0, "name %s", cudaGetErrorName(101));
  CHECK(strcmp(cudaGetErrorString(1), "invalid argument") == 0, "string %s", cudaGetErrorString(1));
  CHECK(strcmp(cudaGetErrorName(123456), "unrecognized error code") == 0, "unknown %s", cudaGetErrorName(123456));
  OK(cudaSetDevice(1));
  OK(cudaGetDevice(&d));
  CHECK(d == 1, "device %d after cudaSetDevice(1)", d);
  pthread_t t;
  int other = -1;
  pthread_create(&t, NULL, other_thread, &other);
  pthread_join(t, NULL);
  CHECK(other == 0, "other thread's device %d", other);
  int can = -1;
  OK(cudaDeviceCanAccessPeer(&can, 0, 1));
  CHECK(can == 1, "devices of one server with NVLink: can access peer %d", can);
  OK(cudaDeviceEnablePeerAccess(0, 0));
  CHECK(cudaDeviceEnablePeerAccess(0, 0) == 704, "second enable not cudaErrorPeerAccessAlreadyEnabled");
  (void)cudaGetLastError();
  OK(cudaSetDevice(0));
}

static void memory(void) {
  enum { N = 1 << 20 };
  unsigned char *h = malloc(N), *back = malloc(N);
  for (int i = 0; i < N; i++) h[i] = (unsigned char)(i * 7);
  void *d0 = NULL, *d1 = NULL;
  OK(cudaMalloc(&d0, N));
  CHECK(d0 != NULL && (uintptr_t)d0 % 256 == 0, "cudaMalloc gave %p", d0);
  size_t fr = 0, tot = 0;
  OK(cudaMemGetInfo(&fr, &tot));
  CHECK(tot == (1u << 30) && fr <= tot - N, "free %zu total %zu", fr, tot);
  OK(cudaMemcpy(d0, h, N, H2D));
  OK(cudaMemcpy(back, d0, N, D2H));
  CHECK(memcmp(h, back, N) == 0, "H2D/D2H round trip differs");
  OK(cudaMemset((char *)d0 + 100, 0xab, 1000));
  OK(cudaMemcpy(back, d0, N, DEFAULT));
  CHECK(back[99] == h[99] && back[100] == 0xab && back[1099] == 0xab && back[1100] == h[1100], "memset %x %x %x %x",
        back[99], back[100], back[1099], back[1100]);

  /* Peer and unified-addressing copies between the two devices. */
  OK(cudaSetDevice(1));
  OK(cudaMalloc(&d1, N));
  OK(cudaSetDevice(0));
  OK(cudaMemcpyPeer(d1, 1, d0, 0, N));
  memset(back, 0, N);
  OK(cudaMemcpy(back, d1, N, D2H));
  CHECK(back[100] == 0xab && back[5] == h[5], "peer copy %x %x", back[100], back[5]);
  OK(cudaMemcpy(d1, h, N, DEFAULT));
  OK(cudaMemcpy(d0, d1, N, DEFAULT));
  OK(cudaMemcpy(back, d0, N, D2H));
  CHECK(memcmp(h, back, N) == 0, "default-kind copies differ");

  /* Pitched copy: 16 rows of 100 bytes out of 256-byte rows. */
  unsigned char rows[16 * 256];
  for (int i = 0; i < (int)sizeof rows; i++) rows[i] = (unsigned char)i;
  OK(cudaMemcpy2D(d0, 100, rows, 256, 100, 16, H2D));
  OK(cudaMemcpy(back, d0, 1600, D2H));
  CHECK(back[0] == rows[0] && back[100] == rows[256] && back[1599] == rows[15 * 256 + 99], "2D copy %d %d", back[100],
        back[1599]);

  /* Pointer attributes of device, pinned and ordinary memory. */
  struct cudaPointerAttributes a;
  OK(cudaPointerGetAttributes(&a, (char *)d1 + 10));
  CHECK(a.type == 2 && a.device == 1 && a.devicePointer == (char *)d1 + 10, "device pointer: type %d device %d", a.type,
        a.device);
  void *pinned = NULL;
  OK(cudaMallocHost(&pinned, 4096));
  OK(cudaPointerGetAttributes(&a, pinned));
  CHECK(a.type == 1 && a.hostPointer == pinned, "pinned: type %d", a.type);
  OK(cudaPointerGetAttributes(&a, h));
  CHECK(a.type == 0 && a.device == -2, "pageable: type %d device %d", a.type, a.device);
  OK(cudaFreeHost(pinned));

  /* Bad pointers fail at the call and change nothing. */
  CHECK(cudaMemcpy(back, (char *)d0 + N - 10, 100, D2H) == 1, "copy past the allocation accepted");
  CHECK(cudaFree((char *)d0 + 1) == 1, "free of an inner pointer accepted");
  CHECK(cudaMemcpy(d0, h, 16, D2H) == 1, "wrong direction accepted");
  (void)cudaGetLastError();
  OK(cudaFree(d0));
  OK(cudaFree(d1));
  OK(cudaFree(NULL));
  free(h);
  free(back);
}

static void streams(void) {
  enum { N = 256 << 10 };
  unsigned char *h = malloc(N), *back = malloc(N);
  for (int i = 0; i < N; i++) h[i] = (unsigned char)(i ^ 0x5a);
  void *d = NULL;
  OK(cudaMalloc(&d, 2 * N));
  cudaStream_t s1, s2;
  OK(cudaStreamCreate(&s1));
  OK(cudaStreamCreateWithPriority(&s2, 1, -3));
  int prio = 0, dev = -1;
  OK(cudaStreamGetPriority(s2, &prio));
  CHECK(prio == -3, "priority %d", prio);
  OK(cudaStreamGetDevice(s2, &dev));
  CHECK(dev == 0, "stream device %d", dev);
  cudaEvent_t start, copied, end;
  OK(cudaEventCreate(&start));
  OK(cudaEventCreate(&copied));
  OK(cudaEventCreate(&end));
  OK(cudaEventRecord(start, s1));
  OK(cudaMemcpyAsync(d, h, N, H2D, s1));
  OK(cudaMemsetAsync((char *)d + N, 0x11, N, s1));
  OK(cudaEventRecord(copied, s1));
  OK(cudaStreamWaitEvent(s2, copied, 0));
  OK(cudaMemcpyAsync(back, d, N, D2H, s2));
  OK(cudaEventRecord(end, s2));
  OK(cudaEventSynchronize(end));
  OK(cudaEventQuery(end));
  CHECK(memcmp(h, back, N) == 0, "stream-ordered copy differs");
  OK(cudaMemcpyAsync(back, (char *)d + N, N, D2H, s2));
  OK(cudaStreamSynchronize(s2));
  OK(cudaStreamQuery(s2));
  CHECK(back[0] == 0x11 && back[N - 1] == 0x11, "memsetAsync %x", back[0]);
  float ms = -1;
  OK(cudaEventElapsedTime(&ms, start, copied));
  CHECK(ms >= 0, "elapsed %f", ms);
  OK(cudaDeviceSynchronize());
  OK(cudaStreamDestroy(s1));
  OK(cudaStreamDestroy(s2));
  CHECK(cudaStreamSynchronize(s1) == 400, "destroyed stream usable");
  (void)cudaGetLastError();
  OK(cudaEventDestroy(start));
  OK(cudaEventDestroy(copied));
  OK(cudaEventDestroy(end));
  OK(cudaFree(d));
  free(h);
  free(back);
}

/* A fat binary as nvcc lays it out: the wrapper, and a container with one
 * PTX entry (the host backend cannot run it; registration only reads it). */
static const unsigned long long fatbin_data[] = {
    0x00100001ba55ed50ULL, 0x0000000000000058ULL, /* header: magic, version 1, header 16; 88 bytes of entries */
    0x0000005001010001ULL, 0x0000000000000008ULL, /* PTX entry, header 80 bytes; 8 bytes of payload */
    0x0000000000000000ULL, 0x0000005a00090000ULL, /* PTX 9.0, sm 90 */
    0x0000000000000000ULL, 0x0000000000000011ULL, /* flags: 64-bit, Linux */
    0, 0, 0, 0, 0x2e76657273696f6eULL /* payload ".version" */};
static const struct {
  int magic, version;
  const unsigned long long *data;
  void *file;
} wrapper = {0x466243b1, 1, fatbin_data, 0};
static void host_stub(void) {}
static void unregistered_stub(void) {}

static void kernels(void) {
  void **h = __cudaRegisterFatBinary((void *)&wrapper);
  CHECK(h != NULL, "registration handle");
  __cudaRegisterFunction(h, (const char *)host_stub, (char *)"_Z4stubv", "_Z4stubv", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFatBinaryEnd(h);
  cudaKernel_t k = 0;
  OK(__cudaGetKernel(&k, (const void *)host_stub));
  CHECK(k != 0, "kernel handle");
  const char *name = NULL;
  OK(cudaFuncGetName(&name, (const void *)host_stub));
  CHECK(name && strcmp(name, "_Z4stubv") == 0, "name %s", name ? name : "(null)");
  CHECK(__cudaGetKernel(&k, (const void *)unregistered_stub) == 98, "unregistered stub found");
  (void)cudaGetLastError();

  /* The launch configuration stack nvcc's <<<>>> uses. */
  dim3 g = {4, 2, 1}, b = {128, 1, 1}, g2 = {0, 0, 0}, b2 = {0, 0, 0};
  size_t shmem = 0;
  cudaStream_t st = 0;
  CHECK(__cudaPushCallConfiguration(g, b, 64, (cudaStream_t)0x1234) == 0, "push");
  CHECK(__cudaPushCallConfiguration(b, g, 32, 0) == 0, "push");
  OK(__cudaPopCallConfiguration(&g2, &b2, &shmem, &st));
  CHECK(g2.x == 128 && b2.x == 4 && shmem == 32 && st == 0, "inner pop");
  OK(__cudaPopCallConfiguration(&g2, &b2, &shmem, &st));
  CHECK(g2.x == 4 && g2.y == 2 && b2.x == 128 && shmem == 64 && st == (cudaStream_t)0x1234, "outer pop");
  CHECK(__cudaPopCallConfiguration(&g2, &b2, &shmem, &st) == 52, "pop of an empty stack not cudaErrorMissingConfiguration");
  (void)cudaGetLastError();
  __cudaUnregisterFatBinary(h);
  CHECK(__cudaGetKernel(&k, (const void *)host_stub) == 98, "kernel outlived its fat binary");
  (void)cudaGetLastError();
}

/* Kernels of the host backend's built-in library, registered as nvcc
 * registers a fat binary, and launched as nvcc's <<<>>> and
 * cudaLaunchKernel launch. */
static const char host_module[] = "xgpu-host-module v1\nkernel fill_u32\nkernel add_one_u32\n";
static const struct {
  int magic, version;
  const char *data;
  void *file;
} host_wrapper = {0x466243b1, 1, host_module, 0};
static void fill_u32_stub(void) {}
static void add_one_u32_stub(void) {}

/* What nvcc's host stub for add_one_u32<<<grid, block, 0, s>>>(p, n) does. */
static void add_one_u32(unsigned *p, unsigned n) {
  void *args[2] = {&p, &n};
  static cudaKernel_t handle;
  static int looked_up;
  if (!looked_up) looked_up = __cudaGetKernel(&handle, (const void *)add_one_u32_stub) == 0;
  dim3 grid, block;
  size_t shmem;
  cudaStream_t s;
  if (__cudaPopCallConfiguration(&grid, &block, &shmem, &s) != 0) return;
  (void)__cudaLaunchKernel(handle, grid, block, args, shmem, s);
}

static void launches(void) {
  void **h = __cudaRegisterFatBinary((void *)&host_wrapper);
  __cudaRegisterFunction(h, (const char *)fill_u32_stub, (char *)"fill_u32", "fill_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFunction(h, (const char *)add_one_u32_stub, (char *)"add_one_u32", "add_one_u32", -1, 0, 0, 0, 0, 0);
  __cudaRegisterFatBinaryEnd(h);
  enum { N = 10000, LAUNCHES = 1000 };
  unsigned *d = NULL, *back = malloc(N * sizeof *back);
  OK(cudaSetDevice(1));
  OK(cudaMalloc((void **)&d, N * sizeof *d));
  unsigned n = N, v = 41;
  void *args[3] = {&d, &n, &v};
  dim3 grid = {(N + 255) / 256, 1, 1}, block = {256, 1, 1};
  OK(cudaLaunchKernel((const void *)fill_u32_stub, grid, block, args, 0, 0));
  cudaStream_t s;
  OK(cudaStreamCreate(&s));
  for (int i = 0; i < LAUNCHES; i++) {
    if (__cudaPushCallConfiguration(grid, block, 0, s) == 0) add_one_u32(d, N);
  }
  OK(cudaGetLastError());
  OK(cudaStreamSynchronize(s));
  OK(cudaMemcpy(back, d, N * sizeof *back, D2H));
  int bad = 0;
  for (int i = 0; i < N; i++) bad += back[i] != 41 + LAUNCHES;
  CHECK(bad == 0, "%d of %d elements wrong: [0] = %u, want %u", bad, N, back[0], 41 + LAUNCHES);
  struct cudaFuncAttributes fa;
  OK(cudaFuncGetAttributes(&fa, (const void *)fill_u32_stub));
  CHECK(fa.maxThreadsPerBlock > 0, "maxThreadsPerBlock %d", fa.maxThreadsPerBlock);
  /* A launch with too few threads leaves the rest alone. */
  dim3 one = {1, 1, 1};
  v = 7;
  OK(cudaLaunchKernel((const void *)fill_u32_stub, one, one, args, 0, s));
  OK(cudaMemcpy(back, d, 2 * sizeof *back, D2H));
  CHECK(back[0] == 7 && back[1] == 41 + LAUNCHES, "partial fill %u %u", back[0], back[1]);
  CHECK(cudaLaunchKernel((const void *)fill_u32_stub, (dim3){0, 1, 1}, one, args, 0, s) == 9,
        "zero grid not cudaErrorInvalidConfiguration");
  (void)cudaGetLastError();
  OK(cudaStreamDestroy(s));
  OK(cudaFree(d));

  /* Bulk copies (two 8 MiB pieces) around a kernel, in the legacy stream's
   * order: the kernel sees all of the copy, the copy back all of the
   * kernel's work. */
  enum { BIG = 3 << 20 };
  unsigned *hb = malloc(BIG * sizeof *hb), *db = NULL, nbig = BIG;
  for (unsigned i = 0; i < BIG; i++) hb[i] = i * 3u;
  OK(cudaMalloc((void **)&db, BIG * sizeof *db));
  OK(cudaMemcpy(db, hb, BIG * sizeof *hb, H2D));
  void *bargs[2] = {&db, &nbig};
  dim3 bgrid = {(BIG + 255) / 256, 1, 1};
  OK(cudaLaunchKernel((const void *)add_one_u32_stub, bgrid, block, bargs, 0, 0));
  memset(hb, 0, BIG * sizeof *hb);
  OK(cudaMemcpy(hb, db, BIG * sizeof *hb, D2H));
  bad = 0;
  for (unsigned i = 0; i < BIG; i++) bad += hb[i] != i * 3u + 1;
  CHECK(bad == 0, "%d of %d elements wrong after bulk copy, kernel, bulk copy: [1] = %u", bad, BIG, hb[1]);
  OK(cudaFree(db));
  free(hb);
  OK(cudaSetDevice(0));
  __cudaUnregisterFatBinary(h);
  free(back);
}

static void unsupported(void) {
  CHECK(cudaGraphicsUnregisterResource(NULL) == 801, "cudaGraphicsUnregisterResource not cudaErrorNotSupported");
  CHECK(cudaGraphicsUnregisterResource(NULL) == 801, "second call");
  CHECK(cudaGetLastError() == 801, "not recorded");
}

/* server_attributes checks that properties and attributes are those the
 * server reports for its GPUs (sms SMs, compute capability major.minor)
 * while the device map claims others. */
static void server_attributes(int sms, int major, int minor) {
  for (int dev = 0; dev < 2; dev++) {
    struct cudaDeviceProp p;
    memset(&p, 0, sizeof p);
    OK(cudaGetDeviceProperties(&p, dev));
    CHECK(p.multiProcessorCount == sms, "device %d: multiProcessorCount %d, want %d", dev, p.multiProcessorCount, sms);
    CHECK(p.major == major && p.minor == minor, "device %d: cc %d.%d, want %d.%d", dev, p.major, p.minor, major, minor);
    int v = -1;
    OK(cudaDeviceGetAttribute(&v, 16, dev)); /* cudaDevAttrMultiProcessorCount */
    CHECK(v == sms, "device %d: attribute 16 = %d, want %d", dev, v, sms);
    OK(cudaDeviceGetAttribute(&v, 75, dev)); /* cudaDevAttrComputeCapabilityMajor */
    CHECK(v == major, "device %d: attribute 75 = %d, want %d", dev, v, major);
    CHECK(cudaDeviceGetAttribute(&v, 200, dev) == 1, "device %d: attribute 200, which the GPU lacks, answered", dev);
    CHECK(cudaGetLastError() == 1, "the refusal was not recorded");
  }
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "all";
  if (strcmp(mode, "noconfig") == 0) {
    int n = -1;
    CHECK(cudaGetDeviceCount(&n) == 100 && n == 0, "no devices configured: count %d", n);
    void *p = NULL;
    CHECK(cudaMalloc(&p, 16) == 100, "cudaMalloc without devices");
  } else if (strcmp(mode, "attrs") == 0 && argc == 5) {
    server_attributes(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
  } else if (strcmp(mode, "visible1") == 0) {
    int n = -1;
    OK(cudaGetDeviceCount(&n));
    CHECK(n == 1, "CUDA_VISIBLE_DEVICES=1: count %d", n);
    void *p = NULL;
    OK(cudaMalloc(&p, 4096));
    struct cudaPointerAttributes a;
    OK(cudaPointerGetAttributes(&a, p));
    CHECK(a.device == 0, "device %d", a.device);
    OK(cudaFree(p));
  } else {
    devices();
    memory();
    streams();
    kernels();
    launches();
    unsupported();
  }
  if (failures) {
    printf("FAIL: %d checks failed\n", failures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
