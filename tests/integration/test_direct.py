"""The upstream fast path: requests whose body is in memory go over authproxy's own HTTP/1.1
keep-alive connections, from the first request when connect_to (as in these tests) names an IP
address, after curl's first contact otherwise. Each test checks that the fast path really
carried the requests (the /metrics counters), and that what the client and the origin see is
the same as through curl."""
import json
import re
import socket
import ssl
import threading
import time
import urllib.request

import pytest

from conftest import base_config
from support.origin import RawServer, Response, echo_handler
from test_forward import raw, urlopen_via


def metric(p, name):
    with urllib.request.urlopen(p.admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, "%s missing from /metrics" % name
    return int(m.group(1))


def direct_requests(p):
    return metric(p, "authproxy_upstream_direct_requests_total")


def get(p, path, **kw):
    with urlopen_via(p.proxy_url, "http://api.example.com" + path, **kw) as r:
        return r.status, dict(r.headers), r.read()


def plain_config(ca, port, **overrides):
    """The base config with one plain-HTTP route to api.example.com on 127.0.0.1:port."""
    cfg = base_config(ca, port, **overrides)
    cfg["routes"] = [{"host": "api.example.com", "upstream": "http://api.example.com"}]
    cfg["connect_to"] = {"api.example.com:80": "127.0.0.1:%d" % port}
    return cfg


def read_head(f):
    line = f.readline()
    if not line:
        return None
    while f.readline() not in (b"\r\n", b""):
        pass
    return line.split()[1]


def ok(body=b"ok"):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def raw_origin(answer, tls_ctx=None):
    """A byte-exact origin: reads each request head and calls answer(sock, target); the
    connection ends when answer returns False (or the client closes)."""
    def script(c):
        s = tls_ctx.wrap_socket(c, server_side=True) if tls_ctx else c
        f = s.makefile("rb")
        while True:
            target = read_head(f)
            if target is None or answer(s, target) is False:
                return
    return RawServer(script)


def same_request(echo):
    """An echoed request with our per-process Via pseudonym blanked."""
    out = json.loads(echo)
    out["headers"] = [(k, re.sub(r"authproxy-[0-9a-f]{8}", "authproxy-*", v))
                      for k, v in out["headers"]]
    return out


def test_fast_path_sends_exactly_what_curl_sends(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    through_curl = proxy_factory(base_config(ca, o.port, upstream_fast_path=False))
    p = proxy_factory(base_config(ca, o.port))
    hdrs = {"X-Custom": "a b", "Authorization": "Basic client-own", "Proxy-Authorization": "x",
            "Via": "1.0 upstream-cache", "X-Empty": "", "Accept": "text/csv"}
    cases = (("GET", None, hdrs), ("GET", None, {}), ("POST", b'{"k":1}', hdrs),
             ("PUT", b"", {}), ("DELETE", None, hdrs), ("PATCH", b"p" * 5000, {}))
    for method, body, h in cases:
        status_c, _, want = get(through_curl, "/v1/x?q=1", data=body, headers=h, method=method)
        status, _, got = get(p, "/v1/x?q=1", data=body, headers=h, method=method)
        assert status == status_c == 200
        assert same_request(got) == same_request(want), method
        names = [k.lower() for k, _ in same_request(got)["headers"]]
        assert names.count("authorization") == 1 and "proxy-authorization" not in names
    assert direct_requests(p) == len(cases)
    assert direct_requests(through_curl) == 0
    assert metric(p, "authproxy_upstream_direct_connections_total") == 1
    # One kept-alive upstream connection per proxy.
    assert len({r.conn_id for r in o.requests}) == 2


def framing_handler(req):
    t = req.target
    if t == "/chunked":
        return Response(200, [("Content-Type", "text/plain")], chunked=True,
                        stream=[b"one,", b"two,", b"three"])
    if t == "/close":
        return Response(200, [], b"until-close", close=True)
    if t == "/204":
        return Response(204)
    if t == "/304":
        return Response(304, [("ETag", '"v1"')])
    if t == "/big":
        return Response(200, [("Content-Type", "application/octet-stream")],
                        bytes(range(256)) * 4096)
    return Response(200, [("Content-Type", "text/plain"), ("X-Target", t)], b"plain:" + t.encode())


def test_fast_path_response_framing(ca, origin_factory, proxy_factory):
    o = origin_factory(framing_handler)
    p = proxy_factory(base_config(ca, o.port))
    assert get(p, "/warm")[2] == b"plain:/warm"
    start = direct_requests(p)
    assert get(p, "/chunked")[2] == b"one,two,three"
    assert get(p, "/close")[2] == b"until-close"
    status, h, body = get(p, "/plain", method="HEAD")
    assert status == 200 and body == b"" and h["X-Target"] == "/plain"
    out = raw(p.port, b"GET http://api.example.com/204 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET http://api.example.com/304 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET http://api.example.com/after HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 204 ")
    assert b"HTTP/1.1 304 " in out and b'ETag: "v1"' in out
    assert out.endswith(b"plain:/after")
    status, _, body = get(p, "/big")
    assert status == 200 and body == bytes(range(256)) * 4096
    assert direct_requests(p) == start + 7


def test_fast_path_skips_interim_responses(ca, proxy_factory):
    # 100 Continue and 103 Early Hints before the final answer, on a kept-alive connection.
    srv = raw_origin(lambda c, target: c.sendall(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
        b"Link: </s.css>; rel=preload\r\n\r\n" + ok(b"final")))
    try:
        p = proxy_factory(plain_config(ca, srv.port))
        for _ in range(3):
            status, _, body = get(p, "/x")
            assert status == 200 and body == b"final"
        assert direct_requests(p) == 3
        assert srv.accepted == 1  # one connection, kept alive
    finally:
        srv.close()


def test_fast_path_malformed_and_truncated_responses(ca, proxy_factory):
    def answer(c, target):
        if target == b"/bad":
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Split: a\rb\r\nContent-Length: 2\r\n\r\nok")
        elif target == b"/short":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this")
        else:
            c.sendall(ok())
            return True
        c.close()
        return False
    srv = raw_origin(answer)
    try:
        p = proxy_factory(plain_config(ca, srv.port))
        assert get(p, "/warm")[2] == b"ok"
        out = raw(p.port, b"GET http://api.example.com/bad HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 ")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_error"
        assert get(p, "/warm")[2] == b"ok"
        out = raw(p.port, b"GET http://api.example.com/short HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 100" in head
        assert body == b"only-this"  # then the connection closes: the client sees truncation
        assert direct_requests(p) == 2  # the two good answers
        assert metric(p, "authproxy_upstream_direct_fallbacks_total") == 0
    finally:
        srv.close()


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "curl"])
def test_malformed_response_header_lines_are_refused(ca, proxy_factory, fast_path):
    # RFC 9112 5.1/5.2: obs-fold, whitespace before the colon, a name that is not a token: a
    # proxy must not pass them on; both engines answer the same 502.
    bad = {b"/fold": b"X-Long: a\r\n  b", b"/space": b"X-A : b", b"/name": b"Bad Name: x"}

    def answer(c, target):
        if target in bad:
            c.sendall(b"HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 2\r\n\r\nok" % bad[target])
        else:
            c.sendall(ok())
    srv = raw_origin(answer)
    try:
        p = proxy_factory(plain_config(ca, srv.port, upstream_fast_path=fast_path))
        assert get(p, "/warm")[2] == b"ok"
        for path in bad:
            out = raw(p.port, b"GET http://api.example.com%s HTTP/1.1\r\nHost: a\r\n"
                              b"Connection: close\r\n\r\n" % path)
            assert out.startswith(b"HTTP/1.1 502 "), path
            body = json.loads(out.split(b"\r\n\r\n", 1)[1])
            assert body["error"] == "upstream_error"
            assert "malformed response head" in body["detail"]
        assert direct_requests(p) == (1 if fast_path else 0)  # the warm-up
    finally:
        srv.close()


def test_fast_path_response_timeout(ca, origin_factory, proxy_factory):
    release = threading.Event()

    def handler(req):
        if req.target == "/slow":
            release.wait(10)
        return Response(200, [], b"ok")
    o = origin_factory(handler)
    cfg = base_config(ca, o.port)
    cfg["limits"]["response_timeout_ms"] = 500
    p = proxy_factory(cfg)
    try:
        assert get(p, "/warm")[2] == b"ok"
        out = raw(p.port, b"GET http://api.example.com/slow HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 504 ")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_timeout"
        assert direct_requests(p) == 1
        assert metric(p, "authproxy_upstream_direct_connections_total") == 1
    finally:
        release.set()
    assert get(p, "/again")[2] == b"ok"  # a fresh connection: the stalled one was closed
    assert direct_requests(p) == 2
    assert metric(p, "authproxy_upstream_direct_connections_total") == 2


def test_fast_path_pooled_connection_closed_by_upstream_is_retried(ca, proxy_factory):
    # The origin answers with keep-alive, then drops the connection after a moment, before the
    # next request: the dead pooled connection costs the client nothing.
    def answer(c, target):
        c.sendall(ok())
        c.close()  # keep-alive was promised
        return False
    srv = raw_origin(answer)
    try:
        p = proxy_factory(plain_config(ca, srv.port))
        for _ in range(6):
            status, _, body = get(p, "/x")
            assert status == 200 and body == b"ok"
        assert srv.accepted >= 6
    finally:
        srv.close()


def test_fast_path_401_replays_with_a_fresh_token(ca, origin_factory, proxy_factory):
    refused = []

    def handler(req):
        if req.target == "/once-401" and not refused:
            refused.append(req)
            return Response(401, [("WWW-Authenticate", "Bearer")], b"expired")
        return echo_handler(req)
    o = origin_factory(handler)
    p = proxy_factory(base_config(ca, o.port))
    assert get(p, "/warm")[0] == 200
    status, _, body = get(p, "/once-401", data=b"payload", method="PUT")
    assert status == 200
    assert json.loads(body)["body_len"] == len(b"payload")
    assert [r.target for r in o.requests].count("/once-401") == 2
    assert direct_requests(p) >= 1


def test_fast_path_follows_reload_of_connect_to(ca, origin_factory, proxy_factory):
    a = origin_factory(lambda req: Response(200, [], b"from-a"))
    b = origin_factory(lambda req: Response(200, [], b"from-b"))
    cfg = base_config(ca, a.port)
    p = proxy_factory(cfg)
    assert get(p, "/1")[2] == b"from-a"
    assert get(p, "/2")[2] == b"from-a"
    assert direct_requests(p) == 2
    cfg["connect_to"] = {"api.example.com:443": "127.0.0.1:%d" % b.port}
    n = p.reload(cfg)
    p.wait_log("configuration reloaded", start=n)
    assert get(p, "/3")[2] == b"from-b"
    assert get(p, "/4")[2] == b"from-b"
    assert direct_requests(p) == 4


def test_fast_path_can_be_turned_off(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    p = proxy_factory(base_config(ca, o.port, upstream_fast_path=False))
    for i in range(5):
        assert get(p, "/n/%d" % i)[0] == 200
    assert direct_requests(p) == 0
    assert len({r.conn_id for r in o.requests}) == 1  # curl's own pool still reuses


def test_fast_path_never_takes_a_streamed_upload(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    cfg["limits"]["replay_body"] = 4
    p = proxy_factory(cfg)
    assert get(p, "/warm")[0] == 200
    status, _, body = get(p, "/up", data=b"x" * 1000, method="POST")
    assert status == 200 and json.loads(body)["body_len"] == 1000
    assert direct_requests(p) == 1  # the warm-up only


def test_fast_path_verifies_the_certificate_on_every_new_connection(ca, origin_factory,
                                                                     proxy_factory):
    # Every response closes its connection, so each request needs a new TLS connection. After
    # the first request the origin presents a certificate for another name: the fast path must
    # refuse it exactly as curl does (which then reports it), and nothing reaches the origin.
    o = origin_factory(lambda req: Response(200, [], b"ok", hangup=True))
    p = proxy_factory(base_config(ca, o.port))
    assert get(p, "/1")[2] == b"ok"
    wrong = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    wrong.load_cert_chain(*ca.issue(["other.example.com"]))
    o.server.socket._context = wrong  # the listening socket wraps each accepted one with it
    out = raw(p.port, b"GET http://api.example.com/2 HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 502 ")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_tls_failed"
    assert [r.target for r in o.requests] == ["/1"]
    assert metric(p, "authproxy_upstream_direct_fallbacks_total") == 1


def test_fast_path_resumes_tls_sessions_on_new_connections(ca, origin_factory, proxy_factory):
    # Every response says Connection: close: each fast-path request opens a new connection,
    # and after the first the handshake is abbreviated with the origin's session ticket.
    o = origin_factory(lambda req: Response(200, [], b"ok", close=True))
    p = proxy_factory(base_config(ca, o.port))
    for i in range(5):
        assert get(p, "/%d" % i)[2] == b"ok"
    assert direct_requests(p) == 5
    assert metric(p, "authproxy_upstream_direct_connections_total") == 5
    by_conn = [o.resumed[r.conn_id] for r in o.requests]
    assert by_conn == [False, True, True, True, True], by_conn  # the first has no ticket yet


# --- Review findings: desync, duplicates, framing, stalls ---------------------------------------

def test_stray_bytes_after_a_response_never_answer_the_next_request(ca, proxy_factory):
    # A response that ends exactly at the proxy's 16 KiB read, followed by bytes the upstream
    # should not have sent (a buggy or split response), while the client has pipelined its
    # next request: the pooled connection must not be reused with those bytes on it.
    body = b"x" * (16384 - len(b"HTTP/1.1 200 OK\r\nContent-Length: 16346\r\n\r\n"))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert len(head) + len(body) == 16384

    srv = raw_origin(lambda c, target: c.sendall(
        head + body + ok(b"STRAY") if target == b"/a" else ok(target)))
    try:
        p = proxy_factory(plain_config(ca, srv.port))
        assert get(p, "/warm")[2] == b"/warm"
        out = raw(p.port, b"GET http://api.example.com/a HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET http://api.example.com/b HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert out.count(b"HTTP/1.1 200 ") == 2
        assert b"STRAY" not in out and out.endswith(b"\r\n\r\n/b")
        assert get(p, "/c")[2] == b"/c"
    finally:
        srv.close()


def test_stray_tls_record_after_a_response_never_answers_the_next_request(ca, proxy_factory):
    # Over TLS the stray response arrives as a second record in the same TCP segment, so it
    # sits in OpenSSL's buffer, where no socket event will ever announce it.
    cert, key = ca.issue(["api.example.com"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def answer(s, target):
        if target != b"/a":
            s.sendall(ok(target))
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # two records, one segment
        s.sendall(ok())
        s.sendall(ok(b"STRAY"))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    srv = raw_origin(answer, tls_ctx=ctx)
    try:
        p = proxy_factory(base_config(ca, srv.port))
        assert get(p, "/warm")[2] == b"/warm"
        assert get(p, "/a")[2] == b"ok"
        for path in ("/b", "/c", "/d"):
            assert get(p, path)[2] == path.encode()
        assert direct_requests(p) == 5
    finally:
        srv.close()


def test_a_post_the_upstream_may_have_processed_is_never_sent_twice(ca, proxy_factory):
    # The upstream takes the request on a kept-alive connection and dies without answering: it
    # may have been processed, and a proxy must not retry a non-idempotent request
    # (RFC 9112 9.3.1): 502, and the origin saw it once. A GET would be retried.
    seen = []

    def answer(c, target):
        seen.append(target)
        if target.startswith(b"/charge"):
            c.close()
            return False
        c.sendall(ok())
    srv = raw_origin(answer)
    try:
        p = proxy_factory(plain_config(ca, srv.port))
        assert get(p, "/warm")[2] == b"ok"
        out = raw(p.port, b"POST http://api.example.com/charge HTTP/1.1\r\nHost: a\r\n"
                          b"Content-Length: 4\r\nConnection: close\r\n\r\n1000")
        assert out.startswith(b"HTTP/1.1 502 ")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_error"
        assert seen.count(b"/charge") == 1
        assert metric(p, "authproxy_upstream_direct_fallbacks_total") == 0
        # The same failure for a GET on a reused connection: sent again (through curl, on a
        # fresh connection, which here fails too).
        assert get(p, "/warm")[2] == b"ok"
        out = raw(p.port, b"GET http://api.example.com/charge-get HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 ")
        assert seen.count(b"/charge-get") == 2
        assert metric(p, "authproxy_upstream_direct_fallbacks_total") == 1
    finally:
        srv.close()


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "curl"])
def test_content_length_beside_transfer_encoding_is_not_passed_on(ca, proxy_factory, fast_path):
    # RFC 9112 6.3: Transfer-Encoding wins and the Content-Length must not reach the client,
    # whose keep-alive connection it would desynchronise. Both engines.
    srv = raw_origin(lambda c, target: c.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"b\r\nhello world\r\n0\r\n\r\n"))
    try:
        p = proxy_factory(plain_config(ca, srv.port, upstream_fast_path=fast_path))
        out = raw(p.port, b"GET http://api.example.com/x HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"GET http://api.example.com/y HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert b"Content-Length" not in out
        assert out.count(b"HTTP/1.1 200 ") == 2
        assert out.count(b"hello world") == 2
        assert direct_requests(p) == (2 if fast_path else 0)
    finally:
        srv.close()


def test_bodiless_responses_keep_the_connection(ca, origin_factory, proxy_factory):
    o = origin_factory(framing_handler)
    p = proxy_factory(base_config(ca, o.port))
    assert get(p, "/warm")[0] == 200
    for _ in range(3):
        out = raw(p.port, b"GET http://api.example.com/304 HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 304 ")
        assert get(p, "/plain", method="HEAD")[0] == 200
    assert direct_requests(p) == 7
    assert metric(p, "authproxy_upstream_direct_connections_total") == 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "curl"])
def test_upstream_stalling_mid_body_is_cut_off(ca, proxy_factory, fast_path):
    release = threading.Event()

    def answer(c, target):
        if target != b"/stall":
            c.sendall(ok())
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        release.wait(15)
        return False
    srv = raw_origin(answer)
    try:
        cfg = plain_config(ca, srv.port, upstream_fast_path=fast_path)
        cfg["limits"]["body_timeout_ms"] = 500
        p = proxy_factory(cfg)
        start = time.monotonic()
        out = raw(p.port, b"GET http://api.example.com/stall HTTP/1.1\r\nHost: a\r\n\r\n",
                  timeout=10)
        assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"partial")
        assert time.monotonic() - start < 8  # cut off, not left hanging
        assert get(p, "/ok")[2] == b"ok"
        assert direct_requests(p) == (1 if fast_path else 0)
    finally:
        release.set()
        srv.close()


def test_fast_path_learns_from_curl_when_the_address_needs_dns(ca, origin_factory, proxy_factory):
    # connect_to to a host name (or no connect_to at all) needs a DNS lookup: curl makes the
    # first contact, and the fast path uses the address it connected to for what follows.
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    cfg["connect_to"] = {"api.example.com:443": "localhost:%d" % o.port}
    p = proxy_factory(cfg)
    for i in range(4):
        assert get(p, "/n/%d" % i)[0] == 200
    assert direct_requests(p) == 3
    assert metric(p, "authproxy_upstream_direct_connections_total") == 1
    assert len({r.conn_id for r in o.requests}) == 2  # curl's, then the fast path's


def test_connect_to_matches_any_spelling_of_an_ipv6_address(ca, proxy_factory):
    # connect_to "[::1]:P" must also catch "http://[0:0:0:0:0:0:0:1]:P/" (curl shortens the
    # address before matching): the fast path must not connect to [::1]:P itself.
    right = raw_origin(lambda c, target: c.sendall(ok(b"right")))
    wrong = socket.socket(socket.AF_INET6)
    wrong.bind(("::1", 0))
    wrong.listen(8)
    port = wrong.getsockname()[1]

    def serve_wrong():
        while True:
            try:
                c, _ = wrong.accept()
            except OSError:
                return
            c.sendall(ok(b"wrong"))
            c.close()
    threading.Thread(target=serve_wrong, daemon=True).start()
    try:
        for fast_path in (True, False):
            cfg = base_config(ca, right.port, upstream_fast_path=fast_path, unmatched="forward")
            cfg["connect_to"] = {"[::1]:%d" % port: "127.0.0.1:%d" % right.port}
            p = proxy_factory(cfg)
            for _ in range(2):
                with urlopen_via(p.proxy_url, "http://[0:0:0:0:0:0:0:1]:%d/x" % port) as r:
                    assert r.read() == b"right"
            assert direct_requests(p) == (2 if fast_path else 0)
    finally:
        wrong.close()
        right.close()


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "curl"])
def test_upstream_connect_timeout_is_504(ca, proxy_factory, fast_path):
    # A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs
    # until authproxy's connect timeout answers 504.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        cfg = base_config(ca, port, upstream_fast_path=fast_path)
        cfg["limits"]["connect_timeout_ms"] = 300
        p = proxy_factory(cfg)
        start = time.monotonic()
        out = raw(p.port, b"GET http://api.example.com/x HTTP/1.1\r\nHost: a\r\n"
                          b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 504 ")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_timeout"
        assert time.monotonic() - start < 2.5  # the connect timeout, not the response timeout
        assert metric(p, "authproxy_upstream_direct_connections_total") == (1 if fast_path else 0)
    finally:
        for s in fillers:
            s.close()
        ls.close()
