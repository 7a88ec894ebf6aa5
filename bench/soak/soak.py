#!/usr/bin/env python3
"""Load generator, sampler and report of `make soak` (bench/soak.sh).

Python 3.11 standard library only, asyncio. bench/soak.sh starts the fake app
(upstream.py) and streamgate, then runs this against them on loopback. It
drives a fixed number of concurrent workers per traffic kind for --seconds of
load, samples streamgate's process (/proc), sockets (/proc/net/tcp) and
metrics (admin /metrics), writes a markdown report and exits:

  0  the verdict holds (nothing grows from the middle to the end beyond the
     stated bounds, and no request was lost)
  1  the verdict does not hold
  2  the soak could not run (streamgate or the app did not answer at start)

Samples: "start" (idle, before any load), then at the middle and at the end
two each: "under load", and "quiesced": every worker parks (finishes its
request, closes its connections), the app's idle keep-alive timeout passes so
streamgate's idle pool drains, and then the sample is taken. The verdict
compares the quiesced end with the quiesced middle, so that in-flight
requests do not blur a comparison whose purpose is to catch growth.
"""

import argparse
import asyncio
import base64
import collections
import json
import os
import platform
import random
import re
import socket
import struct
import subprocess
import sys
import time

from wire import read_chunked, read_ws_frame, ws_accept, ws_frame

HOST = "127.0.0.1"
MIB = 1024 * 1024
MAX_RESPONSE_BODY = 64 * 1024 * 1024  # far above any answer the soak asks for

# The app's /reset: Content-Length it declares and bytes it sends before the RST
# (upstream.py).
RESET_DECLARED = 65536
RESET_SENT = 16384

# Traffic kinds: concurrent workers (override with SOAK_WORKERS, e.g.
# "tokens=8,small=8,large=2,ws=4,slow=20,reset=1") and each request's timeout.
DEFAULT_WORKERS = {"tokens": 8, "small": 8, "large": 2, "ws": 4, "slow": 20, "reset": 1}
TIMEOUTS = {"tokens": 5.0, "small": 10.0, "large": 30.0, "ws": 30.0, "slow": 25.0, "reset": 15.0}
KIND_TITLES = {
    "tokens": "Tokens (`/api/tokens/user`, `/api/tokens/call`)",
    "small": "Proxied small (GET /bytes ≤ 16 KiB, POST /echo CL and chunked)",
    "large": "Proxied 1 MiB (GET /bytes, POST /echo CL and chunked)",
    "ws": "WebSocket sessions (`/ws`, echo)",
    "slow": "Slow clients (head dribbled; some give up, some stall)",
    "reset": "Upstream resets (`/reset`: partial body, then RST)",
}
# Seconds a stalled slow client waits for streamgate to cut it off
# (http.request_headers_timeout, 10 s by default, plus margin).
STALL_WAIT = 15.0
FAIL_REASONS = ("5xx", "reset", "timeout", "closed", "other")


