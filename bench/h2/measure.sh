#!/usr/bin/env bash
# Quick per-request cost of weft on the gRPC unary workload, for profiling
# work: proxy CPU time and read(2)/write(2) calls per request, from
# /proc/PID/stat and /proc/PID/io. One weft (GOMAXPROCS=1, core 0), the
# bench backend and grpcload on core 1, loopback only.
#
#   bash bench/h2/measure.sh [STREAMS] [SECONDS]     (defaults 50 8)
#
# Env: GOGC, if set, is passed to weft (which then keeps no heap floor);
# WEFT_ARGS are added to `weft start` (e.g. --gc-heap-floor-mib=0); PORT_BASE (default 21080) picks the ports;
# WEFT_BIN runs that binary instead of building this tree (A/B runs);
# PPROF=file also saves a 5 s CPU profile taken mid-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
streams=${1:-50} secs=${2:-8} base=${PORT_BASE:-21080}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
if [[ -n ${WEFT_BIN:-} ]]; then cp "$WEFT_BIN" "$work/weft"; else go build -o "$work/weft" ./cmd/weft; fi
go build -o "$work/backend" ./bench/h2/backend
go build -o "$work/grpcload" ./bench/h2/grpcload
sed -e "s/@@H2C_PORT@@/$base/; s/@@GRPC_PORT@@/$((base + 1))/; s/@@H1_UPSTREAM_PORT@@/$((base + 10))/" \
  -e "s/@@GRPC_UPSTREAM_PORT@@/$((base + 11))/; s/@@ADMIN_PORT@@/$((base + 20))/" bench/h2/weft.yaml.tmpl >"$work/weft.yaml"
taskset -c 1 "$work/backend" -h1 "127.0.0.1:$((base + 10))" -grpc "127.0.0.1:$((base + 11))" >"$work/backend.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2086 # WEFT_ARGS is a list of flags
env ${GOGC:+GOGC=$GOGC} GOMAXPROCS=1 taskset -c 0 "$work/weft" start -c "$work/weft.yaml" ${WEFT_ARGS:-} >"$work/weft.log" 2>&1 &
wpid=$!
pids+=("$wpid")
target="127.0.0.1:$((base + 1))"
taskset -c 1 "$work/grpcload" -addr "$target" -check 10s >/dev/null
taskset -c 1 "$work/grpcload" -addr "$target" -streams "$streams" -duration 2s >/dev/null 2>&1 # warm-up
read -r r0 w0 < <(awk '/^syscr|^syscw/ {printf "%s ", $2} END {print ""}' "/proc/$wpid/io")
t0=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
if [[ -n ${PPROF:-} ]]; then
  (sleep 1; curl -s -o "$PPROF" "http://127.0.0.1:$((base + 20))/debug/pprof/profile?seconds=5") &
fi
taskset -c 1 "$work/grpcload" -addr "$target" -streams "$streams" -duration "${secs}s" >"$work/load.out" 2>&1
t1=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
read -r r1 w1 < <(awk '/^syscr|^syscw/ {printf "%s ", $2} END {print ""}' "/proc/$wpid/io")
n=$(grep -o 'requests=[0-9]*' "$work/load.out" | cut -d= -f2)
tick=$(getconf CLK_TCK)
awk -v n="$n" -v s="$secs" -v t="$((t1 - t0))" -v tick="$tick" -v r="$((r1 - r0))" -v w="$((w1 - w0))" -v st="$streams" \
  'BEGIN { printf "streams=%d req/s=%.0f µs_cpu/req=%.1f read(2)/req=%.2f write(2)/req=%.2f\n", st, n / s, t * 1e6 / tick / n, r / n, w / n }'
grep -o 'p50=[0-9]* p99=[0-9]*' "$work/load.out"

