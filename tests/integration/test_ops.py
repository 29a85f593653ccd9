"""Operating authproxy (issue #4), driven as an operator would: metrics scraped and parsed,
health endpoints, client authentication for a shared egress proxy, --explain, environment-only
configuration, SIGHUP reloads with requests in flight, JSON logs."""
import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import provider_setup as S
from conftest import base_config
from support.origin import Response, echo_handler


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True,
                          timeout=20, env={"PATH": "/usr/bin:/bin"})


def via(proxy_url, url, headers=None, source=None):
    """GET url through the proxy; returns (status, headers, body). `source` binds the client
    socket to that loopback address."""
    host, port = proxy_url.rsplit("/", 1)[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=15,
                                 source_address=(source, 0) if source else None)
    head = "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % url
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    s.sendall((head + "\r\n").encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def admin_get(p, path):
    try:
        with urllib.request.urlopen(p.admin_url + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- metrics ----------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """Parses the text exposition format strictly enough to catch malformed output:
    returns ({family: type}, [(name, {labels}, value)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram"), line
            types[name] = typ
            continue
        if line.startswith("# HELP "):
            continue
        assert not line.startswith("#"), line
        m = SAMPLE.match(line)
        assert m, "malformed sample line: %r" % line
        labels = dict(LABEL.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
        fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or fam in types, "sample without TYPE: %r" % line
    return types, samples


def value(samples, name, **labels):
    got = [v for n, lb, v in samples if n == name and all(lb.get(k) == w
                                                           for k, w in labels.items())]
    assert len(got) == 1, (name, labels, got)
    return got[0]


def test_metrics_scrape_counts_requests_latency_and_tokens(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    p = proxy_factory(base_config(ca, o.port))
    for _ in range(3):
        assert via(p.proxy_url, "http://api.example.com/ok")[0] == 200
    assert via(p.proxy_url, "http://elsewhere.example.com/")[0] == 403
    p.wait_access(4)
    status, body = admin_get(p, "/metrics")
    assert status == 200
    types, samples = parse_prometheus(body.decode())
    assert types["authproxy_requests_total"] == "counter"
    assert types["authproxy_request_duration_seconds"] == "histogram"
    assert types["authproxy_active_connections"] == "gauge"
    route = [lb["route"] for n, lb, _ in samples
             if n == "authproxy_requests_total" and lb["status"] == "200"]
    assert len(route) == 1
    assert value(samples, "authproxy_requests_total", route=route[0], status="200") == 3
    assert value(samples, "authproxy_requests_total", status="403") == 1
    # Histogram: cumulative buckets, +Inf equal to the count, count equal to the requests.
    buckets = [(lb["le"], v) for n, lb, v in samples
               if n == "authproxy_request_duration_seconds_bucket" and lb["route"] == route[0]]
    assert buckets[-1][0] == "+Inf"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == value(samples, "authproxy_request_duration_seconds_count",
                               route=route[0]) == 3
    assert value(samples, "authproxy_request_duration_seconds_sum", route=route[0]) > 0
    # The scrape itself is not a proxy connection; the clients above have gone.
    assert value(samples, "authproxy_active_connections") == 0
    assert value(samples, "authproxy_token_valid", credential="demo") == 1


def test_metrics_count_upstream_errors_and_token_fetches(ca, proxy_factory):
    m, cfg = S.micovoice(ca, lifetime=3600)
    cfg["connect_to"]["down.example.com:443"] = "127.0.0.1:1"
    cfg["routes"].append({"host": "down.example.com", "upstream": "https://down.example.com"})
    p = proxy_factory(cfg)
    for _ in range(2):
        assert S.get(p, "http://api.micovoice.com/v1/campaigns")[0] == 200
    assert S.get(p, "http://down.example.com/")[0] == 502
    _, samples = parse_prometheus(admin_get(p, "/metrics")[1].decode())
    assert value(samples, "authproxy_token_fetches_total", credential="api") == 1
    assert value(samples, "authproxy_token_fetch_failures_total", credential="api") == 0
    assert 3500 < value(samples, "authproxy_token_expiry_seconds", credential="api") <= 3600
    errors = [v for n, _, v in samples if n == "authproxy_upstream_errors_total"]
    assert sum(errors) == 1
    assert m.fetches == 1


def test_health_endpoints_and_unknown_admin_paths(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    p = proxy_factory(base_config(ca, o.port))
    assert admin_get(p, "/healthz")[0] == 200
    assert admin_get(p, "/readyz")[0] == 200  # no prefetch credential: ready at once
    status, body = admin_get(p, "/nope")
    assert status == 404
    # The admin listener is not a proxy: it never forwards.
    assert via(p.admin_url, "http://api.example.com/")[0] in (400, 404)
    assert o.requests == []
    # --healthcheck, as the container's HEALTHCHECK uses it.
    ok = subprocess.run([p.binary, "--healthcheck", p.admin_url + "/healthz"], timeout=10)
    assert ok.returncode == 0
    bad = subprocess.run([p.binary, "--healthcheck", p.admin_url + "/nope"], timeout=10,
                         capture_output=True)
    assert bad.returncode != 0


def test_upstream_connections_are_reused(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    p = proxy_factory(base_config(ca, o.port))
    for i in range(100):
        assert via(p.proxy_url, "http://api.example.com/n/%d" % i)[0] == 200
    assert len(o.requests) == 100
    # 100 client connections, one after the other: the upstream connection is kept and reused.
    assert len({r.conn_id for r in o.requests}) == 1


# --- shared egress proxy: client authentication ----------------------------------------------

def basic(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def test_proxy_basic_auth_407_and_header_never_forwarded(ca, origin_factory, proxy_factory,
                                                          tmp_path):
    o = origin_factory(echo_handler)
    pwfile = tmp_path / "bob.pw"
    pwfile.write_text("file-secret-9\n")
    cfg = base_config(ca, o.port, log_level="debug")
    cfg["client_auth"] = {"users": {"alice": "al1ce-pw:x", "bob": {"file": str(pwfile)}}}
    p = proxy_factory(cfg)
    status, hdrs, body = via(p.proxy_url, "http://api.example.com/a")
    assert status == 407
    assert hdrs["proxy-authenticate"].startswith("Basic realm=")
    assert json.loads(body)["error"] == "proxy_auth_required"
    for wrong in (basic("alice", "nope"), basic("mallory", "al1ce-pw:x"), "Bearer x",
                  "Basic !!!notbase64"):
        assert via(p.proxy_url, "http://api.example.com/a",
                   {"Proxy-Authorization": wrong})[0] == 407
    assert o.requests == []
    for user, pw in (("alice", "al1ce-pw:x"), ("bob", "file-secret-9")):
        status, _, _ = via(p.proxy_url, "http://api.example.com/b",
                           {"Proxy-Authorization": basic(user, pw)})
        assert status == 200
    assert len(o.requests) == 2
    for r in o.requests:
        assert r.header("Proxy-Authorization") is None
        assert r.header_all("Authorization") == ["Bearer tok-123"]
    # curl's own proxy auth works too.
    r = curl("-x", p.proxy_url, "--proxy-user", "alice:al1ce-pw:x",
             "http://api.example.com/c", "-o", "/dev/null", "-w", "%{http_code}")
    assert r.stdout == b"200"
    # Tunnels need the same credentials.
    r = curl("-x", p.proxy_url, "-p", "--cacert", ca.ca_file, "https://api.example.com/",
             "-o", "/dev/null", "-w", "%{http_connect}")
    assert r.stdout == b"407"
    r = curl("-x", p.proxy_url, "-p", "--proxy-user", "bob:file-secret-9", "--cacert",
             ca.ca_file, "https://api.example.com/t", "-o", "/dev/null", "-w",
             "%{http_connect} %{http_code}")
    assert r.stdout == b"200 200"
    assert o.requests[-1].header("Authorization") is None  # a tunnel carries no injection
    logs = p.logs()
    for secret in ("al1ce-pw", "file-secret-9", base64.b64encode(b"alice:al1ce-pw:x").decode()):
        assert secret not in logs


def test_source_allowlist(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    cfg["client_auth"] = {"allow": ["127.0.0.2/32"]}
    p = proxy_factory(cfg)
    status, _, body = via(p.proxy_url, "http://api.example.com/a", source="127.0.0.1")
    assert status == 403 and json.loads(body)["error"] == "client_not_allowed"
    assert o.requests == []
    assert via(p.proxy_url, "http://api.example.com/a", source="127.0.0.2")[0] == 200
    assert len(o.requests) == 1


def test_non_loopback_listener_without_client_auth_is_refused(ca, tmp_path):
    cfg = base_config(ca, 9)
    cfg["listen"] = "0.0.0.0:0"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([os.environ["AUTHPROXY_BIN"], "-c", str(path)], capture_output=True,
                       timeout=15, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    err = (r.stdout + r.stderr).decode()
    assert ": listen: expected a loopback address unless client_auth" in err
    assert "insecure_allow_unauthenticated" in err


# --- --explain ---------------------------------------------------------------------------------

class Listener:
    """A TCP listener that records whether anybody connected (for "no network calls")."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connected(self):
        try:
            c, _ = self.sock.accept()
            c.close()
            return True
        except BlockingIOError:
            return False


def explain(cfg_path, method, url):
    return subprocess.run([os.environ["AUTHPROXY_BIN"], "--explain", method, url, "-c",
                           str(cfg_path)], capture_output=True, timeout=15, text=True)


def test_explain_routes_credentials_and_refusals_without_network(ca, tmp_path):
    tokens = Listener()
    cfg = base_config(ca, tokens.port, token="super-secret-static")
    cfg["connect_to"]["issuer.example.com:443"] = "127.0.0.1:%d" % tokens.port
    cfg["credentials"]["oa"] = {"provider": "oauth2", "token_url":
                                "https://issuer.example.com/token", "client_id": "cid",
                                "client_secret": "oauth-secret-zz", "prefetch": True}
    cfg["routes"].append({"host": "*.svc.example.com", "upstream": "https://svc.example.com",
                          "credential": "oa"})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))

    r = explain(path, "GET", "http://api.example.com/v1/x?y=1")
    assert r.returncode == 0, r.stderr
    assert "upstream:   GET https://api.example.com/v1/x?y=1" in r.stdout
    assert "credential: demo (provider static)" in r.stdout
    assert "Authorization: Bearer <redacted>" in r.stdout

    r = explain(path, "GET", "http://api.example.com?y=1")
    assert "https://api.example.com/?y=1" in r.stdout

    r = explain(path, "POST", "/ex/v2/items")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "upstream:   POST https://api.example.com/v2/items" in r.stdout

    r = explain(path, "GET", "http://a.svc.example.com/q")
    assert r.returncode == 0
    assert "credential: oa (provider oauth2)" in r.stdout

    r = explain(path, "GET", "http://other.example.org/")
    assert r.returncode != 0 and "403 host_not_allowed" in r.stdout

    r = explain(path, "CONNECT", "api.example.com:443")
    assert r.returncode == 0 and "tunnel" in r.stdout

    r = explain(path, "GET", "http://bad host/")
    assert r.returncode != 0 and "400" in r.stdout

    everything = "".join(explain(path, "GET", u).stdout + explain(path, "GET", u).stderr
                         for u in ("http://api.example.com/", "http://a.svc.example.com/"))
    assert "super-secret-static" not in everything and "oauth-secret-zz" not in everything
    assert not tokens.connected(), "--explain must not make network calls"


