"""Lap telemetry comparison, sans I/O: any driver's lap against any other's, aligned by distance.

Reads only the race model's channels (a :class:`~racecast.race.Race` or an opened
bundle's memory-mapped arrays), so it works on every replay already on disk, with no
FastF1 session at hand. The seed's telemetry endpoints serve it (``POST
/api/telemetry/laps`` and ``/sectors``); charts and the viewer reuse :func:`compare_laps`.

A lap ``L`` of a driver is the run of frames where that driver's ``lap`` channel is ``L`` (on
track: before the chequered flag, not retired);
its distance is metres since the first of those frames. Lap and sector times come from
the ``lap_time``/``sector*`` channels ("last completed") as they stand when the lap is done:
on the first frame of lap ``L + 1`` or the flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from ..errors import NotFound
from ..race import Status

#: Channels a lap trace carries (the race model's names and units).
TRACE_CHANNELS = ("speed", "throttle", "brake", "gear", "x", "y", "drs")
#: Default distance step of an aligned comparison (m).
DEFAULT_STEP_M = 5.0


class CompareError(NotFound, LookupError):
    """An unknown driver, or a lap the driver never drove; ``str(e)`` says what exists."""


class ChannelSource(Protocol):
    """What a comparison reads: a Bundle (``array``) or a Race (``channels``) fit through :func:`source_of`."""

    t: np.ndarray

    def array(self, name: str, frames: slice | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class LapTrace:
    """One driver's lap: per-frame samples from the lap's first frame to its last."""

    driver: str
    lap: int
    frame: int  # the lap's first frame (where a viewer seeks to show it)
    t: np.ndarray  # s since the lap's first frame
    distance: np.ndarray  # m since the lap's first frame (never decreasing)
    channels: Mapping[str, np.ndarray]  # TRACE_CHANNELS, model units (x/y in m, brake/throttle in %)
    lap_time: float | None
    sectors: tuple[float | None, float | None, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "lap": self.lap,
            "frame": self.frame,
            "lap_time": self.lap_time,
            "sectors": list(self.sectors),
            "t": self.t.round(3).tolist(),
            "distance": self.distance.round(2).tolist(),
            **{k: np.asarray(v).round(3).tolist() for k, v in self.channels.items()},
        }


class _RaceSource:
    def __init__(self, race: Any) -> None:
        self.t = race.t
        self._channels = race.channels

    def array(self, name: str, frames: slice | None = None) -> np.ndarray:
        return self._channels[name][frames if frames is not None else slice(None)]


def source_of(obj: Any) -> ChannelSource:
    """A :class:`~racecast.race.Race` or a :class:`~racecast.bundle.Bundle` as a channel source."""
    return obj if hasattr(obj, "array") else _RaceSource(obj)


def _opt(v: float) -> float | None:
    v = float(v)
    return round(v, 3) if math.isfinite(v) else None


def driver_laps(src: ChannelSource, codes: Sequence[str], driver: str) -> list[int]:
    """The laps (>= 1) ``driver`` has frames on, on track (what :func:`lap_trace` accepts)."""
    d = _driver_index(codes, driver)
    status = np.asarray(src.array("status")[:, d])
    laps = np.unique(np.asarray(src.array("lap")[:, d])[(status != Status.FINISHED) & (status != Status.OUT)])
    return [int(x) for x in laps if x >= 1]


def _driver_index(codes: Sequence[str], driver: str) -> int:
    try:
        return list(codes).index(driver)
    except ValueError:
        shown = ", ".join(codes[:30]) + (" ..." if len(codes) > 30 else "")
        raise CompareError(f"no driver {driver[:16]!r} in this session (drivers: {shown})") from None


def lap_trace(src: ChannelSource, codes: Sequence[str], driver: str, lap: int) -> LapTrace:
    """``driver``'s lap ``lap``; raises :class:`CompareError` for an unknown driver or lap."""
    d = _driver_index(codes, driver)
    lap_col = np.asarray(src.array("lap")[:, d])
    status = np.asarray(src.array("status")[:, d])
    # On track only: not after the chequered flag, not retired.
    idx = np.flatnonzero((lap_col == lap) & (status != Status.FINISHED) & (status != Status.OUT))
    if lap < 1 or idx.size == 0:
        laps = driver_laps(src, codes, driver)
        have = f"laps {laps[0]}-{laps[-1]}" if laps else "no laps"
        raise CompareError(f"{driver} has no lap {lap} in this session ({have})")
    first, last = int(idx[0]), int(idx[-1])
    sl = slice(first, last + 1)
    t = np.asarray(src.t[sl], dtype=np.float64)
    # only the lap's frames: a bundle decodes just the chunks that hold them
    dist = np.asarray(src.array("dist", sl)[:, d], dtype=np.float64)
    dist = np.maximum.accumulate(dist - dist[0])
    chans = {name: np.asarray(src.array(name, sl)[:, d]) for name in TRACE_CHANNELS}
    # Times as they stand once the lap is done: on the next lap's first frame. A lap with no next
    # (the chequered flag, a retirement) has the times that changed during it, if any.
    nxt = last + 1
    if nxt < len(lap_col) and (lap_col[nxt] == lap + 1 or status[nxt] == Status.FINISHED):
        times = {k: _opt(src.array(k, slice(nxt, nxt + 1))[0, d]) for k in ("lap_time", "sector1", "sector2", "sector3")}
    else:
        times = {}
        for k in ("lap_time", "sector1", "sector2", "sector3"):
            a0, a1 = float(src.array(k, sl)[0, d]), float(src.array(k, sl)[-1, d])
            times[k] = _opt(a1) if math.isfinite(a1) and not (math.isfinite(a0) and a0 == a1) else None
    lap_time = times["lap_time"]
    sectors = (times["sector1"], times["sector2"], times["sector3"])
    return LapTrace(driver, int(lap), first, t - t[0], dist, chans, lap_time, sectors)  # type: ignore[arg-type]


