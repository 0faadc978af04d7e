#!/usr/bin/env bash
# Builds the CUDA examples with `nvcc -cudart=shared`, runs each natively,
# then unmodified through xgpu (libxgpu.so and libcudart.so.13 preloaded)
# on two pools of this machine's GPUs: one server with every GPU, and one
# server per GPU (device k of the lease served by server k, so that every
# peer copy goes worker to worker). Standard output must be the same in
# all three runs; standard error may differ (timings, memory quotas, peer
# access). Prints a summary and exits non-zero if any run failed or
# differed.
#
# Usage: examples/cuda/run.sh [OUTDIR]
#   BIN     directory holding xgpu, libxgpu.so and libcudart.so.13
#           (default: bin/ of the checkout; `make build shim` fills it)
#   EXAMPLES  the examples to run (default: all)
#   NVCC_FLAGS  (default: -O2 -arch=sm_90)
#   SKIP_BUILD=1  use OUTDIR/build as it is
#   EXAMPLE_TIMEOUT  seconds one run may take (default 120)
#   VGPU_MEMORY  each vGPU's memory (default 139GiB: below what CUDA
#           reports for an H200, 143155 MiB, which is less than NVML's
#           143771 MiB)
#   BACKEND=host NGPU=n  rehearse the pools on emulated devices (no GPU;
#           the programs in OUTDIR/build must not need kernels); with
#           SKIP_NATIVE=1 the native runs are skipped and not compared
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$(cd "${BIN:-$root/bin}" && pwd)"
out="${1:-$(mktemp -d /tmp/xgpu-cuda-examples.XXXXXX)}"
mkdir -p "$out/build" "$out/native" "$out/all" "$out/pergpu" "$out/logs"
out="$(cd "$out" && pwd)"
examples="${EXAMPLES:-device_query vector_add matmul streams_events many_kernels symbols multi_gpu peer_copy cooperative}"
xgpu="$bin/xgpu"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT

log() { echo "run.sh: $*" >&2; }

backend="${BACKEND:-cuda}"
ngpu="${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}"
[ "$ngpu" -ge 1 ] || { log "no GPU found by nvidia-smi"; exit 1; }
server_args=(--backend "$backend")
if [ "$backend" = host ]; then
  server_args+=(--devices "$ngpu" --memory 1GiB --nvlinks 4)
else
  server_args+=(--vgpu-memory "${VGPU_MEMORY:-139GiB}")
fi
log "$ngpu GPUs; output in $out"

# The facade's copies of the runtime's structures against the toolkit's.
cuda_inc="${CUDA_HOME:-/usr/local/cuda}/include"
if [ "$backend" = host ]; then
  :
elif gcc -std=gnu11 -I"$cuda_inc" -o "$out/build/layout_check" "$root/runtime/cudart/facade/layout_check.c" 2>"$out/logs/layout_check.err"; then
  "$out/build/layout_check" >"$out/logs/layout_check.out" && tail -1 "$out/logs/layout_check.out" >&2
else
  log "layout_check FAILED to compile:"; cat "$out/logs/layout_check.err" >&2
fi

if [ "${SKIP_BUILD:-}" != 1 ]; then
  for e in $examples; do
    nvcc ${NVCC_FLAGS:--O2 -arch=sm_90} -cudart=shared -o "$out/build/$e" "$here/$e.cu" 2>"$out/logs/nvcc-$e.err" &
  done
  wait
fi

args_of() { [ "$1" = device_query ] && echo --attrs; }

# run_all MODE ENV...: runs every example with the environment given.
run_all() {
  local mode=$1; shift
  for e in $examples; do
    local t0=$(date +%s.%N)
    env "$@" timeout "${EXAMPLE_TIMEOUT:-120}" "$out/build/$e" $(args_of "$e") >"$out/$mode/$e.out" 2>"$out/$mode/$e.err"
    echo $? >"$out/$mode/$e.rc"
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }' >"$out/$mode/$e.time"
  done
}

# wait_file F: waits up to 60 s for file F to be non-empty.
wait_file() {
  for _ in $(seq 600); do [ -s "$1" ] && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}

