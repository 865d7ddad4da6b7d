"""FastF1-shaped frames to a :class:`~racecast.race.Race`: the pure converter (no FastF1, no network).

How the conversion stays honest:

* Every channel is resampled onto the frame grid. Position/car samples are sorted and
  de-duplicated (lap slices repeat boundary samples), FastF1's all-zero filler rows
  for missing position data are dropped, and across a gap longer than
  :data:`~racecast.sources._common.MAX_GAP` the last position is held -- nothing moves
  that the data doesn't show moving. X/Y are converted from FastF1's 1/10 m to metres.
* Running order in races and sprints comes from the timing data (``Laps.Time``): at
  every line crossing it is exactly the timing order (laps completed, then who completed
  the last one first). Between crossings the replay keeps that order and moves a car up
  only where the position feed puts it further ahead than the feed's own error at the
  line (:func:`~racecast.sources._common.anchored_order_key`). Before a car's first
  crossing (the grid, the first corners) it is placed by where it is along the track,
  counted back from the line it will cross next -- at lights out that is the grid;
  pit-lane starters (``results.GridPosition`` 0) are behind every grid car until their
  first crossing. Cars take the chequered flag at their first crossing after the
  winner's: from then on their order is frozen in the order they finished. A car that
  stops for good without finishing is OUT from the moment it came to rest (ranked behind
  every running car), a car in the pit lane is PIT; a car in the results with no
  position data and no lap did not start: DNS, listed last, never drawn.
* Qualifying and practice replay the whole session; the order is the timing-screen
  order (best lap so far), cars in the garage are PIT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

try:
    import pandas as pd
except ImportError:  # pandas comes with the fastf1 extra; without it only the clear error in fastf1.py
    pd = None  # type: ignore[assignment]

from racecast.race import DEFAULT_FPS, Driver, Drs, Race, Status, TrackGeometry, empty_channels
from racecast.sources import IngestError, ProgressFn
from racecast.sources.fastf1_frames import (
    CarTrace,
    DriverLaps,
    FastF1Frames,
    Trace,
    car_trace,
    position_trace,
    scalar_float,
    scalar_seconds,
    split_laps,
    text,
)
from racecast.sources.fastf1_series import corners_of, messages_of, pit_stops_of, track_status_periods, weather_of
from racecast.sources.officials import attach_officials
from racecast.sources._common import (
    anchored_order_key,
    build_race,
    chequered_flag,
    fallback_color,
    fill_order,
    frame_grid,
    geometry_from_path,
    grid_ranks,
    lap1_along,
    median_lap_length,
    order_key,
    path_distance,
    path_fractions,
    pit_lane_start,
    progress_from_crossings,
    project_along,
    race_gaps,
    report,
    resample_hold,
    resample_linear,
    resample_path,
    running_order,
    speed_from_distance,
    start_slots,
    step_values,
    stop_time,
    valid_color,
)

PRE_ROLL = 10.0  # s of grid shown before a race start
POST_ROLL = 15.0  # s shown after the last line crossing
MAX_DURATION = 6 * 3600.0  # a longer span means broken timing data
RAW_SCALE = 0.1  # FastF1 X/Y/Z are in 1/10 m


def race_from_fastf1_frames(
    frames: FastF1Frames,
    *,
    fps: int = DEFAULT_FPS,
    progress: ProgressFn | None = None,
) -> Race:
    """Convert FastF1-shaped frames to a :class:`Race` (pure: no FastF1, no network)."""
    report(progress, "prepare", 0.0)
    laps = split_laps(frames.laps)
    traces = {str(k): position_trace(v, frames.t0_date) for k, v in frames.pos_data.items()}
    numbers = [n for n, tr in traces.items() if tr.t.size > 0]
    if not numbers:
        raise IngestError("FastF1 data has no position samples for any driver")
    warnings: list[str] = []
    # A car with neither a position sample (FastF1 gives non-starters all-zero filler) nor
    # a completed lap did not start: listed as DNS, never drawn. In races only: in other
    # sessions a car that never left the garage is simply not in the session's data.
    dns_nums = _non_starters(frames, traces, laps) if frames.race_like else []
    pairs = _drivers(frames.results, numbers + dns_nums)
    nums = [num for num, _ in pairs]
    drivers = [d for _, d in pairs]
    dns = np.array([num in dns_nums for num in nums], dtype=bool)
    live = [num for num in nums if num not in dns_nums]
    cars = {n: car_trace(frames.car_data.get(n), frames.t0_date) for n in live}
    dlaps = [laps.get(n) or DriverLaps.empty() for n in nums]
    live_laps = {n: laps[n] for n in live if n in laps}
    start, begin, end = _window(frames, live_laps, {n: traces[n] for n in live})
    grid = frame_grid(begin, end, fps)
    n, nd = grid.size, len(drivers)
    report(progress, "prepare", 1.0)

    report(progress, "geometry", 0.0)
    geometry, scale = _geometry(frames, live_laps, traces, cars)
    report(progress, "geometry", 1.0)

    ch = empty_channels(n, nd)
    dist, last_move = _resample(ch, grid, nums, dns, traces, cars, scale, progress)

    # -- progress, status, order --------------------------------------------------------
    report(progress, "order", 0.0)
    lap_len = _lap_length(dlaps, grid, dist, geometry.length)
    start_f = int(np.clip(np.searchsorted(grid, start), 0, n - 1))
    prog = np.zeros((n, nd))
    for j, dl in enumerate(dlaps):
        if dns[j]:
            continue
        if dl.cross_t.size:
            prog[:, j] = progress_from_crossings(grid, dist[:, j], dl.cross_t, dl.cross_k, lap_len)
        else:  # never completed a lap: where it stood at the start, plus distance since
            s0 = float(project_along(geometry, ch["x"][start_f, j], ch["y"][start_f, j])[0])
            if s0 > geometry.length / 2:
                s0 -= geometry.length
            s0 *= lap_len / geometry.length
            prog[:, j] = np.minimum((s0 + dist[:, j] - dist[start_f, j]) / lap_len, 0.999)

    status = np.zeros((n, nd), dtype=np.int8)
    for j, dl in enumerate(dlaps):
        for a, b in _pit_intervals(dl, frames.race_like):
            status[(grid >= a) & (grid <= b), j] = Status.PIT

    t_out = np.full(nd, math.inf)
    margin_m = 0.0
    if frames.race_like:
        state = _RaceState(grid, prog, status, dist, t_out)
        positions, margin_m, w = _race_order(frames, state, nums, drivers, dns, dlaps, traces, scale, last_move,
                                             ch, geometry, start, start_f, lap_len, fps)
        del state
        warnings += w
    else:
        positions, best = _best_lap_order(grid, dlaps, drivers)
    rel = fill_order(ch, positions, status, prog)
    rel[status == Status.FINISHED] = 1.0
    np.clip(rel, 0.0, 1.0, out=ch["rel_dist"])
    del rel
    dist -= dist[start_f].copy()[None, :]
    np.maximum(dist, 0.0, out=dist)
    leader_lap = _lap_channels(ch, prog, status, positions, grid, start, dns, frames.race_like)
    del prog, dist  # (memory)
    report(progress, "order", 1.0)

    # -- timing-screen channels from the laps ------------------------------------------
    report(progress, "timing", 0.0)
    for j, dl in enumerate(dlaps):
        _timing_channels(ch, j, dl, grid)
    if frames.race_like:
        ch["gap"], ch["interval"] = race_gaps(grid, [(dl.cross_t, dl.cross_k) for dl in dlaps], t_out)  # float32: no copy
    else:
        _best_lap_gaps(ch, positions, best)
    report(progress, "timing", 1.0)

    total = max((int(dl.cross_k.max()) for dl in dlaps if dl.cross_k.size), default=0)
    if not frames.race_like:
        total = max((int(dl.number.max()) for dl in dlaps if dl.number.size), default=0)
    code_of = {num: d.code for num, d in zip(nums, drivers)}
    session_label = frames.session_name or frames.session
    event = _event(frames, session_label, start - begin, begin, scale, margin_m, sorted(set(laps) - set(nums)), warnings)
    title = f"{frames.year} {frames.event_name or f'round {frames.round}'} - {session_label}"
    del traces, cars  # (memory) the samples are in the channels now: not kept while the race is validated
    race = build_race(
        "the FastF1 data",
        fps=fps,
        channels=ch,
        drivers=tuple(drivers),
        leader_lap=leader_lap,
        total_laps=int(total),
        geometry=geometry,
        id=f"{frames.year}_{frames.round}_{frames.session}",
        title=title,
        event=event,
        track_status=track_status_periods(frames.track_status, begin, grid[-1]),
        messages=messages_of(frames.race_control_messages, frames.t0_date, begin, grid[-1], code_of),
        pit_stops=pit_stops_of(dlaps, drivers, begin) if frames.race_like else (),
        weather=weather_of(frames.weather, begin, grid[-1]),
    )
    timed = [_timed_laps(dl, begin) for dl in dlaps]
    return attach_officials(race, results=frames.results, session=frames.session, race_like=frames.race_like, laps=timed)


@dataclass
class _RaceState:
    """The per-frame arrays a race's classification updates in place (frames x drivers)."""

    grid: np.ndarray
    prog: np.ndarray
    status: np.ndarray
    dist: np.ndarray
    t_out: np.ndarray  # per driver: when it went OUT (inf: never)


