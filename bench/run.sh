#!/usr/bin/env bash
# bench/run.sh: authproxy side by side with nginx, haproxy and tinyproxy on loopback.
#
# Plain HTTP in, HTTPS out (TLS verified against a throwaway test CA), one small fixed JSON
# response, measured with wrk at 1 and 64 connections. Prints a Markdown table and writes it to
# bench/results.md. See bench/README.md.
#
# Environment: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 2), BENCH_CONNS
# (default "1 64"), BENCH_THREADS (wrk threads for >1 connection, default 2), BENCH_ONLY
# (space-separated subset of: direct authproxy nginx haproxy authproxy-oauth2 authproxy-curl
# direct-plain tinyproxy authproxy-plain), BENCH_OUT (report file, default bench/results.md),
# BENCH_KEEP=1 (keep the work directory), BENCH_NO_INSTALL=1 (never apt-get), BENCH_LOG_LEVEL
# (authproxy log_level, default warn: no access log), BENCH_CALLGRIND=1 (also count instructions
# per request under callgrind; BENCH_CG_WARMUP, BENCH_CG_WINDOW seconds).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD="$ROOT/build-bench"
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-"1 64"}
THREADS=${BENCH_THREADS:-2}
ONLY=${BENCH_ONLY:-"direct authproxy nginx haproxy authproxy-oauth2 authproxy-curl direct-plain tinyproxy authproxy-plain"}
OUT=${BENCH_OUT:-$BENCH_DIR/results.md}
PY=/usr/bin/python3
STATIC_TOKEN=bench-static-token
OAUTH_TOKEN=bench-oauth-token

