#!/usr/bin/env bash
# HTTP/2 and gRPC reverse-proxy comparison: weft against nginx and haproxy (and
# no proxy at all), on loopback, proxy pinned to one core. Two workloads:
#   h2c   h2load (HTTP/2 prior knowledge) -> proxy -> HTTP/1.1 keep-alive backend
#   grpc  bench/h2/grpcload (unary echo)  -> proxy -> HTTP/2 gRPC backend
# each at 1, 50 and 500 concurrent streams. See bench/h2/README.md.
#
# Knobs (environment):
#   DURATION=10            seconds per measurement
#   WARMUP=2               seconds of warm-up load before each measurement
#   STREAMS="1 50 500"     total concurrent streams (requests in flight)
#   STREAMS_PER_CONN=50    at most this many streams per client connection:
#                          connections = ceil(streams / STREAMS_PER_CONN)
#   WORKLOADS="h2c grpc"
#   PROXIES="direct weft nginx haproxy"
#   PAYLOAD=100            gRPC request (= echoed response) message bytes
#   PROXY_CPU=0 LOAD_CPU=1 cores for the proxy / for load generator + backend
#   NICE=0, WAIT_QUIET=0   as in bench/http1/run.sh
#   WEFT_BIN=path          use this weft binary instead of building one
#   SKIP_INSTALL=1         do not run .ci/install-deps.sh
#   KEEP=1                 keep the scratch directory (configs, logs, raw output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
STREAMS=${STREAMS:-"1 50 500"}
STREAMS_PER_CONN=${STREAMS_PER_CONN:-50}
WORKLOADS=${WORKLOADS:-"h2c grpc"}
PROXIES=${PROXIES:-"direct weft nginx haproxy"}
PAYLOAD=${PAYLOAD:-100}

WORK=$(mktemp -d /tmp/weft-bench-h2.XXXXXX)
# shellcheck source=bench/h2/lib.sh
source "$ROOT/bench/h2/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  bash "$ROOT/.ci/install-deps.sh" >&2
fi
raise_nofile
CLK_TCK=$(getconf CLK_TCK)
command -v h2load >/dev/null 2>&1 || die "h2load not found (Debian package nghttp2-client)"
build_tools

max_streams=0
for s in $STREAMS; do
  if ((s > max_streams)); then max_streams=$s; fi
done
# nginx's gRPC proxy uses one upstream connection per call in flight.
PROXY_MAXCONN=$((max_streams * 2 + 1024))

# conns_for STREAMS prints "CONNS PER_CONN": the client connections and the
# streams on each, at most STREAMS_PER_CONN per connection.
conns_for() {
  local s=$1 c
  c=$(((s + STREAMS_PER_CONN - 1) / STREAMS_PER_CONN))
  ((c >= 1)) || c=1
  echo "$c $(((s + c - 1) / c))"
}

if [[ " $PROXIES " == *" weft "* ]]; then
  if ! build_weft_h2; then
    log "SKIPPING weft: $WEFT_SKIP"
  fi
fi

H1_PORT=$(free_port)
H2C_BACKEND_PORT=$(free_port)
GRPC_BACKEND_PORT=$(free_port)
log "backend (core $LOAD_CPU): HTTP/1.1 127.0.0.1:$H1_PORT, h2c 127.0.0.1:$H2C_BACKEND_PORT, gRPC 127.0.0.1:$GRPC_BACKEND_PORT"
start_backend "$H1_PORT" "$H2C_BACKEND_PORT" "$GRPC_BACKEND_PORT"
UPSTREAM_PID=$BACKEND_PID

b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks)
if (((b1 - b0) * 100 / CLK_TCK > 10)); then
  log "WARNING: the machine is busy before we start ($(((b1 - b0) * 100 / CLK_TCK))% of a core used by other processes); results will be noisy"
fi

# Results, keyed "workload:proxy:streams".
declare -A R_CM R_PCORE R_OTHER R_LOAD R_RPS R_P50 R_P99 R_P999 R_ERR R_CPU R_UTIL R_USREQ R_REQCPU R_RSS R_HWM R_NOTE

# run_load WORKLOAD PORT STREAMS SECONDS OUT [H2LOAD_LOG] runs the load
# generator pinned to LOAD_CPU. h2load's per-request log (for percentiles) is
# only written when H2LOAD_LOG is given.
run_load() {
  local wl=$1 port=$2 s=$3 secs=$4 out=$5 lf=${6:-} c m
  read -r c m <<<"$(conns_for "$s")"
  if [[ $wl == h2c ]]; then
    local extra=()
    [[ -n $lf ]] && extra=(--log-file="$lf")
    "${PIN_LOAD[@]}" h2load -t1 -c"$c" -m"$m" -D"$secs" "${extra[@]}" "http://127.0.0.1:$port/" >"$out" 2>&1
  else
    "${PIN_LOAD[@]}" "$GRPCLOAD" -addr "127.0.0.1:$port" -streams "$s" -conns "$c" \
      -duration "${secs}s" -payload "$PAYLOAD" >"$out" 2>&1
  fi
}

