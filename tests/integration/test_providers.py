"""The five providers, each against a stand-in that implements its document exactly."""
import json
import subprocess
import urllib.parse

import pytest

import provider_setup as S
from support import providers as P


def test_omicall_get_apikey_wrapped_payload_jwt_expiry(ca, proxy_factory):
    m, cfg = S.omicall(ca, lifetime=3600)
    p = proxy_factory(cfg)
    r = subprocess.run(["curl", "-sS", "-x", p.proxy_url, "http://omi.example.test/api/v1/calls"],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True, r.stdout
    assert m.fetches == 1
    tr = m.token_requests[0]
    assert tr.method == "GET"
    assert tr.path == "/api/auth"
    assert tr.query == {"apiKey": P.OmiCall.api_key}
    assert tr.header("Content-Type") == "application/json"
    assert tr.body == b""
    # Lifetime came from the JWT exp (the body states none): about an hour.
    toks = json.loads(S.get_admin(p, "/tokens"))["credentials"][0]
    assert 3000 < toks["expires_in"] <= 3600


def test_omicall_status_code_other_than_9999_is_a_failure(ca, proxy_factory):
    m, cfg = S.omicall(ca)
    m.fail_mode = "error200"
    p = proxy_factory(cfg)
    status, headers, body = S.get(p, "http://omi.example.test/x")
    assert status == 502
    err = json.loads(body)
    assert err["error"] == "token_fetch_failed" and '"api"' in err["detail"]
    assert m.api_requests == []


def test_antsomi_form_comma_scope_iso_expiry(ca, proxy_factory):
    m, cfg = S.antsomi(ca, lifetime=7200)
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.ants.tech/v1/items")
    assert status == 200, body
    tr = m.token_requests[0]
    assert tr.method == "POST" and tr.path == "/oauth/token"
    assert tr.header("Content-Type") == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(tr.body.decode()) == {
        "grant_type": ["client_credentials"], "client_id": [P.Antsomi.client_id],
        "client_secret": [P.Antsomi.client_secret], "scope": ["item,event"]}
    toks = json.loads(S.get_admin(p, "/tokens"))["credentials"][0]
    # The stand-in truncates to the second then adds .643: up to 0.643 s past now + 7200.
    assert 7000 < toks["expires_in"] <= 7201


def test_antsomi_invalid_scope_400_is_reported(ca, proxy_factory):
    m, cfg = S.antsomi(ca)
    cfg["credentials"]["api"]["scope"] = "item,nonsense"
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.ants.tech/v1/items")
    assert status == 502
    detail = json.loads(body)["detail"]
    assert "invalid_scope" in detail and "400" in detail
    assert P.Antsomi.client_secret not in detail


def test_telmai_password_grant_params_in_query_and_form(ca, proxy_factory):
    m, cfg = S.telmai(ca)
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.telm.ai/v1/rules")
    assert status == 200, body
    tr = m.token_requests[0]
    assert tr.method == "POST" and tr.path == "/auth/token"
    want = {"clientId": P.Telmai.client_id, "grantType": "password",
            "username": P.Telmai.username, "password": P.Telmai.password,
            "tenant": P.Telmai.tenant}
    assert tr.query == want
    assert dict(urllib.parse.parse_qsl(tr.body.decode())) == want
    assert tr.header("Content-Type") == "application/x-www-form-urlencoded"


def test_telmai_renews_with_refresh_token_and_falls_back_to_password(ca, proxy_factory):
    m, cfg = S.telmai(ca, lifetime=2)
    p = proxy_factory(cfg)
    assert S.get(p, "http://api.telm.ai/a")[0] == 200
    n = len(p.lines())
    # The background refresh ahead of expiry uses the refresh token.
    p.wait_log("token obtained", start=n, timeout=10)
    assert m.token_requests[1].query["grantType"] == "refresh_token"
    assert m.token_requests[1].query["refreshToken"].startswith("rt_")
    assert S.get(p, "http://api.telm.ai/b")[0] == 200
    # A refused refresh token falls back to the password grant in the same cycle.
    m.refuse_refresh = True
    k = m.fetches
    n = len(p.lines())
    p.wait_log("token obtained", start=n, timeout=10)
    grants = [t.query["grantType"] for t in m.token_requests[k:]]
    assert grants[:2] == ["refresh_token", "password"], grants
    assert S.get(p, "http://api.telm.ai/c")[0] == 200


@pytest.mark.parametrize("millis", [True, False])
def test_manis_headers_and_epoch_expiry(ca, proxy_factory, millis):
    m, cfg = S.manis(ca, lifetime=1800)
    m.millis = millis
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.maniscloud.test/api/v1/orders")
    assert status == 200, body
    tr = m.token_requests[0]
    assert tr.method == "POST" and tr.path == "/api/v1/auth/token"
    assert tr.header("x-merchant-id") == P.Manis.merchant_id
    assert tr.header("x-secret") == P.Manis.secret
    assert tr.body == b""
    toks = json.loads(S.get_admin(p, "/tokens"))["credentials"][0]
    assert 1700 < toks["expires_in"] <= 1800


def test_manis_bad_secret_401(ca, proxy_factory):
    m, cfg = S.manis(ca)
    cfg["credentials"]["api"]["secret"] = "wrong"
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.maniscloud.test/x")
    assert status == 502 and "401" in json.loads(body)["detail"]


def test_micovoice_client_credentials_space_scope_lowercase_bearer(ca, proxy_factory):
    m, cfg = S.micovoice(ca, lifetime=86399)
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.micovoice.com/v1/outbound_calls/abc")
    assert status == 200, body
    tr = m.token_requests[0]
    assert tr.method == "POST" and tr.path == "/oauth/token"
    assert urllib.parse.parse_qs(tr.body.decode()) == {
        "grant_type": ["client_credentials"], "client_id": [P.MicoVoice.client_id],
        "client_secret": [P.MicoVoice.client_secret],
        "scope": ["campaigns:read outbound_calls:read"]}
    # "bearer" from the token endpoint is injected as the RFC 6750 scheme "Bearer".
    assert m.api_requests[-1].header("Authorization").startswith("Bearer tk_")


@pytest.mark.parametrize("name", sorted(S.ALL))
def test_each_provider_via_curl_and_urllib_and_recovers_after_failure(ca, proxy_factory, name):
    m, cfg = S.ALL[name](ca)
    m.fail_mode = "html"
    p = proxy_factory(cfg)
    host = S.API_HOST[name]
    status, _, body = S.get(p, "http://%s/v1/ping" % host)
    assert status == 502
    err = json.loads(body)
    assert err["error"] == "token_fetch_failed"
    assert "HTTP 502" in err["detail"] and '"api"' in err["detail"]
    # Fixed: a forced refresh (admin) brings it back without waiting out the backoff.
    m.fail_mode = None
    n = len(p.lines())
    S.post_admin(p, "/tokens/api/refresh")
    p.wait_log("token obtained", start=n)
    r = subprocess.run(["curl", "-sS", "-x", p.proxy_url, "http://%s/v1/ping" % host],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True
    assert S.get(p, "http://%s/v1/ping" % host)[0] == 200
    # Nothing secret or issued ever reached the log, at debug level.
    logs = p.logs()
    for tok in list(m.issued):
        assert tok not in logs
    for secret in ("omi-KEY-5f1e", "ECOTBQNP44IFPCVMQNSZ", "p@ss word&=1", "manis-secret-9a8b",
                   "mico-secret-xyz"):
        assert secret not in logs