def pattern(n: int) -> bytes:
    base = bytes(range(256)) * 4096  # 1 MiB, the same as upstream.py
    if n <= len(base):
        return base[:n]
    return (base * (n // len(base) + 1))[:n]


PATTERN = pattern(MIB)
RANDOM = os.urandom(2 * MIB)


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------
class Fail(Exception):
    """A failure as the client saw it: reason is one of FAIL_REASONS."""

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class NoResponse(Exception):
    """The connection closed cleanly before any byte of a response."""


class Truncated(Exception):
    """The connection closed cleanly in the middle of a response."""


class Kind:
    def __init__(self, name):
        self.name = name
        self.sent = 0
        self.ok = 0
        self.expected = 0  # failures the traffic is designed to provoke
        self.abandoned = 0  # the client gave up on purpose
        self.failed = collections.Counter()
        self.examples = collections.defaultdict(collections.Counter)
        self.notes = collections.Counter()  # extra per-kind counts (e.g. ws messages)

    def snapshot(self):
        return {
            "sent": self.sent,
            "ok": self.ok,
            "expected": self.expected,
            "abandoned": self.abandoned,
            "failed": dict(self.failed),
            "failed_total": sum(self.failed.values()),
            "unresolved": self.sent - self.ok - self.expected - self.abandoned - sum(self.failed.values()),
        }


def classify(exc):
    if isinstance(exc, Fail):
        return exc.reason, exc.detail
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer within the request's timeout"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset", f"connection reset ({type(exc).__name__})"
    if isinstance(exc, NoResponse):
        return "closed", "closed before any response byte"
    if isinstance(exc, (Truncated, asyncio.IncompleteReadError)):
        return "closed", "closed in the middle of the response"
    if isinstance(exc, ConnectionRefusedError):
        return "other", "connection refused"
    return "other", f"{type(exc).__name__}: {exc}"[:160]


async def run_one(kind: Kind, timeout: float, fn):
    """One request: counted as sent before it starts and as exactly one outcome
    when it ends. A request still running when the harness stops waiting is
    cancelled and stays unresolved: that is what "lost" counts."""
    kind.sent += 1
    try:
        async with asyncio.timeout(timeout):
            outcome = await fn()
    except Exception as exc:  # noqa: BLE001 - every failure is classified
        reason, detail = classify(exc)
        kind.failed[reason] += 1
        kind.examples[reason][detail] += 1
        return False
    if outcome == "ok":
        kind.ok += 1
    elif outcome == "abandoned":
        kind.abandoned += 1
    elif isinstance(outcome, tuple) and outcome[0] == "expected":
        kind.expected += 1
        kind.notes["expected: " + outcome[1]] += 1
    else:
        kind.failed["other"] += 1
        kind.examples["other"][f"bad outcome {outcome!r}"] += 1
    return True


# ---------------------------------------------------------------------------
# A minimal HTTP/1.1 client
# ---------------------------------------------------------------------------
class Response:
    def __init__(self, status, headers, body, keep_alive):
        self.status = status
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class Conn:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.uses = 0
        self.dead = False

    @classmethod
    async def open(cls, port):
        reader, writer = await asyncio.open_connection(HOST, port, limit=256 * 1024)
        return cls(reader, writer)

    def close(self, rst=False):
        self.dead = True
        try:
            if rst:
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.writer.transport.abort()
            else:
                self.writer.close()
        except (OSError, RuntimeError):
            pass


async def read_response(reader, head_only=False, allow_eof_body=True) -> Response:
    try:
        line = await reader.readline()
    except asyncio.IncompleteReadError:
        raise NoResponse()
    if not line:
        raise NoResponse()
    if not line.endswith(b"\r\n"):
        raise Truncated()
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise Fail("other", f"bad status line {line[:40]!r}")
    version, status = parts[0], int(parts[1])
    headers = {}
    while True:
        line = await reader.readline()
        if not line.endswith(b"\r\n"):
            raise Truncated()
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    conn_hdr = headers.get("connection", "").lower()
    keep_alive = version == "HTTP/1.1" and "close" not in conn_hdr
    if head_only or status < 200 or status in (204, 304):
        return Response(status, headers, b"", keep_alive)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader, MAX_RESPONSE_BODY)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif allow_eof_body:
        body = await reader.read()
        keep_alive = False
    else:
        body = b""
    return Response(status, headers, body, keep_alive)


def request_head(method, path, port, headers=None, length=None, chunked=False, close=False):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "User-Agent: streamgate-soak"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk_body(body: bytes, rng: random.Random, max_chunk: int):
    out = []
    i = 0
    while i < len(body):
        n = rng.randint(1, max_chunk)
        piece = body[i:i + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        i += n
    out.append(b"0\r\n\r\n")
    return out


async def exchange(conn: Conn, head: bytes, body_parts=()):
    """Sends head and body while reading the response (both ways at once, as a
    browser does: a proxy may answer, or echo, before the upload ends)."""
    conn.uses += 1

    async def send():
        conn.writer.write(head)
        for part in body_parts:
            conn.writer.write(part)
            await conn.writer.drain()
        await conn.writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        resp = await read_response(conn.reader)
    except BaseException:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        conn.close()
        raise
    if not sender.done():
        # Answered before the whole body was sent: the connection cannot be reused.
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        conn.close()
    else:
        exc = sender.exception()
        if exc is not None:
            conn.close()
    if not resp.keep_alive:
        conn.close()
    return resp


def expect_status(resp: Response, want=200):
    if resp.status != want:
        reason = "5xx" if resp.status >= 500 else "other"
        raise Fail(reason, f"status {resp.status} (expected {want})")


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------
class Control:
    def __init__(self):
        self.go = asyncio.Event()
        self.go.set()
        self.stopping = False
        self.parked = 0
        self.workers = 0

    async def checkpoint(self, conn: Conn | None):
        """Between requests: on pause, close the connection and wait; on stop,
        close it and tell the worker to end. Returns the connection to use."""
        if self.stopping or not self.go.is_set():
            if conn is not None:
                conn.close()
                conn = None
            if self.stopping:
                return None, True
            self.parked += 1
            try:
                await self.go.wait()
            finally:
                self.parked -= 1
        return conn, self.stopping


class Soak:
    def __init__(self, args):
        self.args = args
        self.port = args.sg_port
        self.kinds = {name: Kind(name) for name in DEFAULT_WORKERS}
        self.ctl = Control()
        self.counter = 0

    def rng(self, seed):
        return random.Random(seed)

    async def keepalive_conn(self, conn):
        if conn is None or conn.dead:
            conn = await Conn.open(self.port)
        return conn

    # --- tokens ------------------------------------------------------------
    async def tokens_worker(self, wid):
        rng = self.rng(1000 + wid)
        kind = self.kinds["tokens"]
        conn = None
        while True:
            conn, stop = await self.ctl.checkpoint(conn)
            if stop:
                return
            self.counter += 1
            n = self.counter
            holder = {"conn": conn}

            async def once():
                c = holder["conn"] = await self.keepalive_conn(holder["conn"])
                if n % 3 == 0:
                    path = "/api/tokens/call"
                    body = json.dumps({"userId": "john", "callId": f"soak-{n}", "callType": "default"}).encode()
                else:
                    path = "/api/tokens/user"
                    body = b'{"userId":"john"}'
                head = request_head("POST", path, self.port, {"Content-Type": "application/json"}, len(body))
                resp = await exchange(c, head, [body])
                expect_status(resp)
                data = json.loads(resp.body)
                token = data.get("data", {}).get("token", "")
                if not data.get("success") or not token.startswith("ey") or token.count(".") != 2:
                    raise Fail("other", "200 without a token")
                return "ok"

            if not await run_one(kind, TIMEOUTS["tokens"], once) and holder["conn"] is not None:
                holder["conn"].close()
            conn = holder["conn"]
            await asyncio.sleep(rng.uniform(0.02, 0.06))

    # --- proxied: small and large -------------------------------------------
    async def proxied_request(self, conn, rng, size, variant):
        if variant == "get":
            head = request_head("GET", f"/bytes/{size}", self.port)
            resp = await exchange(conn, head)
            expect_status(resp)
            if resp.body != (PATTERN[:size] if size <= MIB else pattern(size)):
                raise Fail("other", f"GET /bytes/{size}: wrong body ({len(resp.body)} bytes)")
            return "ok"
        off = rng.randrange(0, len(RANDOM) - size + 1)
        body = RANDOM[off:off + size]
        if variant == "echo":
            head = request_head("POST", "/echo", self.port, {"Content-Type": "application/octet-stream"}, size)
            parts = [body[i:i + 65536] for i in range(0, size, 65536)] or [b""]
        else:  # chunked
            head = request_head("POST", "/echo", self.port, {"Content-Type": "application/octet-stream"}, chunked=True)
            parts = chunk_body(body, rng, 65536 if size > 65536 else 4096)
        resp = await exchange(conn, head, parts)
        expect_status(resp)
        if resp.body != body:
            raise Fail("other", f"POST /echo ({variant}, {size} bytes): echo differs ({len(resp.body)} bytes)")
        return "ok"

    async def proxied_worker(self, wid, kind_name):
        rng = self.rng((2000 if kind_name == "small" else 3000) + wid)
        kind = self.kinds[kind_name]
        conn = None
        i = 0
        while True:
            conn, stop = await self.ctl.checkpoint(conn)
            if stop:
                return
            i += 1
            if kind_name == "small":
                size = rng.randint(0, 16384)
                variant = rng.choice(("get", "get", "echo", "chunked"))
                think = rng.uniform(0.02, 0.06)
            else:
                size = MIB
                variant = ("get", "echo", "chunked")[(i + wid) % 3]
                think = rng.uniform(0.1, 0.3)
            holder = {"conn": conn}

            async def once():
                c = holder["conn"] = await self.keepalive_conn(holder["conn"])
                return await self.proxied_request(c, rng, size, variant)

            if not await run_one(kind, TIMEOUTS[kind_name], once) and holder["conn"] is not None:
                holder["conn"].close()
            conn = holder["conn"]
            await asyncio.sleep(think)

    # --- websockets -----------------------------------------------------------
    @staticmethod
    def ws_client_frame(opcode, payload, rng):
        return ws_frame(opcode, payload, mask_key=rng.randbytes(4))

    @staticmethod
    async def ws_read_frame(reader):
        _fin, opcode, masked, payload = await read_ws_frame(reader, MAX_RESPONSE_BODY)
        if masked:
            raise Fail("other", "server frame is masked")
        return opcode, payload

    async def ws_session(self, rng, holder):
        kind = self.kinds["ws"]
        conn = holder["conn"] = await Conn.open(self.port)
        key = base64.b64encode(rng.randbytes(16)).decode()
        head = request_head(
            "GET", "/ws", self.port,
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"},
        )
        conn.writer.write(head)
        resp = await read_response(conn.reader, head_only=True)
        expect_status(resp, 101)
        accept = ws_accept(key.encode())
        if resp.headers.get("sec-websocket-accept") != accept:
            raise Fail("other", "101 with a wrong Sec-WebSocket-Accept")
        for _ in range(rng.randint(10, 40)):
            if rng.random() < 0.05:
                payload = rng.randbytes(8)
                conn.writer.write(self.ws_client_frame(0x9, payload, rng))
                await conn.writer.drain()
                opcode, got = await self.ws_read_frame(conn.reader)
                if opcode != 0xA or got != payload:
                    raise Fail("other", f"ping answered with opcode {opcode}")
            else:
                size = rng.randint(32768, 65536) if rng.random() < 0.1 else rng.randint(1, 4096)
                off = rng.randrange(0, len(RANDOM) - size)
                text = base64.b64encode(RANDOM[off:off + size])[:size]
                conn.writer.write(self.ws_client_frame(0x1, text, rng))
                await conn.writer.drain()
                opcode, got = await self.ws_read_frame(conn.reader)
                if opcode != 0x1 or got != text:
                    raise Fail("other", f"echo differs (opcode {opcode}, {len(got)} of {len(text)} bytes)")
            kind.notes["messages echoed"] += 1
            await asyncio.sleep(rng.uniform(0.02, 0.15))
        if rng.random() < 0.2:
            # Goes away without a close frame (a closed laptop lid), half with RST.
            kind.notes["sessions ended without a close frame"] += 1
            conn.close(rst=rng.random() < 0.5)
            return "ok"
        conn.writer.write(self.ws_client_frame(0x8, struct.pack("!H", 1000), rng))
        await conn.writer.drain()
        opcode, got = await self.ws_read_frame(conn.reader)
        if opcode != 0x8:
            raise Fail("other", f"close answered with opcode {opcode}")
        rest = await conn.reader.read(1)
        if rest:
            raise Fail("other", "bytes after the close frame")
        conn.close()
        return "ok"

    async def ws_worker(self, wid):
        rng = self.rng(4000 + wid)
        while True:
            _, stop = await self.ctl.checkpoint(None)
            if stop:
                return
            holder = {"conn": None}
            await run_one(self.kinds["ws"], TIMEOUTS["ws"], lambda: self.ws_session(rng, holder))
            if holder["conn"] is not None and not holder["conn"].dead:
                holder["conn"].close()
            await asyncio.sleep(rng.uniform(0.05, 0.3))

    # --- slow clients -----------------------------------------------------------
    async def slow_session(self, rng, holder):
        kind = self.kinds["slow"]
        pad = "p" * rng.randint(10, 60)
        if rng.random() < 0.5:
            body = b'{"userId":"john"}'
            request = request_head(
                "POST", "/api/tokens/user", self.port,
                {"Content-Type": "application/json", "X-Soak-Pad": pad}, len(body), close=True,
            ) + body
            check = "token"
        else:
            request = request_head("GET", "/bytes/1024", self.port, {"X-Soak-Pad": pad}, close=True)
            check = "bytes"
        mode = rng.random()
        conn = holder["conn"] = await Conn.open(self.port)
        head_len = request.index(b"\r\n\r\n") + 4
        if mode < 0.30:
            stop_at = rng.randint(1, head_len - 1)  # gives up in the middle of the head
            kind.notes["gave up mid-head"] += 1
        elif mode < 0.35:
            stop_at = rng.randint(1, head_len - 1)  # stalls: stops sending, keeps the connection
            kind.notes["stalled mid-head"] += 1
        else:
            stop_at = len(request)
        sent = 0
        while sent < stop_at:
            n = min(rng.randint(3, 8), stop_at - sent)
            conn.writer.write(request[sent:sent + n])
            await conn.writer.drain()
            sent += n
            await asyncio.sleep(rng.uniform(0.02, 0.08))
        if mode < 0.30:
            conn.close(rst=rng.random() < 0.5)
            return "abandoned"
        if mode < 0.35:
            # streamgate should cut a stalled head off (http.request_headers_timeout,
            # 408) or close; waiting on past STALL_WAIT is this client's timeout.
            try:
                async with asyncio.timeout(STALL_WAIT):
                    resp = await read_response(conn.reader)
            except TimeoutError:
                raise Fail("timeout", f"stalled head not cut off by streamgate within {STALL_WAIT:.0f} s")
            except (NoResponse, Truncated, asyncio.IncompleteReadError, ConnectionResetError):
                conn.close()
                return ("expected", "stalled head: closed by streamgate")
            conn.close()
            if resp.status == 408:
                return ("expected", "stalled head: 408")
            raise Fail("5xx" if resp.status >= 500 else "other", f"stalled head answered {resp.status}")
        resp = await read_response(conn.reader)
        conn.close()
        expect_status(resp)
        if check == "token":
            if not json.loads(resp.body).get("data", {}).get("token", "").startswith("ey"):
                raise Fail("other", "200 without a token")
        elif resp.body != PATTERN[:1024]:
            raise Fail("other", "GET /bytes/1024: wrong body")
        return "ok"

    async def slow_worker(self, wid):
        rng = self.rng(5000 + wid)
        while True:
            _, stop = await self.ctl.checkpoint(None)
            if stop:
                return
            holder = {"conn": None}
            await run_one(self.kinds["slow"], TIMEOUTS["slow"], lambda: self.slow_session(rng, holder))
            if holder["conn"] is not None and not holder["conn"].dead:
                holder["conn"].close()
            await asyncio.sleep(rng.uniform(0.0, 0.2))

    # --- upstream resets --------------------------------------------------------
    async def reset_once(self, holder):
        conn = holder["conn"] = await Conn.open(self.port)
        conn.writer.write(request_head("GET", "/reset", self.port))
        try:
            resp = await read_response(conn.reader, head_only=True)
        except (ConnectionResetError, NoResponse, Truncated) as exc:
            # Nothing of the app's answer arrived: streamgate should have said 502.
            raise Fail(*classify(exc))
        if resp.status == 502:
            await conn.reader.read()  # the JSON error body, then close
            conn.close()
            return ("expected", "502")
        if resp.status != 200:
            raise Fail("5xx" if resp.status >= 500 else "other", f"status {resp.status}")
        # 200 and the app's head: the body must end short, with a close or reset;
        # a clean end (chunked terminator, or a Content-Length shorter than the
        # app's) would hand the client a truncated body as if it were complete.
        length = resp.headers.get("content-length")
        if length is not None and int(length) != RESET_DECLARED:
            raise Fail("other", f"Content-Length {length} instead of the app's {RESET_DECLARED}")
        try:
            if length is not None:
                got = await conn.reader.readexactly(RESET_DECLARED)
            else:
                got = (await read_body_after_head(conn.reader, resp.headers))
        except asyncio.IncompleteReadError as exc:
            conn.close()
            if len(exc.partial) > RESET_SENT:
                raise Fail("other", f"{len(exc.partial)} body bytes, the app sent {RESET_SENT}")
            return ("expected", "truncated body, then close")
        except ConnectionResetError:
            conn.close()
            return ("expected", "truncated body, then reset")
        conn.close()
        raise Fail("other", f"truncated body delivered as complete ({len(got)} bytes)")

    async def reset_worker(self, wid):
        rng = self.rng(6000 + wid)
        while True:
            _, stop = await self.ctl.checkpoint(None)
            if stop:
                return
            holder = {"conn": None}
            await run_one(self.kinds["reset"], TIMEOUTS["reset"], lambda: self.reset_once(holder))
            if holder["conn"] is not None and not holder["conn"].dead:
                holder["conn"].close()
            await asyncio.sleep(rng.uniform(0.1, 0.3))


async def read_body_after_head(reader, headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    data = await reader.read()
    raise asyncio.IncompleteReadError(data, None)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------
TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
}


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])  # kB
            elif key == "Threads":
                out[key] = int(value)
    return out


