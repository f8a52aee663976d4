#!/bin/sh
# Installs, checks the formatting, builds and runs kvmfleet's whole test suite with
# ctest: unit tests, the agent against libvirt's test driver, the contract test, and
# the lab tests on real libvirtd + KVM (each lab test makes and removes its own
# namespaces and daemons).
# usage: scripts/test.sh [extra ctest options...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
# First, since it takes seconds where the build and the suite take many minutes.
"$top/scripts/format.sh" --check
"$top/scripts/build.sh"
build="${KVMFLEET_BUILD_DIR:-$top/build}"
cd "$build"
exec ctest --output-on-failure --timeout 1200 "$@"
