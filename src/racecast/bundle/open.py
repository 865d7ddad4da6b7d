"""Open a replay bundle: milliseconds, whatever the race length, reading almost nothing.

Opening reads the manifest and checks structure (format version, every file's
size, every offset index) so a truncated or damaged bundle is refused here,
with a clear :class:`BundleError`. Stream items are then read a block at a time
with ``pread`` (or, version 3, derived from the chunks) into a shared, bounded
cache (:mod:`.blocks`), each block checked once as it is built: a file damaged
or truncated after opening fails that block with a :class:`BundleError`, never
the process. :meth:`Bundle.verify` re-hashes the content and checks every block.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..race import (
    CHANNELS,
    Compound,
    Driver,
    PitStop,
    Race,
    RaceControlMessage,
    TrackGeometry,
    TrackStatus,
    TrackStatusPeriod,
    frame_at,
    frame_of_lap,
)
from .blocks import CACHE, Stream
from .diskcache import DiskBlockCache
from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST, MAX_MANIFEST_BYTES, BundleError, content_hash
from .quantize import dequantize_columns
from .streams import Deriver, compressor, stored_stream
from .manifest import validate_manifest


#: Decoded chunk blocks a bundle keeps for :meth:`Bundle.array` on a frame range (~0.37 MB each for
#: 20 cars): a lap of a real race spans ~20 blocks.
RECENT_BLOCKS = 32


#: Small per-frame channels analysis reads whole, one after another (which laps, where a lap starts
#: and ends, lap times): a version 3 bundle decodes them in one pass over the chunks (~24 MB for a
#: 72-lap race, kept) instead of one pass each.
WHOLE_TOGETHER = ("lap", "status", "position", "lap_time")


class Bundle:
    """An opened replay bundle. Read-only, shareable by every viewer in the process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        m = self.manifest
        try:
            self.id: str = m["id"]
            self.title: str = m["title"]
            self.fps: int = int(m["fps"])
            self.n_frames: int = int(m["n_frames"])
            self.drivers: list[dict[str, Any]] = m["drivers"]
            sizes: dict[str, int] = {str(k): int(v) for k, v in m["files"].items()}
            arrays = m["arrays"]
            streams = m["streams"]
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{self.path}: manifest is missing or has a malformed field ({e!r})") from e
        root = self.path.resolve()
        for name, size in sizes.items():
            p = self.path / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise BundleError(f"{self.path}: manifest lists a file outside the bundle: {name!r}")
            if not p.resolve().is_relative_to(root):  # a symlink out of the bundle: never served
                raise BundleError(f"{self.path}: file {name} is a link to outside the bundle")
            try:
                actual = p.stat().st_size
            except FileNotFoundError:
                raise BundleError(f"{self.path}: file {name} is missing") from None
            if actual != size:
                raise BundleError(f"{self.path}: file {name} is {actual} bytes, expected {size} (truncated or damaged)")
        self.format_version: int = int(m["format_version"])
        if not isinstance(arrays, dict) or not isinstance(streams, dict):
            raise BundleError(f"{self.path}: manifest 'arrays' and 'streams' must be objects")
        self._deriver: Deriver | None = None
        self._array_info: dict[str, dict[str, Any]] = arrays
        self._arrays: dict[str, np.ndarray] = {}
        self._recent: OrderedDict[int, tuple[int, dict[str, np.ndarray]]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.streams: dict[str, Stream] = {}
        try:
            self._open_streams(streams, sizes)
        except KeyError as e:
            self.close()
            raise BundleError(f"{self.path}: stream refers to a file or stream not in the manifest ({e})") from e
        except (TypeError, ValueError) as e:
            self.close()
            raise BundleError(f"{self.path}: a stream entry of the manifest is malformed ({e!r})") from e
        except BaseException:
            self.close()
            raise
        if "msgpack" not in self.streams or self.streams["msgpack"].count != self.n_frames:
            self.close()
            raise BundleError(f"{self.path}: the msgpack frame stream is missing or has the wrong length")
        needed = ("t", "leader_lap") if self.format_version >= 3 else ("t", "leader_lap", *CHANNELS)
        for name in needed:
            if name not in arrays:
                self.close()
                raise BundleError(f"{self.path}: array {name!r} is missing")

    def _open_streams(self, streams: dict[str, Any], sizes: dict[str, int]) -> None:
        """Stored streams first, then (version 3) the streams derived from ``chunks.gz``."""
        derived = {}
        for name, info in streams.items():
            if not isinstance(info, dict):
                raise TypeError(f"stream {name!r} is not an object")
            if "derived_from" in info:
                derived[name] = info
            else:
                self.streams[name] = stored_stream(name, info, self.path, sizes, self)
        if not derived:
            return
        gz = self.streams.get("chunks.gz")
        if self.format_version < 3 or gz is None:
            raise BundleError(f"{self.path}: derived streams need format version 3 and a stored chunks.gz stream")
        cf = int(gz.info.get("chunk_frames", gz.frames_per_item))
        if cf != gz.frames_per_item or cf < 1 or gz.count != -(-self.n_frames // cf):
            raise BundleError(f"{self.path}: chunks.gz holds {gz.count} chunks of {cf} frames for {self.n_frames} frames")
        d = self._deriver = Deriver(self, gz, cf)
        if "chunks" not in derived:
            raise BundleError(f"{self.path}: derived streams need the chunks stream")
        self.streams["chunks"] = d.chunks_stream(derived.pop("chunks"))
        for name, info in derived.items():
            src = info["derived_from"]
            if src != "chunks":
                raise BundleError(f"{self.path}: stream {name!r} is derived from {src!r}; this racecast derives only from chunks")
            if name in ("msgpack", "compact"):
                self.streams[name] = d.frames_stream(name, info)
            elif name.startswith("chunks."):
                fn = compressor(str(info.get("content_encoding")))
                if fn is not None:  # br / zstd only when their package is installed here
                    self.streams[name] = d.compressed_stream(name, info, fn)
            else:
                raise BundleError(f"{self.path}: stream {name!r} cannot be derived by this racecast (from a newer one?)")

    def disk_cache(self) -> DiskBlockCache | None:
        """The disk block cache this bundle's msgpack blocks go to (None: it derives nothing, format 1-2,
        or the cache is off)."""
        d = self._deriver
        return d.disk if d is not None and d.disk is not None and d.disk.enabled else None

    def disk_cache_key(self) -> str | None:
        """This bundle's identity in its disk block cache now (``diskcache.bundle_key``); None when it
        has no disk cache or is closed."""
        return self._deriver.disk_key() if self.disk_cache() is not None else None  # type: ignore[union-attr]

    def store_msgpack_block(self, b: int) -> int:
        """Build msgpack block ``b`` into the disk block cache unless it is there (``bundle/warming.py``);
        returns the bytes built, or 0. Format 3 only, with a disk cache."""
        if self._deriver is None:
            raise BundleError(f"{self.path}: format {self.format_version} stores its msgpack frames")
        return self._deriver.store_msgpack(b)

    # -- frames ---------------------------------------------------------------------
    def frame(self, i: int, encoding: str = "msgpack") -> memoryview:
        """Pre-encoded payload of frame ``i``: a zero-copy slice of a cached block."""
        return self.streams[encoding][i]

    @property
    def duration(self) -> float:
        return float(self.manifest.get("duration", (self.n_frames - 1) / self.fps))

    @property
    def size_bytes(self) -> int:
        return sum(int(v) for v in self.manifest["files"].values()) + (self.path / MANIFEST).stat().st_size

    # -- arrays ---------------------------------------------------------------------
    def array(self, name: str, frames: slice | None = None) -> np.ndarray:
        """A channel (or ``t`` / ``leader_lap``) as a read-only array, read whole (never mapped);
        ``frames`` (a slice of frame numbers, step 1) reads only those rows.

        In a version 3 bundle the channels are decoded from the chunks: a whole channel
        reads every chunk once and is kept (analysis asks for it again); a frame range
        decodes only the chunk blocks it covers and is not kept (a lap is ~1 % of a race).
        """
        if frames is not None:
            return self.arrays([name], frames)[name]
        a = self._arrays.get(name)
        if a is not None:
            return a
        info = self._array_info.get(name)
        if info is None:
            if self.format_version >= 3 and name in CHANNELS:
                # one pass over the chunks for the index channels analysis reads together
                group = [n for n in WHOLE_TOGETHER if n != name and n not in self._arrays] if name in WHOLE_TOGETHER else []
                return self._decode_channels([name, *group])[name]
            raise KeyError(name)
        try:
            a = np.load(self.path / info["file"], allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise BundleError(f"{self.path}: array {name!r} unreadable ({e})") from e
        if a.dtype.str != info["dtype"] or list(a.shape) != list(info["shape"]):
            raise BundleError(f"{self.path}: array {name!r} is {a.dtype.str}{a.shape}, manifest says {info['dtype']}{info['shape']}")
        a.setflags(write=False)
        self._arrays[name] = a
        return a

    def arrays(self, names: Sequence[str], frames: slice | None = None) -> dict[str, np.ndarray]:
        """Several channels at once (version 3: one pass over the chunks for all of them), optionally
        only the rows ``frames``; see :meth:`array`."""
        if frames is None:
            missing = [n for n in names if n not in self._arrays and n in CHANNELS and n not in self._array_info]
            if missing and self.format_version >= 3:
                self._decode_channels(missing)
            return {n: self.array(n) for n in names}
        start, stop, step = frames.indices(self.n_frames)
        if step != 1:
            raise ValueError(f"frames must be a slice with step 1, got {frames}")
        stop = max(start, stop)
        out: dict[str, np.ndarray] = {}
        for n in names:
            if n in self._arrays or n in self._array_info or n not in CHANNELS or self.format_version < 3:
                out[n] = self.array(n)[start:stop]
        rest = [n for n in names if n not in out]
        if rest:
            out.update(self._decode_channels(rest, start, stop))
        return {n: out[n] for n in names}

    def _decode_channels(self, names: list[str], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Channels ``names`` of a version 3 bundle over frames ``start..stop``, decoded from the chunk
        blocks that hold them (in bounded memory: a block at a time). The whole race is kept."""
        stop = self.n_frames if stop is None else stop
        nd = len(self.drivers)
        out = {n: np.empty((stop - start, nd), dtype=CHANNELS[n][0]) for n in names}
        chunks = self.streams["chunks"]
        per = chunks.block_items * int(chunks.info["chunk_frames"])  # frames per chunk block
        for b in range(start // per, -(-stop // per)):
            f0, q = self._decoded(b)
            lo, hi = max(start, f0), min(stop, f0 + len(q["t"]))
            if hi <= lo:
                continue
            part = {n: q[n][lo - f0 : hi - f0] for n in names}
            dequantize_columns(part, out, lo - start, names=names)
        for a in out.values():
            a.setflags(write=False)
        if start == 0 and stop == self.n_frames:
            self._arrays.update(out)  # analysis asks for a whole channel again: keep it
        return out

    def _decoded(self, b: int) -> tuple[int, dict[str, np.ndarray]]:
        """Chunk block ``b`` decoded (first frame, quantized columns); the last few are kept, so the
        channels of one lap asked one after another decode its chunks once."""
        with self._recent_lock:  # server threads may ask at once
            hit = self._recent.get(b)
            if hit is not None:
                self._recent.move_to_end(b)
                return hit
        f0, q, _ = self._deriver.decoded(b)  # type: ignore[union-attr]
        with self._recent_lock:
            self._recent[b] = (f0, q)
            while len(self._recent) > RECENT_BLOCKS:
                self._recent.popitem(last=False)
        return f0, q

    @cached_property
    def t(self) -> np.ndarray:
        return self.array("t")

    @cached_property
    def leader_lap(self) -> np.ndarray:
        return self.array("leader_lap")

    def frame_at(self, seconds: float) -> int:
        """Frame shown at ``seconds`` since session start (clamped to the replay)."""
        return frame_at(self.t, seconds)

    def frame_of_lap(self, lap: int) -> int:
        """First frame of the leader's lap ``lap`` (clamped)."""
        return frame_of_lap(self.leader_lap, lap)

    def race_header(self) -> Race:
        """The race without its channels (everything from the manifest plus ``t`` and ``leader_lap``)."""
        m = self.manifest
        return Race(
            fps=self.fps,
            t=self.t,
            drivers=tuple(Driver(**d) for d in m["drivers"]),
            channels={},
            leader_lap=self.leader_lap,
            total_laps=int(m["total_laps"]),
            geometry=TrackGeometry.from_dict(m["geometry"]),
            id=self.id,
            title=self.title,
            event=m.get("event", {}),
            track_status=tuple(
                TrackStatusPeriod(p["start"], p["end"], TrackStatus[p["status"]]) for p in m.get("track_status", [])
            ),
            messages=tuple(RaceControlMessage(**msg) for msg in m.get("messages", [])),
            pit_stops=tuple(
                PitStop(p["driver"], p["lap"], p["t_in"], p["t_out"], Compound[p["compound_in"]], Compound[p["compound_out"]])
                for p in m.get("pit_stops", [])
            ),
            weather={k: np.asarray(v) for k, v in m.get("weather", {}).items()},
            validate=False,
        )

    def race(self) -> Race:
        """Rebuild the full :class:`Race` (every channel read or, version 3, decoded)."""
        if self.format_version >= 3:
            channels = self._decode_channels(list(CHANNELS))
        else:
            channels = {name: self.array(name) for name in CHANNELS}
        return dataclasses.replace(self.race_header(), channels=channels)

    # -- integrity --------------------------------------------------------------------
    def verify(self) -> None:
        """Re-hash every file against the manifest's content hash, then read and check every block
        of every stored stream (and, version 3, decode every chunk); raise :class:`BundleError`."""
        expected = self.manifest.get("content_hash")
        actual = content_hash(self.manifest, self.path)
        if actual != expected:
            raise BundleError(f"{self.path}: content hash mismatch (manifest {expected}, files {actual}): the bundle is corrupt")
        for s in self.streams.values():
            if not s.derived or s.name == "chunks":
                for b in range(-(-s.count // s.block_items)):
                    s.load_block(b)

    def close(self) -> None:
        for s in self.streams.values():
            s.close()
        CACHE.drop(self)
        self._arrays.clear()
        self._recent.clear()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Bundle {self.id!r} {self.n_frames} frames at {self.fps} fps from {self.path}>"


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: no bundle here (not a directory)")
    try:
        size = mpath.stat().st_size
    except FileNotFoundError:
        raise BundleError(f"{path}: not a racecast bundle (no {MANIFEST}); an interrupted write leaves none") from None
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {MANIFEST} is {size} bytes, larger than any bundle writes")
    try:
        m = json.loads(mpath.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: {MANIFEST} is not valid JSON ({e}); the bundle is corrupt") from e
    except RecursionError:
        raise BundleError(f"{path}: {MANIFEST} nests too deeply to be a racecast manifest") from None
    return validate_manifest(m, str(path))


def open_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Open the bundle at ``path``; raise :class:`BundleError` if it is not usable."""
    return Bundle(path)
