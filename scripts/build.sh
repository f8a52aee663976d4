#!/bin/sh
# Installs what kvmfleet needs (Debian packages only) and builds it into ./build.
# usage: scripts/build.sh [extra cmake -D options...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
build="${KVMFLEET_BUILD_DIR:-$top/build}"
jobs="${KVMFLEET_JOBS:-$(nproc)}"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE="${KVMFLEET_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build" -j "$jobs"
