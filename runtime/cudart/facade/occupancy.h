/*
 * occupancy.h: the occupancy computation libcudart.so.13 and libcuda.so.1
 * share (cudaOccupancyMaxActiveBlocksPerMultiprocessor,
 * cuOccupancyMaxActiveBlocksPerMultiprocessor): blocks per SM bounded by
 * threads, blocks, registers (allocated per warp in units of 256) and
 * shared memory (with the driver's reservation per block). It ignores the
 * L1 and shared memory carveout preference, which can only lower the real
 * figure for kernels using less shared memory than the maximum.
 */
#ifndef XGPU_OCCUPANCY_H
#define XGPU_OCCUPANCY_H

#include <stddef.h>

#include "../include/xgpu.h"

/* The device attributes the computation reads (cudaDeviceAttr and
 * CUdevice_attribute agree on these values). */
static const int xgpu_occupancy_attrs[6] = {39 /* threads/SM */, 106 /* blocks/SM */, 82 /* regs/SM */,
                                            81 /* smem/SM */, 111 /* reserved smem/block */, 10 /* warp */};

/* xgpu_occupancy returns the blocks of blockSize threads (> 0) that fit on
 * one SM of a device whose xgpu_occupancy_attrs are lim, for a kernel of
 * max_threads threads per block at most, regs registers per thread and
 * smem bytes of shared memory per block (static and dynamic). */
static inline int xgpu_occupancy(const int lim[6], int max_threads, int regs, long smem, int blockSize) {
  if (blockSize > max_threads) return 0;
  int warp = lim[5] > 0 ? lim[5] : 32;
  long warps = (blockSize + warp - 1) / warp;
  long blocks = lim[0] / (warps * warp);
  if (lim[1] < blocks) blocks = lim[1];
  if (regs > 0) {
    long per_warp = ((long)regs * warp + 255) / 256 * 256;
    long by_regs = lim[2] / (per_warp * warps);
    if (by_regs < blocks) blocks = by_regs;
  }
  if (smem > 0) {
    long per_block = (smem + lim[4] + 127) / 128 * 128;
    long by_smem = lim[3] / per_block;
    if (by_smem < blocks) blocks = by_smem;
  }
  return (int)(blocks < 0 ? 0 : blocks);
}

#endif /* XGPU_OCCUPANCY_H */
