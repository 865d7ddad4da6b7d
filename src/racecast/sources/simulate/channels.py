"""From the 10 Hz run to the frame grid: every channel of the race model, pit stops, track status, weather.

Distance is resampled by cubic Hermite (speeds as slopes), speed and lateral offset linearly; the
rest is derived from those so that every channel agrees: x/y, status, laps, positions
(:func:`~racecast.race.rank_positions`), gaps and intervals, lap and sector times (from the 10 Hz
run, accurate), tyres, driver inputs consistent with the speed trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...race import CHANNELS, Compound, Drs, PitStop, RaceControlMessage, Status, TrackStatus, TrackStatusPeriod, rank_positions
from .params import DRAG, GRID_TIME, POWER, SIM_DT, TRACTION, a_brk
from .run import Run
from .strategy import Plan
from .track import Track, lookup

__all__ = ["Assembled", "assemble", "GEAR_BINS_KMH"]

GEAR_BINS_KMH = np.array([75.0, 110.0, 145.0, 180.0, 215.0, 250.0, 285.0])


@dataclass
class Assembled:
    """What the race model takes from a simulation, on the output frame grid."""

    t: np.ndarray
    channels: dict[str, np.ndarray]
    leader_lap: np.ndarray
    pit_stops: tuple[PitStop, ...]
    track_status: tuple[TrackStatusPeriod, ...]
    weather: dict[str, np.ndarray]
    messages: tuple[RaceControlMessage, ...]


def _ffill_events(n_frames: int, frames: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per frame, the value of the latest event at or before it (NaN before the first)."""
    out = np.full(n_frames, np.nan)
    if len(frames):
        order = np.argsort(frames, kind="stable")
        frames, values = frames[order], values[order]
        idx = np.searchsorted(frames, np.arange(n_frames), side="right") - 1
        ok = idx >= 0
        out[ok] = values[idx[ok]]
    return out


