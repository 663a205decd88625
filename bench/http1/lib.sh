# shellcheck shell=bash
# shellcheck disable=SC2034 # PROXY_*, WEFT_* and R_* are read by the sourcing script
# Shared helpers for bench/http1/run.sh and bench/http1/idle.sh: free loopback
# ports, starting the upstream and each proxy with its own config, readiness,
# per-process-tree CPU and memory from /proc, and cleanup. Source it; do not run it.
#
# The sourcing script sets, before calling anything here:
#   ROOT   repository root        WORK  scratch directory (removed on exit)
# and may set PROXY_CPU / LOAD_CPU (cores for the proxy and for wrk + upstream)
# and NICE (a nice level for everything started, e.g. -10 on a shared machine).

PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
if [[ $(nproc) -lt 2 ]]; then
  PROXY_CPU=0
  LOAD_CPU=0
fi

# Command prefixes that pin (and, with NICE set, renice) what they start; both
# exec, so $! of a backgrounded "${PIN_PROXY[@]}" cmd is cmd's own pid.
PIN_PROXY=(taskset -c "$PROXY_CPU")
PIN_LOAD=(taskset -c "$LOAD_CPU")
if [[ ${NICE:-0} != 0 ]]; then
  PIN_PROXY=(nice -n "$NICE" "${PIN_PROXY[@]}")
  PIN_LOAD=(nice -n "$NICE" "${PIN_LOAD[@]}")
fi

# The upstream's fixed 200 body: exactly 100 bytes.
UPSTREAM_BODY='weft bench upstream: a fixed body of exactly one hundred bytes, padded to size with dots............'

# Process ids this script started; cleanup stops each of them.
STARTED_PIDS=()
# Ports handed out by free_port in this run, so two calls never collide.
TAKEN_PORTS=" "

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# free_port prints an unused TCP port on 127.0.0.1, picked at random in
# [20000, 32000) (below the default ephemeral range) and checked with ss.
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ $TAKEN_PORTS == *" $p "* ]] && continue
    if [[ -z $(ss -Htanl "sport = :$p" 2>/dev/null) ]]; then
      TAKEN_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# tree_pids PID prints PID and all its descendants, one per line.
tree_pids() {
  local p c
  for p in "$@"; do
    [[ -d /proc/$p ]] || continue
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do
      tree_pids "$c"
    done
  done
}

# cpu_ticks PID prints utime+stime (clock ticks) summed over the process tree
# rooted at PID. A process's own stat already sums all of its threads.
cpu_ticks() {
  local total=0 p rest
  for p in $(tree_pids "$1"); do
    # Fields after the "(comm)" field, which may contain spaces: utime is the
    # 12th and stime the 13th of them (14th and 15th of the whole line).
    rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
  done
  echo "$total"
}

# mem_kib PID FIELD prints /proc/<pid>/status FIELD (VmRSS, VmHWM, ...) in KiB,
# summed over the process tree rooted at PID (nginx: master + worker).
mem_kib() {
  local total=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# sys_busy_ticks prints the busy ticks (user+nice+system+steal) of all CPUs from
# /proc/stat; irq/softirq time is left out, as it is for a process's stime.
sys_busy_ticks() {
  awk '$1 == "cpu" {print $2 + $3 + $4 + $9; exit}' /proc/stat
}

# core_busy_ticks CPU prints the busy ticks of one core, interrupts included
# (user+nice+system+irq+softirq+steal): all that kept the core from idling.
core_busy_ticks() {
  awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# children_ticks prints the user+sys time, in clock ticks, of this shell's
# reaped children (bash's times builtin; run in the current shell, not $(...)).
children_ticks() {
  times >"$WORK/.times"
  awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
    n = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); n += a[1] * 60 + a[2] }
    printf "%.0f", n * hz
  }' "$WORK/.times"
}

# wait_quiet SECONDS waits, at most SECONDS, until processes other than ours
# use under 10% of a core (sampled over 1 s); 0 means do not wait. Our own
# processes (upstream, idle proxies) are idle between measurements.
wait_quiet() {
  local limit=$1 i b0 b1
  ((limit > 0)) || return 0
  for ((i = 0; i < limit; i++)); do
    b0=$(sys_busy_ticks)
    sleep 1
    b1=$(sys_busy_ticks)
    if (((b1 - b0) * 100 / $(getconf CLK_TCK) < 10)); then return 0; fi
  done
  log "machine still busy after ${limit}s; measuring anyway"
}

