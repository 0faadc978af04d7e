#!/usr/bin/env bash
# Builds the Jaeger v2 all-in-one binary that the tracing tests run
# (internal/telemetry/jaegertest), if the cache does not hold it yet, and
# prints its path. The version is pinned by tools/jaeger/go.mod and go.sum.
#
#   hack/jaeger.sh                 # -> .cache/bin/jaeger
#   XGPU_CACHE=/somewhere hack/jaeger.sh   # -> /somewhere/bin/jaeger
#   XGPU_JAEGER_BIN=$(hack/jaeger.sh) go test ./internal/telemetry/...
#
# The first build takes several minutes. The binary is rebuilt when
# tools/jaeger/go.mod or go.sum change (a stamp file beside it records the
# ones it was built from). It is built without the web UI's assets: the
# query API, which the tests use, is complete; the UI page is a placeholder.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${XGPU_CACHE:-$root/.cache}
bin=$cache/bin/jaeger
stamp=$bin.stamp
want=$(cat "$root/tools/jaeger/go.mod" "$root/tools/jaeger/go.sum" | sha256sum | cut -d' ' -f1)

if [ -x "$bin" ] && [ ! -e "$stamp" ]; then
  # Built before stamps existed, or by hand: take it as current.
  echo "$want" >"$stamp"
fi
if [ ! -x "$bin" ] || [ "$(cat "$stamp")" != "$want" ]; then
  mkdir -p "$cache/bin"
  echo "jaeger.sh: building Jaeger into $bin (several minutes the first time)" >&2
  tmp=$(mktemp "$bin.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  (cd "$root/tools/jaeger" && GOFLAGS=-mod=mod go build -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
  chmod 755 "$tmp"
  mv -f "$tmp" "$bin"
  echo "$want" >"$stamp"
fi
echo "$bin"
