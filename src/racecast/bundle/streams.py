"""How each stream of an opened bundle gets its blocks: read from the bundle file, or derived.

* A *stored* stream (every stream of a version 1-2 bundle; ``chunks.gz`` in
  version 3) is a data file plus an offset index. A block is one ``pread`` of
  consecutive items, checked as it is read: a pre-framed item must be exactly
  one binary WebSocket frame of its own length, a chunk must pass its length
  and CRC-32 checks (after decompression when stored compressed).
* A *derived* stream (version 3) is built from the ``chunks`` of the same span:
  ``chunks`` is ``chunks.gz`` decompressed and decoded (so every check a client
  makes is made once, here); ``msgpack`` frames come from the chunks' integers
  through the msgpack frame encoder, ``compact`` frames through the compact
  encoder, ``chunks.br`` / ``chunks.zst`` by compressing the raw chunks. Every
  derived block of frames covers the frames of one block of chunks.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..race import Race
from .blocks import Block, BlockError, Stream, StoredFile, check_framed
from .chunks import ChunkRunError, decode_chunk_run
from .compact import compact_payloads
from .diskcache import DiskBlockCache, bundle_key, disk_cache, manifest_digest
from .format import BundleError
from .msgpack_frames import Weather, msgpack_block, msgpack_framed_block, weather_table
from .quantize import dequantize_columns
from .varint import DecodeError
from .wsframe import binary_header

#: Items per block: frame streams 100 frames (4 s at 25 FPS), chunk streams 4 chunks (the same span).
#: Measured (docs/performance.md): a msgpack block's cost is half fixed overhead at 25 frames, so
#: larger blocks cost less CPU per frame, smaller ones less latency for a seek to an unbuilt block;
#: 100 frames costs ~15 % more per frame than 250 for less than half the wait.
FRAME_BLOCK = 100
CHUNK_BLOCK = 4

Check = Callable[[int, bytes, list[int]], None]


def _decompressor(coding: str) -> Callable[[bytes], bytes] | None:
    """The decompression of an HTTP content coding, or None when its package is not installed."""
    if coding == "gzip":
        return lambda b: zlib.decompress(b, wbits=31)
    if coding == "br":
        try:
            import brotli
        except ImportError:
            return None
        return brotli.decompress
    if coding == "zstd":
        try:
            import zstandard
        except ImportError:
            return None
        d = zstandard.ZstdDecompressor()
        return lambda b: d.decompress(b, max_output_size=4 << 20)
    return None


def compressor(coding: str) -> Callable[[bytes], bytes] | None:
    """The compression racecast uses for ``coding`` (same settings as v2 ingest), or None if unavailable."""
    from .chunks import _compressors

    for _suffix, (c, fn) in _compressors().items():
        if c == coding:
            return fn
    return None


def _check_raw_chunk(name: str, index: int, raw: bytes | memoryview) -> None:
    from .chunks import chunk_length

    try:
        n = chunk_length(raw)
        if n != len(raw):
            raise DecodeError(f"{len(raw) - n} unexpected bytes after the chunk")
        if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise DecodeError("CRC-32 mismatch")
    except DecodeError as e:
        raise BlockError(f"stream {name!r}: chunk {index} is damaged ({e})") from None


def _checker(name: str, info: dict[str, Any], framed: bool) -> Check:
    if framed:
        return lambda first, data, offs: check_framed(name, first, data, offs)
    if str(info.get("media_type", "")).startswith("application/x-racecast-chunk"):
        coding = str(info.get("content_encoding", "identity"))
        unpack = (lambda b: b) if coding == "identity" else _decompressor(coding)
        if unpack is None:
            return lambda first, data, offs: None  # its package is not installed: served as stored

        def check(first: int, data: bytes, offs: list[int]) -> None:
            mv = memoryview(data)
            for j in range(len(offs) - 1):
                try:
                    raw = unpack(mv[offs[j] : offs[j + 1]])  # type: ignore[misc]
                except Exception as e:  # each library has its own error type
                    raise BlockError(f"stream {name!r}: chunk {first + j} does not decompress ({e})") from None
                _check_raw_chunk(name, first + j, raw)

        return check
    return lambda first, data, offs: None


def stored_stream(name: str, info: dict[str, Any], root: Path, sizes: dict[str, int], owner: Any) -> Stream:
    """A stream read from its data file with ``pread``, a block at a time (checked before use)."""
    count = int(info["count"])
    framing = info.get("framing")
    if framing not in (None, "websocket"):
        raise BundleError(f"stream {name!r}: unknown framing {framing!r} (from a newer racecast?)")
    framed = framing == "websocket"
    data_size = sizes[info["data"]]
    if info["index"] not in sizes:
        raise KeyError(info["index"])
    try:
        offsets = np.load(root / info["index"], allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise BundleError(f"stream {name!r}: offset index unreadable ({e})") from e
    if offsets.dtype != np.uint64 or offsets.shape != (count + 1,):
        raise BundleError(f"stream {name!r}: offset index has {offsets.dtype}{offsets.shape}, expected uint64({count + 1},)")
    if int(offsets[0]) != 0 or int(offsets[-1]) != data_size:
        raise BundleError(f"stream {name!r}: offsets end at {int(offsets[-1])}, data file holds {data_size} bytes")
    if count and np.any(offsets[1:] < offsets[:-1]):
        raise BundleError(f"stream {name!r}: offset index is not monotonic")
    if framed and count and int(np.min(offsets[1:] - offsets[:-1])) < 2:
        raise BundleError(f"stream {name!r}: an item is too short to hold a WebSocket frame header")
    o: list[int] = offsets.tolist()  # plain ints: block loads slice this list
    per = FRAME_BLOCK if int(info.get("frames_per_item", 1)) == 1 else CHUNK_BLOCK
    try:
        f = StoredFile(root / info["data"], data_size)
    except OSError as e:
        raise BundleError(f"stream {name!r}: data file unreadable ({e})") from e
    check = _checker(name, info, framed)

    def load(b: int) -> Block:
        i0 = b * per
        i1 = min(count, i0 + per)
        a = o[i0]
        data = f.read(a, o[i1] - a, f"stream {name!r} items {i0}..{i1 - 1}")
        offs = [x - a for x in o[i0 : i1 + 1]]
        check(i0, data, offs)
        return Block(i0, data, offs)

    return Stream(name, info, count, per, load, owner, framed=framed, derived=False, file=f)


class Deriver:
    """Builds the derived streams of a version 3 bundle from its ``chunks.gz``."""

    def __init__(self, bundle: Any, gz: Stream, chunk_frames: int) -> None:
        self.bundle = bundle
        self.gz = gz
        self.chunk_frames = chunk_frames
        self.codes = tuple(d["code"] for d in bundle.drivers)
        self._template: Race | None = None
        self._weather: Weather | None = None
        self.chunks: Stream | None = None
        # msgpack blocks survive the process on disk (diskcache.py), keyed by this bundle's identity.
        self.disk: DiskBlockCache | None = disk_cache()
        self._manifest_digest = manifest_digest(json.dumps(bundle.manifest, sort_keys=True).encode())

    # -- chunks ----------------------------------------------------------------------------
    def chunks_stream(self, info: dict[str, Any]) -> Stream:
        s = Stream("chunks", info, self.gz.count, CHUNK_BLOCK, self._raw_chunks, self.bundle, framed=False, derived=True)
        self.chunks = s
        return s

    def _raw_chunks(self, b: int, cached: bool = True) -> Block:
        """Chunk block ``b`` decompressed and checked; ``cached``: its gzip block through the memory cache."""
        gz, cf, n_frames = self.gz, self.chunk_frames, self.bundle.n_frames
        src = gz.block(b) if cached else gz.load_block(b)
        out: list[bytes] = []
        offs = [0]
        for j in range(len(src)):
            k = src.first + j
            try:
                raw = zlib.decompress(src.mv[src.offsets[j] : src.offsets[j + 1]], wbits=31)
            except zlib.error as e:
                raise BlockError(f"chunk {k} of {self.bundle.path} does not decompress ({e}): the bundle is corrupt") from None
            first, nf = self._header(k, raw)
            want = min(cf, n_frames - k * cf)
            if first != k * cf or nf != want:
                raise BlockError(
                    f"chunk {k} of {self.bundle.path} holds frames {first}+{nf}, expected {k * cf}+{want}:"
                    " the bundle was replaced or is corrupt"
                )
            out.append(raw)
            offs.append(offs[-1] + len(raw))
        return Block(src.first, b"".join(out), offs)

    def _header(self, k: int, raw: bytes) -> tuple[int, int]:
        """Check chunk ``k``'s length and CRC-32; return its first frame and frame count (the full
        decode happens once per derived block, in :meth:`decoded`)."""
        _check_raw_chunk("chunks", k, raw)
        vals, pos = [], 6
        for _ in range(2):  # two varints after the header and the length field
            v = shift = 0
            while True:
                if pos >= len(raw) or shift > 35:
                    raise BlockError(f"chunk {k} of {self.bundle.path} is damaged (bad header)")
                byte = raw[pos]
                pos += 1
                v |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            vals.append(v)
        return vals[0], vals[1]

    def decoded(self, b: int, cached: bool = True) -> tuple[int, dict[str, np.ndarray], list[list[tuple[int, int]]]]:
        """Chunk block ``b`` decoded: (first frame, quantized columns (frames, drivers) plus ``t`` and
        ``leader_lap``, each chunk's weather). ``cached``: its chunks through the memory cache (else
        nothing of it is kept: the background warm)."""
        assert self.chunks is not None
        blk = self.chunks.block(b) if cached else self._raw_chunks(b, cached=False)
        try:
            run = decode_chunk_run([blk.mv[blk.offsets[j] : blk.offsets[j + 1]] for j in range(len(blk))], self.codes)
        except ChunkRunError as e:
            raise BlockError(f"chunk {blk.first + e.index} of {self.bundle.path} is damaged ({e})") from None
        return run.first_frame, run.q, run.weathers

    def compressed_stream(self, name: str, info: dict[str, Any], fn: Callable[[bytes], bytes]) -> Stream:
        def load(b: int) -> Block:
            assert self.chunks is not None
            src = self.chunks.block(b)
            out = [fn(bytes(src.mv[src.offsets[j] : src.offsets[j + 1]])) for j in range(len(src))]
            return _block(src.first, out, framed=False)

        assert self.chunks is not None
        return Stream(name, info, self.chunks.count, CHUNK_BLOCK, load, self.bundle, framed=False, derived=True)

    # -- frames ----------------------------------------------------------------------------
    def frames_stream(self, name: str, info: dict[str, Any]) -> Stream:
        per = CHUNK_BLOCK * self.chunk_frames
        framed = info.get("framing") == "websocket"

        def load(b: int) -> Block:
            if name == "msgpack":
                return self._msgpack_block(b, framed)
            f0, q, weathers = self.decoded(b)
            return _block(f0, self._compact(f0, q, weathers), framed)

        fetch = None
        if name == "msgpack" and self.disk is not None and self.disk.enabled:
            disk, n_frames = self.disk, self.bundle.n_frames

            def fetch(b: int) -> Block:
                """The block from the disk cache when an intact copy of this very bundle's is there, else built
                (and stored)."""
                key = self.disk_key()
                if key is None:
                    return load(b)
                first = b * per
                blk = disk.read(key, name, b, first, min(per, n_frames - first))
                if blk is None:
                    blk = load(b)
                    disk.write(key, name, b, blk)
                return blk

        return Stream(name, info, self.bundle.n_frames, per, load, self.bundle, framed=framed, derived=True,
                      fetch=fetch)  # fmt: skip

    def disk_key(self) -> str | None:
        """This bundle's key in the disk cache now (None when its chunks file is closed)."""
        fd = self.gz.fileno()
        if fd is None:
            return None
        try:
            return bundle_key(self._manifest_digest, fd)
        except OSError:
            return None

    def store_msgpack(self, b: int) -> int:
        """Block ``b`` of the msgpack frames built into the disk cache unless its file is there; the bytes
        built, or 0. Neither memory cache is touched: warming never pushes out what viewers use."""
        key = self.disk_key()
        if self.disk is None or not self.disk.enabled or key is None:
            raise BlockError(f"{self.bundle.path}: no disk cache to build msgpack blocks into")
        if self.disk.path(key, "msgpack", b).exists():
            return 0
        blk = self._msgpack_block(b, self.bundle.streams["msgpack"].framed, cached=False)
        self.disk.write(key, "msgpack", b, blk)
        return len(blk.data)

    def _compact(self, f0: int, q: dict[str, np.ndarray], weathers: list[list[tuple[int, int]]]) -> list[bytes]:
        return compact_payloads(q, f0, self.codes, weathers, self.chunk_frames)

    def template(self) -> Race:
        if self._template is None:
            self._template = dataclasses.replace(self.bundle.race_header(), validate=False)
        return self._template

    def _msgpack_block(self, b: int, framed: bool, cached: bool = True) -> Block:
        """Msgpack block ``b`` built from its chunks (``cached``: read through the memory cache)."""
        f0, q, _ = self.decoded(b, cached)
        n = q["t"].shape[0]
        tpl = self.template()
        if self._weather is None:
            self._weather = weather_table(tpl)  # packed once per bundle, not per block
        # the block's rows only, numbered from f0
        view = dataclasses.replace(tpl, t=tpl.t[f0 : f0 + n], leader_lap=tpl.leader_lap[f0 : f0 + n],
                                   channels=dequantize_columns(q))  # fmt: skip
        if framed:  # frames and headers written in place: no per-frame object, no join
            data, offsets = msgpack_framed_block(view, f0, self._weather)
            return Block(f0, data, offsets)
        return _block(f0, msgpack_block(view, f0, self._weather), False)


def _block(first: int, payloads: list[bytes], framed: bool) -> Block:
    if framed:
        payloads = [p for pl in payloads for p in (binary_header(len(pl)), pl)]
        offs = [0]
        for j in range(0, len(payloads), 2):
            offs.append(offs[-1] + len(payloads[j]) + len(payloads[j + 1]))
    else:
        offs = [0]
        for p in payloads:
            offs.append(offs[-1] + len(p))
    return Block(first, b"".join(payloads), offs)
