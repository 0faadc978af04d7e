#!/usr/bin/env bash
# Runs on a GPU machine what hack/gpu-bundle.sh built: every GPU test binary
# in its package directory, with the prebuilt xgpu binary. Extra arguments go
# to every test binary (e.g. -test.run TestTopo).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ -d dist/gpu ] || tar -C dist -xJf dist/gpu.tar.xz
export XGPU_BIN=$root/dist/gpu/xgpu
# NVLink multicast stays off in every process started from here.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
status=0
for t in dist/gpu/*.test; do
  pkg=$(cat "${t%.test}.pkg")
  echo "=== $pkg"
  (cd "$pkg" && "$root/$t" -test.v -test.timeout 8m "$@") || status=1
done
exit $status
