"""Write a race into an immutable replay bundle, atomically.

Everything is written into a hidden temporary directory beside the target and
renamed into place at the end, so a crash or a kill mid-write never leaves a
half bundle at the target path: either the old state or the complete bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .. import __version__
from ..race import CHANNELS, Race
from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    BundleError,
    StreamEncoder,
    content_hash,
    item_count,
    validate_id,
)
from .chunks import CHUNK_FRAMES, CHUNK_MEDIA_TYPE, ORDER, _compressors, chunk_encoders, delta_code, iter_chunk_blocks
from .compact import COMPACT_MEDIA_TYPE, KEY_INTERVAL, iter_compact_frames
from .msgpack_frames import iter_msgpack_frames
from .quantize import QUANTS
from .varint import encode_varints
from .wire import zz
from .wsframe import binary_header

Progress = Callable[[float], None]


def default_encoders() -> list[StreamEncoder]:
    """The streams every bundle carries (the seed-compatible msgpack frames first).

    ``compact``: one compact payload per frame (a keyframe every ``keyframe_interval``
    frames); ``chunks``: one second per item, raw, plus ``chunks.gz`` / ``.br`` /
    ``.zst`` pre-compressed (br and zstd only when their packages are installed).
    Frame streams are stored pre-framed for WebSocket (the server's send is one
    slice); chunk streams raw (HTTP serves byte ranges of them).
    """
    return [
        StreamEncoder("msgpack", iter_msgpack_frames, 1, "application/msgpack", framing="websocket"),
        StreamEncoder(
            "compact", iter_compact_frames, 1, COMPACT_MEDIA_TYPE, {"keyframe_interval": KEY_INTERVAL}, framing="websocket"
        ),
        *chunk_encoders(),
    ]


def race_metadata(race: Race) -> dict[str, Any]:
    """The small, JSON-able part of a race: everything but the per-frame arrays."""
    laps = race.channels["lap"]
    return {
        "id": race.id,
        "title": race.title,
        "event": dict(race.event),
        "fps": race.fps,
        "n_frames": race.n_frames,
        "t0": float(race.t[0]),
        "duration": race.duration,
        "total_laps": int(race.total_laps),
        "laps_completed": int(laps.max()) if laps.size else 0,
        "drivers": [d.to_dict() for d in race.drivers],
        "geometry": race.geometry.to_dict(),
        "track_status": [p.to_dict() for p in race.track_status],
        "messages": [m.to_dict() for m in race.messages],
        "pit_stops": [p.to_dict() for p in race.pit_stops],
        "weather": {k: [round(float(x), 3) for x in v] for k, v in race.weather.items()},
    }


def _fsync_write(path: Path, chunks: Iterable[bytes]) -> int:
    n = 0
    with open(path, "wb") as f:
        for c in chunks:
            f.write(c)
            n += len(c)
        f.flush()
        os.fsync(f.fileno())
    return n


def _save_array(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(a), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_stream(root: Path, enc: StreamEncoder, race: Race, progress: Progress) -> dict[str, Any]:
    expected = item_count(race.n_frames, enc.frames_per_item)
    offsets = np.zeros(expected + 1, dtype=np.uint64)
    data_name = f"streams/{enc.name}.bin"
    index_name = f"streams/{enc.name}.idx.npy"
    n = 0
    pos = 0
    step = max(1, expected // 100)
    with open(root / data_name, "wb") as f:
        framed = enc.framing == "websocket"
        for payload in enc.encode(race):
            if n >= expected:
                raise BundleError(f"encoder {enc.name!r} produced more than {expected} items")
            if framed:
                header = binary_header(len(payload))
                f.write(header)
                pos += len(header)
            f.write(payload)
            pos += len(payload)
            n += 1
            offsets[n] = pos
            if n % step == 0:
                progress(n / expected)
        f.flush()
        os.fsync(f.fileno())
    if n != expected:
        raise BundleError(f"encoder {enc.name!r} produced {n} items, expected {expected}")
    _save_array(root / index_name, offsets)
    progress(1.0)
    info: dict[str, Any] = {
        "data": data_name,
        "index": index_name,
        "count": expected,
        "frames_per_item": enc.frames_per_item,
        "media_type": enc.media_type,
        "bytes": pos,
    }
    if enc.framing is not None:
        info["framing"] = enc.framing
    if enc.extra:
        info.update(enc.extra)
    return info


def write_bundle(
    race: Race,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    encoders: Sequence[StreamEncoder] | None = None,
    progress: Progress | None = None,
    format_version: int = FORMAT_VERSION,
) -> Path:
    """Write ``race`` as a bundle at ``path`` (a directory that must not exist unless ``overwrite``).

    ``progress(fraction)`` is called as the work advances. Returns the final path.
    Version 3 (the default) stores the gzip chunks and derives every other stream
    when served (:mod:`.streams`); ``format_version=2`` (or explicit ``encoders``)
    writes every stream pre-encoded, as racecast did before (kept for comparison
    benchmarks and tests of the upgrade path).
    """
    path = Path(path).absolute()
    validate_id(race.id)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (bundles are immutable; pass overwrite to replace it)")
    if format_version not in (2, 3):
        raise ValueError(f"can only write bundle format version 2 or 3, not {format_version}")
    path.parent.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda _f: None)
    if encoders is None and format_version == 3:
        return _commit(path, race, lambda tmp: _write_v3(tmp, race, report), report)
    encoders = list(default_encoders() if encoders is None else encoders)
    return _commit(path, race, lambda tmp: _write_v2(tmp, race, encoders, report), report)


def _write_v2(tmp: Path, race: Race, encoders: list[StreamEncoder], report: Progress) -> dict[str, Any]:
    # Progress weights: all arrays count as one stream's worth of work, each stream by its size.
    weights = [len(CHANNELS) + 2] + [max(1, item_count(race.n_frames, e.frames_per_item) // 1000) for e in encoders]
    n_steps = sum(weights)
    (tmp / "arrays").mkdir()
    (tmp / "streams").mkdir()
    arrays: dict[str, Any] = {}
    columns = {"t": race.t, "leader_lap": race.leader_lap, **race.channels}
    for k, (name, a) in enumerate(columns.items()):
        rel = f"arrays/{name}.npy"
        _save_array(tmp / rel, a)
        arrays[name] = {"file": rel, "dtype": a.dtype.str, "shape": list(a.shape)}
        report(k / n_steps)
    done = weights[0]
    streams: dict[str, Any] = {}
    for enc, w in zip(encoders, weights[1:]):
        base = done
        streams[enc.name] = _write_stream(tmp, enc, race, lambda f, base=base, w=w: report((base + f * w) / n_steps))
        done += w
    return {"format_version": 2, "arrays": arrays, "streams": streams}


def _write_v3(tmp: Path, race: Race, report: Progress) -> dict[str, Any]:
    """The version 3 layout: ``t`` and ``leader_lap``, the gzip chunks, and the recipes of the derived streams.

    Encodes a block of chunks at a time (quantize, chunk, gzip, write), so memory
    stays bounded by a block whatever the race length.
    """
    (tmp / "arrays").mkdir()
    (tmp / "streams").mkdir()
    arrays: dict[str, Any] = {}
    for name, a in (("t", race.t), ("leader_lap", race.leader_lap)):
        rel = f"arrays/{name}.npy"
        _save_array(tmp / rel, a)
        arrays[name] = {"file": rel, "dtype": a.dtype.str, "shape": list(a.shape)}
    cf = CHUNK_FRAMES
    n_chunks = item_count(race.n_frames, cf)
    offsets = np.zeros(n_chunks + 1, dtype=np.uint64)
    stats = ChannelStats()
    gz = _compressors()["gz"][1]
    k = pos = raw_bytes = 0
    data_name, index_name = "streams/chunks.gz.bin", "streams/chunks.gz.idx.npy"
    with open(tmp / data_name, "wb") as f:
        for f0, q, chunks in iter_chunk_blocks(race, cf):
            stats.add(q)
            for c in chunks:
                z = gz(c)
                f.write(z)
                pos += len(z)
                raw_bytes += len(c)
                k += 1
                offsets[k] = pos
            report(0.95 * min(1.0, (f0 + len(q["t"])) / max(1, race.n_frames)))
        f.flush()
        os.fsync(f.fileno())
    if k != n_chunks:
        raise BundleError(f"chunk encoder produced {k} chunks, expected {n_chunks}")
    _save_array(tmp / index_name, offsets)
    chunk_info = {"frames_per_item": cf, "media_type": CHUNK_MEDIA_TYPE, "chunk_frames": cf, "count": n_chunks}
    derived = {"derived_from": "chunks"}
    streams: dict[str, Any] = {
        "msgpack": {**derived, "count": race.n_frames, "frames_per_item": 1, "media_type": "application/msgpack",
                    "framing": "websocket"},
        "compact": {**derived, "count": race.n_frames, "frames_per_item": 1, "media_type": COMPACT_MEDIA_TYPE,
                    "framing": "websocket", "keyframe_interval": cf},
        "chunks": {**chunk_info, "derived_from": "chunks.gz", "content_encoding": "identity", "bytes_raw": raw_bytes},
        "chunks.gz": {**chunk_info, "content_encoding": "gzip", "data": data_name, "index": index_name, "bytes": pos},
        "chunks.br": {**chunk_info, **derived, "content_encoding": "br"},
        "chunks.zst": {**chunk_info, **derived, "content_encoding": "zstd"},
    }  # fmt: skip
    return {"format_version": 3, "arrays": arrays, "streams": streams, "channels": stats.result()}


class ChannelStats:
    """Where the bytes go, per channel: its delta-coded varints alone over the whole race, and gzipped.

    Fast channels are coded as in the chunks (first differences, or second for
    positions and distances, per driver); slow ones as change events (frame gap,
    change). Block by block, so it costs no memory.
    """

    def __init__(self) -> None:
        self._z = {q.name: zlib.compressobj(6) for q in QUANTS}
        self._raw = {q.name: 0 for q in QUANTS}
        self._gz = {q.name: 0 for q in QUANTS}

    def _feed(self, name: str, tokens: np.ndarray) -> None:
        flat, _ = encode_varints(tokens.ravel())
        b = flat.tobytes()
        self._raw[name] += len(b)
        self._gz[name] += len(self._z[name].compress(b))

    def add(self, q: dict[str, np.ndarray]) -> None:
        for spec in QUANTS:
            v = q[spec.name].T  # driver-major
            if spec.fast:
                self._feed(spec.name, zz(delta_code(v, ORDER.get(spec.name, 1))))
            else:
                d, f = np.nonzero(np.diff(v, axis=1, prepend=v[:, :1] - 1))
                gaps = np.diff(f, prepend=0)
                self._feed(spec.name, np.stack([zz(gaps), zz(v[d, f])], axis=1))

    def result(self) -> dict[str, dict[str, int]]:
        for name, z in self._z.items():
            self._gz[name] += len(z.flush())
        return {q.name: {"varint_bytes": self._raw[q.name], "gzip_bytes": self._gz[q.name]} for q in QUANTS}


def _commit(path: Path, race: Race, write: Callable[[Path], dict[str, Any]], report: Progress) -> Path:
    """Run ``write(tmp)`` in a hidden temporary directory, add the manifest, and rename it to ``path``."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        layout = write(tmp)
        files = {
            str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": layout.pop("format_version"),
            **race_metadata(race),
            **layout,
            "files": files,
            "created_by": f"racecast {__version__}",
        }
        manifest["content_hash"] = content_hash(manifest, tmp)
        _fsync_write(tmp / MANIFEST, [json.dumps(manifest, indent=1, allow_nan=False).encode()])
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report(1.0)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
