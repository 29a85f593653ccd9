#!/usr/bin/env bash
# test_image.sh: the container image end to end (ctest container.image, label "container").
#
# Builds docker/Dockerfile (whose builder stage runs the unit tests), then runs the image with
# host networking against a local HTTPS stand-in for api.example.com (test CA, python3):
#   1. JSON config mounted read-only (AUTHPROXY_CONFIG), token from a mounted secret file:
#      health check healthy, /readyz 200, a proxied request gets the token injected, an unrouted
#      host gets 403, the token never appears in the logs, `stop` (SIGTERM) exits 0;
#   2. env-only mode (no config file, AUTHPROXY_* variables, AUTHPROXY_TOKEN_FILE): injection,
#      SIGTERM exit 0.
# Engine: docker when `docker info` works; otherwise podman/buildah, set up by
# ../shared/tools/container-base.sh (next to the repository; root, about 2 minutes the first time).
# Every wait is bounded; containers, image, server and temporary files are removed on exit
# (KEEP_IMAGE=1 keeps the image).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
T0=$SECONDS
TAG="localhost/authproxy-test:$$-${RANDOM}"
NAMES=()
SERVER_PID=
WORK=$(mktemp -d /tmp/authproxy-container.XXXXXX)
CT=

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    if [ "$rc" != 0 ] && [ -n "$CT" ]; then
        for n in "${NAMES[@]}"; do
            echo "---- logs of $n" >&2
            timeout 30 "$CT" logs "$n" 2>&1 | tail -n 40 >&2
        done
        [ -f "$WORK/requests.log" ] && { echo "---- test server requests" >&2; cat "$WORK/requests.log" >&2; }
        [ -f "$WORK/server.err" ] && { echo "---- test server stderr" >&2; tail -n 20 "$WORK/server.err" >&2; }
        [ -f "$WORK/engine.err" ] && { echo "---- engine stderr" >&2; tail -n 20 "$WORK/engine.err" >&2; }
    fi
    for n in "${NAMES[@]}"; do
        timeout 60 "$CT" rm -f "$n" >/dev/null 2>&1
    done
    if [ -n "$CT" ] && [ "${KEEP_IMAGE:-0}" != 1 ]; then
        timeout 120 "$CT" rmi -f "$TAG" >/dev/null 2>&1
    fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    log "$([ "$rc" = 0 ] && echo PASS || echo "FAIL (exit $rc)")"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# poll SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds or the deadline passes.
poll() {
    local limit=$1 what=$2 end=$((SECONDS + $1))
    shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || fail "timed out after ${limit}s waiting for $what"
        sleep 0.2
    done
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- engine ------------------------------------------------------------------------------------
for tool in "$PY" openssl curl timeout; do
    command -v "$tool" >/dev/null || fail "$tool is required"
done
if command -v docker >/dev/null 2>&1 && timeout 30 docker info >/dev/null 2>&1; then
    CT=docker
else
    # The team's shared copy next to the repository when there is one, else the vendored copy.
    BASE_SCRIPT="$ROOT/../shared/tools/container-base.sh"
    [ -f "$BASE_SCRIPT" ] || BASE_SCRIPT="$ROOT/scripts/container-base.sh"
    [ -f "$BASE_SCRIPT" ] || fail "no working docker ('docker info' failed) and no \
container-base.sh to set up podman/buildah and the debian:bookworm-slim base image"
    log "no docker daemon: setting up podman with $BASE_SCRIPT"
    timeout 900 bash "$BASE_SCRIPT" >&2 || fail "$BASE_SCRIPT failed"
    CT=podman
fi
log "engine: $CT"

# ---- image -------------------------------------------------------------------------------------
log "building $TAG from docker/Dockerfile"
if [ "$CT" = docker ]; then
    # --no-cache and plain progress: the builder stage's unit-test output must be in the log.
    BUILDKIT_PROGRESS=plain timeout 1200 docker build --no-cache --pull=false \
        -f "$ROOT/docker/Dockerfile" -t "$TAG" "$ROOT" \
        >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; fail "image build failed"; }
else
    # --format docker keeps HEALTHCHECK; --layers=false leaves no intermediate images behind.
    timeout 1200 podman build --pull=never --format docker --layers=false --rm \
        -f "$ROOT/docker/Dockerfile" -t "$TAG" "$ROOT" \
        >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; fail "image build failed"; }
fi
grep -q '100% tests passed' "$WORK/build.log" || fail "the builder stage did not report its unit tests passing"
log "image built"

# The image's own metadata: non-root numeric user, entrypoint, stop signal, ports, health check.
meta=$(timeout 60 "$CT" image inspect --format \
    '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck.Test}}|{{json .Config.ExposedPorts}}' "$TAG")
