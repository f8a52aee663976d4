#!/bin/bash
# Runs a one-host kvmfleet cluster on this machine: the controller with its embedded
# SQLite store, and an agent connected to this machine's libvirtd. Where no libvirtd
# answers on qemu:///system (a machine without systemd), a private libvirtd is started
# in its own mount namespace with its own configuration; the machine's /etc is not
# edited. Prints the API URL, an admin token and curl lines to try.
#
# usage: scripts/run.sh [start|stop|status]
# environment:
#   KVMFLEET_RUN_DIR     state, logs, pids            (default /var/lib/kvmfleet-local)
#   KVMFLEET_PORT        API port on 127.0.0.1        (default 8400)
#   KVMFLEET_AGENT_PORT  agent port on 127.0.0.1      (default 8401)
#   KVMFLEET_BUILD_DIR   where to build and find the binaries (default ./build)
#   KVMFLEET_NO_BUILD=1  use the binaries already there
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run_dir="${KVMFLEET_RUN_DIR:-/var/lib/kvmfleet-local}"
port="${KVMFLEET_PORT:-8400}"
agent_port="${KVMFLEET_AGENT_PORT:-8401}"
bin="${KVMFLEET_BUILD_DIR:-$top/build}/src/exe"
url="http://127.0.0.1:$port"

