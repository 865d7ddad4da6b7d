"""Shared pieces of the compact payloads: header, limits, payload assembly, token reading.

Byte layouts are specified in docs/protocol.md ("Compact encoding", "Chunks").
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .quantize import WEATHER_NAMES, WEATHER_SCALE
from .varint import DecodeError, decode_varints, encode_varints, unzigzag, zigzag

MAGIC = 0xC1  # the one byte msgpack never uses: compact payloads never look like msgpack frames
VERSION = 1
KIND_KEY = 0
KIND_DELTA = 1
KIND_CHUNK = 2
KIND_NAMES = {KIND_KEY: "keyframe", KIND_DELTA: "delta frame", KIND_CHUNK: "chunk"}

#: Limits a decoder enforces before allocating anything (bad input fails fast).
MAX_PAYLOAD_BYTES = 4 << 20
MAX_DRIVERS = 255
MAX_CODE_BYTES = 16
MAX_CHUNK_FRAMES = 1000
MAX_WEATHER_FIELDS = 16


def header(kind: int) -> bytes:
    return bytes((MAGIC, (VERSION << 4) | kind))


def zz(v: Any) -> np.ndarray:
    return zigzag(np.asarray(v, dtype=np.int64))


def assemble(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Join per-item byte parts: each part is (flat bytes, bytes per item); returns the same for the whole."""
    lens = [np.asarray(ln, dtype=np.int64) for _, ln in parts]
    total = np.sum(lens, axis=0)
    off = np.cumsum(total) - total
    out = np.empty(int(total.sum()), dtype=np.uint8)
    before = np.zeros_like(total)
    for (flat, _), ln in zip(parts, lens):
        if flat.size:
            starts = np.cumsum(ln) - ln
            dest = np.repeat(off + before - starts, ln) + np.arange(flat.size)
            out[dest] = flat
        before = before + ln
    return out, total


