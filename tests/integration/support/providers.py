"""Stand-ins for the five providers' token endpoints and APIs, each implementing its document
(../shared/providers/) and nothing more, plus a protected API that accepts only tokens that
provider issued and that have not expired (401 otherwise).

Each mock records the token requests it received so tests can assert they are exactly the
documented ones, and has knobs: lifetime, fail mode, hold (hang), revoke.
"""
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse

from .origin import Origin, Response


def form(body):
    return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))


class TokenRequest:
    def __init__(self, req):
        self.method = req.method
        self.target = req.target
        self.path, _, q = req.target.partition("?")
        self.query = dict(urllib.parse.parse_qsl(q, keep_blank_values=True))
        self.raw_query = q
        self.headers = req.headers
        self.body = req.body or b""

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None


class MockProvider:
    """Base: subclasses set token_path, names, and implement check() and issue()."""
    token_path = "/token"
    names = ("provider.test",)
    scheme = "Bearer"

    def __init__(self, ca, lifetime=3600):
        self.lifetime = lifetime
        self.issued = {}  # token -> monotonic expiry
        self.token_requests = []
        self.api_requests = []
        self.fail_mode = None  # None, "500", "error200", "html", "truncated", "garbage"
        self.hold = threading.Event()
        self.hold.set()  # cleared = token endpoint hangs
        self.delay = 0.0
        self.lock = threading.Lock()
        self.origin = Origin(self.handle, tls=ca.issue(list(self.names)))
        self.port = self.origin.port

    # --- knobs ---
    def revoke_all(self):
        with self.lock:
            self.issued.clear()

    @property
    def fetches(self):
        return len(self.token_requests)

    def new_token(self, lifetime=None):
        tok = "tk_" + secrets.token_hex(16)
        with self.lock:
            self.issued[tok] = time.monotonic() + (lifetime or self.lifetime)
        return tok

    # --- dispatch ---
    def handle(self, req):
        if req.target.split("?")[0] == self.token_path:
            tr = TokenRequest(req)
            with self.lock:
                self.token_requests.append(tr)
            self.hold.wait(30)
            if self.delay:
                time.sleep(self.delay)
            if self.fail_mode == "500":
                return Response(500, [("Content-Type", "application/json")],
                                b'{"message":"internal error"}')
            if self.fail_mode == "html":
                return Response(502, [("Content-Type", "text/html")],
                                b"<html><body><h1>502 Bad Gateway</h1></body></html>")
            if self.fail_mode == "html200":
                return Response(200, [("Content-Type", "text/html")],
                                b"<html><body>maintenance</body></html>")
            if self.fail_mode == "truncated":
                return Response(200, [("Content-Type", "application/json")],
                                b'{"access_token": "abc", "expires_')
            if self.fail_mode == "garbage":
                return Response(200, [("Content-Type", "application/json")], b"\x00\xffnope")
            if self.fail_mode == "error200":
                return self.error200()
            err = self.check(tr)
            if err is not None:
                return err
            return self.issue(tr)
        with self.lock:
            self.api_requests.append(req)
        auth = req.header(self.auth_header()) or ""
        tok = self.extract(auth)
        with self.lock:
            exp = self.issued.get(tok)
        if exp is None or exp <= time.monotonic():
            return Response(401, [("Content-Type", "application/json")],
                            b'{"error":"invalid_token"}')
        return Response(200, [("Content-Type", "application/json")],
                        json.dumps({"ok": True, "path": req.target}).encode())

    def auth_header(self):
        return "Authorization"

    def extract(self, value):
        if value.startswith(self.scheme + " "):
            return value[len(self.scheme) + 1:]
        return None

    def error200(self):
        return Response(200, [("Content-Type", "application/json")], b'{"error":"server_error"}')

    def json(self, status, obj):
        return Response(status, [("Content-Type", "application/json")], json.dumps(obj).encode())


class OmiCall(MockProvider):
    """GET [URL]/api/auth?apiKey=KEY; wrapped payload; status_code 9999; JWT with exp."""
    token_path = "/api/auth"
    names = ("omi.example.test",)
    api_key = "omi-KEY-5f1e"
    secret_key = b"omicall-test-signing-key"

    def jwt(self, lifetime):
        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=")
        head = b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = b64(json.dumps({"sub": "tenant", "exp": int(time.time() + lifetime),
                               "jti": secrets.token_hex(8)}).encode())
        sig = b64(hmac.new(self.secret_key, head + b"." + body, hashlib.sha256).digest())
        return (head + b"." + body + b"." + sig).decode()

    def check(self, tr):
        if tr.method != "GET" or tr.query.get("apiKey") != self.api_key:
            return self.json(200, {"status_code": 1001, "instance_id": "stg",
                                   "payload": None, "message": "invalid api key"})
        return None

    def issue(self, tr):
        tok = self.jwt(self.lifetime)
        with self.lock:
            self.issued[tok] = time.monotonic() + self.lifetime
        return self.json(200, {"status_code": 9999, "instance_id": "stg",
                               "instance_name": "cloud-vihat-saas-sync-public-api",
                               "payload": {"access_token": tok, "access_type": "normal",
                                           "token_type": "Bearer"},
                               "key_enabled": False})

    def error200(self):
        return self.json(200, {"status_code": 8888, "instance_id": "stg", "payload": None})


