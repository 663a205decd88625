# shellcheck shell=bash
# shellcheck disable=SC2034 # PROXY_*, WEFT_* are read by the sourcing script
# Helpers for bench/h2/run.sh. Sources bench/http1/lib.sh (free ports, pinning,
# /proc CPU and memory readers, stop_pid/cleanup, build-independent bits) and
# adds only what HTTP/2 and gRPC need: readiness probes that speak h2c or gRPC,
# the Go backend and load client, and per-workload nginx / haproxy / weft
# configs. Source it; do not run it.
#
# The sourcing script sets ROOT and WORK first (as for bench/http1/lib.sh).

# shellcheck source=bench/http1/lib.sh
source "$ROOT/bench/http1/lib.sh"

# wait_url URL PID [CURL_ARG...] is bench/http1/lib.sh's wait_http with extra
# curl arguments (here --http2-prior-knowledge): waits until URL answers 200,
# at most ~15 s, failing early if PID (when not empty) has exited.
wait_url() {
  local url=$1 pid=${2:-} i
  shift 2
  for ((i = 0; i < 150; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if [[ $(curl -s -m 1 "$@" -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true) == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# wait_grpc ADDR PID waits until one echo call through ADDR succeeds, at most
# ~15 s, failing early if PID (when not empty) has exited.
wait_grpc() {
  local addr=$1 pid=${2:-} i
  for ((i = 0; i < 30; i++)); do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    "$GRPCLOAD" -addr "$addr" -check 0.4s 2>"$WORK/.probe" && return 0
  done
  return 1
}

# wait_ready WORKLOAD PORT PID: the readiness probe for a proxy (or backend)
# listening on PORT for WORKLOAD (h2c or grpc).
wait_ready() {
  case $1 in
    h2c) wait_url "http://127.0.0.1:$2/" "$3" --http2-prior-knowledge ;;
    grpc) wait_grpc "127.0.0.1:$2" "$3" ;;
  esac
}

# build_tools builds the backend and the gRPC load client into $WORK.
build_tools() {
  log "building bench/h2/backend and bench/h2/grpcload"
  (cd "$ROOT" && go build -o "$WORK/backend" ./bench/h2/backend && go build -o "$WORK/grpcload" ./bench/h2/grpcload) ||
    die "cannot build bench/h2/backend or bench/h2/grpcload"
  BACKEND=$WORK/backend
  GRPCLOAD=$WORK/grpcload
}

# render_weft_config FILE H2C_PORT GRPC_PORT H1_UPSTREAM GRPC_UPSTREAM ADMIN
render_weft_config() {
  sed -e "s/@@H2C_PORT@@/$2/g" -e "s/@@GRPC_PORT@@/$3/g" \
    -e "s/@@H1_UPSTREAM_PORT@@/$4/g" -e "s/@@GRPC_UPSTREAM_PORT@@/$5/g" \
    -e "s/@@ADMIN_PORT@@/$6/g" "$ROOT/bench/h2/weft.yaml.tmpl" >"$1"
}

# build_weft_h2 is bench/http1/lib.sh's build_weft, but builds into $WORK
# (not $ROOT/bin, so a run leaves the tree untouched), and then asks the binary
# to validate the rendered bootstrap: a weft without HTTP/2 upstream support
# rejects it, and the weft rows say so. Sets WEFT_BIN, or WEFT_SKIP and returns 1.
build_weft_h2() {
  WEFT_SKIP=
  if [[ -n ${WEFT_BIN:-} ]]; then
    if [[ ! -x $WEFT_BIN ]]; then
      WEFT_SKIP="WEFT_BIN=$WEFT_BIN is not executable"
      return 1
    fi
  elif ! command -v go >/dev/null 2>&1; then
    WEFT_SKIP="go is not installed"
    return 1
  else
    log "building weft: go build -o \$WORK/weft ./cmd/weft"
    local out
    if ! out=$(cd "$ROOT" && go build -o "$WORK/weft" ./cmd/weft 2>&1); then
      WEFT_SKIP="go build ./cmd/weft failed: $(head -3 <<<"$out" | tr '\n' ' ')"
      return 1
    fi
    WEFT_BIN=$WORK/weft
  fi
  render_weft_config "$WORK/weft-validate.yaml" 20001 20002 20003 20004 20005
  local vout
  if ! vout=$("$WEFT_BIN" validate -c "$WORK/weft-validate.yaml" 2>&1); then
    WEFT_SKIP="weft validate rejects bench/h2/weft.yaml.tmpl: $(head -5 <<<"$vout" | tr '\n' ' ')"
    return 1
  fi
}

# start_backend H1_PORT H2C_PORT GRPC_PORT starts the Go backend pinned to
# LOAD_CPU; sets BACKEND_PID.
start_backend() {
  "${PIN_LOAD[@]}" "$BACKEND" -h1 "127.0.0.1:$1" -h2c "127.0.0.1:$2" -grpc "127.0.0.1:$3" \
    >"$WORK/backend.log" 2>&1 &
  BACKEND_PID=$!
  STARTED_PIDS+=("$BACKEND_PID")
  if ! { wait_url "http://127.0.0.1:$1/" "$BACKEND_PID" &&
    wait_url "http://127.0.0.1:$2/" "$BACKEND_PID" --http2-prior-knowledge &&
    wait_grpc "127.0.0.1:$3" "$BACKEND_PID"; }; then
    die "backend did not come up: $(tail -3 "$WORK/backend.log")"
  fi
}

# forget_pid PID drops an already reaped PID from STARTED_PIDS, so cleanup
# never signals a later process that reuses the number. (bench/http1/lib.sh's
# stop_pid only drops the processes it had to stop itself.)
forget_pid() {
  local keep=() p
  for p in "${STARTED_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}

# not_up NAME PID LOGFILE sets PROXY_ERR to why NAME did not become ready:
# whether it exited (and how) or is running but not answering, and its log's
# last lines. Runs in the current shell, so that it can reap PID.
not_up() {
  local state
  if kill -0 "$2" 2>/dev/null; then
    state="running but not answering after ~15s"
  else
    local rc=0
    wait "$2" 2>/dev/null || rc=$?
    state="exited with status $rc"
    forget_pid "$2"
  fi
  PROXY_ERR="$1 did not come up ($state): $(tail -3 "$3" 2>/dev/null | tr '\n' ' ')"
}

# --- proxies -----------------------------------------------------------------
# start_h2_<proxy> WORKLOAD LISTEN_PORT BACKEND_PORT MAXCONN starts one
# single-process, single-thread instance pinned to PROXY_CPU that accepts
# HTTP/2 without TLS (prior knowledge) on LISTEN_PORT and forwards to
# 127.0.0.1:BACKEND_PORT, over HTTP/1.1 keep-alive for WORKLOAD h2c and over
# HTTP/2 for WORKLOAD grpc. Sets PROXY_PID; returns non-zero with PROXY_ERR set
# if the proxy does not become ready.

start_h2_nginx() {
  local wl=$1 port=$2 up=$3 maxconn=$4 dir=$WORK/nginx-$1-$2 location
  mkdir -p "$dir/logs"
  if [[ $wl == grpc ]]; then
    # nginx's gRPC proxy opens one upstream HTTP/2 connection per in-flight
    # call (no multiplexing upstream); keepalive reuses them one call at a time.
    location='grpc_pass grpc://backend;'
  else
    # nginx cannot proxy plain HTTP to an HTTP/2 upstream: HTTP/1.1 keep-alive.
    location='proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";'
  fi
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
    # Since 1.19.7 these two also bound HTTP/2 connections (requests per
    # connection, default 1000, then GOAWAY; idle time).
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream backend {
        server 127.0.0.1:$up;
        keepalive 1024;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }
    server {
        # nginx 1.22: "http2" on a plain listener = HTTP/2 prior knowledge only.
        listen 127.0.0.1:$port http2 backlog=4096;
        location / {
            $location
        }
    }
}
EOF
  "${PIN_PROXY[@]}" "$NGINX" -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf" \
    -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_ready "$wl" "$port" "$PROXY_PID" || {
    not_up nginx "$PROXY_PID" "$dir/logs/error.log"
    return 1
  }
}

start_h2_haproxy() {
  local wl=$1 port=$2 up=$3 maxconn=$4 dir=$WORK/haproxy-$1-$2 proto=""
  mkdir -p "$dir"
  [[ $wl == grpc ]] && proto=" proto h2"
  cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $maxconn
    no strict-limits
    pidfile $dir/haproxy.pid
    # Keep idle server connections for reuse (as in bench/http1).
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
    # HTTP/2 without TLS, prior knowledge only.
    bind 127.0.0.1:$port proto h2
    maxconn $maxconn
    default_backend backend

backend backend
    http-reuse always
    server s1 127.0.0.1:$up maxconn 0$proto
EOF
  "${PIN_PROXY[@]}" "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_ready "$wl" "$port" "$PROXY_PID" || {
    not_up haproxy "$PROXY_PID" "$dir/haproxy.log"
    return 1
  }
}

# start_h2_weft starts weft with both listeners of bench/h2/weft.yaml.tmpl (the
# one WORKLOAD does not use gets a free port and no traffic). It reads
# H1_PORT and GRPC_BACKEND_PORT for the two clusters.
start_h2_weft() {
  local wl=$1 port=$2 dir=$WORK/weft-$1-$2 admin other
  mkdir -p "$dir"
  admin=$(free_port)
  other=$(free_port)
  if [[ $wl == grpc ]]; then
    render_weft_config "$dir/weft.yaml" "$other" "$port" "$H1_PORT" "$GRPC_BACKEND_PORT" "$admin"
  else
    render_weft_config "$dir/weft.yaml" "$port" "$other" "$H1_PORT" "$GRPC_BACKEND_PORT" "$admin"
  fi
  GOMAXPROCS=1 "${PIN_PROXY[@]}" "$WEFT_BIN" start -c "$dir/weft.yaml" >"$dir/weft.log" 2>&1 &
  PROXY_PID=$!
  STARTED_PIDS+=("$PROXY_PID")
  wait_ready "$wl" "$port" "$PROXY_PID" || {
    not_up weft "$PROXY_PID" "$dir/weft.log"
    return 1
  }
}

# start_h2_proxy NAME WORKLOAD LISTEN_PORT BACKEND_PORT MAXCONN dispatches.
start_h2_proxy() {
  PROXY_ERR=
  PROXY_PID=
  case $1 in
    nginx) start_h2_nginx "$2" "$3" "$4" "$5" ;;
    haproxy) start_h2_haproxy "$2" "$3" "$4" "$5" ;;
    weft) start_h2_weft "$2" "$3" ;;
    *) PROXY_ERR="unknown proxy $1"; return 1 ;;
  esac
}
