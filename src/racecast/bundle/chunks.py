"""Chunks: one second of race (25 frames) per payload, columnar and delta-coded, self-contained.

Chunk ``c`` holds frames ``c*F .. c*F+F-1`` (F = :data:`CHUNK_FRAMES`; the last
chunk may be shorter). Each fast channel is a column per driver, coded as the
first value, then first differences (order 1) or differences of differences
(order 2, for positions and distances); each slow channel is its value at the
first frame plus a list of changes; a CRC-32 ends the chunk, so a damaged
cached copy is refused rather than shown. The integers are varints, so the raw chunk
is already small and compresses well; the bundle also stores it pre-compressed
(gzip always, brotli and zstd when those packages are installed) so HTTP can
serve the variant a client accepts without compressing anything.

Layout: docs/protocol.md, "Chunks".
"""

from __future__ import annotations

import gzip
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..race import Race
from .compact import frames_dicts
from .quantize import FAST, SLOW, quantize, quantized_weather
from .varint import DecodeError, unzigzag
from .wire import (
    KIND_CHUNK, KIND_NAMES, MAX_CHUNK_FRAMES, MAX_PAYLOAD_BYTES, Reader, check_size,
    code_tokens, payloads, read_header, split, weather_rows, zz,
)  # fmt: skip

CHUNK_FRAMES = 25
CHUNK_MEDIA_TYPE = "application/x-racecast-chunk"
#: Delta order of each fast channel's column (smooth positions take two).
ORDER: dict[str, int] = {"x": 2, "y": 2, "dist": 2, "rel_dist": 2, "race_progress": 2}
T_ORDER = 2
LAP_ORDER = 1


def delta_code(v: np.ndarray, order: int, axis: int = -1) -> np.ndarray:
    """First value, first difference, then (order 2) differences of differences along ``axis``."""
    v = np.moveaxis(np.asarray(v, dtype=np.int64), axis, -1)
    c = v.copy()
    if v.shape[-1] > 1:
        d = np.diff(v, axis=-1)
        c[..., 1:] = d
        if order == 2 and v.shape[-1] > 2:
            c[..., 2:] = np.diff(d, axis=-1)
    return np.moveaxis(c, -1, axis)


def delta_decode(c: np.ndarray, order: int, axis: int = -1) -> np.ndarray:
    c = np.moveaxis(np.asarray(c, dtype=np.int64), axis, -1)
    v = c.copy()
    if c.shape[-1] > 1:
        steps = c[..., 1:]
        if order == 2:
            steps = np.cumsum(steps, axis=-1)
        v[..., 1:] = c[..., :1] + np.cumsum(steps, axis=-1)
    return np.moveaxis(v, -1, axis)


# -- encoding --------------------------------------------------------------------------------


