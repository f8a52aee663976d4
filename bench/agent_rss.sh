#!/bin/bash
# Resident memory of an idle kvmfleet-agent (target from the issue: VmRSS < 20 MB).
# The agent runs against a real controller on 127.0.0.1, heartbeating, and idles for
# BENCH_IDLE seconds; then VmRSS and its make-up are read from /proc. It prints
# figures only; nothing here passes or fails.
#
# Two libvirt connections are measured, each with a fresh agent:
#   test      libvirt's built-in test:///default driver (no daemon; the driver runs
#             inside the agent's own process, so it counts in the agent's RSS);
#   qemu      qemu:///system of a private libvirtd started by scripts/lab-host-init.sh
#             in its own mount + UTS namespace (the agent talks to it over its socket).
#             Skipped with BENCH_QEMU=0, or when libvirtd is not installed.
#
# Everything it starts is recorded by pid and stopped on exit; its temporary directory
# is removed.
#
# usage: bench/agent_rss.sh [BUILD_DIR]     (as root; default BUILD_DIR: ./build)
# environment:
#   BENCH_IDLE       seconds the agent idles before the reading  (default 10)
#   BENCH_HEARTBEAT  heartbeat interval in ms                     (default 2000)
#   BENCH_QEMU       0 to skip the qemu:///system case            (default 1)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
bin="$build/src/exe"
idle=${BENCH_IDLE:-10}
heartbeat_ms=${BENCH_HEARTBEAT:-2000}
with_qemu=${BENCH_QEMU:-1}

