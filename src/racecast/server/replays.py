"""Replays as the server sees them: opened once per process, described once, shared by every viewer.

A :class:`Replay` holds the mapped bundle, the seek bounds and the metadata
document already serialized (plain and gzipped, with its strong ETag), so a
connecting viewer or a metadata request costs no serialization at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.compare import seed_quali_segments
from ..bundle import Bundle, BundleError, DataDir, summary, validate_id, warming
from ..bundle.blocks import CACHE
from ..bundle.format import MANIFEST
from ..errors import BadRequest, NotFound
from ..protocol import Bounds

log = logging.getLogger("racecast.server")


class InvalidId(BadRequest, ValueError):
    """An id that could not name a bundle (looks like a path, bad characters...)."""

    kind = "invalid_id"


class UnknownReplay(NotFound, KeyError):
    """No bundle with that id in the data directory."""

    kind = "unknown_replay"

    def __init__(self, replay_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no replay {replay_id!r} on this server")
        self.replay_id = replay_id


def sector_of_points(geometry: dict[str, Any]) -> list[int]:
    """Sector number (1, 2, 3...) of every centre-line point, from the sector start distances."""
    x = np.asarray(geometry.get("centerline_x", []), dtype=np.float64)
    y = np.asarray(geometry.get("centerline_y", []), dtype=np.float64)
    if x.size == 0:
        return []
    d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    bounds = np.sort(np.asarray(geometry.get("sectors", []), dtype=np.float64))
    return (np.searchsorted(bounds, d, side="right") + 1).astype(int).tolist()


def _rgb(color: str) -> list[int]:
    c = color.lstrip("#")
    return [int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)]


#: Track coordinates in the seed's units (FastF1's 1/10 m) per metre of the race model.
SEED_POSITION_SCALE = 10.0
_SEED_GEOMETRY_XY = ("centerline_x", "centerline_y", "inner_x", "inner_y", "outer_x", "outer_y")


def seed_track_geometry(geo: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``track_geometry``: the outlines and bounds in 1/10 m (the frames' x/y units), ``sector`` per point."""
    k = SEED_POSITION_SCALE
    out: dict[str, Any] = {name: [round(float(v) * k, 1) for v in geo.get(name, [])] for name in _SEED_GEOMETRY_XY}
    for name in ("x_min", "x_max", "y_min", "y_max"):
        out[name] = float(geo.get(name, 0.0)) * k
    out["sector"] = list(geo.get("sector", []))
    return out


