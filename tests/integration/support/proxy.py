"""Starts the real authproxy binary with a config and learns its ports from its log."""
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

# Matches the JSON and the text log format alike.
LISTEN_RE = re.compile(r'listening on (\S+):(\d+) \((proxy|admin)\)')


class AuthProxy:
    def __init__(self, config, env=None, binary=None, args=()):
        self.binary = binary or os.environ.get("AUTHPROXY_BIN") or os.path.join(
            os.path.dirname(__file__), "..", "..", "..", "build", "proxy", "authproxy")
        if not os.path.exists(self.binary):
            raise RuntimeError("authproxy binary not found at %s (set AUTHPROXY_BIN)"
                               % self.binary)
        self.dir = tempfile.mkdtemp(prefix="authproxy-test-")
        self.config_path = os.path.join(self.dir, "config.json")
        # config=None: environment-only mode (no -c, run in an empty directory so that
        # conf/authproxy.json is not found).
        if config is not None:
            self.write_config(config)
        base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                base_env[k] = os.environ[k]
        base_env.update(env or {})
        self._lines = []
        self._cond = threading.Condition()
        argv = [self.binary, *args] if config is None else [self.binary, "-c", self.config_path,
                                                             *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=base_env, cwd=self.dir)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = None
        self.admin_port = None
        m = self.wait_log(r"\(proxy\)", timeout=10)
        self.port = int(LISTEN_RE.search(m).group(2))
        for line in self.lines():
            mm = LISTEN_RE.search(line)
            if mm and mm.group(3) == "admin":
                self.admin_port = int(mm.group(2))
        wants_admin = (base_env.get("AUTHPROXY_ADMIN", "on") != "off" if config is None
                       else config.get("admin", "127.0.0.1:9090") not in (False, None))
        if wants_admin and self.admin_port is None:
            m = self.wait_log(r"\(admin\)", timeout=10)
            self.admin_port = int(LISTEN_RE.search(m).group(2))

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            json.dump(config, f)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def proxy_url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def admin_url(self):
        return "http://127.0.0.1:%d" % self.admin_port

    def lines(self):
        with self._cond:
            return list(self._lines)

    def logs(self):
        return "".join(self.lines())

    def access_lines(self):
        out = []
        for line in self.lines():
            if '"msg":"access"' in line:
                out.append(json.loads(line))
        return out

    def wait_log(self, pattern, timeout=10, start=0):
        """Waits for a log line matching `pattern` (from line index `start`); returns it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[start:]:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError("authproxy exited (%s) before logging %r:\n%s"
                                         % (self.proc.returncode, pattern, "".join(self._lines)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for log %r:\n%s"
                                         % (pattern, "".join(self._lines)))
                self._cond.wait(left)

    def wait_access(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                n = sum(1 for line in self._lines if '"msg":"access"' in line)
                if n >= count:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d access lines, got %d" % (count, n))
                self._cond.wait(left)

    def reload(self, config):
        n = len(self.lines())
        self.write_config(config)
        self.proc.send_signal(signal.SIGHUP)
        return n

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("authproxy did not exit within %ss" % timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.kill()
