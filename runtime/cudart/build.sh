#!/usr/bin/env bash
# Builds the CUDA shim into OUTDIR (default bin/ at the module root):
#
#   libxgpu.so       the one Go runtime of a client process (this package,
#                    -buildmode=c-shared, with state.c)
#   libcudart.so.13  the generated C facade of the CUDA runtime over it
#                    (soname libcudart.so.13, every symbol versioned
#                    libcudart.so.13 as in NVIDIA's library)
#   libcuda.so.1     the generated C facade of the CUDA driver API over it
#                    (soname libcuda.so.1, unversioned symbols as in
#                    NVIDIA's driver)
#
# The facades find libxgpu.so (and libcudart.so.13 finds libcuda.so.1) in
# their own directory. `make shim` runs this.
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

cflags=(-std=gnu11 -O2 -g -Wall -Wextra -Wno-unused-parameter -Werror -fPIC -fvisibility=hidden -shared
  -Wl,--no-undefined -Wl,-rpath,'$ORIGIN')

f="$here/facade"
"$CC" "${cflags[@]}" \
  -Wl,-soname,libcudart.so.13 \
  -Wl,--version-script="$f/zz_generated_libcudart.map" \
  -o "$out/libcudart.so.13" \
  "$f/facade.c" "$f/facade_kernels.c" "$f/facade_entry.c" "$f/facade_graphs.c" "$f/zz_generated_stubs.c" "$f/zz_generated_errors.c" \
  -L"$out" -lxgpu -ldl -lpthread
ln -sf libcudart.so.13 "$out/libcudart.so"

d="$here/driver"
"$CC" "${cflags[@]}" \
  -Wl,-soname,libcuda.so.1 \
  -Wl,--version-script="$d/zz_generated_libcuda.map" \
  -o "$out/libcuda.so.1" \
  "$d/driver.c" "$d/zz_generated_stubs.c" "$d/zz_generated_errors.c" "$d/zz_generated_versions.c" \
  -L"$out" -lxgpu -ldl -lpthread