def _chunk_block(q: dict[str, np.ndarray], first: np.ndarray, nf: int, codes: list[str],
                 weather: list[list[tuple[int, int]]], base: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Bytes of the chunks starting at frames ``first`` (each ``nf`` frames long): (flat, lengths).

    Row 0 of the arrays in ``q`` is frame ``base``.
    """
    C = first.size
    rows = (first - base)[:, None] + np.arange(nf)[None, :]  # (C, F)
    cols = [first[:, None].astype(np.uint64), np.full((C, 1), nf, dtype=np.uint64)]
    cols.append(np.broadcast_to(np.asarray(code_tokens(codes), dtype=np.uint64), (C, len(code_tokens(codes)))))
    cols.append(zz(delta_code(q["t"][rows], T_ORDER)))
    cols.append(zz(delta_code(q["leader_lap"][rows], LAP_ORDER)))
    for s in FAST:
        v = q[s.name][rows]  # (C, F, D)
        c = delta_code(v, ORDER.get(s.name, 1), axis=1)
        cols.append(zz(np.swapaxes(c, 1, 2)).reshape(C, -1))  # driver-major within the channel
    slow = np.stack([q[s.name][rows] for s in SLOW], axis=2)  # (C, F, S, D)
    cols.append(zz(slow[:, 0].reshape(C, -1)))
    ch, j, si, di = np.nonzero(slow[:, 1:] != slow[:, :-1])
    ids = np.array([s.id for s in SLOW], dtype=np.uint64)
    changes = np.stack([(j + 1).astype(np.uint64), di.astype(np.uint64), ids[si], zz(slow[ch, j + 1, si, di])], axis=1)
    cols.append(np.bincount(ch, minlength=C).astype(np.uint64)[:, None])
    return payloads(KIND_CHUNK, np.concatenate(cols, axis=1), (changes, ch), weather_rows(weather))


def _seal(c: bytes) -> bytes:
    """Insert the chunk's total length after the header and append the CRC-32 of everything before it."""
    body = c[:2] + (len(c) + 8).to_bytes(4, "little") + c[2:]
    return body + zlib.crc32(body).to_bytes(4, "little")


#: Chunks encoded at a time: ingest memory stays bounded by a block, not the race.
BLOCK_CHUNKS = 64


def iter_chunk_blocks(race: Race, chunk_frames: int = CHUNK_FRAMES,
                      block_chunks: int = BLOCK_CHUNKS) -> Iterator[tuple[int, dict[str, np.ndarray], list[bytes]]]:  # fmt: skip
    """Per block of chunks: (first frame, its quantized columns, its sealed raw chunks), in order."""
    n = race.n_frames
    firsts = np.arange(0, n, chunk_frames)
    weather = quantized_weather(race, race.t[firsts])
    for c0 in range(0, firsts.size, block_chunks):
        c1 = min(c0 + block_chunks, firsts.size)
        f0 = int(firsts[c0])
        f1 = min(n, int(firsts[c1 - 1]) + chunk_frames)
        q = quantize(race, f0, f1)
        full = [c for c in range(c0, c1) if int(firsts[c]) + chunk_frames <= n]
        out: list[bytes] = []
        if full:
            out += split(*_chunk_block(q, firsts[full[0] : full[-1] + 1], chunk_frames, race.codes,
                                       weather[full[0] : full[-1] + 1], f0))  # fmt: skip
        if len(full) < c1 - c0:  # the race's last, shorter chunk
            last = c1 - 1
            out += split(*_chunk_block(q, firsts[last : last + 1], n - int(firsts[last]), race.codes,
                                       weather[last : last + 1], f0))  # fmt: skip
        yield f0, q, [_seal(c) for c in out]


def iter_chunks(race: Race, chunk_frames: int = CHUNK_FRAMES) -> Iterator[bytes]:
    """Yield every raw chunk of ``race`` in order."""
    for _f0, _q, chunks in iter_chunk_blocks(race, chunk_frames):
        yield from chunks


_cache: "weakref.WeakKeyDictionary[Race, tuple[int, list[bytes]]]" = weakref.WeakKeyDictionary()


def _raw_chunks(race: Race, chunk_frames: int) -> list[bytes]:
    """Raw chunks, computed once per race object (the compressed variants of a v2 bundle reuse them)."""
    hit = _cache.get(race)
    if hit is not None and hit[0] == chunk_frames:
        return hit[1]
    out = list(iter_chunks(race, chunk_frames))
    _cache[race] = (chunk_frames, out)
    return out


def _compressors() -> dict[str, tuple[str, Callable[[bytes], bytes]]]:
    """Available pre-compressions: stream suffix -> (HTTP content coding, function)."""
    out: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
        # Level 6: level 9 saves 0.1 % for 1.4x the time.
        "gz": ("gzip", lambda b: gzip.compress(b, compresslevel=6, mtime=0)),
    }
    try:
        import brotli

        # Quality 5, 64 KiB window: quality 9 saves 0.6 % for 4x the time, 11 saves 6 % for 40x.
        out["br"] = ("br", lambda b: brotli.compress(b, quality=5, lgwin=16))
    except ImportError:  # optional extra
        pass
    try:
        import zstandard

        # Level 12: level 19 saves 1 % for 2.5x the time; level 9 costs 4 % for half.
        z = zstandard.ZstdCompressor(level=12)
        out["zst"] = ("zstd", z.compress)
    except ImportError:  # optional extra
        pass
    return out