def proc_fds(pid):
    fds = 0
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return fds, inodes


def tcp_sockets():
    """inode -> (local port, remote port, state) for every TCP socket."""
    table = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    lport = int(cols[1].rsplit(":", 1)[1], 16)
                    rport = int(cols[2].rsplit(":", 1)[1], 16)
                    table[cols[9]] = (lport, rport, TCP_STATES.get(cols[3], cols[3]))
        except FileNotFoundError:
            pass
    return table


def parse_metrics(text):
    values = collections.defaultdict(float)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        try:
            v = float(value)
        except ValueError:
            continue
        values[name] += v
        if name == "streamgate_proxied_requests_total":
            cls = re.search(r'status_class="([^"]*)"', labels)
            values[f"{name}:{cls.group(1) if cls else '?'}"] += v
    return dict(values)


async def simple_get(port, path, timeout=5.0):
    async with asyncio.timeout(timeout):
        conn = await Conn.open(port)
        try:
            conn.writer.write(request_head("GET", path, port, close=True))
            return await read_response(conn.reader)
        finally:
            conn.close()


class Sampler:
    def __init__(self, args, soak: Soak):
        self.args = args
        self.soak = soak
        self.t0 = None
        self.paused_total = 0.0

    def active_seconds(self):
        return 0.0 if self.t0 is None else time.monotonic() - self.t0 - self.paused_total

    async def sample(self, label):
        a = self.args
        s = {"label": label, "t": round(self.active_seconds(), 1), "wall": time.time()}
        # /proc first: the sampler's own admin requests below must not be counted.
        s.update(proc_status(a.pid))
        s["fds"], inodes = proc_fds(a.pid)
        states = collections.Counter()
        table = tcp_sockets()
        for inode in inodes:
            entry = table.get(inode)
            if entry is None:
                continue
            lport, rport, state = entry
            if state == "LISTEN":
                continue
            if rport == a.upstream_port:
                states["upstream " + state] += 1
            elif lport == a.sg_port:
                states["client " + state] += 1
            elif lport == a.admin_port:
                states["admin " + state] += 1
            else:
                states["other " + state] += 1
        s["sockets"] = dict(states)
        s["upstream_estab"] = states.get("upstream ESTABLISHED", 0)
        s["upstream_other"] = sum(v for k, v in states.items() if k.startswith("upstream ") and k != "upstream ESTABLISHED")
        s["client_conns"] = sum(v for k, v in states.items() if k.startswith("client "))
        s["traffic"] = {name: kind.snapshot() for name, kind in self.soak.kinds.items()}
        try:
            resp = await simple_get(a.admin_port, "/metrics")
            s["metrics"] = parse_metrics(resp.body.decode()) if resp.status == 200 else {}
        except Exception as exc:  # noqa: BLE001
            s["metrics"] = {}
            s["metrics_error"] = str(exc)
        for probe in ("healthz", "readyz"):
            try:
                s[probe] = (await simple_get(a.admin_port, f"/{probe}")).status
            except Exception:  # noqa: BLE001
                s[probe] = "error"
        try:
            s["app"] = json.loads((await simple_get(a.upstream_port, "/__stats")).body)
        except Exception:  # noqa: BLE001
            s["app"] = {}
        return s


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
def parse_workers(spec):
    workers = dict(DEFAULT_WORKERS)
    for item in filter(None, (spec or "").split(",")):
        name, _, n = item.partition("=")
        name = name.strip()
        if name not in workers or not n.strip().isdigit():
            sys.exit(f"SOAK_WORKERS: bad item {item!r} (kinds: {', '.join(workers)})")
        workers[name] = int(n)
    return workers


