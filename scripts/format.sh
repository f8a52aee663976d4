#!/bin/sh
# Formats every C++ file of kvmfleet (src, include, tests, bench) with the checked-in
# .clang-format. With --check it changes nothing: it names each file that clang-format
# would change and exits 1 if there is any (scripts/test.sh runs it so).
# usage: scripts/format.sh [--check]
# environment: CLANG_FORMAT  the clang-format to run (default: clang-format; Debian 12's
#              is version 14, which scripts/install-deps.sh installs and CI uses)
set -eu

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "$0")/.." && pwd)
clang_format="${CLANG_FORMAT:-clang-format}"
command -v "$clang_format" >/dev/null 2>&1 ||
  { echo "format: $clang_format not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
cd "$top"

# NUL-separated paths relative to the top, so that messages name files as a reader
# finds them. One clang-format run takes them all: a process per file is slow.
list_files() {
  find src include tests bench -type f \
    \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cc' \) -print0 | LC_ALL=C sort -z
}

if [ "$check" = 0 ]; then
  list_files | xargs -0 "$clang_format" --style=file -i
  exit 0
fi

# --ferror-limit=1 keeps one complaint per file; the list of files and the fix read
# better than every differing line when much of the tree is off.
status=0
out=$(list_files | xargs -0 "$clang_format" --style=file --dry-run --Werror --ferror-limit=1 2>&1) ||
  status=$?
bad=$(printf '%s\n' "$out" |
  sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*$/\1/p' | uniq)
if [ -z "$bad" ]; then
  if [ "$status" != 0 ]; then
    # Not a formatting difference: clang-format itself failed (e.g. a bad .clang-format),
    # likely once per file, so the start tells it all.
    printf '%s\n' "$out" | head -n 20 >&2
    echo "format: $clang_format failed" >&2
    exit 2
  fi
  echo "format: all $(list_files | tr -cd '\0' | wc -c) C++ files match .clang-format"
  exit 0
fi
echo "format: $(printf '%s\n' "$bad" | wc -l) file(s) differ from .clang-format" \
  "($("$clang_format" --version)):" >&2
printf '%s\n' "$bad" | sed 's/^/  /' >&2
echo "format: fix with scripts/format.sh (formats them in place); to see one file's changes:" >&2
echo "        $clang_format --style=file FILE | diff FILE -" >&2
exit 1
