#!/usr/bin/env bash
# Runs smoke.py natively, then unmodified through xgpu (libxgpu.so,
# libcudart.so.13 and libcuda.so.1 preloaded, in that order) on a pool of
# one cuda server holding every GPU of this machine, and compares standard
# output. The CUDA functions the run called that xgpu does not serve are
# listed from the shim's log.
#
#   BIN  directory holding xgpu, libxgpu.so, libcudart.so.13 and libcuda.so.1 (default bin/)
#   OUT  output directory (default: a temporary one)
#   TIMEOUT  seconds each Python run may take (default 300)
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$(cd "${BIN:-$root/bin}" && pwd)"
out="${OUT:-$(mktemp -d /tmp/xgpu-pytorch.XXXXXX)}"
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
ngpu=$(nvidia-smi -L | grep -c '^GPU')

timeout "${TIMEOUT:-300}" python3 "$here/smoke.py" >"$out/native.out" 2>"$out/native.err"
echo "native rc=$?"

"$bin/xgpu" aggregator --listen 127.0.0.1:0 --addr-file "$out/agg.addr" --data-dir "$out/etcd" >"$out/aggregator.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s "$out/agg.addr" ] && break; sleep 0.1; done
agg=$(cat "$out/agg.addr")
"$bin/xgpu" server --backend cuda --vgpu-memory "${VGPU_MEMORY:-139GiB}" --listen 127.0.0.1:0 --aggregator "$agg" \
  --addr-file "$out/server.addr" >"$out/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s "$out/server.addr" ] && break; sleep 0.1; done
for _ in $(seq 300); do
  "$bin/xgpu" alloc --aggregator "$agg" -n "$ngpu" --ttl 30m -o "$out/map.json" >"$out/alloc.log" 2>&1 && break
  sleep 0.2
done
LD_PRELOAD="$bin/libxgpu.so:$bin/libcudart.so.13:$bin/libcuda.so.1" XGPU_DEVICE_MAP="$out/map.json" XGPU_EXPECT_DEVICES="$ngpu" \
  XGPU_LOG_LEVEL=warn timeout "${TIMEOUT:-300}" python3 "$here/smoke.py" >"$out/xgpu.out" 2>"$out/xgpu.err"
rc=$?
echo "xgpu rc=$rc"
echo "functions not served (calls logged once each):"
grep -o 'function=[^ ]*' "$out/xgpu.err" | sort | uniq -c
if [ $rc = 0 ] && cmp -s "$out/native.out" "$out/xgpu.out"; then
  echo "pytorch smoke: same output natively and through xgpu"
else
  echo "pytorch smoke: DIFFERENT"; diff "$out/native.out" "$out/xgpu.out"; tail -20 "$out/xgpu.err"; exit 1
fi