async def preflight(soak: Soak, args):
    """One request of each kind must work before the soak starts: a run that
    only measures 404s or 502s would be meaningless."""
    deadline = time.monotonic() + 20
    while True:
        try:
            if (await simple_get(args.admin_port, "/readyz")).status == 200:
                break
        except Exception:  # noqa: BLE001
            pass
        if time.monotonic() > deadline:
            return "streamgate's /readyz did not answer 200 within 20 s"
        await asyncio.sleep(0.2)
    rng = random.Random(1)
    checks = {
        "token": lambda c: exchange(c, request_head("POST", "/api/tokens/user", args.sg_port,
                                                   {"Content-Type": "application/json"}, 17), [b'{"userId":"john"}']),
        "bytes": lambda c: soak.proxied_request(c, rng, 1000, "get"),
        "echo": lambda c: soak.proxied_request(c, rng, MIB, "chunked"),
    }
    for name, fn in checks.items():
        conn = await Conn.open(args.sg_port)
        try:
            async with asyncio.timeout(10):
                r = await fn(conn)
            if isinstance(r, Response) and (r.status != 200 or b'"token":"ey' not in r.body):
                return f"preflight {name}: status {r.status}: {r.body[:200]!r}"
        except Exception as exc:  # noqa: BLE001
            return f"preflight {name} failed: {classify(exc)[1]}"
        finally:
            conn.close()
    holder = {"conn": None}
    try:
        async with asyncio.timeout(20):
            await soak.ws_session(random.Random(2), holder)
    except Exception as exc:  # noqa: BLE001
        return f"preflight websocket failed: {classify(exc)[1]}"
    finally:
        if holder["conn"] is not None:
            holder["conn"].close()
    soak.kinds["ws"].notes.clear()
    return None


