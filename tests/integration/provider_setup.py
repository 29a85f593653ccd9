"""Config builders shared by the provider and token-cache tests."""
import urllib.error
import urllib.request

from support import providers as P


def config_for(ca, mock, cred, route_host, extra_connect=()):
    connect = {"%s:443" % n: "127.0.0.1:%d" % mock.port for n in mock.names}
    for n in extra_connect:
        connect["%s:443" % n] = "127.0.0.1:%d" % mock.port
    return {
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "tls": {"ca_file": ca.ca_file},
        "connect_to": connect,
        "credentials": {"api": cred},
        "routes": [{"host": route_host, "upstream": "https://%s" % route_host,
                    "credential": "api"}],
        "log_level": "debug",
        "limits": {"response_timeout_ms": 10000},
    }


def omicall(ca, **kw):
    m = P.OmiCall(ca, **kw)
    cred = {"provider": "omicall", "token_url": "https://omi.example.test/api/auth",
            "api_key": P.OmiCall.api_key}
    return m, config_for(ca, m, cred, "omi.example.test")


def antsomi(ca, **kw):
    m = P.Antsomi(ca, **kw)
    cred = {"provider": "antsomi", "client_id": P.Antsomi.client_id,
            "client_secret": P.Antsomi.client_secret, "scope": ["item", "event"]}
    return m, config_for(ca, m, cred, "api.ants.tech")


def telmai(ca, **kw):
    m = P.Telmai(ca, **kw)
    cred = {"provider": "telmai", "token_url": "https://auth.telm.ai/auth/token",
            "client_id": P.Telmai.client_id, "username": P.Telmai.username,
            "password": P.Telmai.password, "tenant": P.Telmai.tenant}
    return m, config_for(ca, m, cred, "api.telm.ai")


def manis(ca, **kw):
    m = P.Manis(ca, **kw)
    cred = {"provider": "manis",
            "token_url": "https://api.maniscloud.test/api/v1/auth/token",
            "merchant_id": P.Manis.merchant_id, "secret": P.Manis.secret}
    return m, config_for(ca, m, cred, "api.maniscloud.test")


def micovoice(ca, **kw):
    m = P.MicoVoice(ca, **kw)
    cred = {"provider": "micovoice", "client_id": P.MicoVoice.client_id,
            "client_secret": P.MicoVoice.client_secret,
            "scope": ["campaigns:read", "outbound_calls:read"]}
    return m, config_for(ca, m, cred, "api.micovoice.com")


ALL = {"omicall": omicall, "antsomi": antsomi, "telmai": telmai, "manis": manis,
       "micovoice": micovoice}
API_HOST = {"omicall": "omi.example.test", "antsomi": "api.ants.tech", "telmai": "api.telm.ai",
            "manis": "api.maniscloud.test", "micovoice": "api.micovoice.com"}


def get(proxy, url, timeout=20):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.proxy_url}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_admin(proxy, path):
    with urllib.request.urlopen(proxy.admin_url + path, timeout=10) as r:
        return r.read()


def post_admin(proxy, path):
    req = urllib.request.Request(proxy.admin_url + path, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()
