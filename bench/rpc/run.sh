#!/usr/bin/env bash
# RPC load benchmark (Bolt and Dubbo): direct vs one Weft sidecar vs two,
# closed loop at several concurrency levels and at a fixed rate, sidecars
# pinned to one core. Writes bench/results/rpc-<time>.md. See
# docs/benchmarks.md ("RPC") for how to read it.
#
# Knobs (environment):
#   DURATION=10s   measurement time per cell
#   CONC=1,100,1000
#   RATE=10000     requests/s of the fixed-rate part (0 skips it)
#   PROTOCOLS=bolt,dubbo
#   SIDECAR_CPU=1 CLIENT_CPU=0
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d /tmp/weft-bench-rpc.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/weft" ./cmd/weft
go build -o "$WORK/rpcbench" ./bench/rpc
mkdir -p bench/results
OUT="bench/results/rpc-$(date -u +%Y%m%d-%H%M%S).md"
"$WORK/rpcbench" -weft "$WORK/weft" -duration "${DURATION:-10s}" -conc "${CONC:-1,100,1000}" \
  -rate "${RATE:-10000}" -protocols "${PROTOCOLS:-bolt,dubbo}" \
  -sidecar-cpu "${SIDECAR_CPU:-1}" -client-cpu "${CLIENT_CPU:-0}" | tee "$OUT"
echo "results: $OUT"
