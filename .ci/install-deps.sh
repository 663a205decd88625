#!/usr/bin/env bash
# Installs the peers the benchmarks compare against and the load tools they use.
#
# Idempotent: a tool already on PATH is left alone, and apt is touched only when
# something is missing. Works without a tty (DEBIAN_FRONTEND=noninteractive) and
# without systemd. Any nginx/haproxy system service that this run caused to start
# is stopped again (and disabled where systemd runs): the benchmarks run their own
# instances with their own configs on loopback ports.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*"; }

# command on PATH -> Debian package providing it.
declare -A pkg_for=(
  [nginx]=nginx
  [haproxy]=haproxy
  [wrk]=wrk
  [nghttp]=nghttp2-client
  [h2load]=nghttp2-client
  [curl]=curl
  [ss]=iproute2
  [ip]=iproute2
  [pgrep]=procps
  [ps]=procps
  [taskset]=util-linux
  [etcd]=etcd-server
  [zkServer.sh]=zookeeperd
)
# Check in a fixed order so the output is stable.
cmds=(nginx haproxy wrk nghttp h2load curl ss ip pgrep ps taskset etcd zkServer.sh)

missing=()
for c in "${cmds[@]}"; do
  # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack;
  # zookeeperd puts its scripts under /usr/share/zookeeper/bin.
  if command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] || [[ -x /usr/share/zookeeper/bin/$c ]]; then
    log "have $c ($(command -v "$c" 2>/dev/null || echo "/usr/sbin/$c"))"
  else
    p=${pkg_for[$c]}
    log "missing $c (package $p)"
    [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  log "nothing to install"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: cannot install ${missing[*]}"; exit 1; }
else
  SUDO=
fi

systemd_running() { [[ -d /run/systemd/system ]]; }

# Which of the services were running before we install anything, so that we
# only ever stop what this run started.
declare -A was_running=()
for s in nginx haproxy etcd; do
  if pgrep -x "$s" >/dev/null 2>&1; then was_running[$s]=1; else was_running[$s]=0; fi
done

# Keep maintainer scripts from starting services at all (the Docker idiom):
# invoke-rc.d consults /usr/sbin/policy-rc.d, and 101 means "action forbidden".
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
  log "created temporary /usr/sbin/policy-rc.d (no service starts during install)"
fi
cleanup_policy() {
  if [[ $created_policy -eq 1 ]]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    log "removed temporary /usr/sbin/policy-rc.d"
  fi
}
trap cleanup_policy EXIT

log "apt-get update"
$SUDO apt-get update -qq
log "apt-get install ${missing[*]}"
$SUDO apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}"

# Stop (and disable) any system instance that came up because of this install.
for s in nginx haproxy etcd; do
  [[ " ${missing[*]} " == *" $s "* ]] || continue
  if systemd_running && command -v systemctl >/dev/null 2>&1; then
    if $SUDO systemctl disable --now "$s" >/dev/null 2>&1; then
      log "systemd: stopped and disabled $s.service"
    fi
  elif [[ ${was_running[$s]} -eq 0 ]] && pgrep -x "$s" >/dev/null 2>&1; then
    if command -v service >/dev/null 2>&1 && $SUDO service "$s" stop >/dev/null 2>&1; then
      log "stopped system $s (service $s stop)"
    elif [[ -s /run/$s.pid ]]; then
      $SUDO kill "$(cat "/run/$s.pid")" && log "stopped system $s (pid file /run/$s.pid)"
    else
      log "warning: a system $s is running and could not be stopped"
    fi
  fi
  if ! systemd_running && command -v update-rc.d >/dev/null 2>&1; then
    if $SUDO update-rc.d "$s" disable >/dev/null 2>&1; then log "update-rc.d: disabled $s at boot"; fi
  fi
done

for c in "${cmds[@]}"; do
  command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] || [[ -x /usr/share/zookeeper/bin/$c ]] || { log "still missing $c after install"; exit 1; }
done
log "done: installed ${missing[*]}"