def _geometry(
    frames: FastF1Frames, laps: dict[str, DriverLaps], traces: dict[str, Trace], cars: Mapping[str, CarTrace | None]
) -> tuple[TrackGeometry, float]:
    """(track geometry in metres, metres per FastF1 position unit) from the fastest clean lap."""
    ref_num, ref_i, ref_t, ref_x, ref_y = _reference_lap(laps, traces, frames.race_like)
    scale = _position_scale(ref_t, ref_x, ref_y, cars.get(ref_num))
    rx, ry = ref_x * scale, ref_y * scale
    rl = laps[ref_num]
    sector_t = [rl.sector_at[0][ref_i], rl.sector_at[1][ref_i]]
    sectors = path_fractions(rx, ry, ref_t, sector_t) if all(math.isfinite(v) for v in sector_t) else []
    geometry = geometry_from_path(
        rx,
        ry,
        closed=True,
        sectors=sectors,
        drs_zones=_drs_zone_fractions(ref_t, rx, ry, cars.get(ref_num)),
        pit_lane=_pit_lane(laps, traces, scale),
        rotation=frames.rotation,
    )
    return geometry, scale


def _resample(
    ch: dict[str, np.ndarray], grid: np.ndarray, nums: list[str], dns: np.ndarray, traces: Mapping[str, Trace],
    cars: Mapping[str, CarTrace | None], scale: float, progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Telemetry onto the frame grid (into ``ch``); returns (distance driven per frame and
    driver, when each car last moved)."""
    nd = len(nums)
    dist = ch["dist"]  # (memory) the channel itself, filled in place; made relative to the start later
    last_move = np.full(nd, -math.inf)
    for j, num in enumerate(nums):
        if dns[j]:
            continue
        tr = traces[num]
        x, y = tr.x * scale, tr.y * scale
        ch["x"][:, j] = resample_linear(tr.t, x, grid)
        ch["y"][:, j] = resample_linear(tr.t, y, grid)
        d = path_distance(x, y)
        # Distance (for progress only) is interpolated across feed gaps: both ends are
        # real samples, and a hole spanning a line crossing must not shorten that lap.
        dist[:, j] = np.interp(grid, tr.t, d)
        last_move[j] = _last_movement(tr, d)
        car = cars[num]
        if car is not None:
            ch["speed"][:, j] = np.clip(resample_linear(car.t, car.speed, grid), 0, None)
            ch["throttle"][:, j] = resample_linear(car.t, car.throttle, grid)
            ch["brake"][:, j] = resample_hold(car.t, car.brake, grid)
            ch["gear"][:, j] = resample_hold(car.t, car.gear, grid)
            ch["drs"][:, j] = resample_hold(car.t, car.drs, grid)
        else:
            ch["speed"][:, j] = resample_linear(tr.t, speed_from_distance(tr.t, d), grid)
        report(progress, "resample", (j + 1) / nd)
    return dist, last_move


def _race_order(
    frames: FastF1Frames, race: _RaceState, nums: list[str], drivers: list[Driver], dns: np.ndarray, dlaps: list[DriverLaps],
    traces: Mapping[str, Trace], scale: float, last_move: np.ndarray, ch: Mapping[str, np.ndarray], geometry: TrackGeometry,
    start: float, start_f: int, lap_len: float, fps: int,
) -> tuple[np.ndarray, float, list[str]]:
    """A race's classification and running order: (positions, order margin in m, warnings);
    finishes, retirements and non-starters are written into ``race``."""
    grid, prog, status, dist, t_out = race.grid, race.prog, race.status, race.dist, race.t_out
    nd = len(nums)
    finish_order = np.full(nd, np.nan)
    t_fin = np.full(nd, math.inf)
    crossings = [(dl.cross_t, dl.cross_k) for dl in dlaps]
    # Classification at the line: the flag falls when the first car completes the last
    # lap; every other car takes it at its first crossing after that (laps down too).
    _t_flag, _total, fin_t = chequered_flag(crossings, frames.total_laps)
    for j, dl in enumerate(dlaps):
        if dns[j]:
            continue
        if np.isfinite(fin_t[j]):
            t_fin[j] = fin_t[j]
            fin = grid >= t_fin[j] - 1e-9
            prog[fin, j] = dl.cross_k[np.flatnonzero(dl.cross_t >= t_fin[j] - 1e-9)[0]]
            status[fin, j] = Status.FINISHED
        else:
            # out from where it stopped (the first sample from which it stays put); its
            # progress still counts a line crossing it rolled over after that (pit lane)
            tr = traces[nums[j]]
            t_out[j] = stop_time(tr.t, tr.x * scale, tr.y * scale)
            if not math.isfinite(t_out[j]):
                t_out[j] = last_move[j]
            last_cross = float(dl.cross_t.max()) if dl.cross_t.size else -math.inf
            freeze = max(t_out[j], last_cross, float(tr.t[-1]) if tr.t.size else -math.inf)
            after = grid > freeze
            if after.any():
                first = int(np.argmax(after))
                held = prog[first - 1, j] if first > 0 else prog[0, j]
                prog[after, j] = max(held, float(dl.cross_k[-1])) if dl.cross_k.size else held
                dist[after, j] = dist[first - 1, j] if first > 0 else dist[0, j]
            status[grid >= t_out[j], j] = Status.OUT
    finished = np.flatnonzero(np.isfinite(t_fin))
    finish_order[finished[np.argsort(t_fin[finished], kind="stable")]] = np.arange(1, finished.size + 1)
    for j in finished:
        fin = grid >= t_fin[j] - 1e-9
        if fin.any():
            dist[fin, j] = dist[int(np.argmax(fin)), j]
    status[:, dns] = Status.DNS
    ranks, pit_start = _grid_ranks(frames, nums, dlaps, geometry, ch, start_f, dns)
    lap1 = []
    for j, num in enumerate(nums):
        tr = traces.get(num)
        if dns[j] or tr is None or tr.t.size == 0:
            lap1.append((np.zeros(0, dtype=np.int64), np.zeros(0), math.nan))
            continue
        first = float(dlaps[j].cross_t[0]) if dlaps[j].cross_t.size else math.inf
        idx, s_along, s_cross = lap1_along(geometry, grid, tr.t, tr.x * scale, tr.y * scale, first)
        keep = grid[idx] >= start  # from lights out; before it the grid is the grid
        lap1.append((idx[keep], s_along[keep], s_cross))
    key = order_key(grid, prog, crossings, ranks, fps, lap1, geometry.length, pit_start)
    # between the lines the feed moves a car up only by more than its own error at the line
    xy = [None if dns[j] or num not in traces else (traces[num].t, traces[num].x * scale, traces[num].y * scale) for j, num in enumerate(nums)]
    key, margin_m = anchored_order_key(key, grid, crossings, ranks, pit_start, geometry, xy, lap_len)
    positions = running_order(key, status, finish_order)
    del key  # (memory) whole-race temporaries go as soon as they are used
    return positions, margin_m, _results_disagree(frames.results, nums, drivers, dlaps, t_fin, dns)


def _lap_channels(
    ch: dict[str, np.ndarray], prog: np.ndarray, status: np.ndarray, positions: np.ndarray, grid: np.ndarray,
    start: float, dns: np.ndarray, race_like: bool,
) -> np.ndarray:
    """Each car's lap (into ``ch``); returns the leader's lap per frame (never going back)."""
    n = grid.size
    lap = np.floor(prog)
    lap += 1
    lap = lap.astype(np.int64)
    lap[status == Status.FINISHED] = np.round(prog[status == Status.FINISHED]).astype(np.int64)
    np.clip(lap, 0, None, out=lap)
    if race_like:
        np.maximum(lap, 1, out=lap)  # LAP 1 from lights out, also for a grid behind the line
        lap[grid < start] = 0
        lap[:, dns] = 0
        for name in ("x", "y", "speed", "dist", "rel_dist", "race_progress"):
            ch[name][:, dns] = 0
    ch["lap"][:] = lap
    if race_like:
        leader = np.argmax(positions == 1, axis=1)
        return np.maximum.accumulate(lap[np.arange(n), leader])
    return np.maximum.accumulate(lap.max(axis=1))


def _event(
    frames: FastF1Frames, session_label: str, start_t: float, begin: float, scale: float, margin_m: float,
    skipped: list[str], warnings: list[str],
) -> dict[str, Any]:
    """The race's ``event`` document."""
    return {
        "year": int(frames.year),
        "round": int(frames.round),
        "session_type": frames.session,
        "session_name": session_label,
        "name": frames.event_name,
        "circuit": frames.circuit,
        "country": frames.country,
        "date": frames.date,
        "source": "fastf1",
        "start_t": round(start_t, 3),
        "session_time_offset": round(begin, 3),
        "position_scale": scale,
        **({"order_margin_m": round(margin_m, 2)} if frames.race_like else {}),
        "scheduled_laps": frames.total_laps,
        "corners": corners_of(frames.corners, scale),
        # drivers with lap times but not one position sample can't be drawn: left out
        "skipped_drivers": skipped,
        "warnings": warnings,
    }


# -- steps of the conversion -------------------------------------------------------------


def _drivers(results: pd.DataFrame | None, numbers: list[str]) -> list[tuple[str, Driver]]:
    """(driver number, Driver) for every number with data, in the results' order."""
    rows: dict[str, Any] = {}
    order: list[str] = []
    if results is not None and len(results) and "DriverNumber" in results.columns:
        for _, r in results.iterrows():
            num = text(r.get("DriverNumber"))
            if num and num not in rows:
                rows[num] = r
                order.append(num)
    rest = sorted((n for n in numbers if n not in rows), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    ordered = [n for n in order if n in numbers] + rest
    out: list[tuple[str, Driver]] = []
    used: set[str] = set()
    for i, num in enumerate(ordered):
        r = rows.get(num, {})
        code = text(r.get("Abbreviation")) or f"N{num}"
        if code in used:
            code = f"{code}{num}"
        used.add(code)
        name = text(r.get("FullName")) or text(r.get("BroadcastName")) or code
        color = valid_color(text(r.get("TeamColor"))) or fallback_color(i)
        number = int(num) if num.isdigit() else 1000 + i
        out.append((num, Driver(code=code, number=number, name=name, team=text(r.get("TeamName")), color=color)))
    return out


def _window(frames: FastF1Frames, laps: dict[str, DriverLaps], traces: dict[str, Trace]) -> tuple[float, float, float]:
    """(start, begin, end) in session seconds: session/race start, first and last frame."""
    all_cross = np.concatenate([dl.cross_t for dl in laps.values()] + [np.zeros(0)])
    sst = scalar_seconds(frames.session_start_time)
    if frames.race_like:
        lap1 = np.concatenate([dl.start[dl.number == 1] for dl in laps.values()] + [np.zeros(0)])
        lap1 = lap1[np.isfinite(lap1)]
        start = float(lap1.min()) if lap1.size else sst
        begin_pad = PRE_ROLL
    else:
        start = sst
        if not math.isfinite(start):
            outs = np.concatenate([np.concatenate([dl.pit_out, dl.start]) for dl in laps.values()])
            outs = outs[np.isfinite(outs)]
            start = float(outs.min()) if outs.size else math.nan
        begin_pad = 0.0
    first_pos = min((tr.t[0] for tr in traces.values() if tr.t.size), default=math.nan)
    if not math.isfinite(start):
        if all_cross.size:
            start = float(all_cross.min()) - 120.0
        elif math.isfinite(first_pos):
            start = first_pos
        else:
            raise IngestError("FastF1 data has neither lap times nor positions to place the session in time")
    ends = [float(all_cross.max())] if all_cross.size else []
    if not frames.race_like:
        e = np.concatenate([dl.end for dl in laps.values()])
        e = e[np.isfinite(e)]
        if e.size:
            ends.append(float(e.max()))
    if not ends:
        last_pos = max((tr.t[-1] for tr in traces.values() if tr.t.size), default=start)
        ends.append(float(last_pos))
    begin, end = start - begin_pad, max(ends) + POST_ROLL
    if end - begin > MAX_DURATION:
        raise IngestError(f"the session's timing spans {(end - begin) / 3600:.1f} h: the timing data looks broken")
    if end <= begin:
        raise IngestError("FastF1 timing data ends before the session starts")
    return start, begin, end


def _reference_lap(laps: dict[str, DriverLaps], traces: dict[str, Trace], race_like: bool) -> tuple[str, int, np.ndarray, np.ndarray, np.ndarray]:
    """The fastest clean lap with good position data: (driver, lap row, t, x, y) raw units."""
    cands = []
    for num, dl in laps.items():
        for i in range(dl.number.size):
            if not (math.isfinite(dl.start[i]) and math.isfinite(dl.end[i]) and dl.end[i] > dl.start[i]):
                continue
            if dl.generated[i] or dl.deleted[i]:
                continue
            clean = (
                math.isnan(dl.pit_in[i]) and math.isnan(dl.pit_out[i]) and dl.accurate[i]
                and not (race_like and dl.number[i] == 1)
            )  # fmt: skip
            duration = dl.lap_time[i] if math.isfinite(dl.lap_time[i]) else dl.end[i] - dl.start[i]
            cands.append((0 if clean else 1, duration, num, i))
    cands.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
    for _clean, _dur, num, i in cands:
        tr = traces.get(num)
        if tr is None or tr.t.size < 3:
            continue
        t0, t1 = laps[num].start[i], laps[num].end[i]
        inside = (tr.t > t0) & (tr.t < t1)
        ts = tr.t[inside]
        if ts.size < 20:
            continue
        edges = np.concatenate([[t0], ts, [t1]])
        if np.diff(edges).max() > 2.0:
            continue
        x = np.concatenate([[np.interp(t0, tr.t, tr.x)], tr.x[inside], [np.interp(t1, tr.t, tr.x)]])
        y = np.concatenate([[np.interp(t0, tr.t, tr.y)], tr.y[inside], [np.interp(t1, tr.t, tr.y)]])
        return num, i, edges, x, y
    raise IngestError("no lap has enough position data to draw the track from")


def _position_scale(ref_t: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray, car: CarTrace | None) -> float:
    """Metres per FastF1 position unit: 0.1, unless the car's speed clearly says otherwise."""
    if car is None:
        return RAW_SCALE
    m = (car.t >= ref_t[0]) & (car.t <= ref_t[-1])
    if m.sum() < 10:
        return RAW_SCALE
    v, t = car.speed[m] / 3.6, car.t[m]
    driven = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)))
    raw = float(np.hypot(np.diff(ref_x), np.diff(ref_y)).sum())
    if not (raw > 0 and driven > 0):
        return RAW_SCALE
    r = driven / raw
    return RAW_SCALE if 0.07 <= r <= 0.14 else float(f"{r:.3g}")


