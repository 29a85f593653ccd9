"""Token cache behaviour under stress and failure (DESIGN.md section 4), with real clients."""
import asyncio
import json
import socket
import threading
import time

import provider_setup as S


async def _one(port, host, path):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(("GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
             % (host, path, host)).encode())
    await w.drain()
    data = await r.read()
    w.close()
    return int(data.split(b" ", 2)[1])


def burst(port, host, n, path="/v1/x"):
    async def run():
        return await asyncio.wait_for(
            asyncio.gather(*[_one(port, host, path) for _ in range(n)]), 120)
    return asyncio.run(run())


def test_500_concurrent_requests_on_cold_cache_cause_one_fetch(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    m.hold.clear()  # the token endpoint waits until every request is queued behind it
    cfg["log_level"] = "info"
    p = proxy_factory(cfg)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", burst(p.port,
                                                                      "api.micovoice.com", 500)))
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = json.loads(S.get_admin(p, "/tokens"))["credentials"][0]
        if st["waiters"] >= 500:
            break
        time.sleep(0.05)
    assert st["waiters"] == 500, st
    m.hold.set()
    t.join(120)
    assert result["s"] == [200] * 500
    assert m.fetches == 1


def test_short_lifetimes_under_continuous_load_never_fail(ca, proxy_factory):
    m, cfg = S.micovoice(ca, lifetime=2)
    cfg["log_level"] = "info"
    p = proxy_factory(cfg)
    stop = time.monotonic() + 20
    statuses = []
    lock = threading.Lock()

    def worker():
        while time.monotonic() < stop:
            s, _, _ = S.get(p, "http://api.micovoice.com/v1/load")
            with lock:
                statuses.append(s)
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # One fetch per refresh cycle (refresh ahead at 80 % of 2 s), not one per request.
    assert 8 <= m.fetches <= 20, m.fetches
    assert len(statuses) > 10 * m.fetches


def test_server_side_revocation_recovered_with_one_refetch(ca, proxy_factory):
    m, cfg = S.antsomi(ca)
    p = proxy_factory(cfg)
    assert S.get(p, "http://api.ants.tech/a")[0] == 200
    assert m.fetches == 1
    m.revoke_all()
    status, _, body = S.get(p, "http://api.ants.tech/b")
    assert status == 200, body
    assert m.fetches == 2
    assert S.get(p, "http://api.ants.tech/c")[0] == 200
    assert m.fetches == 2


def test_401_with_unkept_body_is_passed_through(ca, proxy_factory):
    m, cfg = S.antsomi(ca)
    cfg["limits"]["replay_body"] = 10
    p = proxy_factory(cfg)
    assert S.get(p, "http://api.ants.tech/a")[0] == 200
    m.revoke_all()
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": p.proxy_url}))
    try:
        opener.open(urllib.request.Request("http://api.ants.tech/post", data=b"x" * 100),
                    timeout=20)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    # The token was dropped all the same: the next request gets a fresh one.
    assert S.get(p, "http://api.ants.tech/after")[0] == 200
    assert m.fetches == 2


def test_failing_endpoint_backs_off_then_recovers(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    m.fail_mode = "500"
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.micovoice.com/x")
    assert status == 502 and json.loads(body)["error"] == "token_fetch_failed"
    # During backoff: quick 503 with Retry-After, and the endpoint is not hammered.
    codes = []
    for _ in range(20):
        s, h, b = S.get(p, "http://api.micovoice.com/x")
        codes.append(s)
        if s == 503:
            assert int(h["Retry-After"]) >= 1
            assert json.loads(b)["error"] == "token_unavailable"
    assert 503 in codes
    assert m.fetches <= 3, m.fetches
    st = json.loads(S.get_admin(p, "/tokens"))["credentials"][0]
    assert st["state"] in ("backoff", "empty", "fetching") and st["failures"] >= 1
    m.fail_mode = None
    n = len(p.lines())
    S.post_admin(p, "/tokens/api/refresh")
    p.wait_log("token obtained", start=n)
    assert S.get(p, "http://api.micovoice.com/x")[0] == 200


def test_garbage_truncated_and_error_bodies_are_failures(ca, proxy_factory):
    for mode in ("garbage", "truncated", "html200", "error200"):
        m, cfg = S.micovoice(ca)
        m.fail_mode = mode
        p = proxy_factory(cfg)
        status, _, body = S.get(p, "http://api.micovoice.com/x")
        assert status == 502, (mode, body)
        assert m.api_requests == [], mode  # no garbage token was ever injected
        p.kill()
        m.origin.close()


def test_hanging_endpoint_times_out_with_clear_error(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    m.hold.clear()
    cfg["credentials"]["api"]["timeout_ms"] = 500
    p = proxy_factory(cfg)
    status, _, body = S.get(p, "http://api.micovoice.com/x")
    m.hold.set()
    assert status == 502
    assert "unreachable" in json.loads(body)["detail"] or "timed out" in json.loads(body)["detail"]


def test_client_disconnecting_while_waiting_for_token(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    m.hold.clear()
    p = proxy_factory(cfg)
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET http://api.micovoice.com/w HTTP/1.1\r\nHost: api.micovoice.com\r\n\r\n")
        socks.append(s)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if json.loads(S.get_admin(p, "/tokens"))["credentials"][0]["waiters"] == 20:
            break
        time.sleep(0.02)
    for s in socks:
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if json.loads(S.get_admin(p, "/tokens"))["credentials"][0]["waiters"] == 0:
            break
        time.sleep(0.02)
    assert json.loads(S.get_admin(p, "/tokens"))["credentials"][0]["waiters"] == 0
    m.hold.set()
    assert S.get(p, "http://api.micovoice.com/after")[0] == 200
    assert p.proc.poll() is None
    assert m.fetches == 1


def test_prefetch_and_readyz(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    m.hold.clear()
    cfg["credentials"]["api"]["prefetch"] = True
    p = proxy_factory(cfg)
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(p.admin_url + "/readyz", timeout=5)
        raise AssertionError("expected 503 while the prefetch is pending")
    except urllib.error.HTTPError as e:
        assert e.code == 503
    assert urllib.request.urlopen(p.admin_url + "/healthz", timeout=5).status == 200
    m.hold.set()
    p.wait_log("token obtained")
    assert urllib.request.urlopen(p.admin_url + "/readyz", timeout=5).status == 200
    assert m.fetches == 1
    assert S.get(p, "http://api.micovoice.com/x")[0] == 200
    assert m.fetches == 1


def test_tokens_endpoint_and_metrics_have_no_secrets(ca, proxy_factory):
    m, cfg = S.micovoice(ca)
    p = proxy_factory(cfg)
    assert S.get(p, "http://api.micovoice.com/x")[0] == 200
    tokens = S.get_admin(p, "/tokens").decode()
    metrics = S.get_admin(p, "/metrics").decode()
    for text in (tokens, metrics):
        for tok in m.issued:
            assert tok not in text
        assert "mico-secret-xyz" not in text
    st = json.loads(tokens)["credentials"][0]
    assert st["name"] == "api" and st["state"] == "valid" and st["fetches"] == 1
    assert 'authproxy_token_fetches_total{credential="api"} 1' in metrics
    assert 'authproxy_requests_total{route="api.micovoice.com",status="200"} 1' in metrics
