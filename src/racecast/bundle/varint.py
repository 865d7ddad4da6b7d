"""LEB128 varints and zigzag, vectorised with numpy over whole token arrays.

Every compact payload is two header bytes followed by unsigned LEB128 varints
(7 bits per byte, low group first, high bit = "more bytes follow"); signed
values are zigzag-mapped first (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...). No varint
is longer than :data:`MAX_VARINT_BYTES` bytes, which bounds every value to 35
bits: int32 values and their deltas always fit, and JavaScript decodes them
exactly with plain Number arithmetic.
"""

from __future__ import annotations

import numpy as np

from ..errors import Damaged

MAX_VARINT_BYTES = 5
_MAX_U = (1 << (7 * MAX_VARINT_BYTES)) - 1


class DecodeError(Damaged, ValueError):
    """A payload that is not a valid compact frame or chunk (truncated, garbled, oversized)."""


def zigzag(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ (-(u & np.uint64(1)).astype(np.int64))


def varint_lengths(u: np.ndarray) -> np.ndarray:
    """Bytes each unsigned value takes (1..5)."""
    shape = np.shape(u)
    u = np.asarray(u, dtype=np.uint64).reshape(-1)
    if u.size and int(u.max()) > _MAX_U:
        raise ValueError(f"value {int(u.max())} does not fit a {MAX_VARINT_BYTES}-byte varint")
    n = (u >= np.uint64(1 << 7)).astype(np.int64) + 1
    big = np.flatnonzero(n > 1)  # usually few: only they need the other comparisons
    if big.size:
        ub = u[big]
        n[big] += sum((ub >= np.uint64(1 << (7 * k))).astype(np.int64) for k in range(2, MAX_VARINT_BYTES))
    return n.reshape(shape)


def encode_varints(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint bytes of every value of ``u`` (any shape), back to back; and each value's length.

    Returns ``(flat uint8 bytes, lengths shaped like u)``. Byte k of every value
    longer than k is written in one vectorised pass per k (most values take one byte).
    """
    u = np.asarray(u, dtype=np.uint64)
    lengths = varint_lengths(u)
    flat = u.reshape(-1)
    ln = lengths.reshape(-1)
    off = np.cumsum(ln) - ln
    out = np.empty(int(ln.sum()), dtype=np.uint8)
    more = ln > 1
    out[off] = (flat & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
    idx = np.flatnonzero(more)
    rest = flat[idx] >> np.uint64(7)
    k = 1
    while idx.size:
        more = ln[idx] > k + 1
        out[off[idx] + k] = (rest & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
        idx, rest, k = idx[more], rest[more] >> np.uint64(7), k + 1
    return out, lengths


def decode_varints(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every varint in ``buf`` (uint8); returns ``(values, end offsets)``.

    Bytes after the last complete varint are ignored here (``ends`` tells the
    caller how far the complete ones reach); a varint longer than the limit
    raises :class:`DecodeError`.
    """
    if buf.size == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(buf < 0x80)
    if ends.size == 0:
        return np.zeros(0, dtype=np.uint64), ends
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts + 1
    if int(lens.max()) > MAX_VARINT_BYTES:
        bad = int(np.argmax(lens > MAX_VARINT_BYTES))
        raise DecodeError(f"varint at byte {int(starts[bad])} is longer than {MAX_VARINT_BYTES} bytes")
    used = buf[: int(ends[-1]) + 1]
    shift = (np.arange(used.size) - np.repeat(starts, lens)) * 7
    parts = (used & 0x7F).astype(np.uint64) << shift.astype(np.uint64)
    return np.add.reduceat(parts, starts), ends