async def quiesce(soak: Soak, sampler: Sampler, label, settle):
    """Parks every worker, lets the app's idle timeout drain streamgate's pool,
    samples, resumes."""
    t = time.monotonic()
    t_load = sampler.active_seconds()
    soak.ctl.go.clear()
    deadline = t + max(TIMEOUTS.values()) + 10
    while soak.ctl.parked < soak.ctl.workers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    parked = soak.ctl.parked
    await asyncio.sleep(settle)
    s = await sampler.sample(label)
    s["t"] = round(t_load, 1)  # the load time at which the pause began
    s["parked"] = f"{parked}/{soak.ctl.workers}"
    soak.ctl.go.set()
    sampler.paused_total += time.monotonic() - t
    return s


async def run(args):
    workers = parse_workers(os.environ.get("SOAK_WORKERS"))
    soak = Soak(args)
    sampler = Sampler(args, soak)
    problem = await preflight(soak, args)
    if problem:
        print(f"soak: {problem}", file=sys.stderr)
        return 2, None
    # Give the preflight's connections time to leave streamgate's pool.
    await asyncio.sleep(args.settle)
    samples = [await sampler.sample("start (idle)")]
    timeline = [samples[0]]
    log(f"start: RSS {samples[0]['VmRSS'] / 1024:.1f} MiB, {samples[0]['fds']} fds; "
        f"{args.seconds:.0f} s of load with workers {workers}")

    tasks = []
    spawn = {
        "tokens": soak.tokens_worker,
        "small": lambda i: soak.proxied_worker(i, "small"),
        "large": lambda i: soak.proxied_worker(i, "large"),
        "ws": soak.ws_worker,
        "slow": soak.slow_worker,
        "reset": soak.reset_worker,
    }
    sampler.t0 = time.monotonic()
    for name, n in workers.items():
        for i in range(n):
            tasks.append(asyncio.create_task(spawn[name](i), name=f"{name}-{i}"))
    soak.ctl.workers = len(tasks)

    async def timeline_loop():
        while True:
            await asyncio.sleep(args.interval)
            if soak.ctl.go.is_set() and not soak.ctl.stopping:
                s = await sampler.sample("load")
                timeline.append(s)
                log_sample(s)

    ticker = asyncio.create_task(timeline_loop())

    async def run_until(active_t):
        while sampler.active_seconds() < active_t:
            await asyncio.sleep(min(1.0, max(0.05, active_t - sampler.active_seconds())))
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()

    await run_until(args.seconds / 2)
    samples.append(await sampler.sample("middle, under load"))
    log_sample(samples[-1])
    samples.append(await quiesce(soak, sampler, "middle, quiesced", args.settle))
    log_sample(samples[-1])
    await run_until(args.seconds)
    samples.append(await sampler.sample("end, under load"))
    log_sample(samples[-1])
    ticker.cancel()

    # Stop: each worker finishes its request (each has its own timeout); what
    # is still running after the longest timeout plus margin is cancelled and
    # stays unresolved (lost).
    t_stop = time.monotonic()
    t_load = sampler.active_seconds()
    soak.ctl.stopping = True
    soak.ctl.go.set()
    done, pending = await asyncio.wait(tasks, timeout=max(TIMEOUTS.values()) + 10)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for t in done:
        if t.exception() is not None:
            raise t.exception()
    await asyncio.sleep(args.settle)
    end = await sampler.sample("end, quiesced")
    end["t"] = round(t_load, 1)
    end["parked"] = f"{len(done)}/{len(tasks)}"
    sampler.paused_total += time.monotonic() - t_stop
    samples.append(end)
    log_sample(end)
    timeline.append(end)
    return 0, (soak, samples, timeline, workers)


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def log_sample(s):
    total = sum(k["sent"] for k in s["traffic"].values())
    failed = sum(k["failed_total"] for k in s["traffic"].values())
    log(f"t={s['t']:.0f}s {s['label']}: RSS {s['VmRSS'] / 1024:.1f} MiB (HWM {s['VmHWM'] / 1024:.1f}), "
        f"{s['fds']} fds, upstream conns {s['upstream_estab']}, client conns {s['client_conns']}, "
        f"{total} requests, {failed} failed")