class Antsomi(MockProvider):
    """POST form client_credentials; comma-separated scope; accessTokenExpiresAt ISO-8601."""
    token_path = "/oauth/token"
    names = ("iam.ants.tech", "api.ants.tech")
    client_id = "26156a86-b739-4c6b-9de2-314228c3e6e5"
    client_secret = "ECOTBQNP44IFPCVMQNSZ"

    def check(self, tr):
        f = form(tr.body)
        if tr.method != "POST" or f.get("grant_type") != "client_credentials":
            return self.json(400, {"statusCode": 400, "status": 400, "code": 400,
                                   "message": "Invalid grant", "name": "invalid_grant"})
        if f.get("client_id") != self.client_id or f.get("client_secret") != self.client_secret:
            return self.json(400, {"statusCode": 400, "status": 400, "code": 400,
                                   "message": "Invalid client", "name": "invalid_client"})
        for s in f.get("scope", "").split(","):
            if s not in ("item", "event", "profile", "promotion"):
                return self.json(400, {"statusCode": 400, "status": 400, "code": 400,
                                       "message": "Invalid scope: Requested scope is invalid",
                                       "name": "invalid_scope"})
        return None

    def issue(self, tr):
        tok = self.new_token()
        exp = time.gmtime(time.time() + self.lifetime)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", exp) + ".643Z"
        return self.json(200, {"accessToken": tok, "accessTokenExpiresAt": iso,
                               "scope": form(tr.body).get("scope")})

    def error200(self):
        return self.json(200, {"statusCode": 400, "message": "Invalid scope",
                               "name": "invalid_scope"})


class Telmai(MockProvider):
    """POST {auth_endpoint}/auth/token: clientId, grantType=password|refresh_token, username,
    password, refreshToken, tenant (query string per the curl example, or form body)."""
    token_path = "/auth/token"
    names = ("auth.telm.ai", "api.telm.ai")
    client_id = "telmai-cli"
    username = "ops@example.com"
    password = "p@ss word&=1"
    tenant = "acme"

    def __init__(self, ca, lifetime=3600):
        super().__init__(ca, lifetime)
        self.refresh_tokens = set()
        self.refuse_refresh = False

    def params(self, tr):
        p = dict(tr.query)
        p.update(form(tr.body))
        return p

    def check(self, tr):
        p = self.params(tr)
        if tr.method != "POST" or p.get("clientId") != self.client_id:
            return self.json(401, {"description": "Unauthorized"})
        if p.get("grantType") == "password":
            if p.get("username") != self.username or p.get("password") != self.password:
                return self.json(401, {"description": "Unauthorized"})
        elif p.get("grantType") == "refresh_token":
            if self.refuse_refresh or p.get("refreshToken") not in self.refresh_tokens:
                return self.json(401, {"description": "Unauthorized"})
            self.refresh_tokens.discard(p.get("refreshToken"))  # rotation
        else:
            return self.json(403, {"description": "Forbidden"})
        return None

    def issue(self, tr):
        tok = self.new_token()
        rt = "rt_" + secrets.token_hex(12)
        self.refresh_tokens.add(rt)
        return self.json(200, {"expires": self.lifetime, "access_token": tok,
                               "refresh_token": rt, "token_type": "Bearer"})


class Manis(MockProvider):
    """POST /api/v1/auth/token with x-merchant-id and x-secret; token, tokenType, expiresAt."""
    token_path = "/api/v1/auth/token"
    names = ("api.maniscloud.test",)
    merchant_id = "M-10042"
    secret = "manis-secret-9a8b"
    millis = True

    def check(self, tr):
        if tr.method != "POST":
            return self.json(400, {"message": "bad request", "timestamp": "2024-01-01"})
        if tr.header("x-merchant-id") != self.merchant_id or tr.header("x-secret") != self.secret:
            return self.json(401, {"message": "Unauthorized", "timestamp": "2024-01-01"})
        return None

    def issue(self, tr):
        tok = self.new_token()
        exp = time.time() + self.lifetime
        return self.json(200, {"tokenType": "Bearer", "token": tok,
                               "expiresAt": int(exp * 1000) if self.millis else int(exp)})


class MicoVoice(MockProvider):
    """Standard OAuth2 client_credentials, form body, space-separated scope, expires_in."""
    token_path = "/oauth/token"
    names = ("api.micovoice.com",)
    client_id = "mico-client-77"
    client_secret = "mico-secret-xyz"

    def check(self, tr):
        f = form(tr.body)
        if (tr.header("Content-Type") or "").split(";")[0] != "application/x-www-form-urlencoded":
            return self.json(400, {"error": "invalid_request"})
        if f.get("grant_type") != "client_credentials":
            return self.json(400, {"error": "unsupported_grant_type"})
        if f.get("client_id") != self.client_id or f.get("client_secret") != self.client_secret:
            return self.json(401, {"error": "invalid_client"})
        return None

    def issue(self, tr):
        tok = self.new_token()
        return self.json(200, {"access_token": tok, "expires_in": self.lifetime,
                               "token_type": "bearer"})
