"""The `oauth2` provider against a real OAuth 2.0 server nobody here wrote: oidc-provider (npm).

tests/oidc/server.mjs runs oidc-provider as https://issuer.test (client_credentials grant, RFC 8707
resource indicators, JWT access tokens) and a resource server https://api.example.com that
verifies each Bearer JWT with jose against the issuer's published JWKS (signature, typ, iss, aud,
exp). authproxy reaches both through connect_to and trusts only the test CA. The server logs every
token request and API request as JSON lines, which is what these tests count and inspect.

Node.js and npm are required: without them these tests fail (CI installs them; see
scripts/dev.sh). node_modules is installed with `npm ci` from the committed lock on first use.
"""
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

OIDC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oidc")
ISSUER = "https://issuer.test"
TOKEN_URL = ISSUER + "/token"
API = "https://api.example.com"
OTHER = "https://other.example.com"


class OidcServer:
    """tests/oidc/server.mjs as a child process; collects its JSON lines."""

    def __init__(self, ca):
        issuer_cert, issuer_key = ca.issue(["issuer.test"])
        api_cert, api_key = ca.issue(["api.example.com"])
        self._events = []
        self._stderr = []
        self._cond = threading.Condition()
        env = dict(os.environ)
        env.pop("NODE_OPTIONS", None)
        self.proc = subprocess.Popen(
            ["node", "server.mjs", "--issuer-cert", issuer_cert, "--issuer-key", issuer_key,
             "--api-cert", api_cert, "--api-key", api_key, "--ca", ca.ca_file,
             "--issuer-port", "0", "--api-port", "0"],
            cwd=OIDC_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env)
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        ready = self.wait(lambda e: e["event"] == "ready", timeout=30)
        self.issuer_port = ready["issuer_port"]
        self.api_port = ready["api_port"]
        self.version = ready["oidc_provider_version"]
        self.clients = {c["auth_method"]: c for c in ready["clients"]}

    def _read_out(self):
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"event": "text", "line": raw.decode("utf-8", "replace")}
            with self._cond:
                self._events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_err(self):
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace"))

    def diag(self):
        return "stdout events:\n%s\nstderr:\n%s" % (
            "\n".join(json.dumps(e) for e in self._events[-30:]), "".join(self._stderr[-30:]))

    def wait(self, pred, timeout=10, start=0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self._events[start:]:
                    if pred(e):
                        return e
                if self.proc.poll() is not None:
                    raise AssertionError("oidc server exited (%s)\n%s"
                                         % (self.proc.returncode, self.diag()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("oidc server: timed out\n%s" % self.diag())
                self._cond.wait(left)

    def mark(self):
        with self._cond:
            return len(self._events)

    def events(self, kind, start=0):
        with self._cond:
            return [e for e in self._events[start:] if e["event"] == kind]

    def wait_events(self, kind, count, start=0, timeout=10):
        """The `kind` events since `start` once there are at least `count` of them (a request's
        line is written before its answer, but read here on another thread)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [e for e in self._events[start:] if e["event"] == kind]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("expected %d %r events, got %d\n%s"
                                         % (count, kind, len(got), self.diag()))
                self._cond.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def oidc(ca):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("test_oauth2_oidc needs Node.js and npm on PATH (found node=%s, npm=%s): "
                    "install them (Debian: apt-get install nodejs npm; scripts/dev.sh test does) "
                    "to run the oauth2 provider against oidc-provider" % (node, npm))
    # npm ci when node_modules is missing or older than the lock (npm records what it
    # installed in node_modules/.package-lock.json).
    installed = os.path.join(OIDC_DIR, "node_modules", ".package-lock.json")
    if (not os.path.isdir(os.path.join(OIDC_DIR, "node_modules", "oidc-provider"))
            or not os.path.exists(installed)
            or os.path.getmtime(installed) < os.path.getmtime(
                os.path.join(OIDC_DIR, "package-lock.json"))):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        if r.returncode != 0:
            pytest.fail("npm ci in %s failed (exit %d):\n%s\n%s" % (
                OIDC_DIR, r.returncode, r.stdout.decode(errors="replace")[-3000:],
                r.stderr.decode(errors="replace")[-3000:]))
    srv = OidcServer(ca)
    yield srv
    srv.stop()


def config(ca, srv, cred, name="oidc"):
    return {
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "tls": {"ca_file": ca.ca_file},
        "connect_to": {"issuer.test:443": "127.0.0.1:%d" % srv.issuer_port,
                       "api.example.com:443": "127.0.0.1:%d" % srv.api_port},
        "credentials": {name: cred},
        "routes": [{"host": "api.example.com", "upstream": API, "credential": name}],
        "log_level": "debug",
        "limits": {"response_timeout_ms": 10000, "drain_timeout_ms": 5000},
    }


def cred_for(srv, method, **extra):
    c = srv.clients[method]
    cred = {"provider": "oauth2", "token_url": TOKEN_URL, "auth_method": method,
            "client_id": c["client_id"], "client_secret": c["client_secret"]}
    cred.update(extra)
    return cred


def get_env_proxy(proxy, url, monkeypatch):
    """urllib with the proxy taken from HTTP_PROXY, the way an application is configured."""
    for k in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.proxy_url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    try:
        with opener.open(url, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_handler(proxy, url, with_headers=False):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.proxy_url}))
    try:
        with opener.open(url, timeout=20) as r:
            out = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        out = e.code, e.read(), e.headers
    return out if with_headers else out[:2]


def get_curl(proxy, url):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(["curl", "-sS", "-x", proxy.proxy_url, "-w", "\n%{http_code}", url],
                       capture_output=True, timeout=20, env=env)
    assert r.returncode == 0, r.stderr
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def tokens_view(proxy):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not via HTTP_PROXY
    with opener.open(proxy.admin_url + "/tokens", timeout=10) as r:
        return json.loads(r.read())["credentials"][0]


def form_decodes_cleanly(raw, want):
    """raw is the application/x-www-form-urlencoded form of want (RFC 6749 2.3.1, appendix B):
    only unreserved characters, '+' and %XX escapes, and it decodes back exactly."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._*~%+")
    return set(raw) <= allowed and urllib.parse.unquote_plus(raw) == want


def assert_api_ok(srv, status, body, client, scope):
    assert status == 200, (status, body, srv.diag())
    got = json.loads(body)
    assert got["iss"] == ISSUER
    assert got["aud"] == API
    assert got["sub"] == client["client_id"] and got["client_id"] == client["client_id"]
    assert got["scope"] == scope
    return got


def assert_nothing_secret_logged(proxy, srv, start, secrets):
    logs = proxy.logs()
    for s in secrets:
        assert s not in logs
        # nor its form-encoded or Basic forms
        assert urllib.parse.quote_plus(s) not in logs
    for t in srv.events("token", start):
        if t.get("access_token"):
            assert t["access_token"] not in logs
        if t.get("authorization"):
            assert t["authorization"].split()[-1] not in logs


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_jwt_accepted_by_resource_server(ca, oidc, proxy_factory, monkeypatch,
                                                            method):
    client = oidc.clients[method]
    start = oidc.mark()
    p = proxy_factory(config(ca, oidc, cred_for(oidc, method, scope=["api:read", "api:write"],
                                                resource=API)))
    results = [
        get_env_proxy(p, "http://api.example.com/v1/items?x=1", monkeypatch),
        get_handler(p, "http://api.example.com/v1/items/2"),
        get_curl(p, "http://api.example.com/v1/orders"),
        get_curl(p, "http://api.example.com/v2/ping"),
        get_env_proxy(p, "http://api.example.com/", monkeypatch),
    ]
    for status, body in results:
        assert_api_ok(oidc, status, body, client, "api:read api:write")

    # One token for all five requests, obtained the way the client is registered.
    toks = oidc.wait_events("token", 1, start)
    assert len(toks) == 1, toks
    t = toks[0]
    assert t["status"] == 200 and t["jwt"] is True and t["client_id"] == client["client_id"], t
    assert t["method"] == "POST"
    assert t["content_type"].startswith("application/x-www-form-urlencoded")
    form = dict(t["form"])
    if method == "client_secret_basic":
        assert t["auth"] == "basic"
        # RFC 6749 2.3.1: id and secret are form-encoded, then joined with ':' and base64'd. The
        # id contains ':', '+' and a space; the secret ':', '%', '+', '/', '&', '=', ' ' and '~'.
        assert form_decodes_cleanly(t["basic_raw_user"], client["client_id"]), t
        assert form_decodes_cleanly(t["basic_raw_pass"], client["client_secret"]), t
        assert "client_id" not in form and "client_secret" not in form
    else:
        assert t["auth"] == "post" and "authorization" not in t
        assert form.pop("client_id") == client["client_id"]
        assert form.pop("client_secret") == client["client_secret"]
    assert form == {"grant_type": "client_credentials", "scope": "api:read api:write",
                    "resource": API}, t

    # Each request reached the resource server with a Bearer JWT that it verified.
    apis = oidc.wait_events("api", 5, start)
    assert [a["status"] for a in apis] == [200] * 5, apis
    assert sorted(a["path"] for a in apis) == sorted(
        ["/v1/items?x=1", "/v1/items/2", "/v1/orders", "/v2/ping", "/"])
    assert all(a["host"] == "api.example.com" for a in apis)

    # The cache knows the lifetime the server gave (expires_in 600).
    view = tokens_view(p)
    assert view["name"] == "oidc" and 500 < view["expires_in"] <= 600, view
    assert_nothing_secret_logged(p, oidc, start, [client["client_secret"]])


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_wrong_client_secret_is_a_clear_error_naming_the_credential(ca, oidc, proxy_factory,
                                                                    method):
    client = oidc.clients[method]
    wrong = "wr0ng:s3cret+%2F &x=1"
    start = oidc.mark()
    cred = cred_for(oidc, method, client_secret=wrong, scope="api:read", resource=API)
    p = proxy_factory(config(ca, oidc, cred, name="billing-api"))
    status, body = get_handler(p, "http://api.example.com/v1/items")
    # A failed token fetch is answered 502 token_fetch_failed (proxy/conn.c on_token), with the
    # token endpoint's own error in the detail.
    assert status == 502, (status, body)
    err = json.loads(body)
    assert err["error"] == "token_fetch_failed", err
    assert '"billing-api"' in err["detail"], err
    assert "HTTP 401" in err["detail"] and "invalid_client" in err["detail"], err

    toks = oidc.wait_events("token", 1, start)
    assert len(toks) == 1, toks
    assert toks[0]["status"] == 401 and toks[0]["error"] == "invalid_client", toks
    assert toks[0]["auth"] == ("basic" if method == "client_secret_basic" else "post")
    # The server got the (wrong) secret intact, so it was the secret that failed, not encoding.
    if method == "client_secret_basic":
        assert form_decodes_cleanly(toks[0]["basic_raw_pass"], wrong), toks
    else:
        assert toks[0]["form"]["client_secret"] == wrong
    assert oidc.events("api", start) == []

    # A second request inside the backoff (1 s, doubling) is not sent to the token endpoint
    # again: it is answered at once 503 token_unavailable (auth/auth.c ap_cred_acquire) with the
    # same detail and a Retry-After.
    status2, body2, headers2 = get_handler(p, "http://api.example.com/v1/items", with_headers=True)
    assert status2 == 503, (status2, body2)
    err2 = json.loads(body2)
    assert err2["error"] == "token_unavailable" and err2["detail"] == err["detail"], err2
    assert int(headers2["Retry-After"]) >= 1
    assert len(oidc.events("token", start)) == 1

    p.wait_log(r'credential \\"billing-api\\".*HTTP 401')
    assert_nothing_secret_logged(p, oidc, start, [wrong, client["client_secret"]])


def test_resource_and_scope_shape_the_jwt(ca, oidc, proxy_factory):
    """`resource` (RFC 8707) picks the audience; scopes are narrowed to that resource's."""
    client = oidc.clients["client_secret_post"]
    start = oidc.mark()
    cred = cred_for(oidc, "client_secret_post", scope="api:write other:read", resource=API)
    p = proxy_factory(config(ca, oidc, cred))
    status, body = get_curl(p, "http://api.example.com/v1/x")
    got = assert_api_ok(oidc, status, body, client, "api:write")
    assert got["exp"] > time.time() + 500
    (t,) = oidc.wait_events("token", 1, start)
    assert t["form"]["resource"] == API and t["form"]["scope"] == "api:write other:read"
    assert t["scope"] == "api:write" and t["jwt"] is True
    (a,) = oidc.wait_events("api", 1, start)
    assert a["claims"]["aud"] == API and a["claims"]["scope"] == "api:write"


@pytest.mark.parametrize("case", ["other_resource", "no_resource", "audience_only"])
def test_token_for_another_audience_is_refused_by_the_api(ca, oidc, proxy_factory, case):
    """The resource server really checks aud: a token for another resource, or an opaque one
    (no resource indicator; oidc-provider ignores `audience`), is refused. authproxy drops it,
    fetches a new one and replays once, then passes the API's 401 on."""
    extra = {"other_resource": {"resource": OTHER, "scope": "other:read"},
             "no_resource": {"scope": "api:read"},
             "audience_only": {"audience": API, "scope": "api:read"}}[case]
    start = oidc.mark()
    p = proxy_factory(config(ca, oidc, cred_for(oidc, "client_secret_basic", **extra)))
    status, body = get_handler(p, "http://api.example.com/v1/x")
    assert status == 401, (status, body)
    assert json.loads(body)["error"] == "invalid_token"

    toks = oidc.wait_events("token", 2, start)
    assert len(toks) == 2, toks  # first token, then the one fetched for the replay
    for t in toks:
        assert t["status"] == 200
        if case == "other_resource":
            assert t["jwt"] is True and t["form"]["resource"] == OTHER
        else:
            assert t["jwt"] is False and "resource" not in t["form"]
        if case == "audience_only":
            assert t["form"]["audience"] == API
    apis = oidc.wait_events("api", 2, start)
    assert [a["status"] for a in apis] == [401, 401], apis
    if case == "other_resource":
        assert all(a["claims"]["aud"] == OTHER and "aud" in a["reason"] for a in apis), apis
    else:
        assert all(a["claims"] is None for a in apis), apis
    p.wait_log("upstream answered 401")


def test_unknown_resource_is_reported_by_the_token_endpoint(ca, oidc, proxy_factory):
    start = oidc.mark()
    cred = cred_for(oidc, "client_secret_basic", resource="https://unknown.example.com")
    p = proxy_factory(config(ca, oidc, cred))
    status, body = get_handler(p, "http://api.example.com/v1/x")
    assert status == 502, body
    err = json.loads(body)
    assert err["error"] == "token_fetch_failed"
    assert '"oidc"' in err["detail"] and "invalid_target" in err["detail"], err
    (t,) = oidc.wait_events("token", 1, start)
    assert t["status"] == 400 and t["error"] == "invalid_target"
    assert oidc.events("api", start) == []
