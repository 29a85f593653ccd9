"""Loopback HTTP/1.1 origin servers (TLS or plain) that record what they receive.

Origin(handler, tls=(cert, key)) runs a threaded server on 127.0.0.1:0. `handler(req)` gets a
Request and returns a Response (or writes raw bytes itself via req.raw_write and returns None).
"""
import hashlib
import socket
import socketserver
import ssl
import threading


class Request:
    def __init__(self, method, target, version, headers, body, conn_id, rfile, wfile):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # ordered list of (name, value)
        self.body = body  # bytes, or None when the handler streams it (stream_body=True)
        self.conn_id = conn_id
        self.rfile = rfile
        self.wfile = wfile

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Response:
    def __init__(self, status=200, headers=None, body=b"", chunked=False, close=False,
                 stream=None, hangup=False):
        self.status = status
        self.headers = list(headers or [])
        self.body = body
        self.chunked = chunked
        self.close = close  # close-delimited body (no Content-Length)
        self.stream = stream  # iterable of bytes chunks (with chunked or close)
        self.hangup = hangup  # framed response, then the connection is closed unannounced


REASONS = {100: "Continue", 200: "OK", 204: "No Content", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           500: "Internal Server Error"}


def read_chunked(rfile):
    out = bytearray()
    while True:
        line = rfile.readline(65537)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += rfile.read(size)
        rfile.readline(3)


class Origin:
    # Every origin ever started, so the session can stop them all (close_all) before the
    # interpreter exits: daemon threads still inside ssl calls during interpreter shutdown can
    # crash it.
    _all = []

    def __init__(self, handler, tls=None, stream_body=False):
        Origin._all.append(self)
        self._closed = False
        self._live = {}  # handler thread -> its socket
        self.handler = handler
        self.requests = []
        self.connections = 0
        self.resumed = {}
        self.stream_body = stream_body
        self._lock = threading.Lock()
        origin = self

        class H(socketserver.StreamRequestHandler):
            def handle(self):
                with origin._lock:
                    origin._live[threading.current_thread()] = self.request
                    origin.connections += 1
                    cid = origin.connections
                    # TLS: did the client resume an earlier session (abbreviated handshake)?
                    origin.resumed[cid] = bool(getattr(self.request, "session_reused", False))
                try:
                    while origin._serve_one(self.rfile, self.wfile, cid):
                        pass
                except (ConnectionError, ssl.SSLError, OSError, ValueError):
                    pass
                finally:
                    with origin._lock:
                        origin._live.pop(threading.current_thread(), None)

        class S(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024

        self.server = S(("127.0.0.1", 0), H)
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            ctx.set_alpn_protocols(["http/1.1"])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _serve_one(self, rfile, wfile, cid):
        line = rfile.readline(65537)
        if not line:
            return False
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        method, target, version = parts[0], parts[1], parts[2]
        headers = []
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        req = Request(method, target, version, headers, None, cid, rfile, wfile)
        if not self.stream_body:
            if (req.header("Transfer-Encoding") or "").lower() == "chunked":
                req.body = read_chunked(rfile)
            else:
                req.body = rfile.read(int(req.header("Content-Length") or 0))
        with self._lock:
            self.requests.append(req)
        resp = self.handler(req)
        if resp is None:
            return False
        keep = (not resp.close and not resp.hangup
                and (req.header("Connection") or "").lower() != "close")
        out = ["HTTP/1.1 %d %s" % (resp.status, REASONS.get(resp.status, "X"))]
        names = {k.lower() for k, _ in resp.headers}
        out += ["%s: %s" % kv for kv in resp.headers]
        no_body = method == "HEAD" or resp.status in (204, 304)
        if resp.chunked:
            out.append("Transfer-Encoding: chunked")
        elif resp.close:
            out.append("Connection: close")
        elif "content-length" not in names and not no_body:
            out.append("Content-Length: %d" % len(resp.body))
        wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        if not no_body:
            chunks = resp.stream if resp.stream is not None else [resp.body]
            for c in chunks:
                if resp.chunked:
                    if c:
                        wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                else:
                    wfile.write(c)
            if resp.chunked:
                wfile.write(b"0\r\n\r\n")
        wfile.flush()
        return keep

    def close(self):
        """Stops accepting, ends every open connection and waits (boundedly) for the handler
        threads, so none is left inside the ssl module."""
        if self._closed:
            return
        self._closed = True
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            live = list(self._live.items())
        for _, sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t, _ in live:
            t.join(2)

    @classmethod
    def close_all(cls):
        for o in reversed(cls._all):
            o.close()
        cls._all.clear()


def echo_handler(req):
    """Echoes the request as JSON-ish lines: method, target, headers, body hash."""
    import json
    body = json.dumps({"method": req.method, "target": req.target,
                       "headers": req.headers,
                       "body_sha256": hashlib.sha256(req.body or b"").hexdigest(),
                       "body_len": len(req.body or b"")}).encode()
    return Response(200, [("Content-Type", "application/json")], body)


class RawServer:
    """A TCP server that accepts and runs `script(sock)` per connection (byte-exact cases)."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.script = script
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            self.script(c)
        except OSError:
            pass

    def close(self):
        self._stop = True
        self.sock.close()
