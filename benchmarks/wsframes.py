"""Just enough WebSocket framing (RFC 6455) for the floor server and the load generator.

Handshakes go through the ``websockets`` sans-I/O protocols; only the hot path is
here: framing a server binary message once, and reading a frame's header and the
msgpack ``frame_index`` without decoding the payload.
"""

from __future__ import annotations

import os
import struct

import msgpack

from racecast.bundle.wsframe import frame_header as ws_frame_header

#: RFC 6455 opcodes (the low 4 bits of a frame's first byte; racecast.bundle.wsframe's OP_* are whole first bytes).
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
#: A frame payload starts with a msgpack map header and then this key (fixstr 11 + "frame_index").
FRAME_INDEX_KEY = b"\xabframe_index"


def frame_header(opcode: int, length: int) -> bytes:
    """Header of an unmasked, final server frame carrying ``length`` payload bytes."""
    return ws_frame_header(length, 0x80 | opcode)


def server_frame(opcode: int, payload: bytes | memoryview) -> bytes:
    """A complete unmasked server frame (header + payload) as one buffer, ready to write."""
    return frame_header(opcode, len(payload)) + bytes(payload)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked client frame (clients must mask, RFC 6455 5.3)."""
    n = len(payload)
    b0 = 0x80 | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    if n == 0:
        return head + mask
    reps = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(reps, "big")).to_bytes(n, "big")
    return head + mask + masked


def parse_header(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """``(opcode, payload_start, payload_end)`` of the frame at ``pos``, or None if incomplete.

    Server frames are unmasked; a masked frame (client to server) reports its payload
    still masked, starting after the 4-byte key.
    """
    n = len(buf)
    if n - pos < 2:
        return None
    b1 = buf[pos + 1]
    ln = b1 & 0x7F
    hl = 2
    if ln == 126:
        if n - pos < 4:
            return None
        ln = (buf[pos + 2] << 8) | buf[pos + 3]
        hl = 4
    elif ln == 127:
        if n - pos < 10:
            return None
        ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        hl = 10
    if b1 & 0x80:
        hl += 4
    start = pos + hl
    end = start + ln
    if end > n:
        return None
    return buf[pos] & 0x0F, start, end


def peek_frame_index(buf: bytes | memoryview, p: int = 0, end: int | None = None) -> int:
    """The ``frame_index`` of the msgpack frame payload ``buf[p:end]``, without decoding it.

    Fast path: a fixmap whose first key is ``"frame_index"`` (how every design here
    encodes frames); anything else falls back to a full msgpack decode.
    """
    if buf[p] & 0xF0 == 0x80 and buf[p + 1 : p + 13] == FRAME_INDEX_KEY:
        t = buf[p + 13]
        if t < 0x80:
            return t
        q = p + 14
        if t == 0xCD:
            return (buf[q] << 8) | buf[q + 1]
        if t == 0xD1:
            return int.from_bytes(buf[q : q + 2], "big", signed=True)
        if t == 0xCC:
            return buf[q]
        if t == 0xD0:
            return int.from_bytes(buf[q : q + 1], "big", signed=True)
        if t == 0xCE:
            return int.from_bytes(buf[q : q + 4], "big")
        if t == 0xD2:
            return int.from_bytes(buf[q : q + 4], "big", signed=True)
    return _slow_frame_index(bytes(buf[p:end]))


def _slow_frame_index(payload: bytes) -> int:
    try:
        obj = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as e:
        raise ValueError(f"binary message is not msgpack ({e})") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("frame_index"), int):
        raise ValueError("binary message is not a frame payload with an integer frame_index")
    return obj["frame_index"]