def chunk_encoders(chunk_frames: int = CHUNK_FRAMES) -> list[Any]:
    """Bundle streams for chunks: ``chunks`` (raw) and one per available compression."""
    from .format import StreamEncoder

    extra = {"chunk_frames": chunk_frames, "content_encoding": "identity"}
    encs = [StreamEncoder("chunks", lambda r: iter(_raw_chunks(r, chunk_frames)), chunk_frames,
                          CHUNK_MEDIA_TYPE, extra)]  # fmt: skip
    for suffix, (coding, fn) in _compressors().items():
        encs.append(StreamEncoder(
            f"chunks.{suffix}", lambda r, fn=fn: (fn(c) for c in _raw_chunks(r, chunk_frames)), chunk_frames,
            CHUNK_MEDIA_TYPE, {"chunk_frames": chunk_frames, "content_encoding": coding},
        ))  # fmt: skip
    return encs


# -- decoding --------------------------------------------------------------------------------


@dataclass
class Chunk:
    """A decoded chunk in quantized integers: columns shaped (frames, drivers)."""

    first_frame: int
    codes: tuple[str, ...]
    t: np.ndarray  # (F,) ms
    lap: np.ndarray  # (F,) leader's lap
    q: dict[str, np.ndarray]  # channel -> int64 (F, D)
    weather: list[tuple[int, int]]

    @property
    def n_frames(self) -> int:
        return int(self.t.shape[0])

    def frames(self) -> list[dict[str, Any]]:
        """Each frame as the msgpack frames show it (weather on the first, like once a second)."""
        return frames_dicts(self.first_frame, self.t.tolist(), self.lap.tolist(), self.codes, self.q, self.weather)


