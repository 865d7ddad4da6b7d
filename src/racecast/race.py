"""The race model: one columnar, immutable representation of a whole race.

Every source (simulator, FastF1, tables) produces a :class:`Race`; every consumer
(bundle writer, encoders, server) reads one. Per-driver channels are numpy arrays
shaped ``(frames, drivers)`` on a fixed frame-rate grid, so any frame or any
driver's history is a slice, and encoders can work a whole column at a time.

Construction validates everything a consumer relies on and raises
:class:`RaceError` naming the channel, frame and driver at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .errors import Damaged

__all__ = [
    "Race",
    "Driver",
    "TrackGeometry",
    "TrackStatusPeriod",
    "RaceControlMessage",
    "PitStop",
    "RaceError",
    "Status",
    "Compound",
    "TrackStatus",
    "Drs",
    "CHANNELS",
    "WEATHER_FIELDS",
    "DEFAULT_FPS",
    "MAX_DRIVERS",
    "validate_race",
    "empty_channels",
    "rank_positions",
    "frame_at",
    "frame_of_lap",
]

DEFAULT_FPS = 25


#: Most drivers (moving objects) in one race: positions are stored as int8.
MAX_DRIVERS = 127

#: Frames per block where whole-race checks work a block at a time (bounded temporaries).
ROW_BLOCK = 8192


class RaceError(Damaged, ValueError):
    """A race that breaks the model's invariants (shape, time, positions...)."""


class Status(IntEnum):
    """Per-frame car status (the ``status`` channel)."""

    RUNNING = 0
    PIT = 1
    OUT = 2  # retired / not running; stays out
    FINISHED = 3  # took the chequered flag
    DNS = 4  # did not start: listed (last), never drawn on the map, never running

    @property
    def label(self) -> str:
        return self.name.lower()


class Compound(IntEnum):
    """Tyre compound codes (the ``tyre`` channel)."""

    UNKNOWN = 0
    SOFT = 1
    MEDIUM = 2
    HARD = 3
    INTERMEDIATE = 4
    WET = 5

    @classmethod
    def parse(cls, value: Any) -> "Compound":
        """Map a FastF1-style compound name (``"SOFT"``, ``"INTER"``...) to a code."""
        if value is None:
            return cls.UNKNOWN
        name = str(value).strip().upper()
        if name in ("INTER", "INTERMEDIATE"):
            return cls.INTERMEDIATE
        return cls.__members__.get(name, cls.UNKNOWN)


class TrackStatus(IntEnum):
    """Track status codes, numbered like F1 timing's TrackStatus feed."""

    GREEN = 1
    YELLOW = 2
    SC = 4
    RED = 5
    VSC = 6
    VSC_ENDING = 7


class Drs(IntEnum):
    """DRS state (the ``drs`` channel), normalised from the many raw codes."""

    OFF = 0
    ELIGIBLE = 1  # within a second in a detection zone, not yet open
    OPEN = 2


#: Per-driver channels: name -> (dtype, unit, nullable). Nullable float channels
#: use NaN for "unknown"; encoders send it as nil.
CHANNELS: Mapping[str, tuple[str, str, bool]] = MappingProxyType(
    {
        "x": ("float32", "m", False),
        "y": ("float32", "m", False),
        "speed": ("float32", "km/h", False),
        "gear": ("int8", "gear (0 = neutral)", False),
        "throttle": ("float32", "% (0-100)", False),
        "brake": ("float32", "% (0-100)", False),
        "drs": ("int8", "Drs code", False),
        "lap": ("int16", "lap number (1-based, 0 before the start)", False),
        "position": ("int8", "running order (1-based)", False),
        "tyre": ("int8", "Compound code", False),
        "tyre_age": ("int16", "laps", False),
        "dist": ("float64", "m since the start", False),
        "rel_dist": ("float32", "fraction of the lap (0-1)", False),
        "race_progress": ("float64", "laps completed + fraction", False),
        "status": ("int8", "Status code", False),
        "gap": ("float32", "s to the leader", True),
        "interval": ("float32", "s to the car ahead", True),
        "lap_time": ("float32", "s, last completed lap", True),
        "sector1": ("float32", "s, last sector 1", True),
        "sector2": ("float32", "s, last sector 2", True),
        "sector3": ("float32", "s, last sector 3", True),
    }
)