# --- environment-only mode -------------------------------------------------------------------

def test_environment_only_sidecar(ca, origin_factory, proxy_factory, tmp_path):
    o = origin_factory(echo_handler)
    tok = tmp_path / "token"
    tok.write_text("env-file-token\n")
    env = {"AUTHPROXY_UPSTREAM": "https://api.example.com",
           "AUTHPROXY_TOKEN_FILE": str(tok),
           "AUTHPROXY_ROUTE_PATH": "/api/",
           "AUTHPROXY_CA_FILE": ca.ca_file,
           "AUTHPROXY_CONNECT_TO": "api.example.com:443=127.0.0.1:%d" % o.port,
           "AUTHPROXY_LISTEN": "127.0.0.1:0", "AUTHPROXY_ADMIN": "127.0.0.1:0",
           "AUTHPROXY_CONFIG": ""}  # empty counts as unset (an image ENV cannot be unset)
    p = proxy_factory(None, env=env)
    assert via(p.proxy_url, "http://api.example.com/v1/a")[0] == 200
    assert via(p.proxy_url, "/api/v1/b")[0] == 200
    assert [r.target for r in o.requests] == ["/v1/a", "/v1/b"]
    assert all(r.header_all("Authorization") == ["Bearer env-file-token"] for r in o.requests)
    assert via(p.proxy_url, "http://other.example.com/")[0] == 403