# h2load_stat OUT LOG prints a "STAT requests= duration_us= errors= p50= p99=
# p999= max=" line (the format grpcload prints) from h2load's summary and its
# per-request log: requests = succeeded (2xx/3xx), errors = failed (h2load's
# count: errored, timed out or 4xx/5xx), latencies = exact percentiles of the
# successful requests' start-to-end-of-response times, in µs.
h2load_stat() {
  local out=$1 lf=$2 head sorted=$WORK/.lat n
  head=$(awk '
    /^finished in / {
      d = $3; sub(/,$/, "", d); v = d + 0; u = d; sub(/^[0-9.]+/, "", u)
      if (u == "s") us = v * 1e6; else if (u == "ms") us = v * 1e3; else if (u == "us") us = v; else us = v * 6e7
    }
    /^requests: / { for (i = 2; i < NF; i++) { if ($(i+1) ~ /^succeeded/) ok = $i; if ($(i+1) ~ /^failed/) bad = $i } }
    END { if (us > 0) printf "requests=%d duration_us=%.0f errors=%d", ok, us, bad }' "$out")
  [[ -n $head ]] || return 0
  awk -F'\t' '$2 >= 200 && $2 < 400 {print $3}' "$lf" | LC_ALL=C sort -n >"$sorted"
  n=$(wc -l <"$sorted")
  echo "STAT $head $(awk -v n="$n" '
    function idx(q) { i = int(q * n); if (i < q * n) i++; if (i < 1) i = 1; return i }
    BEGIN { a = idx(0.5); b = idx(0.99); c = idx(0.999) }
    NR == a { p50 = $1 } NR == b { p99 = $1 } NR == c { p999 = $1 } NR == n { mx = $1 }
    END { printf "p50=%d p99=%d p999=%d max=%d", p50, p99, p999, mx }' "$sorted")"
  rm -f "$sorted"
}

# note_text TEXT makes TEXT safe for one markdown table cell.
note_text() { tr -s '\n\t|' '   ' <<<"$1" | cut -c1-200; }

measure() {
  local wl=$1 proxy=$2 s=$3 key="$1:$2:$3" port pid="" backend out lf="" c m
  read -r c m <<<"$(conns_for "$s")"
  R_CM[$key]="${c}×${m}"
  if [[ $wl == grpc ]]; then backend=$GRPC_BACKEND_PORT; else backend=$H1_PORT; fi
  if [[ $proxy == direct ]]; then
    # No proxy: the client talks to the backend's h2c / gRPC port itself.
    if [[ $wl == grpc ]]; then port=$GRPC_BACKEND_PORT; else port=$H2C_BACKEND_PORT; fi
  else
    port=$(free_port)
    if ! start_h2_proxy "$proxy" "$wl" "$port" "$backend" "$PROXY_MAXCONN"; then
      log "$wl $proxy s=$s: $PROXY_ERR"
      R_NOTE[$key]="failed to start: $(note_text "$PROXY_ERR")"
      if [[ -n $PROXY_PID ]]; then
        stop_pid "$PROXY_PID"
        forget_pid "$PROXY_PID"
      fi
      return 0
    fi
    pid=$PROXY_PID
  fi
  out="$WORK/load-$wl-$proxy-$s.txt"
  [[ $wl == h2c ]] && lf="$WORK/h2load-$wl-$proxy-$s.log"

  wait_quiet "${WAIT_QUIET:-0}"
  log "$wl $proxy s=$s (${c}×${m}): warm-up ${WARMUP}s"
  run_load "$wl" "$port" "$s" "$WARMUP" "$out.warmup" || true
  log "$wl $proxy s=$s: measuring ${DURATION}s"
  local u0 u1 w0 w1 s0 s1 t0=0 t1=0 pc0 pc1 lc0 lc1 wall0 wall1 wall_us failed=""
  [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
  u0=$(cpu_ticks "$UPSTREAM_PID")
  w0=$(children_ticks)
  s0=$(sys_busy_ticks)
  pc0=$(core_busy_ticks "$PROXY_CPU")
  lc0=$(core_busy_ticks "$LOAD_CPU")
  wall0=$(date +%s%N)
  run_load "$wl" "$port" "$s" "$DURATION" "$out" "$lf" || failed=1
  wall1=$(date +%s%N)
  wall_us=$(((wall1 - wall0) / 1000))
  s1=$(sys_busy_ticks)
  pc1=$(core_busy_ticks "$PROXY_CPU")
  lc1=$(core_busy_ticks "$LOAD_CPU")
  w1=$(children_ticks)
  u1=$(cpu_ticks "$UPSTREAM_PID")
  [[ -n $pid ]] && t1=$(cpu_ticks "$pid")
  local other=$(((s1 - s0) - (t1 - t0) - (u1 - u0) - (w1 - w0)))
  ((other > 0)) || other=0
  # Read memory before anything else happens to the proxy.
  local rss_k=0 hwm_k=0
  if [[ -n $pid ]]; then
    rss_k=$(mem_kib "$pid" VmRSS)
    hwm_k=$(mem_kib "$pid" VmHWM)
    if ! kill -0 "$pid" 2>/dev/null; then R_NOTE[$key]="proxy exited during the run"; fi
  fi
  if [[ -n $failed ]]; then
    local tool=grpcload
    [[ $wl == h2c ]] && tool=h2load
    log "$wl $proxy s=$s: $tool failed: $(tail -3 "$out" | tr '\n' ' ')"
    R_NOTE[$key]="${R_NOTE[$key]:+${R_NOTE[$key]}; }$tool failed: $(note_text "$(grep -v '^STAT ' "$out" | tail -2)")"
  fi

  local line=""
  if [[ $wl == h2c ]]; then
    [[ -f $lf ]] && line=$(h2load_stat "$out" "$lf")
    [[ ${KEEP:-0} == 1 ]] || rm -f "$lf"
  else
    line=$(grep '^STAT ' "$out" || true)
  fi
  if [[ -z $line ]]; then
    R_NOTE[$key]=${R_NOTE[$key]:-"no load stats"}
  else
    local requests=0 duration_us=0 errors=0 p50=0 p99=0 p999=0
    eval "$(tr ' ' '\n' <<<"${line#STAT }" | grep -E '^[a-z0-9_]+=[0-9]+$' | sed 's/^/local /')"
    if ((requests == 0 || duration_us == 0)); then
      R_NOTE[$key]=${R_NOTE[$key]:-"no successful requests"}
    else
      R_RPS[$key]=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN{printf "%.0f", r / (d / 1e6)}')
      R_P50[$key]=$p50
      R_P99[$key]=$p99
      R_P999[$key]=$p999
    fi
    R_ERR[$key]=$errors
    R_OTHER[$key]=$(awk -v t="$other" -v hz="$CLK_TCK" -v d="$wall_us" 'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    R_LOAD[$key]=$(awk -v t=$((lc1 - lc0)) -v hz="$CLK_TCK" -v d="$wall_us" 'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    R_PCORE[$key]=$(awk -v t=$((pc1 - pc0)) -v hz="$CLK_TCK" -v d="$wall_us" 'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
    if [[ -n $pid ]]; then
      R_CPU[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t / hz}')
      R_UTIL[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$wall_us" 'BEGIN{printf "%.0f", 100 * (t / hz) / (d / 1e6)}')
      R_USREQ[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$requests" 'BEGIN{ if (r > 0) printf "%.2f", 1e6 * (t / hz) / r }')
      R_REQCPU[$key]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$requests" 'BEGIN{ if (t > 0) printf "%.0f", r / (t / hz) }')
      R_RSS[$key]=$(awk -v k="$rss_k" 'BEGIN{printf "%.1f", k / 1024}')
      R_HWM[$key]=$(awk -v k="$hwm_k" 'BEGIN{printf "%.1f", k / 1024}')
    fi
    log "$wl $proxy s=$s: ${R_RPS[$key]:-0} req/s p99=${p99}us cpu=${R_CPU[$key]:-n/a}s errors=$errors other-cpu=${R_OTHER[$key]}%"
  fi
  if [[ -n $pid ]]; then
    stop_pid "$pid"
    forget_pid "$pid"
  fi
  return 0
}

start_time=$(date +%s)
for wl in $WORKLOADS; do
  case $wl in
    h2c | grpc) ;;
    *) log "unknown workload '$wl' (want h2c, grpc); skipped"; continue ;;
  esac
  for proxy in $PROXIES; do
    case $proxy in
      direct | nginx | haproxy | weft) ;;
      *) log "unknown proxy '$proxy' (want direct, weft, nginx, haproxy); skipped"; continue ;;
    esac
    if [[ $proxy == weft && -n ${WEFT_SKIP:-} ]]; then
      for s in $STREAMS; do R_NOTE[$wl:weft:$s]="skipped (see above)"; done
      continue
    fi
    for s in $STREAMS; do
      measure "$wl" "$proxy" "$s"
    done
  done
done
log "measured in $(($(date +%s) - start_time))s"

# ratio A B prints A/B with two decimals, or "" when either is missing or B is 0.
ratio() {
  [[ -n ${1:-} && -n ${2:-} ]] || return 0
  awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 != 0) printf "%.2f", a / b }'
}

# --- report ------------------------------------------------------------------
mkdir -p "$ROOT/bench/results"
stamp=$(date +%Y%m%d-%H%M%S)
report="$ROOT/bench/results/h2-$stamp.md"
weft_rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain 2>/dev/null | head -1) ]]; then weft_rev+="+dirty"; fi
{
  echo "# HTTP/2 and gRPC reverse proxy benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "- Host: $(nproc) cores, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
  echo "- Proxy pinned to core $PROXY_CPU (single process, single thread: weft GOMAXPROCS=1, nginx worker_processes 1, haproxy nbthread 1); load generator and the Go backend (bench/h2/backend) share core $LOAD_CPU. Each cell is a freshly started proxy, ${WARMUP}s warm-up, then ${DURATION}s measured."
  echo "- **h2c**: \`h2load -t1 -cC -mM -D${DURATION}\` (HTTP/2 prior knowledge) -> proxy -> backend over HTTP/1.1 keep-alive (nginx cannot proxy plain HTTP to an HTTP/2 upstream, so every proxy gets the same HTTP/1.1 upstream); 200 with a 100-byte body. \"direct\" = h2load to the backend's own h2c port (same handler; Go's h2c server costs the load core more than its HTTP/1.1 server, so this is not a ceiling for the proxied rows)."
  echo "- **grpc**: \`bench/h2/grpcload\` unary echo, ${PAYLOAD}-byte messages, closed loop -> proxy -> backend over HTTP/2 (gRPC). nginx: \`grpc_pass\` (one upstream connection per call in flight); haproxy: \`proto h2\` both sides; weft: cluster with \`http2_protocol_options\`."
  echo "- Streams = concurrent requests in flight, spread over C client connections of M streams each (column c×m; at most $STREAMS_PER_CONN streams per connection, under every proxy's default SETTINGS_MAX_CONCURRENT_STREAMS: nginx 128, haproxy 100)."
  echo "- Versions: weft $weft_rev, $($NGINX -v 2>&1 | sed 's/^nginx version: //'), haproxy $($HAPROXY -v 2>/dev/null | awk 'NR==1{print $3}'), $(h2load --version 2>&1 | awk 'NR==1{print $1 " " $2}'), $(go version 2>/dev/null | awk '{print $3}'), grpc-go $(cd "$ROOT" && go list -m -f '{{.Version}}' google.golang.org/grpc 2>/dev/null)"
  echo "- Latencies in µs, exact percentiles of every successful request of the measured run (h2load --log-file; grpcload keeps every call). CPU = proxy utime+stime during the measured run from /proc/PID/stat (all threads and child processes). RSS / HWM = VmRSS / VmHWM (peak, so warm-up included) after the run, summed over the proxy's processes."
  echo "- \"×nginx\": req/s ÷ nginx req/s (per core, since every proxy has one core) and req per CPU-second ÷ nginx's, same workload and streams; higher is better for both."
  echo "- \"proxy core %\" / \"load core %\": how busy core $PROXY_CPU / core $LOAD_CPU was (/proc/stat, irq and softirq included); load core near 100 means the load generator + backend were the limit. \"other CPU %\": CPU used by everything else; a noise gauge (tick-sampled)."
  if [[ -n ${WEFT_SKIP:-} ]]; then echo "- **weft skipped**: $(note_text "$WEFT_SKIP")"; fi
  for wl in $WORKLOADS; do
    echo
    echo "## $wl"
    echo
    echo "| proxy | streams | c×m | req/s | p50 | p99 | p99.9 | errors | CPU % | µs CPU/req | RSS MiB | HWM MiB | req/s ×nginx | req/CPU-s ×nginx | proxy core % | load core % | other CPU % | note |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for proxy in $PROXIES; do
      for s in $STREAMS; do
        k="$wl:$proxy:$s"
        [[ -n ${R_CM[$k]:-} || -n ${R_NOTE[$k]:-} ]] || continue
        n="$wl:nginx:$s"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
          "$proxy" "$s" "${R_CM[$k]:-}" "${R_RPS[$k]:-}" "${R_P50[$k]:-}" "${R_P99[$k]:-}" "${R_P999[$k]:-}" "${R_ERR[$k]:-}" \
          "${R_UTIL[$k]:-}" "${R_USREQ[$k]:-}" "${R_RSS[$k]:-}" "${R_HWM[$k]:-}" \
          "$(ratio "${R_RPS[$k]:-}" "${R_RPS[$n]:-}")" "$(ratio "${R_REQCPU[$k]:-}" "${R_REQCPU[$n]:-}")" \
          "${R_PCORE[$k]:-}" "${R_LOAD[$k]:-}" "${R_OTHER[$k]:-}" "${R_NOTE[$k]:-}"
      done
    done
  done
} | tee "$report"
log "report written to $report"
