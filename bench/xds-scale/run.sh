#!/usr/bin/env bash
# Scale benchmarks for dynamic configuration (SPEC C2/C3): a 10,000 vhost /
# 50,000 route table (match latency, memory, full RDS update under a reader)
# and a 50,000-endpoint EDS cluster (UpdateEndpoints, memory, picks).
#
#   bench/xds-scale/run.sh            # program (3 runs, medians) + go test benchmarks (-count 3)
#   RUNS=5 BENCH='EDS' bench/xds-scale/run.sh
#
# Knobs: RUNS (3), BENCH (go test -bench regexp, "."), BENCHTIME (go test
# -benchtime, "1s"), SKIP_PROGRAM=1, SKIP_GOBENCH=1, ARGS (extra flags for
# the program, e.g. "-only rds"). CPU-heavy: run it on a quiet machine.
# The report goes to stdout and bench/results/xds-scale-YYYYMMDD-HHMMSS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
out="bench/results/xds-scale-$(date +%Y%m%d-%H%M%S).md"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p bench/results

load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
{
  echo "<!-- bench/xds-scale/run.sh, $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), load average before: $load -->"
  echo
} >"$out"

if [ "${SKIP_PROGRAM:-0}" != 1 ]; then
  go build -o "$tmp/xds-scale" ./bench/xds-scale
  # shellcheck disable=SC2086
  "$tmp/xds-scale" -runs "$RUNS" ${ARGS:-} | tee -a "$out"
fi

if [ "${SKIP_GOBENCH:-0}" != 1 ]; then
  echo "running: go test -run '^\$' -bench '$BENCH' -benchmem -benchtime $BENCHTIME -count $RUNS ./bench/xds-scale/" >&2
  go test -run '^$' -bench "$BENCH" -benchmem -benchtime "$BENCHTIME" -count "$RUNS" -timeout 60m ./bench/xds-scale/ >"$tmp/bench.txt"
  {
    echo "## go test benchmarks (median of $RUNS by ns/op)"
    echo
    echo "\`go test -run '^\$' -bench '$BENCH' -benchmem -benchtime $BENCHTIME -count $RUNS ./bench/xds-scale/\`"
    echo
    echo '```'
    grep -E '^(goos|goarch|cpu):' "$tmp/bench.txt" || true
    # For each benchmark keep the run whose ns/op is the median.
    awk '/^Benchmark/ { n[$1]++; line[$1, n[$1]] = $0; ns[$1, n[$1]] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
      END {
        for (i = 1; i <= k; i++) {
          b = order[i]; m = n[b]
          for (x = 1; x <= m; x++) idx[x] = x
          for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++)
            if (ns[b, idx[y]] + 0 < ns[b, idx[x]] + 0) { t = idx[x]; idx[x] = idx[y]; idx[y] = t }
          print line[b, idx[int((m + 1) / 2)]]
        }
      }' "$tmp/bench.txt"
    echo '```'
  } | tee -a "$out"
fi
echo "report: $out" >&2
