#!/usr/bin/env python3
"""The fake app behind streamgate for `make soak` (bench/soak.sh).

asyncio, Python 3 standard library only. HTTP/1.1 with keep-alive; request
bodies with Content-Length or chunked. Routes:

  GET  /bytes/N   N bytes of a fixed pattern (soak.py checks them)
  POST /echo      the request body back, with Content-Length
  GET  /reset     a 200 with Content-Length 65536 and only part of the body,
                  then the connection is closed with a RST (SO_LINGER 0)
  GET  /ws        WebSocket (RFC 6455): echoes text and binary messages,
                  answers pings, returns the close frame
  GET  /health    200 "ok"
  GET  /__stats   the counters below as JSON (soak.py reads it directly,
                  not through streamgate)

An idle keep-alive connection is closed after --idle-timeout seconds, as most
app servers do (Node's default is 5 s), so that streamgate's idle pool drains
when the load pauses.

Usage: upstream.py --port PORT [--idle-timeout 4]
"""

import argparse
import asyncio
import json
import signal
import socket
import struct
import sys

from wire import read_chunked, read_ws_frame, ws_accept, ws_frame

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
RESET_DECLARED = 65536
RESET_SENT = 16384


def pattern(n: int) -> bytes:
    """The bytes GET /bytes/N answers with; soak.py builds the same."""
    base = bytes(range(256)) * 4096  # 1 MiB
    if n <= len(base):
        return base[:n]
    return (base * (n // len(base) + 1))[:n]


PATTERN = pattern(1024 * 1024)

STATS = {
    "connections_accepted": 0,
    "connections_open": 0,
    "connections_closed_idle": 0,
    "requests": 0,
    "bytes": 0,
    "echo": 0,
    "reset": 0,
    "ws_sessions": 0,
    "ws_open": 0,
    "ws_messages": 0,
    "bad_requests": 0,
}


class BadRequest(Exception):
    pass


async def read_client_ws_frame(reader):
    fin, opcode, masked, payload = await read_ws_frame(reader, MAX_BODY)
    if not masked:
        raise BadRequest("client frame not masked")
    return fin, opcode, payload


async def read_body(reader, headers):
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        return await read_chunked(reader, MAX_BODY)
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise BadRequest("body too large")
    return await reader.readexactly(length) if length else b""


def response(status: int, reason: str, body: bytes, ctype="application/octet-stream", close=False):
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
        + "\r\n"
    ).encode()
    return head + body


async def websocket(reader, writer, headers):
    key = headers.get("sec-websocket-key", "").encode()
    if not key or headers.get("upgrade", "").lower() != "websocket":
        writer.write(response(400, "Bad Request", b"not a websocket upgrade", close=True))
        await writer.drain()
        return
    accept = ws_accept(key)
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    STATS["ws_sessions"] += 1
    STATS["ws_open"] += 1
    try:
        fragments = []
        first_opcode = 0
        while True:
            fin, opcode, payload = await read_client_ws_frame(reader)
            if opcode == 0x8:  # close: answer with the same code, then close
                writer.write(ws_frame(0x8, payload[:2]))
                await writer.drain()
                return
            if opcode == 0x9:  # ping
                writer.write(ws_frame(0xA, payload))
                await writer.drain()
                continue
            if opcode == 0xA:  # pong
                continue
            if opcode in (0x1, 0x2):
                first_opcode = opcode
                fragments = [payload]
            elif opcode == 0x0:
                fragments.append(payload)
            else:
                raise BadRequest(f"websocket opcode {opcode}")
            if fin:
                STATS["ws_messages"] += 1
                writer.write(ws_frame(first_opcode, b"".join(fragments)))
                await writer.drain()
                fragments = []
    finally:
        STATS["ws_open"] -= 1


async def reset(writer):
    """Status line, headers and part of the body, then RST."""
    STATS["reset"] += 1
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {RESET_DECLARED}\r\n\r\n"
    ).encode()
    writer.write(head + PATTERN[:RESET_SENT])
    await writer.drain()
    # Let streamgate read (and forward) the head and the partial body before
    # the RST arrives: a RST makes Linux drop what the peer has not read yet.
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def serve(reader, writer, idle_timeout):
    STATS["connections_accepted"] += 1
    STATS["connections_open"] += 1
    try:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_timeout)
            except asyncio.TimeoutError:
                STATS["connections_closed_idle"] += 1
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                STATS["bad_requests"] += 1
                return
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                STATS["bad_requests"] += 1
                writer.write(response(400, "Bad Request", b"bad request line", close=True))
                await writer.drain()
                return
            headers = {}
            for line in lines[1:]:
                if not line:
                    continue
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            STATS["requests"] += 1
            close = version != "HTTP/1.1" or headers.get("connection", "").lower() == "close"
            body = await read_body(reader, headers)
            path = target.split("?", 1)[0]

            if method == "GET" and path.startswith("/bytes/"):
                STATS["bytes"] += 1
                n = int(path[len("/bytes/"):])
                if n > MAX_BODY:
                    raise BadRequest("too many bytes asked for")
                writer.write(response(200, "OK", pattern(n) if n > len(PATTERN) else PATTERN[:n], close=close))
            elif method == "POST" and path == "/echo":
                STATS["echo"] += 1
                writer.write(response(200, "OK", body, close=close))
            elif method == "GET" and path == "/reset":
                await reset(writer)
                return
            elif method == "GET" and path == "/ws":
                await websocket(reader, writer, headers)
                return
            elif method == "GET" and path == "/health":
                writer.write(response(200, "OK", b"ok", "text/plain", close=close))
            elif method == "GET" and path == "/__stats":
                writer.write(response(200, "OK", json.dumps(STATS).encode(), "application/json", close=close))
            else:
                writer.write(response(404, "Not Found", b"not found", "text/plain", close=close))
            await writer.drain()
            if close:
                return
    except (BadRequest, ValueError) as e:
        STATS["bad_requests"] += 1
        try:
            writer.write(response(400, "Bad Request", str(e).encode(), "text/plain", close=True))
            await writer.drain()
        except ConnectionError:
            pass
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        STATS["connections_open"] -= 1
        if not writer.transport.is_closing():
            writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-timeout", type=float, default=4.0)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("upstream.py listens on loopback only")

    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args.idle_timeout), args.host, args.port, limit=MAX_HEAD, backlog=512
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on {args.host}:{args.port}", flush=True)
    async with server:
        await stop.wait()
    print("upstream stats: " + json.dumps(STATS), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
