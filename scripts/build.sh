#!/bin/sh
# Installs what kvmfleet needs (Debian packages only) and builds it into ./build.
# usage: scripts/build.sh [--target NAME]... [extra cmake -D options...]
#   --target NAME  build only NAME and what it needs (repeatable); default: everything
# Every caller configures ./build the same way, so that building a few targets first
# (scripts/run.sh) leaves their objects for a later full build (scripts/test.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
targets=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target)
      [ $# -ge 2 ] || { echo "build: --target needs a name" >&2; exit 2; }
      targets="$targets $2"
      shift 2 ;;
    *) break ;;
  esac
done
"$top/scripts/install-deps.sh"
build="${KVMFLEET_BUILD_DIR:-$top/build}"
jobs="${KVMFLEET_JOBS:-$(nproc)}"
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE="${KVMFLEET_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
if [ -n "$targets" ]; then
  # shellcheck disable=SC2086  # target names hold no spaces; the list splits into words
  cmake --build "$build" -j "$jobs" --target $targets
else
  cmake --build "$build" -j "$jobs"
fi