# wait_http URL PID waits until URL answers 200, at most ~15 s, failing early
# if PID (when given) has exited.
wait_http() {
  local url=$1 pid=${2:-} i
  for ((i = 0; i < 150; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if [[ $(curl -s -m 1 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true) == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# stop_pid PID sends TERM, waits up to 5 s, then KILLs. Only for our own children.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not exit on TERM; sending KILL"
    # Children first (nginx workers), then the process itself.
    local c
    for c in $(tree_pids "$pid" | tail -n +2); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${STARTED_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}

cleanup() {
  local p
  for p in "${STARTED_PIDS[@]}"; do stop_pid "$p"; done
  if [[ ${KEEP:-0} == 1 ]]; then
    log "kept scratch directory $WORK"
  else
    rm -rf "$WORK"
  fi
}

# raise_nofile raises the soft open-files limit to the hard limit (inherited by
# everything started afterwards).
raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# --- upstream ----------------------------------------------------------------

# start_upstream PORT starts the nginx upstream serving UPSTREAM_BODY on
# 127.0.0.1:PORT, pinned to LOAD_CPU; sets UPSTREAM_PID.
start_upstream() {
  local port=$1 dir=$WORK/upstream
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_rlimit_nofile $(ulimit -Hn);
events {
    worker_connections 16384;
    multi_accept on;
}
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        default_type text/plain;
        location / {
            return 200 '$UPSTREAM_BODY';
        }
    }
}
EOF
  "${PIN_LOAD[@]}" "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
  UPSTREAM_PID=$!
  STARTED_PIDS+=("$UPSTREAM_PID")
  wait_http "http://127.0.0.1:$port/" "$UPSTREAM_PID" ||
    die "upstream nginx did not come up; see $dir/logs/error.log: $(tail -3 "$dir/logs/error.log" 2>/dev/null)"
}

# --- proxies -----------------------------------------------------------------
# Each start_<proxy> LISTEN_PORT UPSTREAM_PORT MAXCONN starts one single-process,
# single-thread instance pinned to PROXY_CPU and sets PROXY_PID; it returns
# non-zero (with PROXY_ERR set) if the proxy does not become ready.

start_nginx() {
  local port=$1 up=$2 maxconn=$3 dir=$WORK/nginx-$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_rlimit_nofile $(ulimit -Hn);
events {
    worker_connections $maxconn;
    multi_accept on;
}
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream upstream {
        server 127.0.0.1:$up;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass http://upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  "${PIN_PROXY[@]}" "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_http "http://127.0.0.1:$port/" "$PROXY_PID" || {
    PROXY_ERR="nginx did not come up: $(tail -3 "$dir/logs/error.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  }
}

start_haproxy() {
  local port=$1 up=$2 maxconn=$3 dir=$WORK/haproxy-$1
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn
    # haproxy sizes its fd limit for 2 x maxconn (every client with a server
    # connection); idle clients need no server connection, so when the hard
    # limit is lower, warn and go on rather than refuse to start.
    no strict-limits
    pidfile $dir/haproxy.pid
    # Keep idle server connections for reuse instead of closing them once a
    # quarter of the fds are in use (the default), like nginx's keepalive pool.
    tune.pool-high-fd-ratio 90
    tune.pool-low-fd-ratio 80

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    timeout http-request 600s
    http-reuse always

frontend bench
    bind 127.0.0.1:$port
    maxconn $maxconn
    default_backend upstream

backend upstream
    http-reuse always
    server upstream 127.0.0.1:$up maxconn 0
EOF
  "${PIN_PROXY[@]}" "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_http "http://127.0.0.1:$port/" "$PROXY_PID" || {
    PROXY_ERR="haproxy did not come up: $(tail -3 "$dir/haproxy.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  }
}

# build_weft builds the proxy into $ROOT/bin/weft (or uses $WEFT_BIN when set)
# and sets WEFT_BIN; on failure it sets WEFT_SKIP to the reason and returns 1.
build_weft() {
  WEFT_SKIP=
  if [[ -n ${WEFT_BIN:-} ]]; then
    [[ -x $WEFT_BIN ]] && return 0
    WEFT_SKIP="WEFT_BIN=$WEFT_BIN is not executable"
    return 1
  fi
  if ! command -v go >/dev/null 2>&1; then
    WEFT_SKIP="go is not installed"
    return 1
  fi
  log "building weft: go build -o bin/weft ./cmd/weft"
  local out
  if ! out=$(cd "$ROOT" && go build -o bin/weft ./cmd/weft 2>&1); then
    WEFT_SKIP="go build ./cmd/weft failed: $(head -3 <<<"$out" | tr '\n' ' ')"
    return 1
  fi
  WEFT_BIN=$ROOT/bin/weft
}

start_weft() {
  local port=$1 up=$2 dir=$WORK/weft-$1 admin
  mkdir -p "$dir"
  admin=$(free_port)
  sed -e "s/@@LISTEN_PORT@@/$port/g" -e "s/@@UPSTREAM_PORT@@/$up/g" -e "s/@@ADMIN_PORT@@/$admin/g" \
    "$ROOT/bench/http1/weft.yaml.tmpl" >"$dir/weft.yaml"
  GOMAXPROCS=1 "${PIN_PROXY[@]}" "$WEFT_BIN" start -c "$dir/weft.yaml" >"$dir/weft.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_http "http://127.0.0.1:$port/" "$PROXY_PID" || {
    PROXY_ERR="weft did not come up: $(tail -3 "$dir/weft.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  }
}

# start_proxy NAME LISTEN_PORT UPSTREAM_PORT MAXCONN dispatches to start_NAME.
start_proxy() {
  PROXY_ERR=
  PROXY_PID=
  case $1 in
    nginx) start_nginx "$2" "$3" "$4" ;;
    haproxy) start_haproxy "$2" "$3" "$4" ;;
    weft) start_weft "$2" "$3" ;;
    *) PROXY_ERR="unknown proxy $1"; return 1 ;;
  esac
}
