#!/bin/sh
# Fails if a tracked C file differs from what clang-format (.clang-format) makes of it.
# Fix with: git ls-files '*.c' '*.h' | xargs clang-format -i
set -u
root=${1:-.}
cd "$root" || exit 1
bad=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find proxy auth conf tests -name '*.[ch]'); do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not clang-formatted: $f"
        bad=1
    fi
done
exit $bad