# ---------------------------------------------------------------------------
# Verdict and report
# ---------------------------------------------------------------------------
def mib(kb):
    return f"{kb / 1024:.1f}"


def verdict(samples):
    mid = next(s for s in samples if s["label"] == "middle, quiesced")
    end = next(s for s in samples if s["label"] == "end, quiesced")
    rss_bound = mid["VmRSS"] + max(4 * 1024, mid["VmRSS"] * 0.10)
    lost = sum(k["unresolved"] for k in end["traffic"].values())
    checks = [
        ("VmRSS (MiB)", mib(mid["VmRSS"]), mib(end["VmRSS"]),
         f"≤ middle + max(4 MiB, 10 %) = {mib(rss_bound)}", end["VmRSS"] <= rss_bound),
        ("Open file descriptors", mid["fds"], end["fds"], f"≤ middle + 4 = {mid['fds'] + 4}",
         end["fds"] <= mid["fds"] + 4),
        ("Connections to the upstream (ESTABLISHED)", mid["upstream_estab"], end["upstream_estab"],
         f"≤ middle + 2 = {mid['upstream_estab'] + 2}", end["upstream_estab"] <= mid["upstream_estab"] + 2),
        ("Connections to the upstream in other states", mid["upstream_other"], end["upstream_other"],
         f"≤ middle + 2 = {mid['upstream_other'] + 2}", end["upstream_other"] <= mid["upstream_other"] + 2),
        ("Client connections still held (no client connected)", mid["client_conns"], end["client_conns"],
         "= 0", end["client_conns"] == 0),
        ("Lost requests (sent, neither answered nor failed)", "", lost, "= 0", lost == 0),
    ]
    return checks, all(c[4] for c in checks)


