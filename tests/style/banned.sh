#!/bin/sh
# Fails if a banned string function appears in product code (README "C hygiene").
set -u
root=${1:-.}
hits=$(grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets|alloca|strncpy)\s*\(' \
    "$root"/proxy/*.c "$root"/proxy/*.h "$root"/proxy/base/*.c "$root"/proxy/base/*.h \
    "$root"/auth/*.c "$root"/auth/*.h "$root"/conf/*.c "$root"/conf/*.h 2>/dev/null)
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    exit 1
fi
echo "1 passed, 0 failed"