def test_environment_only_errors_name_the_variable(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AUTHPROXY_UPSTREAM": "https://api.example.com",
           "AUTHPROXY_PROVIDER": "micovoice", "AUTHPROXY_CLIENT_ID": "x"}
    r = subprocess.run([os.environ["AUTHPROXY_BIN"], "--check"], capture_output=True, text=True,
                       timeout=15, env=env, cwd=str(tmp_path))
    assert r.returncode != 0
    assert "AUTHPROXY_CLIENT_SECRET" in r.stderr


# --- SIGHUP reload ---------------------------------------------------------------------------

def slow_origin(release):
    def handler(req):
        if req.target.startswith("/slow"):
            def gen():
                yield b"a" * 1000
                release.wait(15)
                yield b"b" * 1000
            return Response(200, [("Content-Length", "2000")], stream=gen())
        return echo_handler(req)
    return handler


def wait_for(cond, timeout=10):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_sighup_reload_changed_and_broken_config_with_requests_in_flight(ca, origin_factory,
                                                                         proxy_factory):
    release = threading.Event()
    o = origin_factory(slow_origin(release))
    cfg = base_config(ca, o.port, token="old-token")
    p = proxy_factory(cfg)
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=curl("-x", p.proxy_url, "http://api.example.com/slow")))
    t.start()
    wait_for(lambda: o.requests)  # the in-flight request has reached the origin

    # 1. A changed config: new token, a new route; the in-flight request is untouched.
    cfg2 = base_config(ca, o.port, token="new-token")
    cfg2["routes"].append({"path": "/v2/", "upstream": "https://api.example.com/",
                           "credential": "demo"})
    n = p.reload(cfg2)
    p.wait_log("configuration reloaded", start=n)
    assert via(p.proxy_url, "http://api.example.com/after")[0] == 200
    assert o.requests[-1].header("Authorization") == "Bearer new-token"
    assert via(p.proxy_url, "/v2/x")[0] == 200

    # 2. A broken config is rejected with the file's problem named; the running one serves on.
    n = p.reload({"listen": "127.0.0.1:0", "routes": [{"host": 5}]})
    line = p.wait_log("reload rejected", start=n)
    assert "routes[0].host" in line
    assert via(p.proxy_url, "http://api.example.com/still")[0] == 200
    assert o.requests[-1].header("Authorization") == "Bearer new-token"
    p.write_config(cfg2)

    release.set()
    t.join(20)
    r = result["r"]
    assert r.returncode == 0 and r.stdout == b"a" * 1000 + b"b" * 1000
    assert o.requests[0].header("Authorization") == "Bearer old-token"
    assert p.proc.poll() is None


