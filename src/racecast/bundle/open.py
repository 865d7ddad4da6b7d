"""Open a replay bundle by memory mapping: milliseconds, whatever the race length.

Opening reads the manifest and checks structure (format version, every file's
size, every offset index) so a truncated or damaged bundle is refused here,
with a clear :class:`BundleError`, never later in the middle of playback.
:meth:`Bundle.verify` additionally re-hashes the content.
"""

from __future__ import annotations

import json
import mmap
import os
from functools import cached_property
from pathlib import Path
from typing import Any

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
)
from .format import MANIFEST, MAX_MANIFEST_BYTES, BundleError, content_hash
from .manifest import validate_manifest
from .wsframe import binary_header, header_size


class Stream:
    """A sequence of pre-encoded payloads; ``stream[i]`` is a zero-copy memoryview of payload i.

    A pre-framed stream (``framed``) stores each item as a complete WebSocket
    binary frame: :meth:`message` returns it as one zero-copy slice, ready for a
    socket, and ``stream[i]`` the payload inside it.
    """

    __slots__ = ("name", "count", "frames_per_item", "media_type", "info", "framed", "_mv", "_offsets", "_mmap")

    def __init__(self, name: str, info: dict[str, Any], root: Path, sizes: dict[str, int]) -> None:
        self.name = name
        self.info = info
        self.count = int(info["count"])
        self.frames_per_item = int(info.get("frames_per_item", 1))
        self.media_type = str(info.get("media_type", "application/octet-stream"))
        framing = info.get("framing")
        if framing not in (None, "websocket"):
            raise BundleError(f"stream {name!r}: unknown framing {framing!r} (from a newer racecast?)")
        self.framed = framing == "websocket"
        data_size = sizes[info["data"]]
        try:
            offsets = np.load(root / info["index"], mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise BundleError(f"stream {name!r}: offset index unreadable ({e})") from e
        if offsets.dtype != np.uint64 or offsets.shape != (self.count + 1,):
            raise BundleError(f"stream {name!r}: offset index has {offsets.dtype}{offsets.shape}, expected uint64({self.count + 1},)")
        if int(offsets[0]) != 0 or int(offsets[-1]) != data_size:
            raise BundleError(f"stream {name!r}: offsets end at {int(offsets[-1])}, data file holds {data_size} bytes")
        if self.count and np.any(offsets[1:] < offsets[:-1]):
            raise BundleError(f"stream {name!r}: offset index is not monotonic")
        if self.framed and self.count and int(np.min(offsets[1:] - offsets[:-1])) < 2:
            raise BundleError(f"stream {name!r}: an item is too short to hold a WebSocket frame header")
        # Plain Python ints: the hot path indexes this list, not a numpy array.
        self._offsets: list[int] = offsets.tolist()
        if data_size:
            with open(root / info["data"], "rb") as f:
                self._mmap: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._mv = memoryview(self._mmap)
        else:
            self._mmap = None
            self._mv = memoryview(b"")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> memoryview:
        if not 0 <= i < self.count:
            raise IndexError(f"{self.name}[{i}] out of range 0..{self.count - 1}")
        o = self._offsets
        a, b = o[i], o[i + 1]
        if self.framed:
            a += header_size(b - a)
        return self._mv[a:b]

    def message(self, i: int) -> memoryview | bytes:
        """Item ``i`` as a complete WebSocket binary frame: a zero-copy slice when pre-framed."""
        if self.framed:
            if not 0 <= i < self.count:
                raise IndexError(f"{self.name}[{i}] out of range 0..{self.count - 1}")
            o = self._offsets
            return self._mv[o[i] : o[i + 1]]
        payload = self[i]
        return binary_header(len(payload)) + payload

    def span(self, start: int, stop: int) -> memoryview | bytes:
        """Payloads ``start..stop`` back to back: one zero-copy view, or a copy for a pre-framed stream."""
        start = max(0, start)
        stop = min(self.count, stop)
        if stop <= start:
            return memoryview(b"")
        if self.framed:
            return b"".join([self[i] for i in range(start, stop)])
        return self._mv[self._offsets[start] : self._offsets[stop]]

    def close(self) -> None:
        self._mv.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a view is still exported (e.g. in flight); the GC will close it
                pass


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
        self._array_info: dict[str, dict[str, Any]] = arrays
        self._arrays: dict[str, np.ndarray] = {}
        try:
            self.streams: dict[str, Stream] = {n: Stream(n, info, self.path, sizes) for n, info in streams.items()}
        except KeyError as e:
            raise BundleError(f"{self.path}: stream refers to a file not in the manifest ({e})") from e
        if "msgpack" not in self.streams or self.streams["msgpack"].count != self.n_frames:
            raise BundleError(f"{self.path}: the msgpack frame stream is missing or has the wrong length")
        for name in ("t", "leader_lap", *CHANNELS):
            if name not in arrays:
                raise BundleError(f"{self.path}: array {name!r} is missing")

    # -- frames ---------------------------------------------------------------------
    def frame(self, i: int, encoding: str = "msgpack") -> memoryview:
        """Pre-encoded payload of frame ``i``: a zero-copy slice of the mapped file."""
        return self.streams[encoding][i]

    @property
    def duration(self) -> float:
        return float(self.manifest.get("duration", (self.n_frames - 1) / self.fps))

    @property
    def size_bytes(self) -> int:
        return sum(int(v) for v in self.manifest["files"].values()) + (self.path / MANIFEST).stat().st_size

    # -- arrays ---------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """A channel (or ``t`` / ``leader_lap``) as a read-only memory-mapped array."""
        a = self._arrays.get(name)
        if a is None:
            info = self._array_info[name]
            try:
                a = np.load(self.path / info["file"], mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise BundleError(f"{self.path}: array {name!r} unreadable ({e})") from e
            if a.dtype.str != info["dtype"] or list(a.shape) != list(info["shape"]):
                raise BundleError(f"{self.path}: array {name!r} is {a.dtype.str}{a.shape}, manifest says {info['dtype']}{info['shape']}")
            self._arrays[name] = a
        return a

    @cached_property
    def t(self) -> np.ndarray:
        return self.array("t")

    @cached_property
    def leader_lap(self) -> np.ndarray:
        return self.array("leader_lap")

    def frame_at(self, seconds: float) -> int:
        """Frame shown at ``seconds`` since session start (clamped to the replay)."""
        i = int(np.searchsorted(self.t, seconds, side="right")) - 1
        return min(max(i, 0), self.n_frames - 1)

    def frame_of_lap(self, lap: int) -> int:
        """First frame of the leader's lap ``lap`` (clamped)."""
        ll = self.leader_lap
        lap = max(1, min(int(lap), int(ll[-1]) if len(ll) else 1))
        return min(int(np.searchsorted(ll, lap, side="left")), self.n_frames - 1)

    def race(self) -> Race:
        """Rebuild the full :class:`Race` (arrays stay memory-mapped)."""
        m = self.manifest
        return Race(
            fps=self.fps,
            t=self.t,
            drivers=tuple(Driver(**d) for d in m["drivers"]),
            channels={name: self.array(name) for name in CHANNELS},
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

    # -- integrity --------------------------------------------------------------------
    def verify(self) -> None:
        """Re-hash every file against the manifest's content hash; raise :class:`BundleError` on mismatch."""
        expected = self.manifest.get("content_hash")
        actual = content_hash(self.manifest, self.path)
        if actual != expected:
            raise BundleError(f"{self.path}: content hash mismatch (manifest {expected}, files {actual}): the bundle is corrupt")

    def close(self) -> None:
        for s in self.streams.values():
            s.close()
        self._arrays.clear()

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