def chunk_length(buf: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Total byte length of the chunk at ``offset`` (from its header), checked against what is there."""
    kind = read_header(buf, offset)
    if kind != KIND_CHUNK:
        raise DecodeError(f"expected a chunk, got a {KIND_NAMES[kind]}")
    if len(buf) - offset < 6:
        raise DecodeError(f"chunk: truncated ({len(buf) - offset} bytes)")
    n = int.from_bytes(buf[offset + 2 : offset + 6], "little")
    if n < 12 or n > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"chunk: length field {n} is not valid")
    if n > len(buf) - offset:
        raise DecodeError(f"chunk: truncated ({len(buf) - offset} of {n} bytes)")
    return n


def decode_chunk(payload: bytes | bytearray | memoryview) -> Chunk:
    """Decode one raw (uncompressed) chunk; bad input raises :class:`DecodeError`, quickly."""
    check_size(payload)
    n = chunk_length(payload)
    if n != len(payload):
        raise DecodeError(f"chunk: {len(payload) - n} unexpected bytes after the chunk")
    body = memoryview(payload)[:-4]
    if zlib.crc32(body) != int.from_bytes(payload[-4:], "little"):
        raise DecodeError("chunk: CRC-32 mismatch (truncated or corrupted)")
    r = Reader(body, 0, "chunk", skip=6)  # varints start after the header and the length field
    first = r.u()
    nf = r.u(MAX_CHUNK_FRAMES, "frame count")
    if nf == 0:
        raise r.fail("no frames")
    codes = r.codes()
    nd = len(codes)
    if r.left < nf * (2 + len(FAST) * nd) + len(SLOW) * nd + 2:
        raise r.fail("truncated (too few values for its frames and drivers)")
    t = delta_decode(r.zs(nf), T_ORDER)
    lap = delta_decode(r.zs(nf), LAP_ORDER)
    # Every fast channel at once: (channel, driver, frame) columns, one cumulative sum per order.
    fast = _delta_decode_fast(r.zs(len(FAST) * nd * nf).reshape(len(FAST), nd, nf)).transpose(0, 2, 1)
    q: dict[str, np.ndarray] = {s.name: fast[k] for k, s in enumerate(FAST)}  # (F, D) views
    S = len(SLOW)
    base = r.zs(S * nd).reshape(S, nd)
    n_changes = r.count(nf * nd * S, 4, "change count")
    ch = r.take(4 * n_changes).reshape(-1, 4)
    slow = np.repeat(base[:, None, :], nf, axis=1)  # (channel, frame, driver)
    if n_changes:
        j, d = ch[:, 0].astype(np.int64), ch[:, 1].astype(np.int64)
        k = _SLOW_INDEX[np.minimum(ch[:, 2], _SLOW_INDEX.size - 1).astype(np.int64)]
        bad = (k < 0) | (ch[:, 2] >= _SLOW_INDEX.size) | (ch[:, 1] >= nd) | (ch[:, 0] >= nf) | (ch[:, 0] < 1)
        bad[1:] |= j[1:] < j[:-1]  # changes come in frame order
        if bad.any():
            e = int(np.argmax(bad))
            raise r.fail(f"change at frame {int(ch[e, 0])} for driver {int(ch[e, 1])}, channel {int(ch[e, 2])}"
                         " is out of range or out of order")  # fmt: skip
        v = unzigzag(ch[:, 3])
        # A change holds from its frame on: write each at its frame, then carry the last written
        # value forward (later changes of the same cell win, as they come in frame order).
        mark = np.zeros(slow.shape, dtype=bool)
        slow[k, j, d] = v
        mark[k, j, d] = True
        mark[:, 0, :] = True
        src = np.where(mark, np.arange(nf)[None, :, None], 0)
        np.maximum.accumulate(src, axis=1, out=src)
        slow = np.take_along_axis(slow, src, axis=1)
    weather = r.weather()
    if r.end() != len(body):
        raise r.fail(f"{len(body) - r.end()} unexpected bytes after its last value")
    q.update({s.name: slow[k] for k, s in enumerate(SLOW)})
    return Chunk(first, codes, t, lap, q, weather)


#: Row of each slow channel id in a decoded chunk's slow block (-1: no such channel).
_SLOW_INDEX = np.full(max(s.id for s in SLOW) + 1, -1, dtype=np.int64)
_SLOW_INDEX[[s.id for s in SLOW]] = np.arange(len(SLOW))
#: Whether each fast channel is delta-coded to order 2.
_FAST_ORDER2 = np.array([ORDER.get(s.name, 1) == 2 for s in FAST])


def _delta_decode_fast(c: np.ndarray) -> np.ndarray:
    """:func:`delta_decode` along the last axis of (channel, driver, frame) columns, every channel at once."""
    v = c.astype(np.int64)  # a copy
    if c.shape[-1] > 1:
        steps = v[..., 1:].copy()
        if c.shape[-1] > 2 and _FAST_ORDER2.any():
            steps[_FAST_ORDER2] = np.cumsum(steps[_FAST_ORDER2], axis=-1)
        np.cumsum(steps, axis=-1, out=steps)
        v[..., 1:] = v[..., :1] + steps
    return v


def decode_chunks(buf: bytes | bytearray | memoryview) -> list[Chunk]:
    """Decode raw chunks back to back (a ``?from=K&count=M`` response body)."""
    out = []
    pos = 0
    mv = memoryview(buf)
    while pos < len(mv):
        n = chunk_length(mv, pos)
        out.append(decode_chunk(mv[pos : pos + n]))
        pos += n
    return out


__all__ = ["CHUNK_FRAMES", "Chunk", "chunk_encoders", "chunk_length", "decode_chunk", "decode_chunks", "iter_chunks"]