#: What a lap reference may name besides a number: the driver's fastest lap, or (second of a pair) the first's lap number.
LAP_WORDS = ("fastest", "same")


def parse_lap_ref(value: str) -> int | str:
    """A lap as a user writes it: a number (``12``), ``fastest`` or ``same``; ValueError otherwise."""
    v = value.strip().lower()
    if v in LAP_WORDS:
        return v
    if v.isdigit() and len(v) <= 4:
        return int(v)
    raise ValueError(f"a lap is a number, 'fastest' or 'same', got {value[:20]!r}")


def resolve_laps(src: ChannelSource, codes: Sequence[str], pairs: Sequence[tuple[str, int | str]]) -> list[tuple[str, int]]:
    """Lap references made numbers: ``fastest`` is :func:`fastest_lap`, ``same`` the previous pair's lap.

    Raises :class:`CompareError` for an unknown driver, a driver with no timed lap, or ``same`` first."""
    out: list[tuple[str, int]] = []
    for code, ref in pairs:
        if ref == "same":
            if not out:
                raise CompareError("'same' means the first lap's number: it cannot be the first lap")
            lap = out[-1][1]
        elif ref == "fastest":
            best = fastest_lap(src, codes, code)
            if best is None:
                raise CompareError(f"{code} has no timed lap to compare")
            lap = best[0]
        else:
            lap = int(ref)
        out.append((code, lap))
    return out


def compare_laps(a: LapTrace, b: LapTrace, step: float = DEFAULT_STEP_M) -> dict[str, Any]:
    """Two laps on one distance grid (every ``step`` m over the distance both covered).

    Continuous channels are interpolated linearly, ``gear`` and ``drs`` are the state in force at
    that distance; ``time`` is s since the lap's first frame (``frame``); ``delta`` is b's time
    minus a's at each distance (s; positive: b is slower)."""
    if step <= 0:
        raise ValueError("step must be positive")
    end = min(float(a.distance[-1]), float(b.distance[-1]))
    grid = np.arange(0.0, end + 1e-9, step) if end > 0 else np.zeros(1)

    def at(tr: LapTrace) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for name, v in tr.channels.items():
            if name in ("gear", "drs"):  # states, not quantities: the one in force at that distance
                k = np.clip(np.searchsorted(tr.distance, grid, side="right") - 1, 0, len(v) - 1)
                out[name] = np.asarray(v)[k].astype(int).tolist()
            else:
                out[name] = np.interp(grid, tr.distance, np.asarray(v, dtype=np.float64)).round(3).tolist()
        out["time"] = np.interp(grid, tr.distance, tr.t).round(3).tolist()
        return out

    ca, cb = at(a), at(b)
    delta = (np.asarray(cb["time"]) - np.asarray(ca["time"])).round(3).tolist()
    return {
        "step": step,
        "distance": grid.round(2).tolist(),
        "a": {"driver": a.driver, "lap": a.lap, "frame": a.frame, "lap_time": a.lap_time, "sectors": list(a.sectors), **ca},
        "b": {"driver": b.driver, "lap": b.lap, "frame": b.frame, "lap_time": b.lap_time, "sectors": list(b.sectors), **cb},
        "delta": delta,
    }


# -- the seed's response shapes (joptimus/f1-race-replay backend/models/lap_telemetry.py) ---------

#: FastF1 position units per metre (the seed's x/y).
_SEED_XY = 10.0


