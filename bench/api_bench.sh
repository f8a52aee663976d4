#!/bin/bash
# Throughput and tail latency of kvmfleet's busiest read, GET /v1/vms?limit=100 over
# 1,000 VMs, against nginx serving the very same bytes as a static file, side by side
# in one run on this machine. nginx is the ceiling: the figure that matters is the
# ratio kvmfleet ÷ nginx (target >= 0.8) and kvmfleet's p99 (target < 2 ms). It
# prints figures only; nothing here passes or fails.
#
# It starts, all on 127.0.0.1 and each recorded by pid, stopped on exit:
#   - a kvmfleet-agent on libvirt's built-in test:///default driver (an in-process
#     fake hypervisor, no daemon), so the 1,000 creates really succeed;
#   - a kvmfleet-controller with a temporary database, once per api_threads value;
#   - nginx (a private config, `daemon off`, in a temporary prefix).
#
# usage: bench/api_bench.sh [BUILD_DIR]     (as root; default BUILD_DIR: ./build)
# environment:
#   BENCH_THREADS   api_threads values to measure, in order  (default "2 1 3 4")
#   BENCH_ROUNDS    wrk rounds per value, each kvmfleet then nginx  (default 2)
#   BENCH_DURATION  seconds per wrk run                       (default 10)
#   BENCH_VMS       VMs to load                               (default 1000)
#   NGINX_WORKERS   nginx worker_processes                    (default auto)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
bin="$build/src/exe"
threads_list=${BENCH_THREADS:-"2 1 3 4"}
rounds=${BENCH_ROUNDS:-2}
duration=${BENCH_DURATION:-10}
vm_count=${BENCH_VMS:-1000}
nginx_workers=${NGINX_WORKERS:-auto}

say() { printf 'api_bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
for tool in wrk nginx curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk nginx-light curl python3)"
done
[ -x "$bin/kvmfleet-controller" ] && [ -x "$bin/kvmfleet-agent" ] || die "no binaries in $bin"

work=$(mktemp -d /tmp/kvmfleet-api-bench.XXXXXX)
controller_pid=""
agent_pid=""
nginx_pid=""

stop_pid() {  # stop_pid PID: TERM, wait up to 10 s, then KILL; only the pid given
  local pid=$1
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$nginx_pid"
  stop_pid "$agent_pid"
  stop_pid "$controller_pid"
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
agent_port=$(free_port)
nginx_port=$(free_port)
url="http://127.0.0.1:$ctl_port"

start_controller() {  # start_controller API_THREADS
  # The test driver's node has 16 CPUs and 3 GiB; overcommit lets 1,000 small VMs
  # fit on it. Placement does not take part in what is measured.
  cat >"$work/controller.json" <<JSON
{"listen_address": "127.0.0.1", "listen_port": $ctl_port, "api_threads": $1,
 "database_path": "$work/controller.db", "bootstrap_token_file": "$work/admin.token",
 "scheduler": {"memory_overcommit": 64, "cpu_overcommit": 64}}
JSON
  "$bin/kvmfleet-controller" --config "$work/controller.json" --log-level warn \
    >>"$work/controller.log" 2>&1 &
  controller_pid=$!
  wait_for 30 curl -sf "$url/v1/healthz" || die "controller did not come up; $(tail -5 "$work/controller.log")"
}

api() {  # api METHOD PATH [BODY]
  if [ $# -ge 3 ]; then
    curl -sS -X "$1" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$url$2" -d "$3"
  else
    curl -sS -X "$1" -H "Authorization: Bearer $token" "$url$2"
  fi
}

# --- the cluster: one controller, one agent on test:///default
first_threads=${threads_list%% *}
start_controller "$first_threads"
token=$(cat "$work/admin.token")

reply=$(api POST /v1/hosts "{\"name\":\"bench\",\"agent_url\":\"http://127.0.0.1:$agent_port\"}")
printf '%s' "$reply" | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_token"])' \
  >"$work/agent.token" || die "cannot register the host: $reply"
mkdir -p "$work/images"
cat >"$work/agent.json" <<JSON
{"host": "bench", "listen_address": "127.0.0.1", "listen_port": $agent_port,
 "controller_url": "$url", "token_file": "$work/agent.token",
 "libvirt_uri": "test:///default", "image_pool_path": "$work/images",
 "heartbeat_interval_ms": 2000}
JSON
"$bin/kvmfleet-agent" --config "$work/agent.json" --log-level warn >>"$work/agent.log" 2>&1 &
agent_pid=$!
host_up() { api GET /v1/hosts/bench | grep -q '"state":"up"'; }
wait_for 30 host_up || die "host did not report in; $(tail -5 "$work/agent.log")"

say "creating $vm_count VMs"
python3 - "$url" "$token" "$vm_count" <<'PY' || die "loading VMs failed"
import http.client, json, sys, time, urllib.parse
url, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
for i in range(count):
    body = {"name": "vm-%04d" % i, "vcpus": 1, "memory_mib": 16 * (1 + i % 8)}
    conn.request("POST", "/v1/vms", json.dumps(body), hdr)
    r = conn.getresponse()
    data = r.read()
    if r.status not in (200, 202):
        sys.exit("POST /v1/vms %d: %s" % (r.status, data[:300]))
# Creates run in the background; wait until none is pending any more.
deadline = time.time() + 300
while True:
    conn.request("GET", "/v1/vms?state=pending&limit=1", headers=hdr)
    r = conn.getresponse()
    items = json.loads(r.read())["items"]
    if not items:
        break
    if time.time() > deadline:
        sys.exit("VMs still pending after 300 s")
    time.sleep(0.5)
# Count them page by page.
total, cursor = 0, None
while True:
    conn.request("GET", "/v1/vms?limit=1000" + ("&cursor=" + cursor if cursor else ""), headers=hdr)
    page = json.loads(conn.getresponse().read())
    total += len(page["items"])
    cursor = page["next_cursor"]
    if not cursor:
        break
states = {}
conn.request("GET", "/v1/vms?limit=1000", headers=hdr)
for vm in json.loads(conn.getresponse().read())["items"]:
    states[vm["state"]] = states.get(vm["state"], 0) + 1
print("api_bench: %d VMs in the store; first page states: %s" % (total, states), file=sys.stderr)
if total != count:
    sys.exit("expected %d VMs, found %d" % (count, total))
PY

# --- the bytes nginx serves: one kvmfleet response, as is
curl -sSf -H "Authorization: Bearer $token" "$url/v1/vms?limit=100" -o "$work/vms.json"
body_bytes=$(stat -c %s "$work/vms.json")
say "GET /v1/vms?limit=100 is $body_bytes bytes"

mkdir -p "$work/nginx/logs" "$work/nginx/html"
cp "$work/vms.json" "$work/nginx/html/vms.json"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
# The workers read from the private (0700) temporary directory.
user root;
worker_processes $nginx_workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp;
  scgi_temp_path $work/nginx/tmp;
  types { application/json json; }
  default_type application/json;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/nginx/html;
  }
}
CONF
mkdir -p "$work/nginx/tmp"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx/logs/stderr.log" 2>&1 &
nginx_pid=$!
wait_for 10 curl -sf "http://127.0.0.1:$nginx_port/vms.json" ||
  die "nginx did not come up: $(cat "$work/nginx/logs/stderr.log" "$work/nginx/logs/error.log" 2>/dev/null)"