def _drs_zone_fractions(ref_t: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray, car: CarTrace | None) -> list[tuple[float, float]]:
    if car is None:
        return []
    m = (car.t >= ref_t[0]) & (car.t <= ref_t[-1])
    t, open_ = car.t[m], car.drs[m] == Drs.OPEN
    zones = []
    i = 0
    while i < t.size:
        if open_[i]:
            j = i
            while j + 1 < t.size and open_[j + 1]:
                j += 1
            if t[j] - t[i] >= 1.0:
                a, b = path_fractions(ref_x, ref_y, ref_t, [t[i], t[j]])
                zones.append((a, b))
            i = j + 1
        else:
            i += 1
    return zones


def _pit_lane(laps: dict[str, DriverLaps], traces: dict[str, Trace], scale: float) -> tuple[np.ndarray, np.ndarray] | None:
    best = None
    for num, dl in laps.items():
        for i in range(dl.number.size - 1):
            t_in, t_out = dl.pit_in[i], dl.pit_out[i + 1]
            if math.isfinite(t_in) and math.isfinite(t_out) and t_out > t_in and (best is None or t_out - t_in < best[0]):
                best = (t_out - t_in, num, t_in, t_out)
    if best is None:
        return None
    _, num, t_in, t_out = best
    tr = traces.get(num)
    if tr is None:
        return None
    m = (tr.t >= t_in - 1.0) & (tr.t <= t_out + 1.0)
    if m.sum() < 5:
        return None
    return resample_path(tr.x[m] * scale, tr.y[m] * scale, spacing=5.0)


