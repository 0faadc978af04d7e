#!/usr/bin/env bash
# Runs cudabench natively and through xgpu (libcudart.so.13 preloaded) in one
# command, on a pool of one cuda server holding every GPU, then on one
# server per GPU (peer copies worker to worker), and prints each figure with
# its native baseline and the ratio.
#
#   BIN  directory holding xgpu, libxgpu.so and libcudart.so.13 (default bin/)
#   OUT  output directory (default: a temporary one)
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$(cd "${BIN:-$root/bin}" && pwd)"
out="${OUT:-$(mktemp -d /tmp/xgpu-bench.XXXXXX)}"
mkdir -p "$out"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; pids=(); }
trap stop EXIT
ngpu=$(nvidia-smi -L | grep -c '^GPU')
nvcc -O2 -arch=sm_90 -cudart=shared -o "$out/cudabench" "$here/cudabench.cu" || exit 1

# pool NAME [CUDA_VISIBLE_DEVICES]: aggregator + one cuda server; echoes the aggregator.
pool() {
  local d="$out/$1"; mkdir -p "$d"
  "$bin/xgpu" aggregator --listen 127.0.0.1:0 --addr-file "$d/agg.addr" --data-dir "$d/etcd" >"$d/agg.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$d/agg.addr" ] && break; sleep 0.1; done
  local vis=()
  [ -n "${2:-}" ] && vis=(env "CUDA_VISIBLE_DEVICES=$2")
  "${vis[@]}" "$bin/xgpu" server --backend cuda --vgpu-memory "${VGPU_MEMORY:-139GiB}" --host "$1" --id "$1" \
    --listen 127.0.0.1:0 --aggregator "$(cat "$d/agg.addr")" --addr-file "$d/server.addr" >"$d/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$d/server.addr" ] && break; sleep 0.1; done
  cat "$d/agg.addr"
}
alloc() { # AGG N FILE
  for _ in $(seq 100); do "$bin/xgpu" alloc --aggregator "$1" -n "$2" --ttl 30m -o "$3" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
shim="LD_PRELOAD=$bin/libxgpu.so:$bin/libcudart.so.13"

"$out/cudabench" >"$out/native.txt" || exit 1
agg=$(pool all); alloc "$agg" "$ngpu" "$out/all.json" || exit 1
env "$shim" XGPU_DEVICE_MAP="$out/all.json" XGPU_LOG_LEVEL=warn "$out/cudabench" >"$out/xgpu.txt" 2>"$out/xgpu.err"
echo "xgpu (one server) rc=$?"
stop
if [ "$ngpu" -ge 2 ]; then
  a0=$(pool gpu0 0); alloc "$a0" 1 "$out/gpu0.json" || exit 1
  a1=$(pool gpu1 1); alloc "$a1" 1 "$out/gpu1.json" || exit 1
  python3 - "$out/split.json" "$out/gpu0.json" "$out/gpu1.json" <<'PY'
import json, sys
out, maps = sys.argv[1], sys.argv[2:]
merged = None
for k, p in enumerate(maps):
    m = json.load(open(p)); d = m["devices"][0]; d["index"] = k; d["peers"] = []
    merged = merged or {"version": m["version"], "base": m["base"], "window": m["window"], "devices": []}
    merged["devices"].append(d)
json.dump(merged, open(out, "w"), indent=2)
PY
  env "$shim" XGPU_DEVICE_MAP="$out/split.json" XGPU_LOG_LEVEL=warn "$out/cudabench" >"$out/xgpu-split.txt" 2>"$out/xgpu-split.err"
  echo "xgpu (server per GPU) rc=$?"
  stop
fi
printf '%-26s %14s %14s %8s %14s %8s\n' figure native xgpu ratio xgpu-split ratio
while read -r name v unit; do
  x=$(awk -v n="$name" '$1==n {print $2}' "$out/xgpu.txt")
  s=$(awk -v n="$name" '$1==n {print $2}' "$out/xgpu-split.txt" 2>/dev/null)
  r=$(awk -v a="$x" -v b="$v" 'BEGIN { if (a == "" || b == 0) print "-"; else printf "%.3f", a / b }')
  rs=$(awk -v a="$s" -v b="$v" 'BEGIN { if (a == "" || b == 0) print "-"; else printf "%.3f", a / b }')
  printf '%-26s %10s %-3s %10s %8s %14s %8s\n' "$name" "$v" "" "${x:--}" "$r" "${s:--}" "$rs"
done <"$out/native.txt"
