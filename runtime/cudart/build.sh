#!/usr/bin/env bash
# Builds the CUDA runtime shim into OUTDIR (default bin/ at the module
# root): libxgpu.so, the one Go runtime of a client process (this
# package, -buildmode=c-shared), and libcudart.so.13, the generated C
# facade over it (soname libcudart.so.13, every symbol versioned
# libcudart.so.13 as in NVIDIA's library). `make shim` runs it.
#
# Environment: GO (default go), CC (default gcc), GOFLAGS as usual.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-go}"
CC="${CC:-gcc}"

(cd "$root" && CGO_ENABLED=1 "$GO" build -buildmode=c-shared \
  -ldflags '-s -w -extldflags=-Wl,-soname,libxgpu.so' \
  -o "$out/libxgpu.so" ./runtime/cudart)
rm -f "$out/libxgpu.h" # cgo's header; include/xgpu.h is the documented one

f="$here/facade"
"$CC" -std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Werror \
  -fPIC -fvisibility=hidden -shared \
  -Wl,-soname,libcudart.so.13 \
  -Wl,--version-script="$f/zz_generated_libcudart.map" \
  -Wl,--no-undefined -Wl,-rpath,'$ORIGIN' \
  -o "$out/libcudart.so.13" \
  "$f/facade.c" "$f/facade_kernels.c" "$f/zz_generated_stubs.c" "$f/zz_generated_errors.c" \
  -L"$out" -lxgpu -lpthread
ln -sf libcudart.so.13 "$out/libcudart.so"
