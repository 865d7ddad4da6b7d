"""Lap-by-lap race data for charts: crossings, lap chart, race trace, lap times, tyre stints.

Pure: computed from a :class:`~racecast.race.Race` (and its pit-stop events) once at
ingest, served as JSON to the viewer's charts panel and drawn by ``racecast chart``.
Every per-driver list is indexed by lap (``[0]`` = lap 1) and uses ``None`` where the
data has no value (a lap with no crossing, a car that stopped).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..race import Compound, Race, Status
from .events import Event, crossings, lap_times, start_frame


def _num(v: float, nd: int = 3) -> float | None:
    return round(float(v), nd) if math.isfinite(v) else None


def stints(race: Race, pit_events: Sequence[Event], cross: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Each driver's stints: compound, first and last lap, split at its pit stops."""
    tyre = race.channels["tyre"]
    status = race.channels["status"]
    n = race.n_frames
    start = start_frame(race)
    by_driver: dict[str, list[Event]] = {}
    for e in pit_events:
        by_driver.setdefault(e.drivers[0], []).append(e)
    out = []
    for d, drv in enumerate(race.drivers):
        ran = np.flatnonzero(status[start:, d] != Status.OUT)
        if ran.size == 0:
            continue  # did not start
        last_lap = max(int(cross[d].size), 1)
        if status[-1, d] == Status.OUT or status[-1, d] == Status.RUNNING:  # a retired (or unfinished) car ran part of one more
            last_lap = max(last_lap, int(race.channels["lap"][start + int(ran[-1]), d]))
        first_lap, first_frame = 1, start
        for e in sorted(by_driver.get(drv.code, []), key=lambda e: e.frame):
            compound = Compound(int(tyre[min(first_frame + race.fps, n - 1), d]))
            out.append({"driver": drv.code, "compound": compound.name, "start_lap": first_lap, "end_lap": e.lap})
            first_lap, first_frame = e.lap + 1, int(e.data["exit_frame"])
        compound = Compound(int(tyre[min(first_frame + race.fps, n - 1), d]))
        out.append({"driver": drv.code, "compound": compound.name, "start_lap": first_lap, "end_lap": max(first_lap, last_lap)})
    return out


def lap_data(race: Race, events: Sequence[Event]) -> dict[str, Any]:
    """The chart data: per driver, per lap (see the module docstring)."""
    cross = crossings(race)
    times = lap_times(race, cross)
    t = race.t
    pos = race.channels["position"]
    start = start_frame(race)
    n_laps = max((c.size for c in cross), default=0)
    # the leader's crossing of lap k: the first car to complete it
    lead = np.full(n_laps, np.inf)
    for c in cross:
        ok = c >= 0
        tc = np.where(ok, t[np.maximum(c, 0)], np.inf)
        lead[: c.size] = np.minimum(lead[: c.size], tc)
    codes = race.codes
    data: dict[str, Any] = {
        "drivers": codes,
        "laps": n_laps,
        "total_laps": int(race.total_laps),
        "start_t": round(float(t[start]), 3),
        "start_frame": start,
        "crossing_t": {},
        "crossing_frame": {},
        "positions": {},
        "gaps": {},
        "lap_times": {},
        "pit_laps": {},
    }
    for d, code in enumerate(codes):
        c = cross[d]
        data["crossing_t"][code] = [_num(t[f]) if f >= 0 else None for f in c.tolist()]
        data["crossing_frame"][code] = [int(f) if f >= 0 else None for f in c.tolist()]
        data["positions"][code] = [int(pos[start, d])] + [int(pos[f, d]) if f >= 0 else None for f in c.tolist()]
        data["gaps"][code] = [_num(t[f] - lead[k]) if f >= 0 and math.isfinite(lead[k]) else None for k, f in enumerate(c.tolist())]
        data["lap_times"][code] = [_num(v) for v in times[d].tolist()]
        data["pit_laps"][code] = [e.lap for e in events if e.kind == "pit_stop" and e.drivers[0] == code]
    data["stints"] = stints(race, [e for e in events if e.kind == "pit_stop"], cross)
    data["track_status"] = [p.to_dict() for p in race.track_status]
    return data