def table(headers, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def traffic_table(snapshot):
    rows = []
    totals = collections.Counter()
    for name in DEFAULT_WORKERS:
        k = snapshot[name]
        f = k["failed"]
        row = [k["sent"], k["ok"], k["expected"], k["abandoned"]] + [f.get(r, 0) for r in FAIL_REASONS] + [k["unresolved"]]
        for i, v in enumerate(row):
            totals[i] += v
        rows.append([KIND_TITLES[name]] + row)
    rows.append(["**all**"] + [f"**{totals[i]}**" for i in range(len(rows[0]) - 1)])
    return table(
        ["Kind", "Sent", "OK", "Expected failures", "Abandoned by client", "Failed: 5xx", "reset", "timeout",
         "closed", "other", "Lost"],
        rows,
    )


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Linux {platform.release()}"


def git(root, *args):
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout.strip()


def revision(root, binary):
    """HEAD, and a warning when the binary predates HEAD's last change to the
    sources (a run with SOAK_BUILD=0 on an old build)."""
    try:
        text = git(root, "rev-parse", "--short", "HEAD")
        if git(root, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"):
            text += "+local changes"
        last = git(root, "log", "-1", "--format=%h %ct", "--", "src", "Cargo.toml", "Cargo.lock").split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    try:
        built = os.path.getmtime(binary)
    except OSError:
        return text
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(built))
    if len(last) == 2 and built < int(last[1]):
        text += (f" (**the binary, built {stamp}, is older than {last[0]}, HEAD's last change to src/ "
                 f"or the Cargo files: it was not rebuilt**)")
    else:
        text += f" (binary built {stamp})"
    return text


def log_summary(path, skip_lines):
    """streamgate's WARN/ERROR lines after start, grouped with digits masked."""
    groups = collections.Counter()
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()[skip_lines:]
    except OSError:
        return groups
    for line in lines:
        m = re.match(r"^\[\S+\s+(WARN|ERROR)\s+(\S+)\]\s*(.*)$", line)
        if m:
            msg = re.sub(r"\d+", "N", m.group(3))[:200]
            groups[f"{m.group(1)} {m.group(2)}: {msg}"] += 1
    return groups


def report(args, soak, samples, timeline, workers, checks, passed, log_groups):
    metric_cols = [
        ("streamgate_proxied_requests_total", "proxied"),
        ("streamgate_proxied_requests_total:2xx", "proxied 2xx"),
        ("streamgate_proxied_requests_total:5xx", "proxied 5xx"),
        ("streamgate_tokens_issued_total", "tokens issued"),
        ("streamgate_tokens_refused_total", "tokens refused"),
        ("streamgate_upstream_connect_errors_total", "upstream connect errors"),
        ("streamgate_upstream_retries_total", "upstream retries"),
    ]
    end = samples[-1]
    lines = []
    w = lines.append
    w("## streamgate soak")
    w("")
    w(f"- When: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(samples[0]['wall']))}, "
      f"streamgate {revision(args.root, args.binary)}; verdict: **{'PASS' if passed else 'FAIL'}**")
    w(f"- Machine: {machine()}; Python {platform.python_version()}")
    w(f"- Load: {args.seconds:.0f} s (`SOAK_SECONDS`) on 127.0.0.1, concurrent workers per kind: "
      + ", ".join(f"{k} {v}" for k, v in workers.items())
      + f"; {end['wall'] - samples[0]['wall']:.0f} s from the start sample to the end one, the quiesced samples included.")
    w("- streamgate: `threads: 1`, access log off, default routes, upstream `app` = the asyncio fake app "
      f"(`bench/soak/upstream.py`, idle keep-alive timeout {args.app_idle:.0f} s) with `read_timeout: 10s`.")
    w("- Quiesced samples: every worker parks (its request done, its connections closed), "
      f"then {args.settle:.0f} s pass (the app closes idle keep-alive connections after {args.app_idle:.0f} s), "
      "then the sample. The verdict compares the quiesced end with the quiesced middle.")
    w("")
    w("### streamgate process and sockets")
    w("")
    rows = []
    for s in samples:
        rows.append([s["label"], s["t"], mib(s["VmRSS"]), mib(s["VmHWM"]), s.get("Threads", ""), s["fds"],
                     s["upstream_estab"], s["upstream_other"], s["client_conns"],
                     s["app"].get("connections_open", "?"), s.get("parked", ""), f"{s['healthz']}/{s['readyz']}"])
    w(table(["Sample", "Load time (s)", "VmRSS (MiB)", "VmHWM (MiB)", "Threads", "Open fds",
             "To upstream: ESTABLISHED", "To upstream: other states", "Client connections",
             "App's open connections", "Workers parked", "/healthz, /readyz"], rows))
    w("")
    w("Sockets by state (streamgate's, not listening):")
    w("")
    for s in samples:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(s["sockets"].items())) or "none"
        w(f"- {s['label']}: {detail}")
    w("")
    w("### streamgate metrics")
    w("")
    rows = []
    for s in samples:
        m = s["metrics"]
        rows.append([s["label"]] + [f"{m.get(key, 0):.0f}" if m else "–" for key, _ in metric_cols])
    w(table(["Sample"] + [label for _, label in metric_cols], rows))
    w("")
    for label in ("middle, quiesced", "end, quiesced"):
        s = next(x for x in samples if x["label"] == label)
        w(f"### Traffic as the clients saw it, cumulative at {label.split(',')[0]} (t = {s['t']:.0f} s)")
        w("")
        w(traffic_table(s["traffic"]))
        w("")
    w("Expected failures are what the traffic provokes on purpose: `/reset` answered with a truncated "
      "body then a close or reset, or a 502; a stalled slow client closed or answered 408. "
      "Abandoned: slow clients that gave up mid-head. Lost = sent − every outcome: requests still "
      "unresolved when the harness stopped waiting (each request has its own timeout, so this counts "
      "requests that neither got an answer nor failed visibly).")
    w("")
    notes = []
    for name, kind in soak.kinds.items():
        for note, n in sorted(kind.notes.items()):
            notes.append(f"- {name}: {note}: {n}")
        for reason, examples in kind.examples.items():
            for detail, n in examples.most_common(4):
                notes.append(f"- {name}: failed ({reason}): {detail}: {n}")
    if notes:
        w("Details:")
        w("")
        lines.extend(notes)
        w("")
    w("### Timeline (under load)")
    w("")
    rows = []
    prev = None
    for s in timeline:
        sent = sum(k["sent"] for k in s["traffic"].values())
        failed = sum(k["failed_total"] for k in s["traffic"].values())
        rate = ""
        if prev is not None and s["t"] > prev[0] and s["label"] == "load":
            rate = f"{(sent - prev[1]) / (s['t'] - prev[0]):.0f}"
        prev = (s["t"], sent)
        rows.append([s["t"], s["label"], mib(s["VmRSS"]), mib(s["VmHWM"]), s["fds"], s["upstream_estab"],
                     s["client_conns"], sent, rate, failed])
    w(table(["Load time (s)", "Sample", "VmRSS (MiB)", "VmHWM (MiB)", "Open fds", "To upstream: ESTABLISHED",
             "Client connections", "Requests sent", "Requests/s", "Failed (unexpected)"], rows))
    w("")
    w("### Verdict")
    w("")
    w(table(["Check (quiesced samples)", "Middle", "End", "Bound", "Holds"],
            [[c[0], c[1], c[2], c[3], "yes" if c[4] else "**no**"] for c in checks],
            ["---", "---:", "---:", "---", ":---:"]))
    w("")
    unexpected = sum(k["failed_total"] for k in end["traffic"].values())
    w(f"Unexpected failures (reported above, not part of the verdict): {unexpected}.")
    w("")
    w("### streamgate log (WARN/ERROR after start)")
    w("")
    if log_groups:
        for msg, n in log_groups.most_common(10):
            w(f"- {n} × `{msg}`")
    else:
        w("- none")
    w("")
    w(f"**Verdict: {'PASS' if passed else 'FAIL'}**")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description="streamgate soak: load, samples, verdict")
    p.add_argument("--sg-port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--upstream-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="streamgate's pid")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--interval", type=float, default=0, help="timeline sample period (default: seconds/10)")
    p.add_argument("--app-idle", type=float, default=4.0, help="the app's idle keep-alive timeout")
    p.add_argument("--report", required=True)
    p.add_argument("--sg-log", default="")
    p.add_argument("--root", default=".")
    p.add_argument("--binary", default="target/release/streamgate", help="for the report: when it was built")
    args = p.parse_args()
    if args.seconds < 10:
        sys.exit("SOAK_SECONDS must be at least 10")
    args.interval = args.interval or max(5.0, args.seconds / 10)
    args.settle = args.app_idle + 2.0
    log_skip = 0
    if args.sg_log:
        try:
            with open(args.sg_log, errors="replace") as f:
                log_skip = len(f.read().splitlines())  # the start-up warnings are not the soak's
        except OSError:
            pass
    rc, result = asyncio.run(run(args))
    if rc:
        return rc
    soak, samples, timeline, workers = result
    checks, passed = verdict(samples)
    text = report(args, soak, samples, timeline, workers, checks, passed, log_summary(args.sg_log, log_skip))
    os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
    with open(args.report, "w") as f:
        f.write(text)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