def _resample(run: Run, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance (cubic Hermite with the speeds as slopes: monotone, speeds are never negative), speed
    (m/s), lateral offset and DRS code at the frame times ``t``."""
    m = len(run.t)
    u = t / SIM_DT
    k0 = np.minimum(np.floor(u + 1e-9).astype(np.int64), m - 2)
    f = (u - k0)[:, None]
    f2, f3 = f * f, f * f * f
    S0, S1, V0, V1 = run.s[k0], run.s[k0 + 1], run.v[k0], run.v[k0 + 1]
    dist = (2 * f3 - 3 * f2 + 1) * S0 + (f3 - 2 * f2 + f) * (SIM_DT * V0) + (3 * f2 - 2 * f3) * S1 + (f3 - f2) * (SIM_DT * V1)
    del S0, S1
    np.maximum.accumulate(dist, axis=0, out=dist)
    speed = V0 + (V1 - V0) * f  # m/s
    del V0, V1
    lat = run.lat[k0] + (run.lat[k0 + 1] - run.lat[k0]) * f
    return dist, speed, lat, run.drs[k0]


def _place(track: Track, run: Run, dist: np.ndarray, lat: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y and status per frame; pit-lane windows by distance, so x/y and status agree exactly. Also
    the finished mask."""
    nf, n = dist.shape
    in_pit = np.zeros((nf, n), dtype=bool)
    for st in run.stops:
        col = dist[:, st.driver]
        in_pit[:, st.driver] |= (col >= st.entry) & (col < st.exit)
    inv = 1.0 / track.ds
    s_mod = dist % track.L
    off = lat + lookup(track.pit_off, s_mod, inv) * in_pit
    x = lookup(track.x, s_mod, inv) + lookup(track.nx, s_mod, inv) * off
    y = lookup(track.y, s_mod, inv) + lookup(track.ny, s_mod, inv) * off
    del off, s_mod
    status = np.zeros((nf, n), dtype=np.int8)
    status[in_pit] = Status.PIT
    fin = dist >= run.fin_dist[None, :]
    status[fin] = Status.FINISHED
    status[t[:, None] >= run.t_out[None, :]] = Status.OUT
    return x, y, status, fin


def _order(run: Run, L: float, laps: int, fps: int, dist: np.ndarray, status: np.ndarray, fin: np.ndarray,
           t: np.ndarray) -> dict[str, np.ndarray]:  # fmt: skip
    """Laps, race progress, positions, the leader's lap, gaps to the leader and intervals."""
    nf, n = dist.shape
    t_end = run.t_end
    started = t >= GRID_TIME
    fin_laps = np.where(np.isfinite(run.fin_dist), np.round(run.fin_dist / L), laps + 10).astype(np.int64)
    lap = np.floor(dist / L).astype(np.int64) + 1
    lap = np.minimum(np.maximum(lap, 1), fin_laps[None, :])
    lap[~started] = 0

    progress = dist / L
    t_fin = np.where(np.isfinite(run.t_fin), run.t_fin, t_end)
    frozen = fin_laps + 1e-7 * (t_end - t_fin) / t_end  # order finishers by laps, then finish time
    progress = np.where(fin, frozen[None, :], progress)
    position = rank_positions(progress, status)

    p1 = np.argmax(position == 1, axis=1)
    leader_lap = np.maximum.accumulate(lap[np.arange(nf), p1])
    gap, interval = _gaps(dist, status, fin, position, started, t, fps)
    return {"lap": lap, "progress": progress, "position": position, "leader_lap": leader_lap, "gap": gap,
            "interval": interval, "started": started}  # fmt: skip


def _gaps(dist: np.ndarray, status: np.ndarray, fin: np.ndarray, position: np.ndarray, started: np.ndarray,
          t: np.ndarray, fps: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Gap: now minus the time the leading car was at this car's distance; interval: to the car ahead."""
    nf, n = dist.shape
    f0 = min(int(math.ceil(GRID_TIME * fps - 1e-9)), nf - 1)
    lead = np.maximum.accumulate(dist.max(axis=1))[f0:]
    lead = lead + np.arange(len(lead)) * 1e-9
    gap = np.full((nf, n), np.nan)
    gap[f0:] = t[f0:, None] - np.interp(dist[f0:], lead, t[f0:])
    gap[dist < lead[0]] = np.nan
    gap[:f0] = np.nan
    for i in range(n):
        ff = np.flatnonzero(fin[:, i])
        if ff.size:
            gap[ff[0] :, i] = gap[ff[0], i]
    gap[status == Status.OUT] = np.nan
    gap[(position == 1) & started[:, None]] = 0.0
    order = np.argsort(position, axis=1, kind="stable")
    gs = np.take_along_axis(gap, order, axis=1)
    ivs = np.full_like(gs, np.nan)
    ivs[:, 1:] = gs[:, 1:] - gs[:, :-1]
    interval = np.empty_like(ivs)
    np.put_along_axis(interval, order, ivs, axis=1)
    return gap, interval


def _timing(track: Track, run: Run, dist: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Lap and sector times from the 10 Hz run (accurate), shown from the frame the line is crossed."""
    nf, n = dist.shape
    L, m = track.L, len(run.t)
    lap_time = np.full((nf, n), np.nan)
    sectors = [np.full((nf, n), np.nan) for _ in range(3)]
    b1, b2 = track.geometry.sectors
    ramp = np.arange(m) * 1e-9
    for i in range(n):
        si = np.maximum.accumulate(run.s[:, i]) + ramp
        last = min(run.fin_dist[i], run.s[-1, i])
        nl = int(math.floor(last / L + 1e-9))
        j = np.arange(1, nl + 2)
        base = (j - 1) * L
        bounds = np.stack([base + b1, base + b2, base + L], axis=1)  # (laps, 3)
        valid = bounds <= last + 1e-6
        tb = np.interp(bounds, si, run.t)
        start = np.concatenate([[GRID_TIME], tb[:-1, 2]])
        times = np.stack([tb[:, 0] - start, tb[:, 1] - tb[:, 0], tb[:, 2] - tb[:, 1]], axis=1)
        frames = np.searchsorted(dist[:, i], bounds, side="left")
        for c in range(3):
            ok = valid[:, c]
            sectors[c][:, i] = _ffill_events(nf, frames[ok, c], times[ok, c])
        ok = valid[:, 2]
        lap_time[:, i] = _ffill_events(nf, frames[ok, 2], tb[ok, 2] - start[ok])
    return lap_time, sectors


def _tyres(plan: Plan, run: Run, dist: np.ndarray, lap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compound changes at the box; age counts laps completed on the set."""
    nf, n = dist.shape
    tyre = np.zeros((nf, n), dtype=np.int8)
    tyre_age = np.zeros((nf, n), dtype=np.int16)
    for i in range(n):
        served = sorted((st for st in run.stops if st.driver == i and st.served), key=lambda st: st.index)
        switch = np.array([st.box for st in served])
        comps = plan.compounds[i, : len(served) + 1]
        start_lap = np.array([1] + [st.lap + 1 for st in served])
        start_age = np.array([plan.start_age[i]] + [0] * len(served))
        kidx = np.searchsorted(switch, dist[:, i], side="right") if len(switch) else np.zeros(nf, dtype=np.int64)
        tyre[:, i] = comps[kidx]
        tyre_age[:, i] = np.maximum(start_age[kidx] + np.maximum(lap[:, i], 1) - start_lap[kidx], 0)
    return tyre, tyre_age


def _inputs(speed: np.ndarray, fps: int, started: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Throttle, brake (%), gear and speed in km/h, consistent with the speed trace."""
    acc = np.zeros_like(speed)
    acc[:-1] = np.diff(speed, axis=0) * fps
    drag = DRAG * speed * speed
    a_pow = np.minimum(TRACTION, POWER / np.maximum(speed, 1.0))
    braking = acc < -(drag + 0.5)
    brake = np.where(braking, np.clip((-acc - drag) / (a_brk(speed) - drag) * 100.0, 1.0, 100.0), 0.0)
    lifting = braking | (acc < -0.3)
    throttle = np.where(lifting, 0.0, np.clip((acc + drag + 2.5) / a_pow * 100.0, 0.0, 100.0))
    throttle[(acc < 0.0) & (throttle > 98.0)] = 98.0  # flat out never loses speed
    still = speed < 0.3
    throttle[still] = 0.0
    brake[still & ~braking] = 0.0
    kmh = speed * 3.6
    gear = (np.digitize(kmh, GEAR_BINS_KMH) + 1).astype(np.int8)
    gear[still] = 0
    gear[~started] = 1
    return throttle, brake, gear, kmh


def _pit_stops(plan: Plan, run: Run) -> tuple[PitStop, ...]:
    """The stops that were served and completed, in the order cars entered the pit lane."""
    m = len(run.t)
    pit_stops = []
    for st in sorted(run.stops, key=lambda st: (st.entry, st.driver)):
        if not st.served or run.s[-1, st.driver] < st.exit:
            continue
        si = np.maximum.accumulate(run.s[:, st.driver]) + np.arange(m) * 1e-9
        t_in, t_out = np.interp([st.entry, st.exit], si, run.t)
        pit_stops.append(
            PitStop(
                driver=plan.drivers[st.driver].code,
                lap=st.lap,
                t_in=round(float(t_in), 3),
                t_out=round(float(t_out), 3),
                compound_in=Compound(int(plan.compounds[st.driver, st.index])),
                compound_out=Compound(int(plan.compounds[st.driver, st.index + 1])),
            )
        )
    return tuple(pit_stops)


def _track_status(run: Run, end: float) -> tuple[TrackStatusPeriod, ...]:
    """Green, the yellow of the incident, the safety car, green again."""
    periods = []
    edges = [(0.0, TrackStatus.GREEN)]
    if math.isfinite(run.t_yellow):
        edges.append((run.t_yellow, TrackStatus.YELLOW))
        if math.isfinite(run.t_sc):
            edges.append((run.t_sc, TrackStatus.SC))
            if math.isfinite(run.t_sc_end):
                edges.append((run.t_sc_end, TrackStatus.GREEN))
        else:
            edges.append((min(run.t_yellow + 20.0, run.t_end), TrackStatus.GREEN))
    for (a, st), (b, _) in zip(edges, edges[1:] + [(end, None)]):
        if b > a:
            periods.append(TrackStatusPeriod(start=round(float(a), 3), end=round(float(b), 3), status=st))
    return tuple(periods)


def _weather(rng: np.random.Generator, end: float) -> dict[str, np.ndarray]:
    """Slow random walks sampled every minute."""
    tw = np.arange(0.0, end + 60.0, 60.0)
    k = len(tw)

    def walk(start: float, sd: float, lo: float, hi: float) -> np.ndarray:
        return np.clip(start + np.cumsum(rng.normal(0.0, sd, k)), lo, hi)

    air = walk(rng.uniform(21.0, 27.0), 0.08, 20.0, 30.0)
    return {
        "t": tw,
        "air_temp": np.round(air, 1),
        "track_temp": np.round(np.clip(air + walk(rng.uniform(10.0, 14.0), 0.12, 8.0, 16.0), 30.0, 45.0), 1),
        "humidity": np.round(walk(rng.uniform(35.0, 65.0), 0.5, 20.0, 90.0), 1),
        "rainfall": np.zeros(k),
        "wind_speed": np.round(walk(rng.uniform(0.5, 3.5), 0.1, 0.0, 8.0), 1),
        "wind_direction": np.round(walk(rng.uniform(0.0, 360.0), 3.0, -1e9, 1e9)) % 360.0,
    }


def assemble(track: Track, plan: Plan, run: Run, laps: int, fps: int, rng: np.random.Generator) -> Assembled:
    """The race model's arrays on a ``fps`` grid from the 10 Hz ``run`` (``rng``: the weather's draws)."""
    L = track.L
    nf = int(math.floor(run.t_end * fps + 1e-9)) + 1
    t = np.arange(nf, dtype=np.float64) / fps
    dist, speed, lat, drs = _resample(run, t)
    x, y, status, fin = _place(track, run, dist, lat, t)
    del lat
    o = _order(run, L, laps, fps, dist, status, fin, t)
    lap_time, sectors = _timing(track, run, dist)
    tyre, tyre_age = _tyres(plan, run, dist, o["lap"])
    throttle, brake, gear, kmh = _inputs(speed, fps, o["started"])
    drs = np.where(status == Status.RUNNING, drs, np.int8(Drs.OFF)).astype(np.int8)
    channels: dict[str, Any] = {
        "x": x.astype(np.float32),
        "y": y.astype(np.float32),
        "speed": kmh.astype(np.float32),
        "gear": gear,
        "throttle": throttle.astype(np.float32),
        "brake": brake.astype(np.float32),
        "drs": drs,
        "lap": o["lap"].astype(np.int16),
        "position": o["position"],
        "tyre": tyre,
        "tyre_age": tyre_age,
        "dist": dist,
        "rel_dist": np.minimum((dist % L) / L, np.nextafter(np.float32(1.0), np.float32(0.0))).astype(np.float32),
        "race_progress": o["progress"],
        "status": status,
        "gap": o["gap"].astype(np.float32),
        "interval": o["interval"].astype(np.float32),
        "lap_time": lap_time.astype(np.float32),
        "sector1": sectors[0].astype(np.float32),
        "sector2": sectors[1].astype(np.float32),
        "sector3": sectors[2].astype(np.float32),
    }
    assert set(channels) == set(CHANNELS)
    end = float(t[-1])
    return Assembled(
        t=t,
        channels=channels,
        leader_lap=o["leader_lap"],
        pit_stops=_pit_stops(plan, run),
        track_status=_track_status(run, end),
        weather=_weather(rng, end),
        messages=tuple(sorted(run.messages, key=lambda mm: mm.t)),
    )
