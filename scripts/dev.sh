#!/usr/bin/env bash
# scripts/dev.sh: the two newcomer commands of the README.
#   scripts/dev.sh run    install build deps, build, run authproxy with conf/authproxy.json
#   scripts/dev.sh test   install build + test deps, build (warnings as errors), run every test,
#                         then the whole suite again under ASan+UBSan
# Debian 12. Uses apt-get (through sudo when not root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=$(nproc 2>/dev/null || echo 2)

BUILD_DEPS=(build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev libcjson-dev
            libssl-dev ca-certificates)
TEST_DEPS=(libcmocka-dev python3 python3-pytest openssl curl nghttp2-server clang clang-format
           libclang-rt-14-dev procps)
# Node.js (for the oidc-provider OAuth server in the tests) often comes from NodeSource, whose
# nodejs package bundles npm and conflicts with Debian's npm: only install Debian's when absent.
command -v npm >/dev/null 2>&1 || TEST_DEPS+=(nodejs npm)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
}

case "${1:-}" in
run)
    install_deps "${BUILD_DEPS[@]}"
    build build -DBUILD_TESTING=OFF
    exec "$ROOT/build/proxy/authproxy" -c "$ROOT/conf/authproxy.json"
    ;;
test)
    install_deps "${BUILD_DEPS[@]}" "${TEST_DEPS[@]}"
    echo "== build (warnings are errors) and test"
    build build -DAP_WERROR=ON -DBUILD_TESTING=ON
    (cd build && ctest --output-on-failure -j "$JOBS" -LE 'container|slow-asan')
    echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer and test"
    build build-asan -DAP_WERROR=ON -DBUILD_TESTING=ON -DAP_SANITIZE='address;undefined' \
        -DCMAKE_BUILD_TYPE=Debug
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --output-on-failure -j "$JOBS" -LE 'container|slow-asan|stream')
    if [ "${AP_SKIP_CONTAINER:-0}" != 1 ]; then
        echo "== container image"
        (cd build && ctest --output-on-failure -L container)
    fi
    ;;
*)
    echo "usage: scripts/dev.sh run|test" >&2
    exit 2
    ;;
esac
