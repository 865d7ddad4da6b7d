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


def varint_values(buf: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The value of every complete varint in ``buf`` (uint8), as uint64 (into ``out`` if given, whose
    size must be the number of bytes under 0x80); a complete varint longer than the limit raises
    :class:`DecodeError`. Each value starts as its last byte; the few longer ones are then summed
    from their groups, so the work is one pass over the bytes plus a little per multi-byte value.
    """
    cont = buf >= 0x80
    if out is None:
        out = np.empty(buf.size - int(np.count_nonzero(cont)), dtype=np.uint64)
    out[...] = buf[~cont]
    if out.size == 0 or not cont.any():
        return out
    # Runs of continuation bytes alternate with the rest: a run starts a varint that ends just after it.
    t = np.flatnonzero(cont[1:] != cont[:-1]) + 1
    if cont[0]:
        t = np.concatenate(([0], t))
    starts, ends = t[0::2], t[1::2]
    starts = starts[: ends.size]  # a run at the very end has no last byte: not a complete varint
    if not ends.size:
        return out
    lens = ends - starts + 1
    if int(lens.max()) > MAX_VARINT_BYTES:
        raise DecodeError(f"varint at byte {int(starts[np.argmax(lens > MAX_VARINT_BYTES)])} is longer than {MAX_VARINT_BYTES} bytes")
    # The 8 bytes from each start as one little-endian word (unaligned view of a padded copy), then
    # its 7-bit groups packed together and cut to the varint's length.
    pad = np.zeros(buf.size + 8, dtype=np.uint8)
    pad[: buf.size] = buf
    w = np.ndarray((buf.size,), dtype="<u8", buffer=pad, strides=(1,))[starts]
    v = w & np.uint64(0x7F)
    for k in range(1, MAX_VARINT_BYTES):
        v |= (w >> np.uint64(k)) & np.uint64(0x7F << (7 * k))
    v &= (np.uint64(1) << (7 * lens).astype(np.uint64)) - np.uint64(1)
    out[ends - np.cumsum(lens - 1)] = v  # its index: the complete varints before it
    return out


def decode_varints(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every varint in ``buf`` (uint8); returns ``(values, end offsets)``.

    Bytes after the last complete varint are ignored here (``ends`` tells the
    caller how far the complete ones reach); a varint longer than the limit
    raises :class:`DecodeError`.
    """
    if buf.size == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return varint_values(buf), np.flatnonzero(buf < 0x80)