def _last_movement(tr: Trace, dist: np.ndarray) -> float:
    """Time of the last sample that moved the car (-inf when it never moved)."""
    moved = np.flatnonzero(np.diff(dist) > 0)
    return float(tr.t[moved[-1] + 1]) if moved.size else -math.inf


def _pit_intervals(dl: DriverLaps, race_like: bool) -> list[tuple[float, float]]:
    out = []
    n = dl.number.size
    for i in range(n):
        if math.isfinite(dl.pit_in[i]):
            nxt = dl.pit_out[i + 1] if i + 1 < n else math.nan
            out.append((dl.pit_in[i], nxt if math.isfinite(nxt) and nxt > dl.pit_in[i] else math.inf))
    first_out = dl.pit_out[0] if n else math.nan
    if math.isfinite(first_out):
        if race_like:
            if dl.number[0] == 1:  # pit-lane start
                out.append((-math.inf, first_out))
        else:  # in the garage until the first run
            out.append((-math.inf, first_out))
    return out


def _non_starters(frames: FastF1Frames, traces: Mapping[str, Trace], laps: Mapping[str, DriverLaps]) -> list[str]:
    """Driver numbers in the results (or pos_data) with no valid position and no completed lap."""
    known: list[str] = list(traces)
    res = frames.results
    if res is not None and len(res) and "DriverNumber" in res.columns:
        known += [text(v) for v in res["DriverNumber"]]
    out = []
    for num in dict.fromkeys(k for k in known if k):
        tr = traces.get(num)
        dl = laps.get(num)
        if (tr is None or tr.t.size == 0) and (dl is None or dl.cross_t.size == 0):
            out.append(num)
    return out