log() { printf '[bench %3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- Tools -------------------------------------------------------------------------------------
need_install=()
for pair in wrk:wrk nginx:nginx haproxy:haproxy tinyproxy:tinyproxy openssl:openssl \
            taskset:util-linux cmake:cmake curl:curl; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_install+=("$pkg")
done
[ -x "$PY" ] || need_install+=(python3)
if [ ${#need_install[@]} -gt 0 ]; then
    [ "${BENCH_NO_INSTALL:-0}" = 1 ] && die "missing: ${need_install[*]}"
    log "installing: ${need_install[*]}"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_install[@]}" >/dev/null
    # Debian starts the packaged services; the benchmark runs its own instances on other ports.
    for svc in nginx haproxy tinyproxy; do
        $SUDO systemctl stop "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
    done
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- Build -------------------------------------------------------------------------------------
log "building authproxy (Release) in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
AUTHPROXY="$BUILD/proxy/authproxy"
[ -x "$AUTHPROXY" ] || die "no $AUTHPROXY after the build"

# --- Is the machine idle? ----------------------------------------------------------------------
# Other work on the machine skews every number; measure it for 2 s and say so in the report.
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
b0=$(busy_jiffies); sleep 2; b1=$(busy_jiffies)
BUSY_PCT=$(( 100 * (${b1% *} - ${b0% *}) / ( (${b1% *} - ${b0% *}) + (${b1#* } - ${b0#* }) + 1 ) ))
BUSY_NOTE="; machine busy before start: ${BUSY_PCT}% of all cores"
if [ "$BUSY_PCT" -gt 10 ]; then
    log "warning: the machine is ${BUSY_PCT}% busy before the benchmark starts; results will be skewed"
    BUSY_NOTE="$BUSY_NOTE (**not idle: numbers are skewed**)"
fi

# --- Work directory, cleanup -------------------------------------------------------------------
WORK=$(mktemp -d /tmp/authproxy-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()          # every process we started, by pid
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- CPU placement -----------------------------------------------------------------------------
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
    ON_PROXY_CPU=(taskset -c 0)   # the proxy under test, alone on core 0
    ON_LOAD_CPU=(taskset -c 1)    # wrk, the origin and the token server on core 1
    PLACEMENT="proxy pinned to core 0; wrk, origin nginx and token server pinned to core 1"
else
    ON_PROXY_CPU=() ON_LOAD_CPU=()
    PLACEMENT="single core: nothing pinned"
fi

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
P_ORIGIN=$(free_port) P_PLAIN=$(free_port) P_TOKEN=$(free_port) P_PROXY=$(free_port)
while [ "$P_PLAIN" = "$P_ORIGIN" ]; do P_PLAIN=$(free_port); done
while [ "$P_TOKEN" = "$P_ORIGIN" ] || [ "$P_TOKEN" = "$P_PLAIN" ]; do P_TOKEN=$(free_port); done
while [ "$P_PROXY" = "$P_ORIGIN" ] || [ "$P_PROXY" = "$P_PLAIN" ] || [ "$P_PROXY" = "$P_TOKEN" ]; do
    P_PROXY=$(free_port)
done

# --- Test CA and server certificate ------------------------------------------------------------
log "test CA in $WORK"
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 2 -subj "/CN=authproxy bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=bench.local" 2>/dev/null
    printf 'subjectAltName=DNS:bench.local,DNS:token.local\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
        -extfile server.ext -out server.pem 2>/dev/null
    chmod 644 ./*.pem ./*.key
)

# --- Helpers -----------------------------------------------------------------------------------
NOPROXY_ENV=(env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u no_proxy -u NO_PROXY -u all_proxy -u ALL_PROXY)

# wait_ok NAME CURL-ARGS...: until the request answers 200 with the origin's body (10 s at most)
wait_ok() {
    local name=$1; shift
    local body
    for _ in $(seq 100); do
        body=$("${NOPROXY_ENV[@]}" curl -s --max-time 2 -o - -w '\n%{http_code}' "$@" 2>/dev/null || true)
        if [ "$(printf '%s' "$body" | tail -n1)" = 200 ] && printf '%s' "$body" | grep -q '"ok":true'; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer 200 {\"ok\":true} (last: $(printf '%s' "$body" | tr '\n' ' '))"
}

# pids_of PID: the process and its children (nginx's master and workers)
pids_of() {
    echo "$1"
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true
}
cpu_ticks() { # "utime stime" of the processes in clock ticks, all threads included
    local u=0 s=0 p v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}') || v=
        [ -n "$v" ] || continue
        u=$((u + ${v% *})) s=$((s + ${v#* }))
    done
    echo "$u $s"
}
hwm_kb() { # peak RSS (VmHWM), summed over the processes
    local t=0 p v
    for p in "$@"; do
        v=$(awk '/^VmHWM:/{print $2}' "/proc/$p/status" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
wrk_threads() { if [ "$1" -gt 1 ]; then echo "$THREADS"; else echo 1; fi; }

# --- Origin: nginx, HTTPS (HTTP/1.1 only) and plain HTTP, fixed JSON body ----------------------
mkdir -p "$WORK/origin"
cat >"$WORK/origin/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/origin/tmp_body;
    proxy_temp_path $WORK/origin/tmp_proxy;
    fastcgi_temp_path $WORK/origin/tmp_fastcgi;
    uwsgi_temp_path $WORK/origin/tmp_uwsgi;
    scgi_temp_path $WORK/origin/tmp_scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type application/json;
    # The origin refuses a request without the injected credential, so a proxy that forgot it
    # shows up as errors (non-2xx) in the table.
    map \$http_authorization \$auth_ok {
        "Bearer $STATIC_TOKEN" 1;
        "Bearer $OAUTH_TOKEN" 1;
        default 0;
    }
    server {
        listen 127.0.0.1:$P_ORIGIN ssl;
        listen 127.0.0.1:$P_PLAIN;
        server_name bench.local;
        ssl_certificate $WORK/server.pem;
        ssl_certificate_key $WORK/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        location / {
            if (\$auth_ok = 0) { return 401 '{"error":"missing credential"}'; }
            return 200 '{"ok":true}';
        }
        # request counter for the callgrind mode (instructions per request)
        location = /__stub_status { stub_status; }
    }
}
EOF
log "origin nginx on 127.0.0.1:$P_ORIGIN (https) and :$P_PLAIN (http)"
"${ON_LOAD_CPU[@]}" nginx -p "$WORK/origin" -e "$WORK/origin/error.log" \
    -c "$WORK/origin/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_ok "origin" --cacert "$WORK/ca.pem" --resolve "bench.local:$P_ORIGIN:127.0.0.1" \
    -H "Authorization: Bearer $STATIC_TOKEN" "https://bench.local:$P_ORIGIN/"

# --- Token server (oauth2) ---------------------------------------------------------------------
log "token server on 127.0.0.1:$P_TOKEN"
"${ON_LOAD_CPU[@]}" "$PY" "$BENCH_DIR/token_server.py" "$P_TOKEN" "$WORK/server.pem" \
    "$WORK/server.key" "$WORK/token_count" 3600 "$OAUTH_TOKEN" &
PIDS+=($!)
for _ in $(seq 50); do
    "${NOPROXY_ENV[@]}" curl -s --max-time 2 --cacert "$WORK/ca.pem" \
        --resolve "token.local:$P_TOKEN:127.0.0.1" -o /dev/null -d x \
        "https://token.local:$P_TOKEN/probe" && break
    sleep 0.1
done
[ -s "$WORK/token_count" ] || die "token server did not start"
token_count() { cat "$WORK/token_count" 2>/dev/null || echo 0; }

# --- Proxy configurations ----------------------------------------------------------------------
authproxy_conf() { # FILE CREDENTIAL [FAST_PATH]
    cat >"$1" <<EOF
{
  "listen": "127.0.0.1:$P_PROXY",
  "upstream_fast_path": ${3:-true},
  "admin": false,
  "log_level": "${BENCH_LOG_LEVEL:-warn}",
  "tls": { "ca_file": "$WORK/ca.pem" },
  "connect_to": {
    "bench.local:443": "127.0.0.1:$P_ORIGIN",
    "token.local:443": "127.0.0.1:$P_TOKEN"
  },
  "credentials": {
    "static": { "provider": "static", "token": "$STATIC_TOKEN" },
    "oauth": {
      "provider": "oauth2",
      "token_url": "https://token.local/token",
      "client_id": "bench",
      "client_secret": "bench-secret",
      "auth_method": "client_secret_basic"
    }
  },
  "routes": [
    { "path": "/api/", "upstream": "https://bench.local/", "credential": "$2" },
    { "host": "plain.local", "upstream": "http://127.0.0.1:$P_PLAIN", "credential": "static" }
  ]
}
EOF
    "$AUTHPROXY" --check -c "$1" >"$1.check" 2>&1 || { cat "$1.check" >&2; die "authproxy --check failed for $1"; }
}
mkdir -p "$WORK/authproxy" "$WORK/nginx" "$WORK/haproxy" "$WORK/tinyproxy"
authproxy_conf "$WORK/authproxy/static.json" static
authproxy_conf "$WORK/authproxy/oauth2.json" oauth
authproxy_conf "$WORK/authproxy/static-curl.json" static false

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp_body;
    proxy_temp_path $WORK/nginx/tmp_proxy;
    fastcgi_temp_path $WORK/nginx/tmp_fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp_uwsgi;
    scgi_temp_path $WORK/nginx/tmp_scgi;
    keepalive_requests 10000000;
    upstream origin {
        server 127.0.0.1:$P_ORIGIN;
        keepalive 128;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$P_PROXY;
        location /api/ {
            proxy_pass https://origin/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host bench.local;
            proxy_set_header Authorization "Bearer $STATIC_TOKEN";
            proxy_ssl_server_name on;
            proxy_ssl_name bench.local;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $WORK/ca.pem;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF

cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
    ssl-server-verify required
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$P_PROXY
    default_backend origin
backend origin
    http-reuse always
    http-request replace-path ^/api(/.*)?\$ \1
    http-request set-header Host bench.local
    http-request set-header Authorization "Bearer $STATIC_TOKEN"
    server o1 127.0.0.1:$P_ORIGIN ssl verify required ca-file $WORK/ca.pem sni str(bench.local) verifyhost bench.local alpn http/1.1
EOF
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" || die "haproxy config check failed"

chmod 777 "$WORK/tinyproxy"
cat >"$WORK/tinyproxy/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $P_PROXY
Listen 127.0.0.1
Timeout 600
MaxClients 1024
LogFile "$WORK/tinyproxy/tinyproxy.log"
LogLevel Error
PidFile "$WORK/tinyproxy/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
AddHeader "Authorization" "Bearer $STATIC_TOKEN"
EOF

# wrk scripts: absolute-form requests for the forward-proxy (plain) rows
cat >"$WORK/abs-tinyproxy.lua" <<EOF
wrk.path = "http://127.0.0.1:$P_PLAIN/x"
wrk.headers["Host"] = "127.0.0.1:$P_PLAIN"
EOF
cat >"$WORK/abs-authproxy.lua" <<EOF
wrk.path = "http://plain.local/x"
wrk.headers["Host"] = "plain.local"
EOF

# --- Starting each peer ------------------------------------------------------------------------
# start_KEY: start the proxy in the background, set MAIN_PID, wait until a request goes through.
start_authproxy_with() {
    "${ON_PROXY_CPU[@]}" "$AUTHPROXY" -c "$1" 2>>"$WORK/authproxy/stderr.log" &
    MAIN_PID=$!; PIDS+=("$MAIN_PID")
}
start_authproxy() {
    start_authproxy_with "$WORK/authproxy/static.json"
    wait_ok authproxy "http://127.0.0.1:$P_PROXY/api/x"
}
start_authproxy_curl() {
    start_authproxy_with "$WORK/authproxy/static-curl.json"
    wait_ok authproxy-curl "http://127.0.0.1:$P_PROXY/api/x"
}
start_authproxy_oauth2() {
    start_authproxy_with "$WORK/authproxy/oauth2.json"
    wait_ok authproxy-oauth2 "http://127.0.0.1:$P_PROXY/api/x"
}
start_authproxy_plain() {
    start_authproxy_with "$WORK/authproxy/static.json"
    wait_ok authproxy-plain -x "http://127.0.0.1:$P_PROXY" "http://plain.local/x"
}
start_nginx() {
    "${ON_PROXY_CPU[@]}" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" \
        -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    MAIN_PID=$!; PIDS+=("$MAIN_PID")
    wait_ok nginx "http://127.0.0.1:$P_PROXY/api/x"
}
start_haproxy() {
    "${ON_PROXY_CPU[@]}" haproxy -db -f "$WORK/haproxy/haproxy.cfg" 2>>"$WORK/haproxy/stderr.log" &
    MAIN_PID=$!; PIDS+=("$MAIN_PID")
    wait_ok haproxy "http://127.0.0.1:$P_PROXY/api/x"
}
start_tinyproxy() {
    "${ON_PROXY_CPU[@]}" tinyproxy -d -c "$WORK/tinyproxy/tinyproxy.conf" \
        >>"$WORK/tinyproxy/stderr.log" 2>&1 &
    MAIN_PID=$!; PIDS+=("$MAIN_PID")
    wait_ok tinyproxy -x "http://127.0.0.1:$P_PROXY" "http://127.0.0.1:$P_PLAIN/x"
}

# --- Measuring ---------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
CLK=$(getconf CLK_TCK)

run_wrk() { # OUTFILE SECONDS CONNS URL [wrk args...]
    local out=$1 secs=$2 c=$3 url=$4; shift 4
    timeout $((secs + 30)) "${ON_LOAD_CPU[@]}" wrk -t"$(wrk_threads "$c")" -c"$c" -d"${secs}s" \
        --latency "$@" "$url" >"$out" 2>&1 || log "wrk exited non-zero (see $out)"
}

# measure KEY LABEL SECTION URL [wrk args...]: for each connection count, a fresh proxy,
# a warm-up, then the measured run with the proxy's CPU time and peak RSS.
measure() {
    local key=$1 label=$2 section=$3 url=$4; shift 4
    case " $ONLY " in *" $key "*) ;; *) return 0 ;; esac
    local c out t0 t1 hwm tok pids
    for c in $CONNS; do
        out="$WORK/wrk-$key-$c.txt"
        if [ "$section" = direct ]; then
            [ "$WARMUP" -gt 0 ] && run_wrk "$out.warm" "$WARMUP" "$c" "$url" "$@"
            log "$label, $c conn: ${DURATION}s"
            run_wrk "$out" "$DURATION" "$c" "$url" "$@"
            printf '%s\t%s\t%s\t%s\t%s\t-\t-\t%s\t-\t-\n' "$key" "$label" "$section" "$c" "$out" "$CLK" >>"$RESULTS"
            continue
        fi
        local tok0; tok0=$(token_count)
        "start_${key//-/_}"
        [ "$WARMUP" -gt 0 ] && run_wrk "$out.warm" "$WARMUP" "$c" "$url" "$@"
        mapfile -t pids < <(pids_of "$MAIN_PID")
        log "$label, $c conn: ${DURATION}s (pids ${pids[*]})"
        t0=$(cpu_ticks "${pids[@]}")
        run_wrk "$out" "$DURATION" "$c" "$url" "$@"
        t1=$(cpu_ticks "${pids[@]}")
        hwm=$(hwm_kb "${pids[@]}")
        tok=-
        [ "$key" = authproxy-oauth2 ] && tok=$(( $(token_count) - tok0 ))
        stop_pid "$MAIN_PID"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$label" "$section" "$c" "$out" \
            $((${t1% *} - ${t0% *})) $((${t1#* } - ${t0#* })) "$CLK" "$hwm" "$tok" >>"$RESULTS"
    done
}

AUTH=(-H "Authorization: Bearer $STATIC_TOKEN")
measure direct           "direct to origin (wrk does the TLS)" direct "https://127.0.0.1:$P_ORIGIN/api/x" "${AUTH[@]}"
measure authproxy        "(a) authproxy, static token"        https "http://127.0.0.1:$P_PROXY/api/x"
measure nginx            "(b) nginx proxy_pass https"          https "http://127.0.0.1:$P_PROXY/api/x"
measure haproxy          "(c) haproxy ssl verify required"     https "http://127.0.0.1:$P_PROXY/api/x"
measure authproxy-oauth2 "(e) authproxy, oauth2 client_credentials" https "http://127.0.0.1:$P_PROXY/api/x"
measure authproxy-curl   "(a') authproxy, static token, upstream_fast_path off (curl only)" https "http://127.0.0.1:$P_PROXY/api/x"
measure direct-plain     "direct to origin, plain HTTP"        direct "http://127.0.0.1:$P_PLAIN/x" "${AUTH[@]}"
measure tinyproxy        "(d) tinyproxy forward proxy, HTTP→HTTP" plain "http://127.0.0.1:$P_PROXY/" -s "$WORK/abs-tinyproxy.lua"
measure authproxy-plain  "authproxy forward proxy, HTTP→HTTP (like d)" plain "http://127.0.0.1:$P_PROXY/" -s "$WORK/abs-authproxy.lua"

# --- Optional: instructions per request under callgrind ----------------------------------------
# BENCH_CALLGRIND=1: authproxy (static), nginx and haproxy each run under valgrind's callgrind with
# 64 connections; after BENCH_CG_WARMUP s the instruction counters are switched on for
# BENCH_CG_WINDOW s, and the origin's request counter (stub_status) gives the requests in that
# window. Valgrind slows the proxy ~50x, so only the instruction counts mean anything.
CG_MD="$WORK/callgrind.md"
: >"$CG_MD"
origin_requests() {
    "${NOPROXY_ENV[@]}" curl -s --max-time 5 "http://127.0.0.1:$P_PLAIN/__stub_status" |
        awk 'NR==3{print $3}'
}
profile() { # KEY LABEL TOP CMD...
    local key=$1 label=$2 top=$3; shift 3
    local cgout="$WORK/cg-$key.out" vg wrkpid r0 r1
    log "callgrind: $label"
    "${ON_PROXY_CPU[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cgout" "$@" \
        >"$WORK/cg-$key.log" 2>&1 &
    vg=$!; PIDS+=("$vg")
    wait_ok "$key under callgrind" "http://127.0.0.1:$P_PROXY/api/x"
    "${ON_LOAD_CPU[@]}" wrk -t"$THREADS" -c64 -d$((CG_WARM + CG_WIN + 20))s \
        "http://127.0.0.1:$P_PROXY/api/x" >"$WORK/cg-$key.wrk" 2>&1 &
    wrkpid=$!; PIDS+=("$wrkpid")
    sleep "$CG_WARM"
    r0=$(origin_requests)
    callgrind_control -i on "$vg" >/dev/null
    sleep "$CG_WIN"
    callgrind_control -d "$vg" >/dev/null
    r1=$(origin_requests)
    callgrind_control -i off "$vg" >/dev/null
    stop_pid "$wrkpid"
    stop_pid "$vg"
    if [ -s "$cgout.1" ] && [ -n "$r0" ] && [ -n "$r1" ]; then
        # one stub_status request falls inside the window
        "$PY" "$BENCH_DIR/cgsummary.py" "$cgout.1" $((r1 - r0 - 1)) "$label" "$top" >>"$CG_MD"
    else
        log "callgrind: no dump for $key"
    fi
}
if [ "${BENCH_CALLGRIND:-0}" = 1 ]; then
    command -v valgrind >/dev/null || die "BENCH_CALLGRIND=1 needs valgrind (apt-get install valgrind)"
    CG_WARM=${BENCH_CG_WARMUP:-6} CG_WIN=${BENCH_CG_WINDOW:-10}
    {
        echo "## Instructions per request (callgrind, 64 connections, ${CG_WIN}s window)"
        echo
        echo "Counted by valgrind, so kernel work (syscalls) is not included, and \`rep stosb\`/\`rep movsb\`"
        echo "(glibc's memset/memcpy for larger blocks) count one instruction per byte: libc's share is"
        echo "inflated relative to real CPU time. Addresses without names are functions in stripped"
        echo "libraries (no debug symbols installed)."
        echo
    } >>"$CG_MD"
    profile authproxy "authproxy, static token" 25 "$AUTHPROXY" -c "$WORK/authproxy/static.json"
    profile authproxy-curl "authproxy, static token, curl only (upstream_fast_path off)" 12 \
        "$AUTHPROXY" -c "$WORK/authproxy/static-curl.json"
    profile nginx "nginx proxy_pass https" 8 nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" \
        -c "$WORK/nginx/nginx.conf" -g 'daemon off; master_process off;'
    profile haproxy "haproxy" 8 haproxy -db -f "$WORK/haproxy/haproxy.cfg"
fi

# --- Report ------------------------------------------------------------------------------------
case "${BENCH_LOG_LEVEL:-warn}" in
    info|debug) ACCESS_NOTE="access logs off for the peers, **on** for authproxy (\`log_level\` \`$BENCH_LOG_LEVEL\`: one JSON line per request to stderr, here a file)" ;;
    *) ACCESS_NOTE="access logs off everywhere (authproxy: \`log_level\` \`${BENCH_LOG_LEVEL:-warn}\`; its access log is written at \`info\`)" ;;
esac
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null || COMMIT="$COMMIT+dirty"
MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
{
    if [ -s "$RESULTS" ]; then echo "# authproxy benchmark results"; else echo "# authproxy instruction counts"; fi
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $NCPU cores (nproc), $MODEL, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "- authproxy $COMMIT (Release, $BUILD); $(nginx -v 2>&1 | sed 's/nginx version: //'); haproxy $(haproxy -v | awk 'NR==1{print $3}'); tinyproxy $(tinyproxy -v 2>&1 | awk '{print $2}'); wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}'); libcurl $(curl --version | awk 'NR==1{print $2}'); $(openssl version | awk '{print $1, $2}')"
    [ -s "$RESULTS" ] && echo "- wrk: ${DURATION}s per run after a ${WARMUP}s warm-up, 1 thread at 1 connection, $THREADS threads otherwise, --latency; a fresh proxy process per run"
    echo "- placement: $PLACEMENT"
    echo "- path: wrk → proxy over plain HTTP on 127.0.0.1 → origin nginx over HTTPS (HTTP/1.1, TLS 1.3, verified against a test CA), response \`{\"ok\":true}\`; the origin answers 401 without the injected \`Authorization\`, so a missing credential counts as errors"
    [ -s "$RESULTS" ] && echo "- CPU = utime+stime of the proxy's processes (nginx: master+worker) over the measured run, per 10k requests; core busy = that CPU time / wall time; peak RSS = VmHWM summed over the proxy's processes; $ACCESS_NOTE"
    echo "- load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)${BUSY_NOTE}"
} >"$WORK/meta.md"
if [ -s "$RESULTS" ]; then
    "$PY" "$BENCH_DIR/report.py" "$RESULTS" "$WORK/meta.md" >"$WORK/report.md"
else
    cat "$WORK/meta.md" >"$WORK/report.md"; echo >>"$WORK/report.md"
fi
cat "$CG_MD" >>"$WORK/report.md"
cp "$WORK/report.md" "$OUT"
cat "$WORK/report.md"
log "done in ${SECONDS}s; report written to $OUT"
