#!/usr/bin/env bash
# Debian's LXD 5.0.2 as the side-by-side baseline for benchmarks/runtime_bench.py.
#
# Why a script: this machine has no systemd as PID 1, so the package's units never
# start the daemon, and LXD's first start would try to reach the internet (instance
# types, image refresh). This starts `lxd --group root` in the background with proxy
# variables pointed at a closed loopback port, turns image auto-update off, and adds
# only loopback-safe resources, all named bench-*: a dir pool, a managed bridge with
# NAT and IPv6 off, and a profile that uses both. Other sessions may share the same
# LXD; this never deletes anything that is not bench-*.
#
# usage: benchmarks/lxd_baseline.sh [up|second|status|clean|stop]
#   up      install if needed, start if not answering, create bench-* resources (default)
#   second  a second, benchmark-owned LXD (LXD_DIR /var/lib/bench-lxd2) listening on
#           https://127.0.0.1:8449, the source of the copy-between-daemons figure;
#           its profile bench-lxd puts eth0 on the first daemon's bench-br0
#   status  print whether LXD answers and what bench-* resources exist
#   clean   delete bench-* instances, images and snapshots left over by the benchmark
#   stop    stop the LXD daemon this script started (only if its pid file is ours)
#
# env: LXD_DIR (default /var/lib/lxd), BENCH_LXD_SUBNET (default 10.251.0.1/24),
#      BENCH_LXD2_HTTPS (default 127.0.0.1:8449)
set -euo pipefail

if [ "${1:-up}" = second ]; then
    export LXD_DIR=/var/lib/bench-lxd2
    SECOND=1
else
    export LXD_DIR="${LXD_DIR:-/var/lib/lxd}"
    SECOND=0
fi
SUBNET="${BENCH_LXD_SUBNET:-10.251.0.1/24}"
POOL=bench-dir
NET=bench-br0
PROFILE=bench-lxd
PIDFILE="$LXD_DIR/bench-lxd.pid"
LOG="$LXD_DIR/bench-lxd.log"
# A closed port on loopback: any outbound HTTP(S) attempt of LXD fails at once.
DEAD_PROXY=http://127.0.0.1:9

log() { printf '[lxd-baseline] %s\n' "$*" >&2; }

lxd_bin() {
    local b
    for b in /usr/sbin/lxd /usr/bin/lxd /usr/lib/lxd/lxd; do
        [ -x "$b" ] && { echo "$b"; return 0; }
    done
    command -v lxd 2>/dev/null || return 1
}

answering() {
    [ -S "$LXD_DIR/unix.socket" ] && timeout 5 lxc query /1.0 >/dev/null 2>&1
}

install_lxd() {
    if lxd_bin >/dev/null && command -v lxc >/dev/null; then
        return 0
    fi
    log "installing Debian's lxd (no recommends)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 lxd >/dev/null; then
        apt-get update -qq -o DPkg::Lock::Timeout=900
        apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 lxd >/dev/null
    fi
}

start_lxd() {
    answering && { log "LXD already answers on $LXD_DIR/unix.socket"; return 0; }
    mkdir -p "$LXD_DIR"
    local bin
    bin="$(lxd_bin)"
    log "starting $bin --group root (LXD_DIR=$LXD_DIR, log $LOG)"
    # setsid + nohup: the daemon outlives this script and the shell that ran it.
    env http_proxy="$DEAD_PROXY" https_proxy="$DEAD_PROXY" \
        HTTP_PROXY="$DEAD_PROXY" HTTPS_PROXY="$DEAD_PROXY" no_proxy= NO_PROXY= \
        LXD_DIR="$LXD_DIR" setsid nohup "$bin" --group root --logfile "$LOG" \
        </dev/null >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    if ! timeout 60 lxd waitready --timeout 60 2>/dev/null; then
        local i
        for i in $(seq 1 120); do answering && break; sleep 0.5; done
    fi
    answering || { log "LXD did not come up; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
}

configure() {
    # Never refresh images or reach image servers: the benchmark uses a local image.
    lxc config set images.auto_update_interval 0
    lxc config set core.proxy_http "$DEAD_PROXY" 2>/dev/null || true
    lxc config set core.proxy_https "$DEAD_PROXY" 2>/dev/null || true
    if ! lxc storage show "$POOL" >/dev/null 2>&1; then
        log "creating storage pool $POOL (dir)"
        lxc storage create "$POOL" dir
    fi
    if [ "$SECOND" = 1 ]; then
        lxc config set core.https_address "${BENCH_LXD2_HTTPS:-127.0.0.1:8449}"
    elif ! lxc network show "$NET" >/dev/null 2>&1; then
        log "creating bridge $NET ($SUBNET, no NAT, no IPv6)"
        lxc network create "$NET" ipv4.address="$SUBNET" ipv4.nat=false \
            ipv6.address=none ipv6.nat=false
    fi
    if ! lxc profile show "$PROFILE" >/dev/null 2>&1; then
        log "creating profile $PROFILE (root on $POOL, eth0 bridged on $NET)"
        lxc profile create "$PROFILE"
        lxc profile device add "$PROFILE" root disk path=/ pool="$POOL"
        lxc profile device add "$PROFILE" eth0 nic nictype=bridged parent="$NET" name=eth0
    fi
}

status() {
    if answering; then
        log "LXD answers on $LXD_DIR/unix.socket (server_pid $(lxc query /1.0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["environment"].get("server_pid"))'))"
        lxc list -c ns --format csv | grep '^bench-' || true
        lxc image list --format csv -c lf | grep 'bench-' || true
    else
        log "LXD does not answer on $LXD_DIR/unix.socket"
        return 1
    fi
}

clean() {
    answering || return 0
    local n
    for n in $(lxc list --format csv -c n | grep '^bench-' || true); do
        log "deleting instance $n"
        lxc delete --force "$n" || true
    done
    # Only our aliases: the reproducible busybox image may be shared by fingerprint.
    for n in $(lxc image alias list --format csv | cut -d, -f1 | grep '^bench-' || true); do
        log "deleting image alias $n"
        lxc image alias delete "$n" || true
    done
}

stop_lxd() {
    [ -f "$PIDFILE" ] || { log "no pid file $PIDFILE: not started by this script"; return 0; }
    local pid
    pid="$(cat "$PIDFILE")"
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--group root'; then
        log "stopping LXD pid $pid"
        kill -TERM "$pid"
        for _ in $(seq 1 60); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
    fi
    rm -f "$PIDFILE"
}

case "${1:-up}" in
    up) install_lxd; start_lxd; configure; status ;;
    second)
        [ -S /var/lib/lxd/unix.socket ] || { log "run '$0 up' first (bench-br0)"; exit 1; }
        install_lxd; start_lxd; configure; status ;;
    status) status ;;
    clean) clean ;;
    stop) stop_lxd ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