IFS='|' read -r m_user m_entry m_cmd m_stop m_health m_ports <<<"$meta"
[ "$m_user" = 10001:10001 ] || fail "image user is '$m_user', expected 10001:10001"
[ "$m_entry" = '["authproxy"]' ] || fail "entrypoint is $m_entry"
[ "$m_cmd" = null ] || [ "$m_cmd" = '[]' ] || fail "image has a CMD ($m_cmd): it would defeat env-only mode"
[ "$m_stop" = SIGTERM ] || fail "stop signal is '$m_stop'"
[ "$m_health" = '["CMD","authproxy","--healthcheck","http://127.0.0.1:9090/healthz"]' ] ||
    fail "health check is $m_health"
case "$m_ports" in *3128/tcp*9090/tcp*) ;; *) fail "exposed ports are $m_ports" ;; esac

# Runtime stage: no toolchain, runs as uid 10001, shipped config valid.
if timeout 60 "$CT" run --rm --pull=never --network=host --entrypoint /bin/sh "$TAG" \
    -c 'command -v cc || command -v gcc || command -v cmake || command -v make' >/dev/null 2>&1; then
    fail "the runtime image contains build tools"
fi
uid=$(timeout 60 "$CT" run --rm --pull=never --network=host --entrypoint /usr/bin/id "$TAG" -u 2>>"$WORK/engine.err")
[ "$uid" = 10001 ] || fail "the image runs as uid '$uid'"
timeout 60 "$CT" run --rm --pull=never --network=host "$TAG" --check -c /etc/authproxy/authproxy.json \
    >/dev/null 2>>"$WORK/engine.err" || fail "the shipped /etc/authproxy/authproxy.json does not pass --check"
log "image metadata and runtime stage ok"

# ---- HTTPS stand-in for api.example.com ---------------------------------------------------------
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=authproxy container test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=api.example.com" \
    -keyout server.key -out server.csr 2>/dev/null
printf '%s\n' "subjectAltName=DNS:api.example.com" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null

cat >server.py <<'EOF'
# HTTPS origin: records each request's Authorization header (one JSON line per request) and
# answers JSON. Binds port 0 and publishes the port through a file once it listens.
import http.server, json, os, ssl, sys

