"""HTTP/2 to the upstream when it offers it (ALPN), with nghttpd as a real h2-only server."""
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.request

import pytest

from conftest import base_config


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_upstream_http2_when_offered(ca, proxy_factory, tmp_path):
    nghttpd = shutil.which("nghttpd")
    assert nghttpd, "nghttpd (Debian package nghttp2-server) is required"
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "hello.json").write_text('{"hello":"h2"}')
    cert, key = ca.issue(["api.example.com"])
    port = free_port()
    srv = subprocess.Popen([nghttpd, "-v", "-a", "127.0.0.1", "-d", str(docroot), str(port), key,
                            cert], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    ready = threading.Event()

    def read():
        for raw in srv.stdout:
            lines.append(raw.decode("utf-8", "replace"))
            ready.set()
    threading.Thread(target=read, daemon=True).start()
    try:
        # nghttpd prints nothing at start; it is ready once the port accepts.
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                break
            except OSError:
                ready.wait(0.02)
        p = proxy_factory(base_config(ca, port))
        for _ in range(2):
            r = subprocess.run(["curl", "-sS", "-x", p.proxy_url,
                                "http://api.example.com/hello.json"], capture_output=True,
                               timeout=20)
            assert r.returncode == 0, r.stderr
            assert r.stdout == b'{"hello":"h2"}'
        # An HTTP/2 origin is never served by the HTTP/1.1 fast path: its first connection
        # learns from ALPN that the origin chose h2 and hands the request to curl, once.
        with urllib.request.urlopen(p.admin_url + "/metrics", timeout=10) as m:
            text = m.read().decode()
        assert re.search(r"^authproxy_upstream_direct_requests_total 0$", text, re.M)
        assert re.search(r"^authproxy_upstream_direct_fallbacks_total 1$", text, re.M)
        log = "".join(lines)
        assert "recv HEADERS frame" in log
        assert re.search(r"authorization: Bearer tok-123", log)
        assert re.search(r":path: /hello.json", log)
    finally:
        srv.kill()
        srv.wait()
