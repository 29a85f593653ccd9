import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support.ca import TestCA  # noqa: E402
from support.origin import Origin  # noqa: E402
from support.proxy import AuthProxy  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _stop_all_origins():
    # After the last test (and its proxies) every origin and mock provider is stopped, so the
    # interpreter never exits with server threads still inside ssl calls.
    yield
    Origin.close_all()


@pytest.fixture(scope="session")
def ca():
    return TestCA(tempfile.mkdtemp(prefix="authproxy-ca-"))


@pytest.fixture
def origin_factory(ca):
    made = []

    def make(handler, names=("api.example.com",), tls=True, **kw):
        o = Origin(handler, tls=ca.issue(list(names)) if tls else None, **kw)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


@pytest.fixture
def proxy_factory():
    made = []

    def make(config, env=None, **kw):
        p = AuthProxy(config, env=env, **kw)
        made.append(p)
        return p

    yield make
    # Every proxy a test started must stop cleanly on SIGTERM: exit 0, and (in the sanitizer
    # build) no ASan/UBSan/LeakSanitizer report, so the ASan run checks leaks on every test.
    problems = []
    for p in made:
        if p.proc.poll() is None:
            try:
                rc = p.stop(timeout=30)
            except AssertionError as e:
                problems.append(str(e))
                continue
            if rc != 0:
                problems.append("authproxy exited %d on SIGTERM" % rc)
        bad = [ln for ln in p.lines() if "Sanitizer" in ln or "runtime error:" in ln]
        if bad:
            problems.append("sanitizer report:\n" + "".join(p.lines()[-80:]))
    assert not problems, "\n".join(problems)


def base_config(ca, origin_port, token="tok-123", **overrides):
    cfg = {
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "tls": {"ca_file": ca.ca_file},
        "connect_to": {"api.example.com:443": "127.0.0.1:%d" % origin_port},
        "credentials": {"demo": {"provider": "static", "token": token}},
        "routes": [
            {"host": "api.example.com", "upstream": "https://api.example.com",
             "credential": "demo"},
            {"path": "/ex/", "upstream": "https://api.example.com/", "credential": "demo"},
        ],
        "limits": {"head_timeout_ms": 2000, "idle_timeout_ms": 2000, "body_timeout_ms": 2000,
                   "response_timeout_ms": 3000, "connect_timeout_ms": 2000,
                   "tunnel_idle_ms": 2000, "drain_timeout_ms": 5000},
    }
    for k, v in overrides.items():
        cfg[k] = v
    return cfg