port_file, log_file, cert, key = sys.argv[1:5]

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with open(log_file, "a") as f:
            f.write(json.dumps({"path": self.path, "host": self.headers.get("Host"),
                                "authorization": self.headers.get("Authorization")}) + "\n")
        body = json.dumps({"ok": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
EOF
: >requests.log
"$PY" server.py "$WORK/server.port" "$WORK/requests.log" server.pem server.key 2>server.err &
SERVER_PID=$!
poll 20 "the test server to listen" test -s server.port
SPORT=$(cat server.port)
curl -sS --max-time 10 --cacert ca.pem --connect-to "api.example.com:443:127.0.0.1:$SPORT" \
    https://api.example.com/ping >/dev/null || fail "the test server does not answer"
: >requests.log
log "test server on 127.0.0.1:$SPORT"

# Files the container reads as uid 10001.
TOKEN="file-token-$RANDOM$RANDOM"
TOKEN2="env-token-$RANDOM$RANDOM"
printf '%s\n' "$TOKEN" >token
printf '%s\n' "$TOKEN2" >token2
chmod 0644 token token2 ca.pem

# ---- helpers for one proxy container ------------------------------------------------------------
healthy() { # name
    if [ "$CT" = docker ]; then
        [ "$(docker inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ]
    else
        timeout 20 podman healthcheck run "$1" >/dev/null 2>>"$WORK/engine.err"
    fi
}
running() { # name
    [ "$(timeout 30 "$CT" inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}
wait_healthy() { # name
    local end=$((SECONDS + 60))
    until healthy "$1"; do
        running "$1" || fail "container $1 exited before becoming healthy"
        [ "$SECONDS" -lt "$end" ] || fail "timed out after 60s waiting for $1 to be healthy"
        sleep 0.2
    done
}
http_code() { # url [curl args]: prints the status code
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$url" || true
}
ready() { [ "$(http_code "http://127.0.0.1:$1/readyz")" = 200 ]; }
saw_auth() { # expected Authorization value
    "$PY" -c 'import json, sys
want = sys.argv[2]
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(r["authorization"] == want and r["path"] == "/v1/x" and r["host"] == "api.example.com" for r in lines) else 1)' \
        "$WORK/requests.log" "$1"
}
check_injection() { # proxy port, token
    local out
    out=$(curl -sS --max-time 20 -w '\n%{http_code}' -x "http://127.0.0.1:$1" http://api.example.com/v1/x) ||
        fail "request through the proxy failed"
    [ "$(tail -n 1 <<<"$out")" = 200 ] || fail "proxied request: expected 200, got: $out"
    head -n 1 <<<"$out" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); sys.exit(0 if d == {"ok": True, "path": "/v1/x"} else 1)' ||
        fail "proxied request: unexpected body: $out"
    saw_auth "Bearer $2" || fail "the test server did not see 'Authorization: Bearer <token>' (requests: $(cat "$WORK/requests.log"))"
}
stop_and_check() { # name
    local code logs
    timeout 90 "$CT" stop -t 30 "$1" >/dev/null 2>>"$WORK/engine.err" || fail "$CT stop $1 failed"
    code=$(timeout 30 "$CT" inspect --format '{{.State.ExitCode}}' "$1")
    [ "$code" = 0 ] || fail "$1 exited with $code after SIGTERM, expected 0"
    # Logs into a variable first: `logs | grep -q` under pipefail fails when grep exits early.
    logs=$(timeout 30 "$CT" logs "$1" 2>&1) || fail "$CT logs $1 failed"
    grep -q 'received SIGTERM' <<<"$logs" || fail "$1 did not log SIGTERM"
    grep -q 'authproxy stopped' <<<"$logs" || fail "$1 did not log a clean stop"
}
no_secret_in_logs() { # name, secret
    local logs
    logs=$(timeout 30 "$CT" logs "$1" 2>&1) || fail "$CT logs $1 failed"
    grep -q '"status":200' <<<"$logs" || fail "$1 logged no successful request"
    if grep -qF "$2" <<<"$logs"; then
        fail "$1 wrote a token into its logs"
    fi
}
run_proxy() { # name admin_port, then engine run options
    local name=$1 aport=$2
    shift 2
    NAMES+=("$name")
    timeout 120 "$CT" run -d --pull=never --name "$name" --network=host \
        --read-only --cap-drop=ALL --security-opt=no-new-privileges \
        --health-cmd "authproxy --healthcheck http://127.0.0.1:$aport/healthz" \
        --health-interval=2s --health-timeout=5s --health-retries=3 \
        "$@" "$TAG" >/dev/null 2>>"$WORK/engine.err" || fail "$CT run $name failed"
}

# ---- 1. mounted JSON config, token from a mounted secret file -----------------------------------
P1=$(free_port)
A1=$(free_port)
while [ "$A1" = "$P1" ]; do A1=$(free_port); done
cat >authproxy.json <<EOF
{
  "listen": "127.0.0.1:$P1",
  "admin": "127.0.0.1:$A1",
  "tls": { "ca_file": "/etc/authproxy/test-ca.pem" },
  "connect_to": { "api.example.com:443": "127.0.0.1:$SPORT" },
  "credentials": {
    "api": { "provider": "static", "token": { "file": "/run/secrets/token" }, "prefetch": true }
  },
  "routes": [
    { "host": "api.example.com", "upstream": "https://api.example.com", "credential": "api" }
  ]
}
EOF
chmod 0644 authproxy.json
C1="authproxy-test-conf-$$"
run_proxy "$C1" "$A1" \
    -v "$WORK/authproxy.json:/etc/authproxy/authproxy.json:ro" \
    -v "$WORK/ca.pem:/etc/authproxy/test-ca.pem:ro" \
    -v "$WORK/token:/run/secrets/token:ro" \
    -e AUTHPROXY_CONFIG=/etc/authproxy/authproxy.json
wait_healthy "$C1"
poll 30 "/readyz on $C1" ready "$A1"
log "config mode: healthy and ready (proxy 127.0.0.1:$P1, admin 127.0.0.1:$A1)"
check_injection "$P1" "$TOKEN"
code=$(http_code http://other.example.net/ -x "http://127.0.0.1:$P1")
[ "$code" = 403 ] || fail "unrouted host: expected 403, got $code"
[ "$(http_code "http://127.0.0.1:$A1/metrics")" = 200 ] || fail "/metrics is not 200"
no_secret_in_logs "$C1" "$TOKEN"
stop_and_check "$C1"
log "config mode: injection, 403 for unrouted hosts, SIGTERM exit 0"

# ---- 2. env-only mode ---------------------------------------------------------------------------
: >requests.log
P2=$(free_port)
A2=$(free_port)
while [ "$A2" = "$P2" ]; do A2=$(free_port); done
C2="authproxy-test-env-$$"
run_proxy "$C2" "$A2" \
    -v "$WORK/ca.pem:/etc/authproxy/test-ca.pem:ro" \
    -v "$WORK/token2:/run/secrets/token:ro" \
    -e AUTHPROXY_UPSTREAM=https://api.example.com \
    -e AUTHPROXY_PROVIDER=static \
    -e AUTHPROXY_TOKEN_FILE=/run/secrets/token \
    -e AUTHPROXY_CONNECT_TO="api.example.com:443=127.0.0.1:$SPORT" \
    -e AUTHPROXY_CA_FILE=/etc/authproxy/test-ca.pem \
    -e AUTHPROXY_LISTEN="127.0.0.1:$P2" \
    -e AUTHPROXY_ADMIN="127.0.0.1:$A2"
wait_healthy "$C2"
poll 30 "/readyz on $C2" ready "$A2"
log "env-only mode: healthy and ready (proxy 127.0.0.1:$P2, admin 127.0.0.1:$A2)"
check_injection "$P2" "$TOKEN2"
no_secret_in_logs "$C2" "$TOKEN2"
stop_and_check "$C2"
log "env-only mode: injection, SIGTERM exit 0"