def test_reload_keeps_tokens_of_unchanged_credentials(ca, proxy_factory):
    m, cfg = S.micovoice(ca, lifetime=3600)
    p = proxy_factory(cfg)
    assert S.get(p, "http://api.micovoice.com/v1/a")[0] == 200
    assert m.fetches == 1
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["routes"].append({"path": "/mico/", "upstream": "https://api.micovoice.com/",
                           "credential": "api"})
    n = p.reload(cfg2)
    p.wait_log("configuration reloaded", start=n)
    assert S.get(p, "http://api.micovoice.com/v1/b")[0] == 200
    assert m.fetches == 1, "an unchanged credential keeps its token across a reload"
    # A changed credential (different scope) starts from scratch.
    cfg3 = json.loads(json.dumps(cfg2))
    cfg3["credentials"]["api"]["scope"] = ["campaigns:read"]
    n = p.reload(cfg3)
    p.wait_log("configuration reloaded", start=n)
    assert S.get(p, "http://api.micovoice.com/v1/c")[0] == 200
    assert m.fetches == 2
    assert m.token_requests[-1].body.decode().count("campaigns%3Aread") == 1


# --- logs ------------------------------------------------------------------------------------

def test_json_logs_with_levels_and_text_format(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    p = proxy_factory(base_config(ca, o.port, log_level="debug"))
    assert via(p.proxy_url, "http://api.example.com/a")[0] == 200
    p.wait_access(1)
    recs = [json.loads(ln) for ln in p.lines()]
    assert all(r["level"] in ("debug", "info", "warn", "error") for r in recs)
    assert all("ts" in r and "msg" in r for r in recs)
    acc = [r for r in recs if r["msg"] == "access"]
    assert len(acc) == 1 and acc[0]["status"] == 200 and acc[0]["method"] == "GET"
    status, _, body = via(p.proxy_url, "http://nowhere.example.com/")
    assert status == 403
    p.wait_access(2)
    err = [json.loads(ln) for ln in p.lines() if '"msg":"access"' in ln][-1]
    assert err["status"] == 403 and err["error"] == "host_not_allowed"
    assert err["bytes_out"] == len(body)  # the error body counts like any response body

    # The text format, for people reading a terminal: one plain line per event.
    q = proxy_factory(base_config(ca, o.port, log_format="text"))
    assert via(q.proxy_url, "http://api.example.com/b")[0] == 200
    line = q.wait_log(r" access ")
    assert "GET api.example.com/b 200" in line
    assert not any(ln.startswith("{") for ln in q.lines())


def test_sigterm_drain_deadline_cuts_off_a_request_that_never_ends(ca, origin_factory,
                                                                   proxy_factory):
    release = threading.Event()
    o = origin_factory(slow_origin(release))
    cfg = base_config(ca, o.port)
    cfg["limits"]["drain_timeout_ms"] = 300
    cfg["limits"]["response_timeout_ms"] = 60000
    p = proxy_factory(cfg)
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=curl("-x", p.proxy_url, "http://api.example.com/slow")))
    t.start()
    wait_for(lambda: o.requests)
    p.proc.send_signal(15)
    p.wait_log("drain deadline reached with 1 connection")
    assert p.proc.wait(15) == 0
    t.join(20)
    release.set()
    assert result["r"].returncode != 0  # cut off mid-body, not completed
    assert len(result["r"].stdout) == 1000


def test_non_loopback_listener_accepted_with_explicit_override(ca, tmp_path):
    # Checked with --check only: tests never bind beyond 127.0.0.0/8.
    for client_auth in ({"insecure_allow_unauthenticated": True}, {"allow": ["10.0.0.0/8"]},
                        {"users": {"ci": "s3cret-pw-77"}}):
        cfg = base_config(ca, 9)
        cfg["listen"] = "0.0.0.0:3128"
        cfg["client_auth"] = client_auth
        path = tmp_path / "c.json"
        path.write_text(json.dumps(cfg))
        r = subprocess.run([os.environ["AUTHPROXY_BIN"], "--check", "-c", str(path)],
                           capture_output=True, timeout=15, text=True)
        assert r.returncode == 0, (client_auth, r.stderr)
        assert "s3cret-pw-77" not in r.stdout + r.stderr