def seed_track_statuses(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed's ``track_statuses``: FastF1's status code as a string ("4" is the safety car), start and end
    on the frames' ``t`` axis (s)."""
    return [{"status": str(p.get("code", "")), "start_time": p.get("start"), "end_time": p.get("end")} for p in periods]


def race_start_time(b: Bundle) -> float | None:
    """When the leader starts lap 1 (lights out), on the frames' ``t`` axis; None if never."""
    leader = b.leader_lap
    started = np.flatnonzero(np.asarray(leader) >= 1)
    return float(b.t[started[0]]) if started.size else None


def build_metadata(b: Bundle) -> dict[str, Any]:
    """The replay description clients draw from: the seed's keys in the seed's shapes
    (``track_geometry`` in 1/10 m, ``track_statuses`` with string codes) plus racecast's own
    (``geometry`` in metres, ``track_status`` periods), which racecast's viewer prefers."""
    m = b.manifest
    ev = dict(m.get("event", {}))
    drivers = list(m["drivers"])
    geo = dict(m["geometry"])
    geo["sector"] = sector_of_points(geo)
    periods = list(m.get("track_status", []))
    leader = b.leader_lap
    extra: dict[str, Any] = {}
    if str(ev.get("session_type", "")).upper() in ("Q", "SQ"):
        # The seed's QUALI view waits for these; built from the race model (docs/protocol.md).
        segments = (ev.get("qualifying") or {}).get("segments")
        extra["quali_segments"] = seed_quali_segments(b, [d["code"] for d in drivers], segments)
    return {
        "id": b.id,
        "title": b.title,
        "year": ev.get("year"),
        "round": ev.get("round"),
        "session_type": ev.get("session_type"),
        "event": ev,
        "total_frames": b.n_frames,
        "fps": b.fps,
        "t0": float(m.get("t0", float(b.t[0]))),
        "duration": b.duration,
        "total_laps": int(m.get("total_laps", 0)),
        "max_lap": int(leader.max()) if len(leader) else 0,
        "driver_codes": [d["code"] for d in drivers],
        "drivers": drivers,
        "driver_colors": {d["code"]: _rgb(d["color"]) for d in drivers},
        "driver_numbers": {d["code"]: d["number"] for d in drivers},
        "driver_teams": {d["code"]: d["team"] for d in drivers},
        "driver_names": {d["code"]: d["name"] for d in drivers},
        "geometry": geo,
        "track_geometry": seed_track_geometry(geo),
        "track_status": periods,
        "track_statuses": seed_track_statuses(periods),
        "race_start_time": race_start_time(b),
        "race_control_messages": m.get("messages", []),
        "pit_stops": m.get("pit_stops", []),
        "weather": m.get("weather", {}),
        # the end-of-session results (official or the order at the line), the qualifying
        # segments, the ingest warnings: null / [] for bundles made before they existed
        "results": ev.get("results"),
        "qualifying": ev.get("qualifying"),
        "warnings": list(ev.get("warnings", [])),
        "streams": {
            name: {"media_type": s.media_type, "frames_per_item": s.frames_per_item, "count": s.count}
            for name, s in b.streams.items()
        },
        "content_hash": m.get("content_hash"),
        **extra,
    }


@dataclass(frozen=True)
class Replay:
    id: str
    bundle: Bundle
    bounds: Bounds
    metadata_json: str
    metadata_bytes: bytes
    metadata_gzip: bytes
    etag: str  # strong, quoted
    load_time: float  # seconds it took to open and describe

    @classmethod
    def open(cls, replay_id: str, bundle: Bundle) -> "Replay":
        t0 = time.perf_counter()
        t = bundle.t
        leader = bundle.leader_lap
        bounds = Bounds(
            n_frames=bundle.n_frames,
            t_start=float(t[0]),
            t_end=float(t[-1]),
            max_lap=max(1, int(leader.max()) if len(leader) else 1),
        )
        js = json.dumps(build_metadata(bundle), separators=(",", ":"), allow_nan=False)
        raw = js.encode()
        digest = hashlib.sha256(raw).hexdigest()[:32]
        return cls(
            id=replay_id,
            bundle=bundle,
            bounds=bounds,
            metadata_json=js,
            metadata_bytes=raw,
            metadata_gzip=gzip.compress(raw, compresslevel=6, mtime=0),
            etag=f'"{digest}"',
            load_time=time.perf_counter() - t0,
        )


class Replays:
    """The replays of one data directory, each opened (mapped) once per process."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data = DataDir(data_dir)
        for p in self.data.clean_orphans():  # a writer killed mid-write while no server ran
            log.warning("removed a killed writer's temporary directory %s", p.name)
        self._open: dict[str, Replay] = {}
        self._stamps: dict[str, tuple[int, ...] | None] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return self.data.root

    def __len__(self) -> int:
        return len(self._open)

    def open_ids(self) -> list[str]:
        """Ids of the replays this process has opened."""
        return list(self._open)

    def cached(self, replay_id: str) -> Replay | None:
        """The opened replay if it is still the bundle on disk (else None: :meth:`get` re-opens it)."""
        r = self._open.get(replay_id)
        if r is not None and self._stamps.get(replay_id) != self._stamp(replay_id):
            self.forget(replay_id)  # replaced or rewritten under us: new viewers get the new one
            return None
        return r

    def _stamp(self, replay_id: str) -> tuple[int, ...] | None:
        """What identifies the bundle on disk now: its directory's inode and its manifest's inode, size, mtime.

        A bundle replaced atomically (a renamed directory) has a new directory inode; one
        overwritten in place has a rewritten manifest. A stat or two, so every lookup checks.
        """
        try:
            path = self.data.path_of(replay_id)
            d = os.stat(path)
            m = os.stat(path / MANIFEST)
        except (OSError, ValueError):
            return None
        return (d.st_dev, d.st_ino, m.st_ino, m.st_size, m.st_mtime_ns)

    def get(self, replay_id: str) -> Replay:
        """The opened replay; raises :class:`InvalidId`, :class:`UnknownReplay` or :class:`BundleError`."""
        r = self.cached(replay_id)
        if r is not None:
            return r
        try:
            validate_id(replay_id)
        except ValueError as e:
            raise InvalidId(str(e)) from None
        t0 = time.perf_counter()
        stamp = self._stamp(replay_id)  # before opening: a change while we open is seen next time
        try:
            bundle = self.data.open(replay_id)
        except KeyError:
            raise UnknownReplay(replay_id) from None
        except BundleError as e:  # the client learns why, not where the data directory is
            raise BundleError(f"replay {replay_id!r} cannot be opened: {str(e).replace(str(self.root), '<data>')}") from e
        with self._lock:
            r = self._open.get(replay_id)
            if r is None:
                try:
                    r = Replay.open(replay_id, bundle)
                except (KeyError, TypeError, ValueError, IndexError, ArithmeticError, RecursionError) as e:
                    # validate_manifest should have caught it: still one replay's problem, never the server's
                    raise BundleError(f"replay {replay_id!r} cannot be described: {type(e).__name__}: {str(e)[:200]}") from e
                r = dataclasses.replace(r, load_time=time.perf_counter() - t0)
                self._open[replay_id] = r
                self._stamps[replay_id] = stamp
        return r

    async def aget(self, replay_id: str) -> Replay:
        """:meth:`get` off the event loop the first time (mapping a big bundle takes milliseconds)."""
        r = self.cached(replay_id)
        if r is not None:
            return r
        return await asyncio.to_thread(self.get, replay_id)

    def forget(self, replay_id: str) -> None:
        """Open ``replay_id`` afresh next time (it was replaced); viewers of the old one keep it, and its
        mapping (of files perhaps deleted) is released when the last of them leaves."""
        with self._lock:
            old = self._open.pop(replay_id, None)
            self._stamps.pop(replay_id, None)
        self.data.forget(replay_id)
        if old is not None:  # its blocks go now (a viewer still on it rebuilds what it plays)
            warming.WARMER.cancel(old.bundle)
            CACHE.drop(old.bundle)

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for rid in self.data.ids():
            try:
                out.append(summary(self.get(rid).bundle))
            except (BundleError, InvalidId, UnknownReplay) as e:
                out.append({"id": rid, "status": "damaged", "error": str(e)})
        return out

    def close(self) -> None:
        with self._lock:
            self._open.clear()
        self.data.close()
