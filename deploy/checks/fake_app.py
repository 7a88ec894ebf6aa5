#!/usr/bin/env python3
"""The throwaway app of the pod-shaped test: what a legacy app looks like to
streamgate.

  GET /api/me   the app's "who am I": 200 {"user": {"id": "alice"}} for the
                cookie `session=alice-session`, 401 otherwise (streamgate's
                forward_auth identity asks this);
  anything else 200 with a JSON echo of method, path, query and headers, so the
                test can see what the proxy passed on.

Prints "listening HOST:PORT" once bound, and exits by itself after --lifetime
seconds in case nothing stops it.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SESSIONS = {"alice-session": "alice"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test's output to what it checks
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path == "/api/me":
            cookies = dict(
                c.strip().split("=", 1) for c in (self.headers.get("Cookie") or "").split(";") if "=" in c
            )
            user = SESSIONS.get(cookies.get("session", ""))
            if user is None:
                return self.answer(401, {"error": "not signed in"})
            return self.answer(200, {"user": {"id": user}})
        self.answer(200, {
            "app": "fake-app",
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k: v for k, v in self.headers.items()},
            "body_bytes": len(body),
        })

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:8080")
    ap.add_argument("--lifetime", type=float, default=300)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    print(f"listening {host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