#: Session-wide weather series (sampled on their own time axis ``t``).
WEATHER_FIELDS = ("t", "air_temp", "track_temp", "humidity", "rainfall", "wind_speed", "wind_direction")


@dataclass(frozen=True)
class Driver:
    code: str  # three letters, e.g. "VER"; unique within a race
    number: int
    name: str
    team: str
    color: str  # "#RRGGBB"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "number": self.number, "name": self.name, "team": self.team, "color": self.color}


@dataclass(frozen=True)
class TrackGeometry:
    """Track shape in the same metre coordinates as the ``x``/``y`` channels.

    ``sectors`` and ``drs_zones`` are distances along the centre line (m);
    ``rotation`` is the angle (degrees) a viewer should rotate the map by.
    """

    centerline_x: np.ndarray
    centerline_y: np.ndarray
    inner_x: np.ndarray
    inner_y: np.ndarray
    outer_x: np.ndarray
    outer_y: np.ndarray
    length: float
    sectors: tuple[float, ...] = ()  # distances where sector 2 and 3 start
    drs_zones: tuple[tuple[float, float], ...] = ()
    pit_lane_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pit_lane_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    start_finish: tuple[float, float, float] = (0.0, 0.0, 0.0)  # x, y, heading (rad)
    rotation: float = 0.0

    def bounds(self) -> tuple[float, float, float, float]:
        xs = [self.outer_x, self.inner_x, self.centerline_x, self.pit_lane_x]
        ys = [self.outer_y, self.inner_y, self.centerline_y, self.pit_lane_y]
        ax = np.concatenate([a for a in xs if len(a)])
        ay = np.concatenate([a for a in ys if len(a)])
        return float(ax.min()), float(ax.max()), float(ay.min()), float(ay.max())

    def to_dict(self) -> dict[str, Any]:
        x_min, x_max, y_min, y_max = self.bounds()

        def r(a: np.ndarray) -> list[float]:
            return [round(float(v), 2) for v in a]

        return {
            "centerline_x": r(self.centerline_x),
            "centerline_y": r(self.centerline_y),
            "inner_x": r(self.inner_x),
            "inner_y": r(self.inner_y),
            "outer_x": r(self.outer_x),
            "outer_y": r(self.outer_y),
            "pit_lane_x": r(self.pit_lane_x),
            "pit_lane_y": r(self.pit_lane_y),
            "x_min": x_min,
            "x_max": x_max,
            "y_min": y_min,
            "y_max": y_max,
            "length": float(self.length),
            "sectors": [float(s) for s in self.sectors],
            "drs_zones": [[float(a), float(b)] for a, b in self.drs_zones],
            "start_finish": [float(v) for v in self.start_finish],
            "rotation": float(self.rotation),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrackGeometry":
        f = lambda k: np.asarray(d.get(k, []), dtype=np.float64)  # noqa: E731
        return cls(
            centerline_x=f("centerline_x"),
            centerline_y=f("centerline_y"),
            inner_x=f("inner_x"),
            inner_y=f("inner_y"),
            outer_x=f("outer_x"),
            outer_y=f("outer_y"),
            length=float(d["length"]),
            sectors=tuple(float(s) for s in d.get("sectors", ())),
            drs_zones=tuple((float(a), float(b)) for a, b in d.get("drs_zones", ())),
            pit_lane_x=f("pit_lane_x"),
            pit_lane_y=f("pit_lane_y"),
            start_finish=tuple(float(v) for v in d.get("start_finish", (0, 0, 0))),  # type: ignore[arg-type]
            rotation=float(d.get("rotation", 0.0)),
        )


@dataclass(frozen=True)
class TrackStatusPeriod:
    start: float  # s
    end: float  # s
    status: TrackStatus

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "status": self.status.name, "code": int(self.status)}


