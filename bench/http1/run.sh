#!/usr/bin/env bash
# HTTP/1.1 reverse-proxy comparison: weft against nginx and haproxy (and no
# proxy at all), one small fixed response from one nginx upstream, wrk as the
# client. See bench/README.md for what is measured and how to read it.
#
# Knobs (environment):
#   DURATION=10            seconds per measurement
#   WARMUP=2               seconds of warm-up load before each measurement
#   CONNS="1 50 500"       wrk connection counts
#   PROXIES="direct weft nginx haproxy"
#   PROXY_CPU=0 LOAD_CPU=1 cores for the proxy / for wrk + upstream
#   NICE=0                 nice level for upstream, proxies and wrk (e.g. -10 on a
#                          machine that others share; 0 leaves it alone)
#   WAIT_QUIET=0           before each cell, wait up to this many seconds for
#                          other processes to go quiet
#   WEFT_BIN=path          use this weft binary instead of building one
#   SKIP_INSTALL=1         do not run .ci/install-deps.sh
#   KEEP=1                 keep the scratch directory (configs, logs, raw wrk output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-"1 50 500"}
PROXIES=${PROXIES:-"direct weft nginx haproxy"}

WORK=$(mktemp -d /tmp/weft-bench-http1.XXXXXX)
# shellcheck source=bench/http1/lib.sh
source "$ROOT/bench/http1/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  bash "$ROOT/.ci/install-deps.sh" >&2
fi
raise_nofile
CLK_TCK=$(getconf CLK_TCK)

# Largest connection count asked for, to size the proxies' connection limits.
max_conns=0
for c in $CONNS; do
  if ((c > max_conns)); then max_conns=$c; fi
done
PROXY_MAXCONN=$((max_conns * 2 + 1024))

# p50/p99/p99.9 come from wrk's own latency histogram, via done().
cat >"$WORK/stats.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKSTAT requests=%d duration_us=%d errors=%d non2xx=%d p50=%d p99=%d p999=%d max=%d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
EOF

if [[ " $PROXIES " == *" weft "* ]]; then
  if ! build_weft; then
    log "SKIPPING weft: $WEFT_SKIP"
  fi
fi

UPSTREAM_PORT=$(free_port)
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT (core $LOAD_CPU)"
start_upstream "$UPSTREAM_PORT"

# Is anything else using the CPUs? Benchmarks on a busy machine mislead.
b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks)
if (((b1 - b0) * 100 / CLK_TCK > 10)); then
  log "WARNING: the machine is busy before we start ($(((b1 - b0) * 100 / CLK_TCK))% of a core used by other processes); results will be noisy"
fi

# Results, keyed "proxy:conns".
declare -A R_PCORE R_OTHER R_LOAD R_RPS R_P50 R_P99 R_P999 R_ERR R_CPU R_UTIL R_USREQ R_REQCPU R_RSS R_HWM R_NOTE

# run_wrk CONNS SECONDS URL OUTFILE runs wrk pinned to LOAD_CPU.
run_wrk() {
  "${PIN_LOAD[@]}" wrk -t1 -c"$1" -d"$2"s --latency -s "$WORK/stats.lua" "$3" >"$4" 2>&1
}

