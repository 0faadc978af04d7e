#!/usr/bin/env bash
# Builds everything the GPU tests and benchmarks need into dist/gpu.tar.xz,
# for a GPU machine that has no Go toolchain: the xgpu binary, one test binary
# (build tag cuda) per package that has GPU tests, and the CUDA shim. There,
# from the root of the working tree (which holds the CUDA sources nvcc builds):
#   hack/gpu-run.sh                                         the GPU tests
#   tar -C dist -xJf dist/gpu.tar.xz && make bench BIN=dist/gpu   the benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist/gpu
rm -rf "$out" && mkdir -p "$out"
ldflags="-s -w -X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
CGO_ENABLED=1 go build -ldflags "$ldflags" -o "$out/xgpu" ./cmd/xgpu
for pkg in $(grep -rl --include='*_test.go' '^//go:build.*cuda' . | xargs -n1 dirname | sort -u); do
  name=$(echo "${pkg#./}" | tr / _)
  CGO_ENABLED=1 go test -c -tags cuda -ldflags "-s -w" -o "$out/$name.test" "$pkg"
  echo "${pkg#./}" >"$out/$name.pkg"
done
# The CUDA runtime shim, for examples/cuda/run.sh (BIN=dist/gpu).
make -s shim
cp bin/libxgpu.so bin/libcudart.so.13 bin/libcuda.so.1 "$out/"
tar -C dist -cJf dist/gpu.tar.xz gpu
# What a GPU machine is sent must stay small.
limit=$((64 << 20))
size=$(stat -c %s dist/gpu.tar.xz)
echo "dist/gpu.tar.xz: $((size >> 20)) MiB ($size bytes; limit $((limit >> 20)) MiB)"
if [ "$size" -ge "$limit" ]; then
  echo "dist/gpu.tar.xz is over the limit" >&2
  exit 1
fi