@dataclass(frozen=True)
class RaceControlMessage:
    t: float  # s
    message: str
    category: str = "Other"  # "Flag", "SafetyCar", "Drs", "CarEvent", "Other"...
    lap: int | None = None
    driver: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "message": self.message, "category": self.category, "lap": self.lap, "driver": self.driver}


@dataclass(frozen=True)
class PitStop:
    driver: str
    lap: int
    t_in: float  # s, pit entry
    t_out: float  # s, pit exit
    compound_in: Compound
    compound_out: Compound

    @property
    def duration(self) -> float:
        return self.t_out - self.t_in

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "lap": self.lap,
            "t_in": self.t_in,
            "t_out": self.t_out,
            "duration": round(self.duration, 3),
            "compound_in": self.compound_in.name,
            "compound_out": self.compound_out.name,
        }


def _readonly(a: np.ndarray) -> np.ndarray:
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Race:
    """A whole race on a fixed frame grid. Immutable; build it once, read it anywhere.

    ``channels`` maps every name in :data:`CHANNELS` to an array shaped
    ``(n_frames, n_drivers)``; ``t`` is seconds since session start;
    ``leader_lap`` is the leader's lap number per frame.
    """

    fps: int
    t: np.ndarray
    drivers: tuple[Driver, ...]
    channels: Mapping[str, np.ndarray]
    leader_lap: np.ndarray
    total_laps: int
    geometry: TrackGeometry
    id: str = "race"
    title: str = "Race"
    event: Mapping[str, Any] = field(default_factory=dict)  # year, round, session_type, name, circuit, date
    track_status: tuple[TrackStatusPeriod, ...] = ()
    messages: tuple[RaceControlMessage, ...] = ()
    pit_stops: tuple[PitStop, ...] = ()
    weather: Mapping[str, np.ndarray] = field(default_factory=dict)
    validate: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        channels = {}
        if isinstance(self.channels, Channels):
            self.channels.complete()
        for name, arr in self.channels.items():
            if name not in CHANNELS:
                raise RaceError(f"unknown channel {name!r}")
            dtype = np.dtype(CHANNELS[name][0])
            a = np.asarray(arr)
            if a.dtype != dtype:
                a = a.astype(dtype)
            channels[name] = _readonly(a)
        object.__setattr__(self, "channels", MappingProxyType(channels))
        object.__setattr__(self, "t", _readonly(np.asarray(self.t, dtype=np.float64)))
        object.__setattr__(self, "leader_lap", _readonly(np.asarray(self.leader_lap, dtype=np.int16)))
        object.__setattr__(self, "drivers", tuple(self.drivers))
        object.__setattr__(self, "weather", MappingProxyType({k: _readonly(np.asarray(v, dtype=np.float64)) for k, v in self.weather.items()}))
        object.__setattr__(self, "event", MappingProxyType(dict(self.event)))
        if self.validate:
            validate_race(self)

    # -- shape -------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.t.shape[0])

    @property
    def n_drivers(self) -> int:
        return len(self.drivers)

    @property
    def duration(self) -> float:
        return float(self.t[-1] - self.t[0]) if self.n_frames else 0.0

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.drivers]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.channels[name]

    def frame_at(self, seconds: float) -> int:
        """Index of the frame shown at ``seconds`` since session start (clamped)."""
        return frame_at(self.t, seconds)

    def frame_of_lap(self, lap: int) -> int:
        """First frame on which the leader is on ``lap`` (clamped to the race)."""
        return frame_of_lap(self.leader_lap, lap)


def _fail(msg: str) -> None:
    raise RaceError(msg)


