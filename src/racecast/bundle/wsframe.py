"""RFC 6455 server frame headers: shared by the bundle writer (pre-framed streams) and the server.

A server-to-client frame is unmasked; racecast never fragments, so a header is
2, 4 or 10 bytes depending on the payload length (RFC 6455 section 5.2).
"""

from __future__ import annotations

import struct

OP_TEXT = 0x81  # FIN + text
OP_BINARY = 0x82  # FIN + binary


def frame_header(n: int, first_byte: int = OP_BINARY) -> bytes:
    """Header of an unmasked, unfragmented server frame carrying ``n`` payload bytes."""
    if n < 126:
        return bytes((first_byte, n))
    if n < 65536:
        return struct.pack("!BBH", first_byte, 126, n)
    return struct.pack("!BBQ", first_byte, 127, n)


def header_size(framed_size: int) -> int:
    """Header length of a binary frame whose header + payload is ``framed_size`` bytes.

    Unambiguous because each length form covers a disjoint range of totals:
    2 + 0..125, 4 + 126..65535, 10 + 65536.. .
    """
    if framed_size < 128:
        return 2
    if framed_size < 65540:
        return 4
    return 10


_BINARY_HEADERS: dict[int, bytes] = {}


def binary_header(n: int) -> bytes:
    """Cached :func:`frame_header` for binary frames (frame sizes repeat a lot)."""
    h = _BINARY_HEADERS.get(n)
    if h is None:
        h = frame_header(n)
        if len(_BINARY_HEADERS) < 65536:
            _BINARY_HEADERS[n] = h
    return h