def _grid_ranks(
    frames: FastF1Frames, nums: list[str], dlaps: list[DriverLaps], geometry: Any, ch: Mapping[str, np.ndarray], start_f: int, dns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(start order, pit-lane starters): the results' GridPosition (0 = pit lane, last), else
    where cars stood at the start, with cars leaving the pit lane on lap 1 (or standing off
    the grid) behind it."""
    ahead, off = start_slots(geometry, ch["x"][start_f], ch["y"][start_f])
    pit = pit_lane_start(ahead, off) | dns
    for j, dl in enumerate(dlaps):
        if dl.number.size and dl.number[0] == 1 and math.isfinite(dl.pit_out[0]):
            pit[j] = True
    given = None
    res = frames.results
    if res is not None and len(res) and "GridPosition" in res.columns and "DriverNumber" in res.columns:
        gp = {text(r): scalar_float(v) for r, v in zip(res["DriverNumber"], res["GridPosition"])}
        given = np.array([gp.get(num, math.nan) for num in nums], dtype=np.float64)
        if not np.isfinite(given).any():
            given = None
        else:
            pit = dns | (np.isfinite(given) & (given <= 0))  # the official grid says who started from the pit lane (0)
    return grid_ranks(ahead, pit, given), pit


def _results_disagree(
    results: pd.DataFrame | None, nums: list[str], drivers: list[Driver], dlaps: list[DriverLaps], t_fin: np.ndarray, dns: np.ndarray
) -> list[str]:
    """Warnings where the results' lap count disagrees with the laps the timing data shows."""
    if results is None or len(results) == 0 or "Laps" not in results.columns or "DriverNumber" not in results.columns:
        return []
    laps_of = {text(r): scalar_float(v) for r, v in zip(results["DriverNumber"], results["Laps"])}
    # disqualified / excluded cars: their official lap count is not what they drove
    cp = results["ClassifiedPosition"] if "ClassifiedPosition" in results.columns else [""] * len(results)
    dsq = {text(r) for r, c in zip(results["DriverNumber"], cp) if text(c).upper() in ("D", "E")}
    out = []
    for j, num in enumerate(nums):
        want = laps_of.get(num, math.nan) if num not in dsq else math.nan
        if not math.isfinite(want) or dns[j]:
            continue
        got = int(dlaps[j].cross_k.max()) if dlaps[j].cross_k.size else 0
        if got != int(want):
            out.append(f"driver {drivers[j].code}: the results say {int(want)} laps, the timing data has {got}; the replay follows the timing data")
    return out


def _timed_laps(dl: DriverLaps, begin: float) -> tuple[np.ndarray, np.ndarray]:
    """(end in replay seconds, lap time) of a driver's valid timed laps (not deleted, not generated)."""
    ok = np.isfinite(dl.end) & np.isfinite(dl.lap_time) & ~dl.deleted & ~dl.generated
    return dl.end[ok] - begin, dl.lap_time[ok]


def _lap_length(dlaps: list[DriverLaps], grid: np.ndarray, dist: np.ndarray, fallback: float) -> float:
    """Median distance driven per full, green, non-pit lap (in the same units as ``dist``)."""
    vals = []
    for j, dl in enumerate(dlaps):
        if dl.cross_t.size < 2:
            continue
        dc = np.interp(dl.cross_t, grid, dist[:, j])
        pit_laps = set(dl.number[np.isfinite(dl.pit_in) | np.isfinite(dl.pit_out)].tolist())
        for a in range(dl.cross_t.size - 1):
            k = int(dl.cross_k[a + 1])
            if k - int(dl.cross_k[a]) == 1 and k not in pit_laps and k != 1:
                vals.append(dc[a + 1] - dc[a])
    return median_lap_length(vals, fallback)


def _timing_channels(ch: dict[str, np.ndarray], j: int, dl: DriverLaps, grid: np.ndarray) -> None:
    if dl.number.size == 0:
        return
    ends = dl.end.copy()
    ends[~np.isfinite(ends)] = -np.inf
    ends = np.maximum.accumulate(ends)
    idx = np.clip(np.searchsorted(ends, grid, side="left"), 0, dl.number.size - 1)
    ch["tyre"][:, j] = dl.compound[idx]
    ch["tyre_age"][:, j] = np.nan_to_num(dl.tyre_life[idx]).astype(np.int64)
    ch["lap_time"][:, j] = step_values(dl.end, dl.lap_time, grid, np.nan)
    # sector times show up when each sector is completed
    fallback = (
        dl.start + dl.sector[0],
        dl.start + np.nan_to_num(dl.sector[0], nan=np.nan) + dl.sector[1],
        dl.end,
    )
    for s in range(3):
        at = np.where(np.isfinite(dl.sector_at[s]), dl.sector_at[s], fallback[s])
        ok = np.isfinite(dl.sector[s])
        ch[f"sector{s + 1}"][:, j] = step_values(at[ok], dl.sector[s][ok], grid, np.nan)


def _best_lap_order(grid: np.ndarray, dlaps: list[DriverLaps], drivers: list[Driver]) -> tuple[np.ndarray, np.ndarray]:
    """Qualifying/practice order: best valid lap time so far (then car number)."""
    n, nd = grid.size, len(dlaps)
    best = np.full((n, nd), np.nan)
    key = np.empty((n, nd))
    for j, dl in enumerate(dlaps):
        ok = np.isfinite(dl.end) & np.isfinite(dl.lap_time) & ~dl.deleted & ~dl.generated
        et, lt = dl.end[ok], dl.lap_time[ok]
        order = np.argsort(et, kind="stable")
        et, lt = et[order], lt[order]
        if et.size:
            run_best = np.fmin.accumulate(lt)
            best[:, j] = step_values(et, run_best, grid, np.nan)
            # when the current best was set breaks ties between equal times
            set_at = np.array([et[int(np.flatnonzero(lt[: i + 1] == run_best[i])[0])] for i in range(et.size)])
            when = step_values(et, set_at, grid, np.nan)
        else:
            when = np.full(n, np.nan)
        key[:, j] = np.where(np.isfinite(best[:, j]), best[:, j] + 1e-9 * np.nan_to_num(when), 1e9 + drivers[j].number)
    status = np.zeros((n, nd), dtype=np.int8)
    return running_order(-key, status), best


def _best_lap_gaps(ch: dict[str, np.ndarray], positions: np.ndarray, best: np.ndarray) -> None:
    n, nd = best.shape
    fastest = np.nanmin(np.where(np.isfinite(best), best, np.inf), axis=1)
    gap = best - fastest[:, None]
    order = np.argsort(positions, axis=1)  # driver index by position
    rows = np.arange(n)[:, None]
    best_sorted = best[rows, order]
    ahead = np.concatenate([np.full((n, 1), np.nan), best_sorted[:, :-1]], axis=1)
    itv = np.empty((n, nd))
    itv[rows, order] = best_sorted - ahead
    ch["gap"][:] = np.where(np.isfinite(best), gap, np.nan)
    ch["interval"][:] = np.where(np.isfinite(best), itv, np.nan)


__all__ = ["race_from_fastf1_frames"]
