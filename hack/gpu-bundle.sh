#!/usr/bin/env bash
# Builds everything the GPU tests need into dist/gpu.tar.xz, for a GPU machine
# that has no Go toolchain: the xgpu binary and one test binary (build tag
# cuda) per package that has GPU tests. Run them there with hack/gpu-run.sh.
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
ls -la dist/gpu.tar.xz
