#!/usr/bin/env bash
# Memory per idle keep-alive HTTP/1.1 connection: weft, nginx and haproxy side
# by side. Each proxy (single process, single thread, pinned like run.sh) gets N
# connections that each carried one request, then sit idle; bench/idleconn
# reports the proxy's RSS growth per connection. See bench/README.md.
#
# Knobs (environment):
#   N=10000                connections to hold (capped by the open-files hard limit)
#   WAIT=5                 seconds to hold them idle before measuring
#   PROXIES="weft nginx haproxy"
#   PROXY_CPU=0 LOAD_CPU=1 NICE=0 WEFT_BIN=path SKIP_INSTALL=1 KEEP=1  as in run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-10000}
WAIT=${WAIT:-5}
PROXIES=${PROXIES:-"weft nginx haproxy"}

WORK=$(mktemp -d /tmp/weft-bench-idle.XXXXXX)
# shellcheck source=bench/http1/lib.sh
source "$ROOT/bench/http1/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
  bash "$ROOT/.ci/install-deps.sh" >&2
fi
command -v go >/dev/null 2>&1 || die "go is needed to build bench/idleconn"

# Both the client and the proxy hold N descriptors (plus upstream and slack).
# Raise the soft limit to the hard one; the hard one we cannot raise.
raise_nofile
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((N + 512 > hard)); then
  log "open-files hard limit is $hard; lowering N from $N to $((hard - 512))"
  N=$((hard - 512))
fi
log "open-files limit $(ulimit -n); holding $N idle connections per proxy for ${WAIT}s"

log "building bench/idleconn"
(cd "$ROOT" && go build -o "$WORK/idleconn" ./bench/idleconn)

if [[ " $PROXIES " == *" weft "* ]]; then
  if ! build_weft; then
    log "SKIPPING weft: $WEFT_SKIP"
  fi
fi

UPSTREAM_PORT=$(free_port)
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT (core $LOAD_CPU)"
start_upstream "$UPSTREAM_PORT"

declare -A R_OPEN R_ALIVE R_BEFORE R_AFTER R_PER R_FDS R_NOTE
for proxy in $PROXIES; do
  case $proxy in
    nginx | haproxy | weft) ;;
    *) log "unknown proxy '$proxy' (want weft, nginx, haproxy); skipped"; continue ;;
  esac
  if [[ $proxy == weft && -n ${WEFT_SKIP:-} ]]; then
    R_NOTE[weft]="skipped: $WEFT_SKIP"
    continue
  fi
  port=$(free_port)
  if ! start_proxy "$proxy" "$port" "$UPSTREAM_PORT" $((N + 1024)); then
    log "$proxy: $PROXY_ERR"
    R_NOTE[$proxy]="failed to start"
    [[ -n $PROXY_PID ]] && stop_pid "$PROXY_PID"
    continue
  fi
  log "$proxy (pid $PROXY_PID) on 127.0.0.1:$port: opening $N connections"
  out=$WORK/idle-$proxy.txt
  if ! "${PIN_LOAD[@]}" "$WORK/idleconn" -addr "127.0.0.1:$port" -n "$N" -pid "$PROXY_PID" \
    -wait "${WAIT}s" >"$out" 2>&1; then
    R_NOTE[$proxy]="idleconn failed: $(tail -1 "$out")"
  fi
  sed 's/^/    /' "$out" >&2
  line=$(grep '^RESULT ' "$out" || true)
  if [[ -n $line ]]; then
    r_opened='' r_alive='' r_rss_before_kib=0 r_rss_after_kib=0 r_per_conn_kib='' r_fds_before='' r_fds_after=''
    eval "$(tr ' ' '\n' <<<"${line#RESULT }" | grep -E '^[a-z_]+=-?[0-9.]+$' | sed 's/^/r_/')"
    # shellcheck disable=SC2154 # set by the eval above
    {
      R_OPEN[$proxy]=$r_opened
      R_ALIVE[$proxy]=$r_alive
      R_BEFORE[$proxy]=$(awk -v k="$r_rss_before_kib" 'BEGIN{printf "%.1f", k / 1024}')
      R_AFTER[$proxy]=$(awk -v k="$r_rss_after_kib" 'BEGIN{printf "%.1f", k / 1024}')
      R_PER[$proxy]=$r_per_conn_kib
      R_FDS[$proxy]="$r_fds_before → $r_fds_after"
    }
  fi
  stop_pid "$PROXY_PID"
done

mkdir -p "$ROOT/bench/results"
report="$ROOT/bench/results/idle-$(date +%Y%m%d-%H%M%S).md"
{
  echo "# Idle keep-alive connection memory, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "- $N HTTP/1.1 connections per proxy, one 100-byte-body request each, then idle for ${WAIT}s. Proxy single process/thread on core $PROXY_CPU."
  echo "- RSS = VmRSS summed over the proxy's processes, before opening and after the idle wait. KiB/conn = growth ÷ connections still open."
  echo
  echo "| proxy | opened | still open | RSS before MiB | RSS after MiB | KiB per idle conn | fds before → after | note |"
  echo "|---|---:|---:|---:|---:|---:|---|---|"
  for proxy in $PROXIES; do
    [[ -n ${R_OPEN[$proxy]:-} || -n ${R_NOTE[$proxy]:-} ]] || continue
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$proxy" "${R_OPEN[$proxy]:-}" "${R_ALIVE[$proxy]:-}" \
      "${R_BEFORE[$proxy]:-}" "${R_AFTER[$proxy]:-}" "${R_PER[$proxy]:-}" "${R_FDS[$proxy]:-}" "${R_NOTE[$proxy]:-}"
  done
} | tee "$report"
log "report written to $report"
