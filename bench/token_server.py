#!/usr/bin/python3
"""A tiny OAuth2 token endpoint over HTTPS for the benchmark.

Answers every POST with a client_credentials-style token that lives TTL seconds and counts the
requests it served in COUNT_FILE (rewritten after each one), so run.sh can tell how many token
requests a proxy made during a run. Standard library only.

usage: token_server.py PORT CERT KEY COUNT_FILE [TTL] [TOKEN]
"""
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, CERT, KEY, COUNT_FILE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
TTL = int(sys.argv[5]) if len(sys.argv) > 5 else 3600
TOKEN = sys.argv[6] if len(sys.argv) > 6 else "bench-oauth-token"

lock = threading.Lock()
count = 0


def record():
    global count
    with lock:
        count += 1
        tmp = COUNT_FILE + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % count)
        os.replace(tmp, COUNT_FILE)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        record()
        body = json.dumps({"access_token": TOKEN, "token_type": "Bearer",
                           "expires_in": TTL}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # quiet
        pass


def main():
    with open(COUNT_FILE, "w") as f:
        f.write("0\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
