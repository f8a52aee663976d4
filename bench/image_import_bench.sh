#!/bin/bash
# Importing an image through the API (POST /v1/images, then the data streamed with
# `curl -T`: written to disk, hashed with SHA-256, checked with qemu-img) against
# `qemu-img convert` of the same file to the same disk, side by side in one run. The
# figure that matters is the ratio import ÷ convert (goal <= 1.1). It prints figures
# only; nothing here passes or fails.
#
# It starts a kvmfleet-controller on 127.0.0.1 with a temporary database and image
# directory (recorded by pid, stopped on exit) and makes the image, random bytes, in
# the same temporary directory.
#
# usage: bench/image_import_bench.sh [BUILD_DIR]     (default BUILD_DIR: ./build)
# environment:
#   BENCH_IMAGE_MIB  size of the image in MiB  (default 1024)
#   BENCH_ROUNDS     rounds, each an import then a convert  (default 3)
#   BENCH_DIR        where the temporary directory goes  (default /var/tmp)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
bin="$build/src/exe"
size_mib=${BENCH_IMAGE_MIB:-1024}
rounds=${BENCH_ROUNDS:-3}

say() { printf 'image_import_bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in curl qemu-img python3; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ -x "$bin/kvmfleet-controller" ] || die "no kvmfleet-controller in $bin"

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kvmfleet-image-bench.XXXXXX")
controller_pid=""

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
now() { date +%s.%N; }

port=$(free_port)
url="http://127.0.0.1:$port"
cat >"$work/controller.json" <<JSON
{"listen_address": "127.0.0.1", "listen_port": $port,
 "database_path": "$work/controller.db", "bootstrap_token_file": "$work/admin.token",
 "image_dir": "$work/image-store"}
JSON
"$bin/kvmfleet-controller" --config "$work/controller.json" --log-level warn \
  >>"$work/controller.log" 2>&1 &
controller_pid=$!
wait_for 30 curl -sf "$url/v1/healthz" || die "controller did not come up; $(tail -5 "$work/controller.log")"
token=$(cat "$work/admin.token")

say "making a $size_mib MiB image"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/disk.raw"
sha=$(sha256sum "$work/disk.raw" | cut -d' ' -f1)
sync

printf '%-6s %12s %12s %8s\n' round import_s convert_s ratio
total_import=0
total_convert=0
for round in $(seq "$rounds"); do
  curl -sSf -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    "$url/v1/images" -d "{\"name\":\"bench\",\"sha256\":\"$sha\"}" >/dev/null
  t0=$(now)
  reply=$(curl -sS -T "$work/disk.raw" -H "Authorization: Bearer $token" "$url/v1/images/bench/data")
  t1=$(now)
  printf '%s' "$reply" | grep -q '"state":"ready"' || die "import failed: $reply"
  curl -sSf -X DELETE -H "Authorization: Bearer $token" "$url/v1/images/bench" >/dev/null
  sync
  t2=$(now)
  qemu-img convert -f raw -O raw "$work/disk.raw" "$work/copy.raw"
  sync -f "$work/copy.raw"
  t3=$(now)
  rm -f "$work/copy.raw"
  sync
  import_s=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  convert_s=$(python3 -c "print(f'{$t3 - $t2:.2f}')")
  ratio=$(python3 -c "print(f'{($t1 - $t0) / ($t3 - $t2):.2f}')")
  printf '%-6s %12s %12s %8s\n' "$round" "$import_s" "$convert_s" "$ratio"
  total_import=$(python3 -c "print($total_import + $t1 - $t0)")
  total_convert=$(python3 -c "print($total_convert + $t3 - $t2)")
done
python3 -c "print(f'all    {$total_import:12.2f} {$total_convert:12.2f} {$total_import / $total_convert:8.2f}')"