def validate_race(race: Race) -> None:
    """Check every invariant consumers rely on; raise :class:`RaceError` naming the culprit."""
    if not isinstance(race.fps, int) or not 1 <= race.fps <= 1000:
        _fail(f"fps must be an integer in 1..1000, got {race.fps!r}")
    n = race.n_frames
    if n < 1:
        _fail("a race needs at least one frame")
    if race.t.ndim != 1:
        _fail(f"t must be 1-D, got shape {race.t.shape}")
    if not np.all(np.isfinite(race.t)):
        bad = int(np.flatnonzero(~np.isfinite(race.t))[0])
        _fail(f"t is not finite at frame {bad}")
    if n > 1:
        d = np.diff(race.t)
        if np.any(d <= 0):
            bad = int(np.flatnonzero(d <= 0)[0]) + 1
            _fail(f"t must be strictly increasing: frame {bad} has t={race.t[bad]} after {race.t[bad - 1]}")
    nd = race.n_drivers
    if nd < 1:
        _fail("a race needs at least one driver")
    if nd > MAX_DRIVERS:
        _fail(f"a race holds at most {MAX_DRIVERS} drivers (positions are stored as 8-bit integers), got {nd}")
    codes = race.codes
    if len(set(codes)) != nd:
        dup = sorted({c for c in codes if codes.count(c) > 1})
        _fail(f"driver codes must be unique, repeated: {dup}")
    for d in race.drivers:
        c = d.color
        if not (isinstance(c, str) and len(c) == 7 and c[0] == "#" and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])):
            _fail(f"driver {d.code}: colour must be '#RRGGBB', got {c!r}")
    missing = [c for c in CHANNELS if c not in race.channels]
    if missing:
        _fail(f"missing channels: {missing}")
    for name, a in race.channels.items():
        if a.shape != (n, nd):
            _fail(f"channel {name!r} has shape {a.shape}, expected (frames, drivers) = {(n, nd)}")
        dtype, _unit, nullable = CHANNELS[name]
        if np.dtype(dtype).kind == "f" and not nullable:
            bad = ~np.isfinite(a)
            if bad.any():
                f, dr = (int(v) for v in np.argwhere(bad)[0])
                _fail(f"channel {name!r} is not finite at frame {f}, driver {codes[dr]}")
    if race.leader_lap.shape != (n,):
        _fail(f"leader_lap has shape {race.leader_lap.shape}, expected ({n},)")
    # frame blocks: the checks' temporaries stay small whatever the race length
    for f0 in range(0, n, ROW_BLOCK):
        _check_order(race.channels["position"][f0 : f0 + ROW_BLOCK], race.channels["status"][f0 : f0 + ROW_BLOCK], f0, codes)
    if not isinstance(race.total_laps, int) or race.total_laps < 0:
        _fail(f"total_laps must be a non-negative integer, got {race.total_laps!r}")
    g = race.geometry
    for name in ("centerline_x", "centerline_y", "inner_x", "inner_y", "outer_x", "outer_y"):
        a = getattr(g, name)
        if a.ndim != 1 or a.size < 3 or not np.all(np.isfinite(a)):
            _fail(f"geometry {name} must be a finite 1-D array of at least 3 points")
    if not (math.isfinite(g.length) and g.length > 0):
        _fail(f"geometry length must be positive, got {g.length}")
    for k, v in race.weather.items():
        if k not in WEATHER_FIELDS:
            _fail(f"unknown weather field {k!r}")
        if v.shape != race.weather["t"].shape:
            _fail(f"weather {k!r} has shape {v.shape}, expected {race.weather['t'].shape}")


def _check_order(position: np.ndarray, status: np.ndarray, f0: int, codes: list[str]) -> None:
    """The order invariants on frames ``f0 ..``: a permutation, running cars ahead of retired ones."""
    nd = len(codes)
    pos = position.astype(np.int64)
    expected = np.arange(1, nd + 1)
    srt = np.sort(pos, axis=1)
    bad_rows = np.flatnonzero(np.any(srt != expected, axis=1))
    if bad_rows.size:
        f = int(bad_rows[0])
        _fail(f"positions at frame {f0 + f} are not a permutation of 1..{nd}: {dict(zip(codes, pos[f].tolist()))}")
    # Cars still in the race (not OUT, not DNS) hold the top positions; non-starters the last.
    out = (status == Status.OUT) | (status == Status.DNS)
    if out.any():
        n_running = nd - out.sum(axis=1)
        bad = (~out) & (pos > n_running[:, None])
        if bad.any():
            f, dr = (int(v) for v in np.argwhere(bad)[0])
            _fail(
                f"position at frame {f0 + f}: driver {codes[dr]} is running in P{pos[f, dr]} "
                f"behind a retired car (only {n_running[f]} cars running)"
            )
        dns = status == Status.DNS
        n_started = nd - dns.sum(axis=1)
        bad = (~dns) & (pos > n_started[:, None])
        if bad.any():
            f, dr = (int(v) for v in np.argwhere(bad)[0])
            _fail(f"position at frame {f0 + f}: driver {codes[dr]} in P{pos[f, dr]} behind a car that did not start")


