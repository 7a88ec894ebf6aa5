"""HTTP/1.1 chunked bodies and RFC 6455 frames, for both sides of the soak:
the fake app (upstream.py) and the load generator (soak.py). Malformed input
raises ValueError."""

import base64
import hashlib
import struct

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: bytes) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()


def mask(data: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key; masking and unmasking are the same."""
    n = len(data)
    if n == 0:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def ws_frame(opcode: int, payload: bytes, mask_key: bytes = None) -> bytes:
    """One FIN frame; masked (as a client must) when mask_key is given."""
    n = len(payload)
    bit = 0x80 if mask_key is not None else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, n)
    if mask_key is None:
        return head + payload
    return head + mask_key + mask(payload, mask_key)


async def read_ws_frame(reader, max_len: int):
    """(fin, opcode, masked, payload), the payload unmasked."""
    b0, b1 = await reader.readexactly(2)
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > max_len:
        raise ValueError("websocket frame too large")
    key = await reader.readexactly(4) if masked else None
    payload = await reader.readexactly(n)
    return fin, opcode, masked, mask(payload, key) if masked else payload


async def read_chunked(reader, max_len: int) -> bytes:
    """A chunked body (RFC 9112 §7.1), trailers skipped."""
    parts = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > max_len:
            raise ValueError("body too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("bad chunk end")
