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
import threading
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..race import Race
from .compact import frames_dicts
from .quantize import FAST, SLOW, quantize, quantized_weather
from .varint import DecodeError, unzigzag, varint_values
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


# -- decoding a run of chunks in one pass -----------------------------------------------------

@dataclass
class ChunkRun:
    """Consecutive chunks decoded into one set of columns (frames of every chunk, back to back)."""

    first_frame: int  # the first chunk's
    codes: tuple[str, ...]
    q: dict[str, np.ndarray]  # channel -> int64 (frames, drivers); "t" and "leader_lap" -> (frames,)
    weathers: list[list[tuple[int, int]]]  # each chunk's weather, in order


class ChunkRunError(DecodeError):
    """A damaged chunk in a run; :attr:`index` is its position in the run (0 = the first)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def decode_chunk_run(payloads: Sequence[bytes | bytearray | memoryview], codes: Sequence[str] | None = None) -> ChunkRun:
    """Decode consecutive raw chunks into one :class:`ChunkRun`: what :func:`decode_chunk` of each, then
    concatenating their columns, gives, in one numpy pass when the chunks have the same shape (numpy's
    per-call overhead, not the data, is most of a one-chunk decode).

    Every chunk must have the drivers ``codes`` (default: the first chunk's). The first damaged chunk,
    in order, raises :class:`ChunkRunError` naming it, with :func:`decode_chunk`'s message.
    """
    if not payloads:
        raise ValueError("decode_chunk_run needs at least one chunk")
    run = _batched_run(payloads)
    if run is not None and (codes is None or tuple(codes) == run.codes):
        return run
    # Shapes differ (a race's last, shorter chunk), or something is wrong: one chunk at a time, which
    # names the first damaged chunk exactly as decoding it alone would.
    cs: list[Chunk] = []
    for j, p in enumerate(payloads):
        try:
            c = decode_chunk(p)
        except DecodeError as e:
            raise ChunkRunError(j, str(e)) from None
        want = tuple(codes) if codes is not None else cs[0].codes if cs else c.codes
        if c.codes != want:
            raise ChunkRunError(j, f"chunk: has drivers {c.codes}, expected {want}")
        cs.append(c)
    q = {name: np.concatenate([c.q[name] for c in cs]) for name in cs[0].q}
    q["t"] = np.concatenate([c.t for c in cs])
    q["leader_lap"] = np.concatenate([c.lap for c in cs])
    return ChunkRun(cs[0].first_frame, cs[0].codes, q, [c.weather for c in cs])


class _Share(Reader):
    """A :class:`Reader` over one chunk's share of varints decoded together with its neighbours'."""

    def __init__(self, values: np.ndarray) -> None:  # no super().__init__: nothing left to decode
        self.what, self.start, self.i = "chunk", 0, 0
        self.values, self.ends = values, np.zeros(0, dtype=np.int64)

    def z(self) -> int:
        v = int(self.take(1)[0])
        return (v >> 1) ^ -(v & 1)


def _batched_run(payloads: Sequence[bytes | bytearray | memoryview]) -> ChunkRun | None:
    """The run decoded in one pass, or None when its chunks differ in shape or any check fails (the
    caller then decodes chunk by chunk, which says what is wrong). Accepts only what
    :func:`decode_chunk` accepts, checking the same things."""
    bodies = []
    for p in payloads:
        try:
            if len(p) > MAX_PAYLOAD_BYTES or chunk_length(p) != len(p):
                return None
        except DecodeError:
            return None
        mv = memoryview(p)
        if zlib.crc32(mv[:-4]) != int.from_bytes(mv[-4:], "little"):
            return None
        body = mv[6:-4]
        if len(body) == 0 or body[-1] >= 0x80:  # a body ends with a whole varint: none spans two chunks
            return None
        bodies.append(body)
    buf = np.frombuffer(b"".join(bodies), dtype=np.uint8)
    term, stops, at = buf < 0x80, [], 0
    for b in bodies:  # each body's varints end where its bytes do (checked above)
        stops.append((stops[-1] if stops else 0) + int(np.count_nonzero(term[at : at + len(b)])))
        at += len(b)
    try:
        values = varint_values(buf, _scratch(stops[-1], "values").view(np.uint64))
        r = _Share(values[: stops[0]])
        first = r.u()
        nf = r.u(MAX_CHUNK_FRAMES, "frame count")
        codes = r.codes()
    except DecodeError:
        return None
    nd, h = len(codes), r.i  # every chunk of the run must start with the same frame count and drivers
    fixed = nf * (2 + len(FAST) * nd) + len(SLOW) * nd  # t, lap, fast channels, slow bases
    fixed_at, change_at, n_changes, weathers = [], [], [], []
    v0 = 0
    for v1 in stops:
        if nf == 0 or v1 - v0 < h + fixed + 2 or not np.array_equal(values[v0 + 1 : v0 + h], values[1:h]):
            return None
        pos = v0 + h + fixed
        n = int(values[pos])
        if n > nf * nd * len(SLOW) or 4 * n > v1 - pos - 1:
            return None
        fixed_at.append(v0 + h)
        change_at.append(pos + 1)
        n_changes.append(n)
        r = _Share(values[pos + 1 + 4 * n : v1])
        try:
            weathers.append(r.weather())
        except DecodeError:
            return None
        if r.left:
            return None
        v0 = v1
    q = _run_columns(values, fixed_at, change_at, n_changes, nf, nd)
    return None if q is None else ChunkRun(first, codes, q, weathers)


#: Order-2 fast channels as runs of consecutive indices in FAST: (start, stop) slices.
_FAST_ORDER2_RUNS = [(int(r[0]), int(r[-1]) + 1) for r in np.split(np.flatnonzero(_FAST_ORDER2),
                     np.flatnonzero(np.diff(np.flatnonzero(_FAST_ORDER2)) > 1) + 1) if r.size]  # fmt: skip


def _run_columns(values: np.ndarray, fixed_at: list[int], change_at: list[int], n_changes: list[int],
                 nf: int, nd: int) -> dict[str, np.ndarray] | None:  # fmt: skip
    """Columns of chunks of ``nf`` frames and ``nd`` drivers whose fixed sections (t, lap, fast channels,
    slow bases) start at varints ``fixed_at`` and slow changes at ``change_at``; None if a change is bad.

    Large temporaries cost more than the arithmetic here (fresh pages for every block), so the work
    happens in place, in one thread-local scratch area; only the returned columns are new arrays.
    """
    C, S, F = len(fixed_at), len(SLOW), len(FAST)
    L, nfast, nslow = nf * (2 + F * nd) + S * nd, F * nd * nf, S * nf * nd
    ws = _scratch(2 * C * L + C * nfast + C * nslow, "columns")
    z, sign = ws[: C * L].reshape(C, L), ws[C * L : 2 * C * L].reshape(C, L)
    for c, a in enumerate(fixed_at):
        z[c] = values[a : a + L].view(np.int64)  # values < 2**35: the same bits
    np.bitwise_and(z, 1, out=sign)
    z >>= 1
    np.negative(sign, out=sign)
    z ^= sign  # unzigzag
    # delta_decode: order 2 first sums its second differences, then every column sums its steps
    t = np.cumsum(np.cumsum(z[:, 1:nf], axis=1, out=sign[:, 1:nf]), axis=1)
    t += z[:, :1]
    lap = np.cumsum(z[:, nf : 2 * nf], axis=1)
    fz = z[:, 2 * nf : 2 * nf + nfast].reshape(C, F, nd, nf)
    for i0, i1 in _FAST_ORDER2_RUNS:
        np.cumsum(fz[:, i0:i1, :, 1:], axis=-1, out=fz[:, i0:i1, :, 1:])
    fd = ws[2 * C * L : 2 * C * L + C * nfast].reshape(C, F, nd, nf)
    np.cumsum(fz, axis=-1, out=fd)
    q: dict[str, np.ndarray] = {}
    for i, s in enumerate(FAST):
        col = np.empty((C, nf, nd), dtype=np.int64)
        col[...] = fd[:, i].transpose(0, 2, 1)
        q[s.name] = col.reshape(C * nf, nd)
    slow = ws[2 * C * L + C * nfast : 2 * C * L + C * nfast + C * nslow].reshape(S, C, nf, nd)
    slow[...] = z[:, L - S * nd :].reshape(C, S, 1, nd).transpose(1, 0, 2, 3)  # each chunk's first values
    if sum(n_changes) and not _apply_changes(slow, values, change_at, n_changes):
        return None
    q.update({s.name: slow[i].reshape(C * nf, nd).copy() for i, s in enumerate(SLOW)})
    q["t"] = np.concatenate([z[:, :1], t], axis=1).reshape(-1)
    q["leader_lap"] = lap.reshape(-1)
    return q


_local = threading.local()
#: Scratch kept per thread and use (int64 values): a 4-chunk block of 22 drivers needs ~100 k.
_SCRATCH_MAX = 1 << 20


def _scratch(n: int, use: str) -> np.ndarray:
    """``n`` int64 of this thread's scratch area for ``use`` (a fresh array when over :data:`_SCRATCH_MAX`)."""
    if n > _SCRATCH_MAX:
        return np.empty(n, dtype=np.int64)
    ws = getattr(_local, use, None)
    if ws is None or ws.size < n:
        ws = np.empty(max(n, 1 << 15), dtype=np.int64)
        setattr(_local, use, ws)
    return ws[:n]


def _apply_changes(slow: np.ndarray, values: np.ndarray, change_at: list[int], n_changes: list[int]) -> bool:
    """Apply the run's slow changes to ``slow`` (channel, chunk, frame, driver), holding each from its frame
    to the next change of its cell in its chunk or the chunk's end; False if one is out of range or order."""
    S, C, nf, nd = slow.shape
    ch = np.concatenate([values[a : a + 4 * n] for a, n in zip(change_at, n_changes)]).reshape(-1, 4)
    cid = np.repeat(np.arange(C), n_changes)
    j, d = ch[:, 0].astype(np.int64), ch[:, 1].astype(np.int64)
    k = _SLOW_INDEX[np.minimum(ch[:, 2], _SLOW_INDEX.size - 1).astype(np.int64)]
    bad = (k < 0) | (ch[:, 2] >= _SLOW_INDEX.size) | (ch[:, 1] >= nd) | (ch[:, 0] >= nf) | (ch[:, 0] < 1)
    bad[1:] |= (j[1:] < j[:-1]) & (cid[1:] == cid[:-1])  # a chunk's changes come in frame order
    if bad.any():
        return False
    # By cell (channel, chunk, driver) then frame; the input order breaks ties, so of two changes of one
    # cell at one frame the later one holds (as decode_chunk's write-then-carry gives).
    cell = (k * C + cid) * nd + d
    o = np.lexsort((np.arange(cell.size), j, cell))
    cell, j, v = cell[o], j[o], unzigzag(ch[o, 3])
    end = np.full(cell.size, nf, dtype=np.int64)
    same = cell[1:] == cell[:-1]
    end[:-1][same] = j[1:][same]
    lengths = end - j
    total = int(lengths.sum())
    if total:
        # flat index of (channel, chunk, frame, driver) = ((k*C + cid)*nf + frame)*nd + driver
        kc, dd = cell // nd, cell % nd
        start = (kc * nf + j) * nd + dd - (np.cumsum(lengths) - lengths) * nd
        slow.reshape(-1)[np.repeat(start, lengths) + np.arange(total) * nd] = np.repeat(v, lengths)
    return True


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


__all__ = [
    "CHUNK_FRAMES", "Chunk", "ChunkRun", "ChunkRunError", "chunk_encoders", "chunk_length", "decode_chunk",
    "decode_chunk_run", "decode_chunks", "iter_chunks",
]  # fmt: skip