class Channels(dict):  # type: ignore[type-arg]
    """Channel arrays shaped (frames, drivers), each allocated on first use (zeros; NaN when nullable).

    A source fills channels in stages; one it fills late (the timing screen) or never
    takes no memory until then, which keeps a long race's ingest peak down. The
    :class:`Race` built from it allocates whatever was never touched.
    """

    def __init__(self, n_frames: int, n_drivers: int) -> None:
        super().__init__()
        self.shape = (n_frames, n_drivers)

    def __missing__(self, name: str) -> np.ndarray:
        if name not in CHANNELS:
            raise KeyError(name)
        dtype, _unit, nullable = CHANNELS[name]
        a = np.full(self.shape, np.nan, dtype=dtype) if nullable else np.zeros(self.shape, dtype=dtype)
        self[name] = a
        return a

    def complete(self) -> "Channels":
        """Allocate every channel not used yet; returns self."""
        for name in CHANNELS:
            self[name]  # noqa: B018 -- allocates through __missing__
        return self


def empty_channels(n_frames: int, n_drivers: int) -> Channels:
    """Zero-filled (NaN for nullable) channel arrays, for sources to fill in (allocated on first use).

    In an ingest process (:func:`racecast.ingest_memory.tune_for_ingest`) the memory the
    source freed while reading is returned to the system first, so the race's arrays
    do not come on top of it.
    """
    from .ingest_memory import release_free_memory  # noqa: PLC0415 -- only sources build channels

    release_free_memory()
    return Channels(n_frames, n_drivers)


def rank_positions(race_progress: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Running order per frame from progress: running cars by progress, retired cars after them,
    non-starters last.

    Ties keep driver order (stable sort), so the result is deterministic.
    """
    n, nd = race_progress.shape
    pos = np.empty((n, nd), dtype=np.int8)
    places = np.arange(1, nd + 1, dtype=np.int8)[None, :]
    for f0 in range(0, n, ROW_BLOCK):  # frame blocks: temporaries bounded whatever the race length
        p, st = race_progress[f0 : f0 + ROW_BLOCK], status[f0 : f0 + ROW_BLOCK]
        key = np.where(st == Status.OUT, p - 1e6, p)
        key = np.where(st == Status.DNS, -2e6, key)
        order = np.argsort(-key, axis=1, kind="stable")
        np.put_along_axis(pos[f0 : f0 + len(p)], order, places, axis=1)
    return pos


def frame_at(t: np.ndarray, seconds: float) -> int:
    """The frame shown at ``seconds`` on the frame times ``t``: the last frame at or before it,
    clamped to the replay (the race model and an opened bundle answer seeks by time with this)."""
    i = int(np.searchsorted(t, seconds, side="right")) - 1
    return min(max(i, 0), len(t) - 1)


def frame_of_lap(leader_lap: np.ndarray, lap: int) -> int:
    """The first frame on which the leader is on ``lap`` (``leader_lap`` never decreases), the lap
    clamped to 1..the last lap and the frame to the replay (seeks by lap)."""
    last = int(leader_lap.max()) if len(leader_lap) else 1
    lap = max(1, min(int(lap), last))
    return min(int(np.searchsorted(leader_lap, lap, side="left")), len(leader_lap) - 1)