# start_pool NAME [CUDA_VISIBLE_DEVICES]: an aggregator and one cuda server;
# prints the aggregator's address.
start_pool() {
  local name=$1 dir="$out/logs/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  "$xgpu" aggregator --listen 127.0.0.1:0 --addr-file "$dir/agg.addr" --data-dir "$dir/etcd" >"$dir/aggregator.log" 2>&1 &
  pids+=($!)
  wait_file "$dir/agg.addr" || return 1
  local agg=$(cat "$dir/agg.addr")
  "$xgpu" server "${server_args[@]}" --listen 127.0.0.1:0 --host "$name" --id "$name" --aggregator "$agg" \
    --addr-file "$dir/server.addr" >"$dir/server.log" 2>&1 &
  pids+=($!)
  wait_file "$dir/server.addr" || return 1
  for _ in $(seq 300); do
    "$xgpu" ls --aggregator "$agg" --json 2>/dev/null | grep -Eq '"aliveServers": 1\b' && break
    sleep 0.1
  done
  echo "$agg"
}

preload="LD_PRELOAD=$bin/libxgpu.so:$bin/libcudart.so.13"

if [ "${SKIP_NATIVE:-}" = 1 ]; then
  for e in $examples; do : >"$out/native/$e.out"; echo 0 >"$out/native/$e.rc"; echo 0 >"$out/native/$e.time"; done
else
  log "native runs"
  run_all native
fi

log "pool 1: one server with $ngpu GPUs"
agg=$(start_pool all) || exit 1
"$xgpu" alloc --aggregator "$agg" -n "$ngpu" --ttl 30m -o "$out/all/map.json" >"$out/logs/all/alloc.log" 2>&1 || { log "alloc failed"; cat "$out/logs/all/alloc.log" >&2; exit 1; }
run_all all "$preload" "XGPU_DEVICE_MAP=$out/all/map.json" XGPU_LOG_LEVEL=warn
cleanup; pids=()

log "pool 2: one server per GPU"
maps=()
for k in $(seq 0 $((ngpu - 1))); do
  agg=$(start_pool "gpu$k") || exit 1
  "$xgpu" alloc --aggregator "$agg" -n "$ngpu" --ttl 30m -o "$out/pergpu/map$k.json" >"$out/logs/gpu$k/alloc.log" 2>&1 || { log "alloc $k failed"; exit 1; }
  maps+=("$out/pergpu/map$k.json")
done
# Device k of the merged map is GPU k of server k.
python3 - "$out/pergpu/map.json" "${maps[@]}" <<'EOF'
import json, sys
out, maps = sys.argv[1], sys.argv[2:]
merged = None
for k, path in enumerate(maps):
    m = json.load(open(path))
    dev = next(d for d in m["devices"] if d["gpuIndex"] == k)
    dev["index"] = k
    dev["peers"] = []  # links are known within one server only
    if merged is None:
        merged = {"version": m["version"], "base": m["base"], "window": m["window"], "devices": []}
    merged["devices"].append(dev)
json.dump(merged, open(out, "w"), indent=2)
EOF
run_all pergpu "$preload" "XGPU_DEVICE_MAP=$out/pergpu/map.json" XGPU_LOG_LEVEL=warn
cleanup; pids=()

status=0
printf '%-16s %-10s %-22s %-22s\n' example native "one server" "server per GPU" | tee "$out/summary.txt"
for e in $examples; do
  row=$(printf '%-16s' "$e")
  nrc=$(cat "$out/native/$e.rc")
  row+=$(printf ' %-10s' "rc=$nrc $(cat "$out/native/$e.time")s")
  for mode in all pergpu; do
    rc=$(cat "$out/$mode/$e.rc")
    if [ "$rc" = 0 ] && [ "$nrc" = 0 ] && { [ "${SKIP_NATIVE:-}" = 1 ] || cmp -s "$out/native/$e.out" "$out/$mode/$e.out"; }; then
      res="same"
    else
      res="DIFF"
      status=1
      diff "$out/native/$e.out" "$out/$mode/$e.out" >"$out/$mode/$e.diff"
    fi
    row+=$(printf ' %-22s' "rc=$rc $res $(cat "$out/$mode/$e.time")s")
  done
  echo "$row" | tee -a "$out/summary.txt"
done
exit $status