measure() {
  local proxy=$1 conns=$2 key="$1:$2" port pid="" url out t0 t1 line
  if [[ $proxy == direct ]]; then
    port=$UPSTREAM_PORT
  else
    port=$(free_port)
    if ! start_proxy "$proxy" "$port" "$UPSTREAM_PORT" "$PROXY_MAXCONN"; then
      log "$proxy c=$conns: $PROXY_ERR"
      R_NOTE[$key]="failed to start"
      [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
      return 0
    fi
    pid=$PROXY_PID
  fi
  url="http://127.0.0.1:$port/"
  out="$WORK/wrk-$proxy-$conns.txt"

  wait_quiet "${WAIT_QUIET:-0}"
  log "$proxy c=$conns: warm-up ${WARMUP}s"
  run_wrk "$conns" "$WARMUP" "$url" "$out.warmup" || true
  log "$proxy c=$conns: measuring ${DURATION}s"
  local u0 u1 w0 w1 s0 s1 t0=0 t1=0 pc0 pc1 lc0 lc1
  [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
  u0=$(cpu_ticks "$UPSTREAM_PID")
  w0=$(children_ticks)
  s0=$(sys_busy_ticks)
  pc0=$(core_busy_ticks "$PROXY_CPU")
  lc0=$(core_busy_ticks "$LOAD_CPU")
  local wall0 wall1 wall_us
  wall0=$(date +%s%N)
  if ! run_wrk "$conns" "$DURATION" "$url" "$out"; then
    log "$proxy c=$conns: wrk failed: $(tail -3 "$out" | tr '\n' ' ')"
    R_NOTE[$key]="wrk failed"
  fi
  wall1=$(date +%s%N)
  wall_us=$(((wall1 - wall0) / 1000))
  s1=$(sys_busy_ticks)
  pc1=$(core_busy_ticks "$PROXY_CPU")
  lc1=$(core_busy_ticks "$LOAD_CPU")
  w1=$(children_ticks)
  u1=$(cpu_ticks "$UPSTREAM_PID")
  [[ -n $pid ]] && t1=$(cpu_ticks "$pid")
  # CPU used by anything other than proxy, upstream and wrk: a noise gauge.
  local other=$(((s1 - s0) - (t1 - t0) - (u1 - u0) - (w1 - w0)))
  ((other > 0)) || other=0

  line=$(grep '^WRKSTAT ' "$out" || true)
  if [[ -z $line ]]; then
    R_NOTE[$key]=${R_NOTE[$key]:-"no wrk stats"}
  else
    local requests duration_us errors non2xx p50 p99 p999
    eval "$(tr ' ' '\n' <<<"${line#WRKSTAT }" | grep -E '^[a-z0-9_]+=[0-9]+$' | sed 's/^/local /')"
    R_RPS[$key]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r / (d / 1e6)}')
    R_P50[$key]=$p50
    R_P99[$key]=$p99
    R_P999[$key]=$p999
    R_ERR[$key]=$((errors + non2xx))
    R_OTHER[$key]=$(awk -v t="$other" -v hz="$CLK_TCK" -v d="$wall_us" \
      'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    R_LOAD[$key]=$(awk -v t=$((lc1 - lc0)) -v hz="$CLK_TCK" -v d="$wall_us" \
      'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    R_PCORE[$key]=$(awk -v t=$((pc1 - pc0)) -v hz="$CLK_TCK" -v d="$wall_us" \
      'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    if [[ -n $pid ]]; then
      R_CPU[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t / hz}')
      R_UTIL[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$wall_us" \
        'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
      R_USREQ[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$requests" \
        'BEGIN{ if (r > 0) printf "%.2f", 1e6 * (t / hz) / r; else print "" }')
      R_REQCPU[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$requests" \
        'BEGIN{ if (t > 0) printf "%.0f", r / (t / hz); else print "" }')
      R_RSS[$key]=$(awk -v k="$(mem_kib "$pid" VmRSS)" 'BEGIN{printf "%.1f", k / 1024}')
      R_HWM[$key]=$(awk -v k="$(mem_kib "$pid" VmHWM)" 'BEGIN{printf "%.1f", k / 1024}')
    fi
    log "$proxy c=$conns: ${R_RPS[$key]} req/s p99=${p99}us cpu=${R_CPU[$key]:-n/a}s errors=${R_ERR[$key]} other-cpu=${R_OTHER[$key]}%"
  fi
  [[ -n $pid ]] && stop_pid "$pid"
  return 0
}

for proxy in $PROXIES; do
  case $proxy in
    direct | nginx | haproxy | weft) ;;
    *) log "unknown proxy '$proxy' (want direct, weft, nginx, haproxy); skipped"; continue ;;
  esac
  if [[ $proxy == weft && -n ${WEFT_SKIP:-} ]]; then
    for c in $CONNS; do R_NOTE[weft:$c]="skipped (see above)"; done
    continue
  fi
  for c in $CONNS; do
    measure "$proxy" "$c"
  done
done

# ratio A B prints A/B with two decimals, or "" when either is missing or B is 0.
ratio() {
  [[ -n ${1:-} && -n ${2:-} ]] || return 0
  awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 != 0) printf "%.2f", a / b }'
}

# --- report ------------------------------------------------------------------
mkdir -p "$ROOT/bench/results"
stamp=$(date +%Y%m%d-%H%M%S)
report="$ROOT/bench/results/http1-$stamp.md"
weft_rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain 2>/dev/null | head -1) ]]; then weft_rev+="+dirty"; fi
{
  echo "# HTTP/1.1 reverse proxy benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "- Host: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  echo "- Proxy pinned to core $PROXY_CPU (single process, single thread); wrk and the nginx upstream share core $LOAD_CPU."
  echo "- Upstream: nginx, fixed 200 with a ${#UPSTREAM_BODY}-byte body. Client: \`wrk -t1 -cN -d${DURATION}s --latency\` after a ${WARMUP}s warm-up; each cell is a freshly started proxy."
  echo "- Versions: weft $weft_rev, $($NGINX -v 2>&1 | sed 's/^nginx version: //'), haproxy $($HAPROXY -v 2>/dev/null | awk 'NR==1{print $3}'), $(wrk -v 2>&1 | awk 'NR==1{print "wrk " $2}'), $(go version 2>/dev/null | awk '{print $3}')"
  echo "- Latencies in µs. CPU = proxy utime+stime during the measured run (all threads and child processes). RSS/HWM = VmRSS/VmHWM after the run, summed over the proxy's processes."
  echo "- \"proxy core %\" / \"load core %\": how busy core $PROXY_CPU / core $LOAD_CPU was (from /proc/stat, interrupt and softirq time included; loopback networking is largely softirq). \"other CPU %\": CPU used during the run by processes other than proxy, upstream and wrk; a rough gauge (tick-sampled; it has read up to ~30 on a quiet machine): far above that the machine was not quiet and throughput/latency are not trustworthy (µs CPU/req is less affected)."
  if [[ -n ${WEFT_SKIP:-} ]]; then echo "- **weft skipped**: $(tr -s '\t' ' ' <<<"$WEFT_SKIP")"; fi
  echo "- \"×nginx\" columns: req/s ÷ nginx req/s, and req per CPU-second ÷ nginx's (both: higher is better) at the same connection count."
  echo
  echo "| proxy | conns | req/s | p50 | p99 | p99.9 | errors | CPU s | CPU % | µs CPU/req | req/CPU-s | RSS MiB | HWM MiB | req/s ×nginx | req/CPU-s ×nginx | proxy core % | load core % | other CPU % | note |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for proxy in $PROXIES; do
    for c in $CONNS; do
      k="$proxy:$c"
      [[ -n ${R_RPS[$k]:-} || -n ${R_NOTE[$k]:-} ]] || continue
      n="nginx:$c"
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$proxy" "$c" "${R_RPS[$k]:-}" "${R_P50[$k]:-}" "${R_P99[$k]:-}" "${R_P999[$k]:-}" "${R_ERR[$k]:-}" \
        "${R_CPU[$k]:-}" "${R_UTIL[$k]:-}" "${R_USREQ[$k]:-}" "${R_REQCPU[$k]:-}" "${R_RSS[$k]:-}" "${R_HWM[$k]:-}" \
        "$(ratio "${R_RPS[$k]:-}" "${R_RPS[$n]:-}")" "$(ratio "${R_REQCPU[$k]:-}" "${R_REQCPU[$n]:-}")" \
        "${R_PCORE[$k]:-}" "${R_LOAD[$k]:-}" "${R_OTHER[$k]:-}" "${R_NOTE[$k]:-}"
    done
  done
} | tee "$report"
log "report written to $report"
