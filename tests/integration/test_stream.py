"""Streaming with backpressure: 1 GiB each way through the proxy with bounded memory."""
import hashlib
import subprocess
import re
import threading
import urllib.request

import pytest

from conftest import base_config
from support.origin import Response, read_chunked

GIB = 1024 * 1024 * 1024
BLOCK = bytes(range(256)) * 256  # 64 KiB, deterministic


def gen(total):
    sent = 0
    while sent < total:
        n = min(len(BLOCK), total - sent)
        yield BLOCK[:n]
        sent += n


def expected_sha(total):
    h = hashlib.sha256()
    for b in gen(total):
        h.update(b)
    return h.hexdigest()


class RssSampler:
    def __init__(self, proxy):
        self.proxy = proxy
        self.base = proxy.rss_kib()
        self.peak = self.base
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proxy.rss_kib())
            except OSError:
                return

    def growth_mib(self):
        self.stop.set()
        self.t.join()
        return (self.peak - self.base) / 1024.0


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "curl"])
def test_1gib_download_bounded_memory(ca, origin_factory, proxy_factory, fast_path):
    o = origin_factory(lambda req: Response(200, [("Content-Length", str(GIB))],
                                            stream=gen(GIB)))
    p = proxy_factory(base_config(ca, o.port, upstream_fast_path=fast_path))
    # Warm up (TLS contexts, curl pools) so the baseline is the steady state.
    subprocess.run(["curl", "-sS", "-x", p.proxy_url, "-r", "0-0",
                    "http://api.example.com/warm", "-o", "/dev/null"], timeout=60)
    s = RssSampler(p)
    curl = subprocess.Popen(["curl", "-sS", "-x", p.proxy_url, "http://api.example.com/big"],
                            stdout=subprocess.PIPE)
    h = hashlib.sha256()
    n = 0
    while True:
        b = curl.stdout.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    assert curl.wait(300) == 0
    growth = s.growth_mib()
    assert n == GIB
    assert h.hexdigest() == expected_sha(GIB)
    assert growth < 32, "RSS grew by %.1f MiB" % growth
    # The warm-up and the download went over the fast path's own connection, or curl's.
    with urllib.request.urlopen(p.admin_url + "/metrics", timeout=10) as r:
        direct = re.search(r"^authproxy_upstream_direct_requests_total (\d+)$",
                           r.read().decode(), re.M)
    assert int(direct.group(1)) == (2 if fast_path else 0)


def test_1gib_chunked_upload_bounded_memory(ca, origin_factory, proxy_factory):
    result = {}

    def sink(req):
        h = hashlib.sha256()
        n = 0
        if (req.header("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                line = req.rfile.readline(100)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    req.rfile.readline(10)
                    break
                left = size
                while left:
                    b = req.rfile.read(min(left, 1 << 20))
                    h.update(b)
                    n += len(b)
                    left -= len(b)
                req.rfile.readline(10)
        else:
            left = int(req.header("Content-Length"))
            while left:
                b = req.rfile.read(min(left, 1 << 20))
                h.update(b)
                n += len(b)
                left -= len(b)
        result["n"], result["sha"] = n, h.hexdigest()
        return Response(200, [], b"ok")

    o = origin_factory(sink, stream_body=True)
    p = proxy_factory(base_config(ca, o.port))
    s = RssSampler(p)
    curl = subprocess.Popen(["curl", "-sS", "-x", p.proxy_url, "-T", "-",
                             "http://api.example.com/upload"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    for b in gen(GIB):
        curl.stdin.write(b)
    curl.stdin.close()
    assert curl.wait(300) == 0
    assert curl.stdout.read() == b"ok"
    growth = s.growth_mib()
    assert result["n"] == GIB
    assert result["sha"] == expected_sha(GIB)
    assert growth < 32, "RSS grew by %.1f MiB" % growth
