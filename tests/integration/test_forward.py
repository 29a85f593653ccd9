"""The forwarding core (issue #2), driven with real clients against a loopback TLS origin."""
import json
import socket
import subprocess
import urllib.error
import urllib.request

from conftest import base_config
from support.origin import Response, echo_handler


def curl(*args, timeout=20):
    r = subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True,
                       timeout=timeout, env={"PATH": "/usr/bin:/bin"})
    return r


def urlopen_via(proxy_url, url, data=None, headers=None, method=None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    return opener.open(req, timeout=15)


def raw(port, data, timeout=10, read_all=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not read_all:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def start(ca, origin_factory, proxy_factory, handler=echo_handler, **overrides):
    o = origin_factory(handler)
    p = proxy_factory(base_config(ca, o.port, **overrides))
    return o, p


def test_absolute_form_via_http_proxy_injects_bearer_over_verified_tls(ca, origin_factory,
                                                                       proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    with urlopen_via(p.proxy_url, "http://api.example.com/v1/items?x=1") as r:
        assert r.status == 200
        body = json.loads(r.read())
    assert body["target"] == "/v1/items?x=1"
    req = o.requests[-1]
    assert req.header_all("Authorization") == ["Bearer tok-123"]
    assert req.header("Host") == "api.example.com"


def test_curl_with_x_reaches_https_upstream(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("-x", p.proxy_url, "http://api.example.com/v1/x")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == "/v1/x"
    assert o.requests[-1].header("Authorization") == "Bearer tok-123"


def test_base_url_mode_strips_prefix(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("%s/ex/v1/calls/42?full=1" % p.proxy_url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == "/v1/calls/42?full=1"
    assert o.requests[-1].header("Authorization") == "Bearer tok-123"


def test_origin_form_without_route_is_400(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("-w", "%{http_code}", "-o", "/dev/null", "%s/nothing/here" % p.proxy_url)
    assert r.stdout == b"400"
    assert o.requests == []


def test_unmatched_host_is_403_json_and_nothing_sent(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    try:
        urlopen_via(p.proxy_url, "http://evil.example.net/x")
        raise AssertionError("expected 403")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        body = json.loads(e.read())
        assert body["error"] == "host_not_allowed" and body["detail"]
    assert o.requests == []


def test_unmatched_forward_passes_request_unchanged_without_credential(
        ca, origin_factory, proxy_factory):
    plain = origin_factory(echo_handler, tls=False)
    o, p = start(ca, origin_factory, proxy_factory, unmatched="forward",
                 connect_to={"plain.example.org:80": "127.0.0.1:%d" % 1})
    # connect_to only rewrites the connection; use the loopback address directly for plain.
    r = curl("-x", p.proxy_url, "http://127.0.0.1:%d/free?a=b" % plain.port,
             "-H", "Authorization: Basic Zm9vOmJhcg==")
    assert r.returncode == 0, r.stderr
    req = plain.requests[-1]
    assert req.target == "/free?a=b"
    assert req.header_all("Authorization") == ["Basic Zm9vOmJhcg=="]


def test_client_authorization_is_replaced_not_duplicated(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("-x", p.proxy_url, "http://api.example.com/x", "-H", "Authorization: Bearer mine")
    assert r.returncode == 0
    assert o.requests[-1].header_all("Authorization") == ["Bearer tok-123"]


def test_hop_by_hop_headers_removed_via_added(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("-x", p.proxy_url, "http://api.example.com/x",
             "-H", "Connection: keep-alive, X-Private", "-H", "X-Private: secret-ish",
             "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers", "-H", "Trailer: X-T",
             "-H", "Upgrade: websocket", "-H", "Proxy-Connection: keep-alive",
             "-H", "Proxy-Authorization: Basic dTpw", "-H", "X-Kept: yes")
    assert r.returncode == 0, r.stderr
    names = {k.lower() for k, _ in o.requests[-1].headers}
    for gone in ("connection", "x-private", "keep-alive", "te", "trailer", "upgrade",
                 "proxy-connection", "proxy-authorization"):
        assert gone not in names, gone
    assert o.requests[-1].header("X-Kept") == "yes"
    assert "authproxy" in o.requests[-1].header("Via")


def test_response_has_via_and_redirect_is_not_followed(ca, origin_factory, proxy_factory):
    def h(req):
        return Response(302, [("Location", "https://elsewhere.example.com/next")], b"moved")
    o, p = start(ca, origin_factory, proxy_factory, handler=h)
    r = curl("-i", "-x", p.proxy_url, "http://api.example.com/r")
    head = r.stdout.decode()
    assert head.startswith("HTTP/1.1 302")
    assert "Location: https://elsewhere.example.com/next" in head
    assert "Via: 1.1 authproxy" in head
    assert len(o.requests) == 1


def test_keep_alive_and_pipelining_in_order(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    reqs = b"".join(b"GET http://api.example.com/p%d HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
                    % i for i in range(3))
    reqs += b"GET http://api.example.com/last HTTP/1.1\r\nHost: api.example.com\r\n" \
            b"Connection: close\r\n\r\n"
    out = raw(p.port, reqs)
    assert out.count(b"HTTP/1.1 200") == 4
    order = [out.find(b'"/p0"'), out.find(b'"/p1"'), out.find(b'"/p2"'), out.find(b'"/last"')]
    assert -1 not in order and order == sorted(order)
    assert [r.target for r in o.requests] == ["/p0", "/p1", "/p2", "/last"]


def test_bodies_content_length_and_chunked_arrive_exactly(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    payload = bytes(range(256)) * 1000
    r = curl("-x", p.proxy_url, "--data-binary", "@-", "http://api.example.com/up",
             "-H", "Content-Type: application/octet-stream")
    # curl reads stdin: feed via input
    r = subprocess.run(["curl", "-sS", "-x", p.proxy_url, "--data-binary", "@-",
                        "http://api.example.com/up"], input=payload, capture_output=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert o.requests[-1].body == payload
    r = subprocess.run(["curl", "-sS", "-x", p.proxy_url, "--data-binary", "@-",
                        "-H", "Transfer-Encoding: chunked", "http://api.example.com/up2"],
                       input=payload, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert o.requests[-1].body == payload
    assert o.requests[-1].method == "POST"


def test_raw_chunked_request_with_extensions_and_trailers(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    out = raw(p.port, b"PUT http://api.example.com/c HTTP/1.1\r\nHost: api.example.com\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      b"5;ext=\"q\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert o.requests[-1].body == b"hello world"
    assert o.requests[-1].method == "PUT"


def test_head_204_304_have_no_body(ca, origin_factory, proxy_factory):
    def h(req):
        if req.target == "/204":
            return Response(204, [])
        if req.target == "/304":
            return Response(304, [("ETag", '"x"')])
        return Response(200, [("Content-Length", "5")], b"hello")
    o, p = start(ca, origin_factory, proxy_factory, handler=h)
    out = raw(p.port, b"HEAD http://api.example.com/h HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET http://api.example.com/204 HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET http://api.example.com/304 HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    parts = out.split(b"HTTP/1.1 ")
    assert [x[:3] for x in parts[1:]] == [b"200", b"204", b"304"]
    assert b"Content-Length: 5" in parts[1] and not parts[1].rstrip().endswith(b"hello")
    assert parts[2].endswith(b"\r\n\r\n") and parts[3].endswith(b"\r\n\r\n")


def test_close_delimited_and_chunked_upstream_bodies(ca, origin_factory, proxy_factory):
    big = b"x" * 300000

    def h(req):
        if req.target == "/close":
            return Response(200, [], close=True, stream=[big[:1000], big[1000:]])
        return Response(200, [], chunked=True, stream=[b"abc", b"def"])
    o, p = start(ca, origin_factory, proxy_factory, handler=h)
    r = curl("-x", p.proxy_url, "http://api.example.com/close")
    assert r.returncode == 0 and r.stdout == big
    r = curl("-x", p.proxy_url, "http://api.example.com/chunked")
    assert r.returncode == 0 and r.stdout == b"abcdef"
    # An HTTP/1.0 client gets a close-delimited body.
    out = raw(p.port, b"GET http://api.example.com/chunked HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\nabcdef")


def test_expect_100_continue_large_body(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    payload = b"z" * (2 * 1024 * 1024)
    r = subprocess.run(["curl", "-sS", "-x", p.proxy_url, "-H", "Expect: 100-continue",
                        "--expect100-timeout", "30", "--data-binary", "@-",
                        "http://api.example.com/big"], input=payload, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["body_len"] == len(payload)


BAD = [
    (b"POST http://api.example.com/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST http://api.example.com/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    (b"POST http://api.example.com/ HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc", 400),
    (b"POST http://api.example.com/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\nabc", 400),
    (b"POST http://api.example.com/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nhello\r\n0\r\n\r\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\nHost: a\n\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nX-A : x\r\n\r\n", 400),
    (b"GET http://api.example.com/a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED, gzip\r\n"
     b"\r\n", 501),
    (b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
     431),
]


def test_malformed_requests_rejected_and_nothing_sent_upstream(ca, origin_factory,
                                                               proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    for data, status in BAD:
        out = raw(p.port, data)
        assert out.startswith(b"HTTP/1.1 %d" % status), (data[:80], out[:200])
        body = out.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"], body
    assert o.requests == [], [r.target for r in o.requests]


def test_uppercase_chunked_is_normalised(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    out = raw(p.port, b"POST http://api.example.com/u HTTP/1.1\r\nHost: a\r\n"
                      b"Transfer-Encoding: CHUNKED\r\nConnection: close\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")
    assert o.requests[-1].body == b"abc"


def test_https_absolute_form_without_connect_is_400(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    out = raw(p.port, b"GET https://api.example.com/ HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert o.requests == []


def test_connect_tunnel_to_routed_host_and_refused_elsewhere(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    r = curl("-p", "-x", p.proxy_url, "--cacert", ca.ca_file,
             "--connect-to", "api.example.com:443:api.example.com:443",
             "https://api.example.com/tunneled")
    assert r.returncode == 0, r.stderr
    req = o.requests[-1]
    assert req.target == "/tunneled"
    assert req.header("Authorization") is None  # nothing can be injected inside TLS
    out = raw(p.port, b"CONNECT evil.example.net:443 HTTP/1.1\r\nHost: evil.example.net:443\r\n"
                      b"\r\n")
    assert out.startswith(b"HTTP/1.1 403")


def test_upstream_connect_refused_is_502_json(ca, origin_factory, proxy_factory):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = proxy_factory(base_config(ca, port))
    out = raw(p.port, b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 502")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_connect_failed"


def test_tls_verification_failure_is_502(ca, origin_factory, proxy_factory, tmp_path):
    o = origin_factory(echo_handler)
    other = tmp_path / "other-ca.pem"
    from support.ca import TestCA
    other_ca = TestCA(str(tmp_path / "ca2"))
    cfg = base_config(ca, o.port)
    cfg["tls"] = {"ca_file": other_ca.ca_file}
    p = proxy_factory(cfg)
    out = raw(p.port, b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 502")
    assert o.requests == []
    assert not other.exists()


def test_upstream_that_never_answers_gives_504(ca, proxy_factory):
    from support.origin import RawServer
    import threading
    hold = threading.Event()

    def stall(c):
        hold.wait(10)
        c.close()
    srv = RawServer(stall)
    cfg = base_config(ca, srv.port)
    cfg["routes"].append({"host": "slow.example.com", "upstream": "http://slow.example.com",
                          "credential": "demo"})
    cfg["connect_to"]["slow.example.com:80"] = "127.0.0.1:%d" % srv.port
    cfg["limits"]["response_timeout_ms"] = 500
    p = proxy_factory(cfg)
    out = raw(p.port, b"GET http://slow.example.com/ HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: close\r\n\r\n")
    hold.set()
    srv.close()
    assert out.startswith(b"HTTP/1.1 504")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "upstream_timeout"


def test_slow_header_client_is_cut_off(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    data = s.recv(65536)  # blocks until the proxy gives up on the head
    assert data.startswith(b"HTTP/1.1 408")
    assert s.recv(100) == b""
    s.close()


def test_idle_keepalive_connection_is_closed(ca, origin_factory, proxy_factory):
    o, p = start(ca, origin_factory, proxy_factory)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"GET http://api.example.com/ HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while b"}" not in got:
        got += s.recv(65536)
    assert s.recv(100) == b""  # closed by the idle timeout, not by us
    s.close()


def test_connection_cap(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    cfg["limits"]["max_conns"] = 3
    cfg["limits"]["head_timeout_ms"] = 5000
    p = proxy_factory(cfg)
    held = [socket.create_connection(("127.0.0.1", p.port), timeout=5) for _ in range(3)]
    for h in held:
        h.sendall(b"G")  # all three are now known to the proxy (reading heads)
    extra = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    assert extra.recv(100) == b""  # refused: closed at once
    extra.close()
    for h in held:
        h.close()


def test_proxy_ignores_its_own_proxy_environment(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    env = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                              "https_proxy", "ALL_PROXY", "all_proxy")}
    p = proxy_factory(cfg, env=env)
    r = curl("-x", p.proxy_url, "http://api.example.com/direct")
    assert r.returncode == 0, r.stderr
    assert o.requests[-1].target == "/direct"


def test_request_loop_is_refused(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    p = proxy_factory(cfg)
    # A route whose upstream is the proxy itself: the second pass carries our own Via.
    cfg["routes"].insert(0, {"host": "loop.example.com",
                             "upstream": "http://127.0.0.1:%d" % p.port})
    cfg["routes"].insert(0, {"path": "/loop/", "upstream": "http://127.0.0.1:%d/loop/" % p.port})
    p.reload(cfg)
    p.wait_log("configuration reloaded")
    r = curl("-w", "\n%{http_code}", "%s/loop/x" % p.proxy_url)
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"508"
    assert json.loads(body)["error"] == "loop_detected"


def test_access_log_one_line_per_request_without_token(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port, token="tok-SECRET-777")
    cfg["log_level"] = "debug"
    p = proxy_factory(cfg)
    for i in range(3):
        assert curl("-x", p.proxy_url, "http://api.example.com/a?apiKey=QUERYSECRET").returncode == 0
    p.wait_access(3)
    lines = p.access_lines()
    assert len(lines) == 3
    assert all(x["status"] == 200 and x["route"] == "api.example.com" for x in lines)
    p.stop()
    logs = p.logs()
    assert "tok-SECRET-777" not in logs
    assert "QUERYSECRET" not in logs


def test_sigterm_drains_in_flight_request_and_exits_0(ca, origin_factory, proxy_factory):
    import threading
    import time
    release = threading.Event()

    def slow(req):
        def gen():
            yield b"a" * 1000
            release.wait(10)
            yield b"b" * 1000
        return Response(200, [("Content-Length", "2000")], stream=gen())
    o, p = start(ca, origin_factory, proxy_factory, handler=slow)
    result = {}

    def client():
        result["r"] = curl("-x", p.proxy_url, "http://api.example.com/slow")
    t = threading.Thread(target=client)
    t.start()
    p.wait_access(0)
    deadline = time.monotonic() + 10
    while not o.requests and time.monotonic() < deadline:
        time.sleep(0.01)  # the origin has the request once it is recorded
    p.proc.send_signal(15)
    p.wait_log("draining")
    release.set()
    t.join(20)
    assert p.proc.wait(15) == 0
    assert result["r"].returncode == 0 and len(result["r"].stdout) == 2000


def test_client_reset_mid_response_does_not_kill_proxy(ca, origin_factory, proxy_factory):
    big = b"y" * (8 * 1024 * 1024)
    o, p = start(ca, origin_factory, proxy_factory,
                 handler=lambda req: Response(200, [], big))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"GET http://api.example.com/big HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(1000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST
    r = curl("-x", p.proxy_url, "http://api.example.com/again", "-o", "/dev/null",
             "-w", "%{http_code}")
    assert r.stdout == b"200"
    assert p.proc.poll() is None


def test_check_version_help(ca, tmp_path):
    import os
    binary = os.environ.get("AUTHPROXY_BIN") or os.path.join(
        os.path.dirname(__file__), "..", "..", "build", "proxy", "authproxy")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base_config(ca, 1, token="tok-NEVER-PRINTED")))
    r = subprocess.run([binary, "--check", "-c", str(good)], capture_output=True, timeout=10)
    assert r.returncode == 0
    assert b"api.example.com" in r.stdout and b"demo" in r.stdout
    assert b"tok-NEVER-PRINTED" not in r.stdout + r.stderr
    bad = tmp_path / "bad.json"
    cfg = base_config(ca, 1)
    cfg["routes"][0]["credential"] = "nope"
    cfg["credentials"]["demo"]["tokn"] = "x"
    bad.write_text(json.dumps(cfg))
    r = subprocess.run([binary, "--check", "-c", str(bad)], capture_output=True, timeout=10)
    assert r.returncode != 0
    assert b"routes[0].credential" in r.stderr
    assert b"credentials.demo" in r.stderr and b"tokn" in r.stderr
    r = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith(b"authproxy ")
    r = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--check" in r.stdout


def test_limits_max_headers_gives_431_and_nothing_sent(ca, origin_factory, proxy_factory):
    o = origin_factory(echo_handler)
    cfg = base_config(ca, o.port)
    cfg["limits"]["max_headers"] = 5
    p = proxy_factory(cfg)
    extra = "".join("X-H%d: v\r\n" % i for i in range(5))  # + Host = 6 fields
    out = raw(p.port, ("GET http://api.example.com/a HTTP/1.1\r\nHost: a\r\n%s\r\n"
                       % extra).encode())
    assert out.startswith(b"HTTP/1.1 431 ")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["error"] == "too_many_headers"
    ok = raw(p.port, b"GET http://api.example.com/b HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n"
             b"Connection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert [r.target for r in o.requests] == ["/b"]


def test_upstream_closing_idle_connections_is_survived(ca, origin_factory, proxy_factory):
    # An upstream that drops each kept-alive connection right after its response (as servers
    # with short idle timeouts do): the proxy notices, and every request still succeeds.
    o, p = start(ca, origin_factory, proxy_factory,
                 handler=lambda req: Response(200, [("Content-Type", "text/plain")], b"ok",
                                              hangup=True))
    for i in range(10):
        with urlopen_via(p.proxy_url, "http://api.example.com/n/%d" % i) as r:
            assert r.status == 200 and r.read() == b"ok"
    assert len(o.requests) == 10
    assert len({r.conn_id for r in o.requests}) == 10  # a fresh upstream connection each time
