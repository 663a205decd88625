#!/usr/bin/env bash
# xDS push benchmark: the built-in control plane pushes one rule change to
# N simulated sidecars (real ADS streams). Runs N=1000 and N=10000 with the
# control plane in process, then N=10000 with `weft control-plane` in a
# child process for its own RSS. Writes bench/results/xds-push-<time>.md.
#
# Knobs (environment): NS="1000 10000", STREAMS_PER_CONN=100, SERVICES=50,
# POLL=500ms, DEBOUNCE=100ms, CHILD=1 (0 skips the child-process run).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# 10,000 streams need few sockets (100 per connection), but the child
# process and gRPC's connections add up: raise the limit anyway.
ulimit -n "$(ulimit -Hn)" || true
WORK=$(mktemp -d /tmp/weft-bench-xds-push.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/weft" ./cmd/weft
go build -o "$WORK/xds-push" ./bench/xds-push
mkdir -p bench/results
OUT="bench/results/xds-push-$(date -u +%Y%m%d-%H%M%S).md"
{
  echo "Host: $(nproc) CPUs, $(uname -sr), $(go version | cut -d' ' -f3); ulimit -n $(ulimit -n)"
  echo
  for n in ${NS:-1000 10000}; do
    echo "Command: $WORK/xds-push -n $n -streams-per-conn ${STREAMS_PER_CONN:-100} -services ${SERVICES:-50} -poll ${POLL:-500ms} -debounce ${DEBOUNCE:-100ms}"
    echo
    "$WORK/xds-push" -n "$n" -streams-per-conn "${STREAMS_PER_CONN:-100}" -services "${SERVICES:-50}" \
      -poll "${POLL:-500ms}" -debounce "${DEBOUNCE:-100ms}"
    echo
  done
  if [ "${CHILD:-1}" = 1 ]; then
    n=10000
    echo "Command: $WORK/xds-push -n $n -weft $WORK/weft (control plane in a child process)"
    echo
    "$WORK/xds-push" -n "$n" -streams-per-conn "${STREAMS_PER_CONN:-100}" -services "${SERVICES:-50}" \
      -poll "${POLL:-500ms}" -debounce "${DEBOUNCE:-100ms}" -weft "$WORK/weft"
  fi
} | tee "$OUT"
echo "results: $OUT"