say() { printf 'agent_rss: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$bin/kvmfleet-controller" ] && [ -x "$bin/kvmfleet-agent" ] || die "no binaries in $bin"

work=$(mktemp -d /tmp/kvmfleet-agent-rss.XXXXXX)
pids=()  # everything started, stopped in reverse order

stop_pid() {  # stop_pid PID: TERM, wait up to 10 s, then KILL; only the pid given
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  # A private libvirtd and virtlogd daemonize; their pids were recorded by the init script.
  for f in "$work"/host-*/pids/libvirtd.pid "$work"/host-*/pids/virtlogd.pid; do
    [ -s "$f" ] && stop_pid "$(cat "$f")"
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

ctl_port=$(free_port)
url="http://127.0.0.1:$ctl_port"
"$bin/kvmfleet-controller" --database "$work/controller.db" --bootstrap-token-file "$work/admin.token" \
  --listen-address 127.0.0.1 --listen-port "$ctl_port" --log-level warn >"$work/controller.log" 2>&1 &
pids+=($!)
wait_for 30 curl -sf "$url/v1/healthz" || die "controller did not come up"
token=$(cat "$work/admin.token")

api() {  # api METHOD PATH [BODY]
  curl -sS -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$url$2" \
    ${3:+-d "$3"}
}

kib_field() {  # kib_field FILE KEY: the kB figure of one "Key:  N kB" line
  awk -v k="$2:" '$1 == k { print $2 }' "$1"
}

# measure CASE URI: registers a host, starts an agent for it, idles, reads /proc.
measure() {
  local case=$1 uri=$2
  local host="rss-$case" agent_port
  agent_port=$(free_port)
  local reply
  reply=$(api POST /v1/hosts "{\"name\":\"$host\",\"agent_url\":\"http://127.0.0.1:$agent_port\"}")
  printf '%s' "$reply" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_token"])' \
    >"$work/$case.token" || die "cannot register $host: $reply"
  mkdir -p "$work/$case-images"
  cat >"$work/$case.json" <<JSON
{"host": "$host", "listen_address": "127.0.0.1", "listen_port": $agent_port,
 "controller_url": "$url", "token_file": "$work/$case.token",
 "libvirt_uri": "$uri", "image_pool_path": "$work/$case-images",
 "heartbeat_interval_ms": $heartbeat_ms}
JSON
  local agent=("$bin/kvmfleet-agent" --config "$work/$case.json" --log-level warn)
  local pid
  if [ "$case" = qemu ]; then
    mkdir -p "$work/host-$case"
    # The init script execs itself under unshare, then execs the agent: same pid.
    "$top/scripts/lab-host-init.sh" --name "$host" --dir "$work/host-$case" \
      --uuid "$(cat /proc/sys/kernel/random/uuid)" -- "${agent[@]}" >"$work/$case.log" 2>&1 &
    pid=$!
  else
    "${agent[@]}" >"$work/$case.log" 2>&1 &
    pid=$!
  fi
  pids+=("$pid")
  host_up() { api GET "/v1/hosts/$host" | grep -q '"state":"up"'; }
  wait_for 90 host_up || die "$host did not report in; $(tail -5 "$work/$case.log")"
  [ "$(cat "/proc/$pid/comm")" = kvmfleet-agent ] || die "pid $pid is not the agent"
  local beat0
  beat0=$(api GET "/v1/hosts/$host" | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_heartbeat"])')
  sleep "$idle"
  local beat1
  beat1=$(api GET "/v1/hosts/$host" | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_heartbeat"])')
  [ "$beat0" != "$beat1" ] || say "$case: no heartbeat arrived while idling"
  cp "/proc/$pid/status" "$work/$case.status"
  cat "/proc/$pid/smaps" >"$work/$case.smaps" 2>/dev/null || true
  cp "/proc/$pid/smaps_rollup" "$work/$case.rollup"
  local rss hwm anon file shmem threads pss uss
  rss=$(kib_field "$work/$case.status" VmRSS)
  hwm=$(kib_field "$work/$case.status" VmHWM)
  anon=$(kib_field "$work/$case.status" RssAnon)
  file=$(kib_field "$work/$case.status" RssFile)
  shmem=$(kib_field "$work/$case.status" RssShmem)
  threads=$(awk '$1 == "Threads:" { print $2 }' "$work/$case.status")
  # Pss shares each shared page among the processes mapping it; Private (USS) is what
  # would be freed if the agent exited.
  pss=$(kib_field "$work/$case.rollup" Pss)
  uss=$(($(kib_field "$work/$case.rollup" Private_Clean) + $(kib_field "$work/$case.rollup" Private_Dirty)))
  mib() { bc <<<"scale=1; $1 / 1024"; }
  printf '%-6s %-16s %7.1f %7.1f %8.1f %8.1f %8.1f %7.1f %7.1f %7s\n' "$case" "$uri" \
    "$(mib "$rss")" "$(mib "$hwm")" "$(mib "$anon")" "$(mib "$file")" "$(mib "$shmem")" \
    "$(mib "$pss")" "$(mib "$uss")" "$threads" >>"$work/table"
  # Where the resident pages are: the largest mappings, file-backed ones by file.
  awk -v case="$case" '
    /^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anon]"; next }
    $1 == "Rss:" { rss[name] += $2 }
    END { for (n in rss) if (rss[n] >= 256) printf "%s %8d kB  %s\n", case, rss[n], n }
  ' "$work/$case.smaps" | sort -k2 -n -r | head -12 >>"$work/mappings"
  stop_pid "$pid"
}

command -v bc >/dev/null || die "bc is missing (apt-get install bc)"
measure test "test:///default"
if [ "$with_qemu" = 1 ]; then
  if command -v libvirtd >/dev/null && command -v virtlogd >/dev/null; then
    measure qemu "qemu:///system"
  else
    say "libvirtd is not installed: the qemu:///system case is skipped"
  fi
fi

printf '\nkvmfleet-agent after %s s idle, heartbeat every %s ms (MiB; target VmRSS < 20 MB)\n' "$idle" "$heartbeat_ms"
printf '%-6s %-16s %7s %7s %8s %8s %8s %7s %7s %7s\n' case libvirt_uri VmRSS VmHWM RssAnon RssFile RssShmem Pss Private threads
cat "$work/table"
printf '\nlargest resident mappings (>= 256 kB):\n'
cat "$work/mappings"