def seed_lap_telemetry(tr: LapTrace) -> dict[str, Any]:
    """One entry of ``POST /api/telemetry/laps``'s ``laps``: points with the seed's keys and units
    (distance m, speed km/h, throttle 0-100, brake 0-1, rpm, gear, x/y 1/10 m).

    ``rpm`` is always 0: the race model carries no engine speed (the simulator has no engine
    model, the long table no rpm column; only FastF1's car data has one), so a bundle has none
    to give. The seed's clients read the key, so it stays, honestly empty."""
    c = tr.channels
    cols = (
        tr.distance.round(2).tolist(),
        np.asarray(c["speed"], dtype=np.float64).round(1).tolist(),
        np.asarray(c["throttle"], dtype=np.float64).round(1).tolist(),
        (np.asarray(c["brake"], dtype=np.float64) / 100.0).round(2).tolist(),
        np.asarray(c["gear"]).astype(int).tolist(),
        (np.asarray(c["x"], dtype=np.float64) * _SEED_XY).round(1).tolist(),
        (np.asarray(c["y"], dtype=np.float64) * _SEED_XY).round(1).tolist(),
    )
    points = [
        {"distance": dd, "speed": s, "throttle": th, "brake": br, "rpm": 0, "gear": g, "x": x, "y": y}
        for dd, s, th, br, g, x, y in zip(*cols)
    ]
    return {"driver_code": tr.driver, "lap_number": tr.lap, "lap_time": tr.lap_time, "telemetry": points}


def seed_sector_times(tr: LapTrace) -> dict[str, Any]:
    """One entry of ``POST /api/telemetry/sectors``'s ``sectors``."""
    s1, s2, s3 = tr.sectors
    return {"driver_code": tr.driver, "lap_number": tr.lap, "sector_1": s1, "sector_2": s2, "sector_3": s3, "lap_time": tr.lap_time}


def fastest_lap(src: ChannelSource, codes: Sequence[str], driver: str, within: tuple[float, float] | None = None) -> tuple[int, float] | None:
    """``driver``'s fastest completed lap (number, time s), from when the ``lap_time`` channel changes;
    ``within``: only laps completed in that span of ``t`` (s)."""
    d = _driver_index(codes, driver)
    lt = np.asarray(src.array("lap_time")[:, d], dtype=np.float64)
    lap_col = np.asarray(src.array("lap")[:, d])
    prev = np.concatenate([[np.nan], lt[:-1]])
    changed = np.isfinite(lt) & ~(np.isfinite(prev) & (prev == lt))
    if within is not None:
        t = np.asarray(src.t)
        changed &= (t >= within[0]) & (t <= within[1])
    new = np.flatnonzero(changed)
    if new.size == 0:
        return None
    k = int(new[np.argmin(lt[new])])
    return int(lap_col[max(k - 1, 0)]), round(float(lt[k]), 3)  # the lap it was on until that frame


def seed_quali_segments(src: ChannelSource, codes: Sequence[str], segments: Sequence[Mapping[str, Any]] | None = None,
                        hz: float = 10.0) -> dict[str, Any]:  # fmt: skip
    """The seed's ``quali_segments``: per knockout segment (``segments``: ``[{"name": "Q1", "start": s,
    "end": s}, ...]`` on the frames' ``t`` axis, as the bundle's ``qualifying`` holds them), every driver
    who set a lap time in it, with that segment's fastest lap as frames at ``hz`` (t s from the lap's
    start, x/y 1/10 m, dist m, speed, gear, throttle and brake 0-100, FastF1 DRS codes). Without
    segments, every driver's fastest lap of the session goes in ``Q1`` and ``Q2``/``Q3`` are empty."""
    fps = 1.0 / float(np.median(np.diff(np.asarray(src.t[:50])))) if len(src.t) > 1 else 25.0
    step = max(1, round(fps / hz))

    def segment(within: tuple[float, float] | None) -> dict[str, Any]:
        drivers: dict[str, Any] = {}
        for code in codes:
            best = fastest_lap(src, codes, code, within)
            if best is None:
                continue
            try:
                tr = lap_trace(src, codes, code, best[0])
            except CompareError:
                continue
            c = tr.channels
            idx = np.arange(0, len(tr.t), step).tolist()
            frames = [
                {"t": round(float(tr.t[i]), 3), "x": round(float(c["x"][i]) * _SEED_XY, 1), "y": round(float(c["y"][i]) * _SEED_XY, 1),
                 "dist": round(float(tr.distance[i]), 1), "speed": round(float(c["speed"][i]), 1), "gear": int(c["gear"][i]),
                 "throttle": round(float(c["throttle"][i]), 1), "brake": round(float(c["brake"][i]), 1),
                 "drs": {0: 0, 1: 8, 2: 12}.get(int(c["drs"][i]), 0)}
                for i in idx
            ]  # fmt: skip
            drivers[code] = {"frames": frames, "lap_time": best[1]}
        return {"duration": max((v["lap_time"] for v in drivers.values()), default=0.0), "drivers": drivers}

    out = {name: {"duration": 0.0, "drivers": {}} for name in ("Q1", "Q2", "Q3")}
    if not segments:
        out["Q1"] = segment(None)
        return out
    for sg in segments:
        name = str(sg.get("name", ""))
        if name in out and sg.get("start") is not None and sg.get("end") is not None:
            out[name] = segment((float(sg["start"]), float(sg["end"])))
    return out