def const_part(b: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.tile(np.frombuffer(b, dtype=np.uint8), n), np.full(n, len(b), dtype=np.int64)


def token_part(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varints of a (items, tokens) matrix of unsigned values: one part."""
    flat, lens = encode_varints(tokens)
    return flat, lens.reshape(tokens.shape[0], -1).sum(axis=1)


def ragged_part(tokens: np.ndarray, item_of: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Varints of rows of ``tokens`` (rows, k), row r belonging to item ``item_of[r]`` (non-decreasing)."""
    flat, lens = encode_varints(tokens)
    per_row = lens.reshape(tokens.shape[0], -1).sum(axis=1) if tokens.size else np.zeros(0, dtype=np.int64)
    return flat, np.bincount(item_of, weights=per_row, minlength=n_items).astype(np.int64)


def payloads(kind: int, tokens: np.ndarray, *ragged: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Payloads of ``kind``, one per row of ``tokens``: the header, the row's varints, then the rows of
    each ragged part ``(tokens, item_of)`` that belong to it. Returns (flat bytes, bytes per payload)."""
    n = tokens.shape[0]
    return assemble([const_part(header(kind), n), token_part(tokens), *(ragged_part(t, item, n) for t, item in ragged)])


def weather_rows(weather: Sequence[Sequence[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """The weather tokens of each payload as a ragged part: (tokens (rows, 1), payload of each row)."""
    w_tokens = [np.asarray(weather_tokens(w), dtype=np.uint64) for w in weather]
    item = np.repeat(np.arange(len(w_tokens)), [len(t) for t in w_tokens])
    flat = np.concatenate(w_tokens)[:, None] if w_tokens else np.zeros((0, 1), dtype=np.uint64)
    return flat, item


def code_tokens(codes: Sequence[str]) -> list[int]:
    out = [len(codes)]
    for c in codes:
        b = c.encode()
        out.append(len(b))
        out.extend(b)
    return out


def weather_tokens(w: Sequence[tuple[int, int]]) -> list[int]:
    out = [len(w)]
    for fid, v in w:
        out += [fid, int(zz(v))]
    return out


def split(flat: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    data = flat.tobytes()
    out = []
    pos = 0
    for n in lengths.tolist():
        out.append(data[pos : pos + n])
        pos += n
    return out


class Reader:
    """Walks the varints of one payload, checking every count against what is left."""

    def __init__(self, buf: bytes | bytearray | memoryview, offset: int, what: str, skip: int = 2) -> None:
        """Read the varints of the payload at ``offset``, after its first ``skip`` bytes (the header)."""
        self.what = what
        self.start = offset + skip
        arr = np.frombuffer(buf, dtype=np.uint8)
        self.values, self.ends = decode_varints(arr[self.start :])
        self.signed = unzigzag(self.values)  # every value both ways, once: readers slice
        self.i = 0

    def fail(self, msg: str) -> DecodeError:
        return DecodeError(f"{self.what}: {msg}")

    @property
    def left(self) -> int:
        return self.values.size - self.i

    def take(self, n: int) -> np.ndarray:
        if n > self.left:
            raise self.fail("truncated (payload ends before its last value)")
        v = self.values[self.i : self.i + n]
        self.i += n
        return v

    def u(self, limit: int | None = None, name: str = "value") -> int:
        v = int(self.take(1)[0])
        if limit is not None and v > limit:
            raise self.fail(f"{name} {v} is over the limit {limit}")
        return v

    def z(self) -> int:
        self.take(1)
        return int(self.signed[self.i - 1])

    def zs(self, n: int) -> np.ndarray:
        self.take(n)
        return self.signed[self.i - n : self.i]

    def count(self, limit: int, per_item: int, name: str) -> int:
        n = self.u(limit, name)
        if n * per_item > self.left:
            raise self.fail(f"truncated ({name} says {n} but too few values follow)")
        return n

    def codes(self) -> tuple[str, ...]:
        n = self.count(MAX_DRIVERS, 2, "driver count")
        if n == 0:
            raise self.fail("no drivers")
        # Plain ints from here: a code is a handful of values, numpy per value costs more than it saves.
        vals = self.values[self.i : self.i + n * (1 + MAX_CODE_BYTES)].tolist()
        out = []
        pos = 0
        for _ in range(n):
            if pos >= len(vals):
                raise self.fail("truncated (payload ends before its last value)")
            ln = vals[pos]
            if ln > MAX_CODE_BYTES:
                raise self.fail(f"driver code length {ln} is over the limit {MAX_CODE_BYTES}")
            raw = vals[pos + 1 : pos + 1 + ln]
            if len(raw) < ln:
                raise self.fail(f"truncated (driver code length says {ln} but too few values follow)")
            if any(x > 255 for x in raw):
                raise self.fail("driver code byte out of range")
            try:
                out.append(bytes(raw).decode())
            except UnicodeDecodeError:
                raise self.fail("driver code is not UTF-8") from None
            pos += 1 + ln
        self.i += pos
        if len(set(out)) != len(out):
            raise self.fail("driver codes repeat")
        return tuple(out)

    def weather(self) -> list[tuple[int, int]]:
        n = self.count(MAX_WEATHER_FIELDS, 2, "weather field count")
        out = []
        for _ in range(n):
            fid = self.u(255, "weather field id")
            out.append((fid, self.z()))
        return out

    def end(self) -> int:
        """Byte offset just past this payload."""
        return self.start + (int(self.ends[self.i - 1]) + 1 if self.i else 0)


def read_header(buf: bytes | bytearray | memoryview, offset: int) -> int:
    """Check magic and version at ``offset``; return the kind."""
    n = len(buf) - offset
    if n < 2:
        raise DecodeError(f"truncated: {n} bytes where a payload header (2 bytes) was expected")
    b0, b1 = buf[offset], buf[offset + 1]
    if b0 != MAGIC:
        raise DecodeError(f"not a compact payload: first byte 0x{b0:02x}, expected 0x{MAGIC:02x}")
    version, kind = b1 >> 4, b1 & 0x0F
    if version != VERSION:
        raise DecodeError(f"compact payload version {version}, this decoder reads version {VERSION}")
    if kind not in KIND_NAMES:
        raise DecodeError(f"unknown payload kind {kind}")
    return kind


def check_size(buf: bytes | bytearray | memoryview) -> None:
    if len(buf) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"payload of {len(buf)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")


def weather_dict(w: Sequence[tuple[int, int]]) -> dict[str, float]:
    return {WEATHER_NAMES[fid]: v / WEATHER_SCALE for fid, v in w if fid in WEATHER_NAMES}