cmp -s "$work/vms.json" <(curl -sS "http://127.0.0.1:$nginx_port/vms.json") ||
  die "nginx does not serve the same bytes"

# --- wrk: one Lua script each; done() prints the exact figures to parse
cat >"$work/kvmfleet.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >>"$work/kvmfleet.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d seconds=%.3f p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6, latency:percentile(50), latency:percentile(99), latency.max))
end
LUA
sed '1d' "$work/kvmfleet.lua" >"$work/nginx.lua"

run_wrk() {  # run_wrk LABEL URL SCRIPT: prints "rps p99_ms p50_ms non2xx"
  local out
  out=$(wrk -t1 -c32 -d"${duration}s" --latency -s "$3" "$2")
  printf '%s\n' "$out" >>"$work/wrk-$1.log"
  printf '%s\n' "$out" | awk '/^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "%.0f %.3f %.3f %d\n", v["requests"] / v["seconds"], v["p99_us"] / 1000, v["p50_us"] / 1000, v["non2xx"] + v["errors"]
  }'
}

ctl_target="$url/v1/vms?limit=100"
nginx_target="http://127.0.0.1:$nginx_port/vms.json"
printf '\nGET /v1/vms?limit=100: %s VMs in the store, %s-byte body; wrk -t1 -c32 -d%ss; nginx worker_processes %s\n' \
  "$vm_count" "$body_bytes" "$duration" "$nginx_workers"
printf '%-11s %-5s %12s %12s %8s %14s %14s %8s\n' api_threads round kvmfleet_rps nginx_rps ratio kvmfleet_p99ms nginx_p99ms errors
for threads in $threads_list; do
  if [ "$threads" != "$first_threads" ] || [ -z "$controller_pid" ]; then
    stop_pid "$controller_pid"
    controller_pid=""
    start_controller "$threads"
    wait_for 30 host_up || die "host did not report in after the restart"
  fi
  first_threads=""
  # A short warm-up of both, not counted.
  wrk -t1 -c32 -d2s -s "$work/kvmfleet.lua" "$ctl_target" >/dev/null
  wrk -t1 -c32 -d2s "$nginx_target" >/dev/null
  for round in $(seq "$rounds"); do
    read -r k_rps k_p99 _k_p50 k_err < <(run_wrk kvmfleet "$ctl_target" "$work/kvmfleet.lua")
    read -r n_rps n_p99 _n_p50 n_err < <(run_wrk nginx "$nginx_target" "$work/nginx.lua")
    ratio=$(awk -v a="$k_rps" -v b="$n_rps" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')
    printf '%-11s %-5s %12s %12s %8s %14s %14s %8s\n' "$threads" "$round" "$k_rps" "$n_rps" "$ratio" \
      "$k_p99" "$n_p99" "$((k_err + n_err))"
  done
done
printf 'targets (from the issue): ratio >= 0.8, kvmfleet p99 < 2 ms\n'
