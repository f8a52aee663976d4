#!/bin/bash
# Executes the README's curl lines exactly as written against a cluster started by
# scripts/run.sh, and checks with virsh that the VM they made really runs.
# usage: readme_curl_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
run_dir=$(mktemp -d /tmp/kvmfleet-readme-XXXXXX)
export KVMFLEET_RUN_DIR=$run_dir KVMFLEET_NO_BUILD=1 KVMFLEET_BUILD_DIR=$build
export KVMFLEET_PORT=$((20000 + RANDOM % 10000)) KVMFLEET_AGENT_PORT=$((30000 + RANDOM % 10000))

cleanup() {
  "$src/scripts/run.sh" stop >/dev/null 2>&1 || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; echo "--- controller log"; tail -20 "$run_dir/controller.log" || true;
         echo "--- agent log"; tail -20 "$run_dir/agent.log" || true; exit 1; }

"$src/scripts/run.sh" start >"$run_dir/run.out" 2>&1 || { cat "$run_dir/run.out"; fail "run.sh start"; }
# shellcheck disable=SC1091
. "$run_dir/env"

# The lines between the README's markers, inside its fenced block.
mapfile -t lines < <(awk '/<!-- readme-curl-begin -->/{on=1; next} /<!-- readme-curl-end -->/{on=0} on && /^curl /' "$src/README.md")
[ "${#lines[@]}" -eq 3 ] || fail "expected 3 curl lines in README.md, found ${#lines[@]}"

outputs=()
for line in "${lines[@]}"; do
  echo "+ $line"
  out=$(bash -c "$line") || fail "line failed: $line"
  echo "$out"
  outputs+=("$out")
done

check() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); $2" "$1" || fail "$3"; }
check "${outputs[0]}" 'assert d["kind"]=="vm.create" and d["state"]=="succeeded", d' "create did not succeed"
check "${outputs[1]}" 'assert d["kind"]=="vm.start" and d["state"]=="succeeded", d' "start did not succeed"
check "${outputs[2]}" 'v=[i for i in d["items"] if i["name"]=="demo"]; assert v and v[0]["state"]=="running", d' "list does not show demo running"

# libvirt's own word, inside the namespace where the run command's libvirtd lives
# (or the machine's, when it has one).
if [ -f "$run_dir/ns.pid" ]; then
  state=$(nsenter -t "$(cat "$run_dir/ns.pid")" -m -u virsh -c qemu:///system domstate demo)
else
  state=$(virsh -c qemu:///system domstate demo)
fi
[ "$state" = "running" ] || fail "virsh says demo is '$state'"
echo "virsh: demo is $state"

del=$(curl -s -X DELETE -H "Authorization: Bearer $KVMFLEET_TOKEN" "$KVMFLEET_URL/v1/vms/demo?force=true&wait=60")
check "$del" 'assert d["state"]=="succeeded", d' "delete of demo did not succeed"
"$src/scripts/run.sh" stop
for f in controller.pid agent.pid ns.pid; do
  [ ! -f "$run_dir/$f" ] || fail "$f still recorded after stop"
done
echo "1 passed, 0 failed"