say() { printf 'kvmfleet: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS CMD...: polls CMD until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

api() {  # api METHOD PATH [BODY]
  local token; token=$(cat "$run_dir/admin.token")
  if [ $# -ge 3 ]; then
    curl -sS -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$url$2" -d "$3"
  else
    curl -sS -X "$1" -H "Authorization: Bearer $token" "$url$2"
  fi
}

host_name() {
  local h
  h=$(hostname -s 2>/dev/null | tr 'A-Z_.' 'a-z--' | tr -cd 'a-z0-9-' | sed 's/^-*//' | cut -c1-63)
  echo "${h:-local}"
}

stop_all() {
  # The private libvirtd's guests first (they outlive libvirtd otherwise), then the
  # daemons, each by the pid recorded when it was started.
  if [ -f "$run_dir/ns.pid" ] && alive "$run_dir/ns.pid"; then
    local ns; ns=$(cat "$run_dir/ns.pid")
    for dom in $(nsenter -t "$ns" -m -u virsh -c qemu:///system list --name 2>/dev/null); do
      nsenter -t "$ns" -m -u virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
    done
  fi
  for f in "$run_dir/agent.pid" "$run_dir/controller.pid" "$run_dir/host/pids/libvirtd.pid" \
           "$run_dir/host/pids/virtlogd.pid" "$run_dir/ns.pid"; do
    if alive "$f"; then
      kill "$(cat "$f")" 2>/dev/null || true
    fi
  done
  for f in "$run_dir/agent.pid" "$run_dir/controller.pid" "$run_dir/host/pids/libvirtd.pid" \
           "$run_dir/host/pids/virtlogd.pid" "$run_dir/ns.pid"; do
    if [ -f "$f" ]; then
      wait_for 10 sh -c "! kill -0 $(cat "$f") 2>/dev/null" || kill -9 "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  say "stopped"
}

print_info() {
  local token; token=$(cat "$run_dir/admin.token")
  cat <<INFO

kvmfleet is running.
  API:          $url
  admin token:  $token
  state & logs: $run_dir
  stop it with: $top/scripts/run.sh stop

Try it:
  export KVMFLEET_URL=$url
  export KVMFLEET_TOKEN=$token
  curl -s -X POST -H "Authorization: Bearer \$KVMFLEET_TOKEN" -H 'Content-Type: application/json' "\$KVMFLEET_URL/v1/vms?wait=60" -d '{"name":"demo","vcpus":1,"memory_mib":64}'
  curl -s -X POST -H "Authorization: Bearer \$KVMFLEET_TOKEN" "\$KVMFLEET_URL/v1/vms/demo/start?wait=60"
  curl -s -H "Authorization: Bearer \$KVMFLEET_TOKEN" "\$KVMFLEET_URL/v1/vms"
  $bin/kvmfleet vms
INFO
}

start_all() {
  [ "$(id -u)" = 0 ] || die "run as root (it starts libvirtd and KVM guests)"
  if [ "${KVMFLEET_NO_BUILD:-0}" != 1 ]; then
    # Only the three programs (and the libraries they link), not the tests and
    # benchmarks: those are most of the build. Same build dir and options as
    # scripts/test.sh, which later reuses these objects.
    "$top/scripts/build.sh" --target kvmfleet-controller --target kvmfleet-agent --target kvmfleet
  fi
  [ -x "$bin/kvmfleet-controller" ] && [ -x "$bin/kvmfleet-agent" ] || die "binaries missing in $bin"
  mkdir -p "$run_dir"
  chmod 700 "$run_dir"
  if alive "$run_dir/controller.pid" && alive "$run_dir/agent.pid"; then
    say "already running"
    print_info
    return 0
  fi
  stop_all 2>/dev/null || true

  say "starting the controller on $url"
  "$bin/kvmfleet-controller" --database "$run_dir/controller.db" \
    --bootstrap-token-file "$run_dir/admin.token" --listen-address 127.0.0.1 \
    --listen-port "$port" >>"$run_dir/controller.log" 2>&1 &
  echo $! >"$run_dir/controller.pid"
  wait_for 30 curl -sf "$url/v1/healthz" || die "controller did not come up; see $run_dir/controller.log"

  local name; name=$(host_name)
  if [ ! -s "$run_dir/agent.token" ]; then
    local reply
    reply=$(api POST /v1/hosts "{\"name\":\"$name\",\"agent_url\":\"http://127.0.0.1:$agent_port\"}")
    printf '%s' "$reply" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_token"])' \
      >"$run_dir/agent.token" || die "cannot register host $name: $reply"
    chmod 600 "$run_dir/agent.token"
  fi
  python3 - "$run_dir/agent.json" <<PY
import json, sys
json.dump({"host": "$name", "listen_address": "127.0.0.1", "listen_port": $agent_port,
           "controller_url": "$url", "token_file": "$run_dir/agent.token",
           "libvirt_uri": "qemu:///system", "image_pool_path": "$run_dir/images",
           "heartbeat_interval_ms": 2000}, open(sys.argv[1], "w"), indent=2)
PY
  mkdir -p "$run_dir/images"

  if virsh -c qemu:///system version >/dev/null 2>&1; then
    say "using this machine's libvirtd"
    "$bin/kvmfleet-agent" --config "$run_dir/agent.json" >>"$run_dir/agent.log" 2>&1 &
    echo $! >"$run_dir/agent.pid"
  else
    say "no libvirtd answers on qemu:///system: starting a private one in its own mount namespace"
    mkdir -p "$run_dir/host"
    [ -s "$run_dir/host.uuid" ] || cat /proc/sys/kernel/random/uuid >"$run_dir/host.uuid"
    # The init script puts itself in a new mount + UTS namespace (exec, same pid).
    "$top/scripts/lab-host-init.sh" \
      --name "$name" --dir "$run_dir/host" --uuid "$(cat "$run_dir/host.uuid")" \
      -- "$bin/kvmfleet-agent" --config "$run_dir/agent.json" >>"$run_dir/agent.log" 2>&1 &
    local pid=$!
    echo $pid >"$run_dir/ns.pid"
    echo $pid >"$run_dir/agent.pid"  # the init script execs the agent in place
  fi
  local token; token=$(cat "$run_dir/admin.token")
  host_up() {
    curl -sf -H "Authorization: Bearer $token" "$url/v1/hosts/$name" | grep -q '"state":"up"'
  }
  wait_for 90 host_up || die "host $name did not report in; see $run_dir/agent.log"
  printf 'export KVMFLEET_URL=%s\nexport KVMFLEET_TOKEN=%s\n' "$url" "$token" >"$run_dir/env"
  print_info
}

case "${1:-start}" in
  start) start_all ;;
  stop) stop_all ;;
  status)
    for p in controller agent; do
      if alive "$run_dir/$p.pid"; then echo "$p: running (pid $(cat "$run_dir/$p.pid"))"; else echo "$p: stopped"; fi
    done ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
