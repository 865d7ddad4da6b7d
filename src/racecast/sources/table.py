"""Races from tables: CSV or Parquet telemetry in long form (karting, sim racing, GPS...).

One row per sample, in any driver order::

    time,driver,x,y,speed,lap
    0.00,HAM,12.0,-3.5,0.0,1
    0.00,VER,20.0,-3.5,0.0,1
    0.10,HAM,12.4,-3.5,14.4,1

Columns (names are case-insensitive; a unit may follow as ``name_unit``, ``name [unit]``
or ``name (unit)``):

* ``time`` (required) -- seconds (default), ``ms``, ``us``, ``min``, ``h``; or ISO 8601
  timestamps / durations (``2024-05-01T14:03:07.250``, ``0:01:23.5``). Only its
  differences matter: the replay starts at the earliest sample. Aliases: ``t``,
  ``timestamp``, ``datetime``, ``date``. Must not go backwards within a driver.
* ``driver`` (required) -- any id; becomes the driver code. Aliases: ``car``,
  ``driver_id``, ``code``.
* ``x``, ``y`` (required) -- metres (default), ``km``, ``dm``, ``cm``, ``mm``, ``ft``;
  or instead ``lat``/``lon`` in degrees (projected to local metres).
* optional channels, as in :data:`racecast.race.CHANNELS`: ``speed`` (km/h default,
  ``m/s``/``mps``, ``mph``, ``kn``), ``throttle``/``brake`` (% default, or ``frac``;
  booleans allowed for brake), ``gear``, ``drs`` (Drs code or FastF1's raw code),
  ``lap`` (current lap, 1-based: its increments are the line crossings), ``tyre``
  (compound name or code), ``tyre_age`` (laps), ``lap_time``, ``sector1..3``, ``gap``,
  ``interval`` (s default, or ``ms``), ``status`` (running/pit/out/finished or code).
* per-driver details: ``team``, ``name``, ``color``/``colour`` (``#RRGGBB``), ``number``.
* ignored (recorded in ``Race.event["ignored_columns"]``): ``z``/``altitude`` and the
  channels racecast computes itself: ``position``, ``race_progress``, ``rel_dist``, ``dist``.

Anything else is an error naming the column. Resampling, progress and running order
follow the FastF1 source: positions hold across gaps longer than
``max(1 s, 3 x the driver's median sample interval)``; progress is anchored at line
crossings: the ``lap`` increments at the data's own instant where the boundary sample
appears twice (old lap, new lap, same time), else where the trace crosses the start line
of the derived track; data that ends on the line while moving ends with a crossing.
Classification at the line: once the first car completes the last lap (when the table
says so with a ``finished`` status, or that car's data ends there), every other car takes
the flag at its first crossing after that. Before its first crossing a car is placed by
where it is along the track (the grid at lights out; a car in the pit lane or standing
apart from the grid starts behind it). A car whose samples end more than 5 s before the
others is OUT from where it stopped (the table's ``out`` status when it has one); a
driver without a single valid position (blank, or all at 0,0) did not start: DNS.
Contradictions in the data (a lap column going backwards, a status that disagrees with
the laps, a driver without positions) become warnings in ``Race.event["warnings"]``.
The track is the first complete lap of the driver with the most samples (or, when no
trace closes a loop, that driver's whole path, open).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from racecast.race import (
    DEFAULT_FPS,
    Compound,
    Driver,
    PitStop,
    Race,
    Status,
    TrackGeometry,
    empty_channels,
)
from racecast.sources import IngestError, ProgressFn
from racecast.sources.ingest_report import with_event, with_warnings
from racecast.sources.officials import KNOCKOUT_SESSIONS, attach_officials
from racecast.sources.table_read import Samples, map_columns, read_file, read_samples
from racecast.sources._common import (
    HALF_WIDTH,
    MAX_GAP,
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
    pit_lane_start,
    progress_from_crossings,
    project_along,
    race_gaps,
    report,
    resample_hold,
    resample_linear,
    running_order,
    speed_from_distance,
    start_slots,
    step_values,
    stop_time,
    valid_color,
)

STOP_SENDING = 5.0  # s: a driver whose samples end this much before the others is OUT
#: m: data ending (while moving) this close to the timing line ends on it; in real F1 data the
#: positions sampled at a timing-line instant scatter up to +-60 m around the line
LINE_TOLERANCE = 75.0
MAX_CELLS = 400_000_000  # frames x drivers; beyond this the time column is surely wrong
#: A race starts together: most cars' data begins within this many seconds of the first car's.
START_WINDOW_S = 10.0


# -- the source --------------------------------------------------------------------------


def load_table(
    path: str | os.PathLike[str],
    *,
    id: str | None = None,  # noqa: A002 -- the CLI's --id
    fps: int = DEFAULT_FPS,
    progress: ProgressFn | None = None,
    geometry: TrackGeometry | None = None,
    session: str = "auto",
) -> Race:
    """Read a long-form CSV/Parquet telemetry table into a :class:`Race`.

    ``id`` defaults to the file name without extension; ``geometry`` (in the table's
    metres) replaces the track derived from the traces. ``session``: "R" (a race), "Q"
    (knockout qualifying: segments and order inferred from the data, see
    :mod:`.qualifying`) or "auto" (the default: a race if the cars start together, else a
    qualifying, with a warning; see :func:`_session_kind`). Raises :class:`IngestError` naming the column, row or
    driver at fault for a file that can't be used.
    """
    p = Path(path)
    report(progress, "read", 0.0)
    df, csv = read_file(p)
    frame = [df]  # (memory) handed over: the table is freed once its samples are taken
    del df
    return _race_from_frame(
        frame, race_id=id or _default_id(p), title=p.stem, fps=fps, progress=progress, geometry=geometry,
        csv=csv, what=p.name, event={"file": p.name}, session=session,
    )


def race_from_dataframe(
    df: Any,
    *,
    race_id: str,
    title: str,
    fps: int = DEFAULT_FPS,
    progress: ProgressFn | None = None,
    geometry: TrackGeometry | None = None,
    csv: bool = False,
    what: str = "the table",
    event: dict[str, Any] | None = None,
    session: str = "auto",
) -> Race:
    """A :class:`Race` from a long-form table already read into a pandas DataFrame.

    ``csv``: the cells are text (bad cells are reported with their CSV line numbers).
    ``session``: "R", "Q" (knockout qualifying) or "auto", as for :func:`load_table`.
    """
    return _race_from_frame([df], race_id=race_id, title=title, fps=fps, progress=progress, geometry=geometry,
                            csv=csv, what=what, event=event, session=session)  # fmt: skip


def _race_from_frame(
    frame: list[Any], *, race_id: str, title: str, fps: int, progress: ProgressFn | None,
    geometry: TrackGeometry | None, csv: bool, what: str, event: dict[str, Any] | None, session: str,
) -> Race:
    """:func:`race_from_dataframe` of ``frame[0]``, taken out of ``frame``: a table nobody else holds
    is freed once its samples are taken, before the race's arrays are built."""
    df = frame.pop()
    df.columns = [str(c) for c in df.columns]
    cols = map_columns(list(df.columns))
    if len(df) == 0:
        raise IngestError(f"{what} has no rows (only a header)")
    warnings: list[str] = []
    samples = read_samples(df, cols, csv, warnings)
    del df  # (memory)
    report(progress, "read", 1.0)
    ev = {"source": "table", "columns": cols.role, "ignored_columns": cols.ignored, "warnings": warnings}
    ev.update(event or {})
    race = race_from_samples(samples, race_id=race_id, title=title, fps=fps, progress=progress, geometry=geometry, event=ev)
    code, note = _session_kind(samples, session, closed=bool(race.event.get("closed_track", True)))
    race = with_warnings(with_event(race, session_type=code), [note] if note else [])
    return attach_officials(race, session=code, race_like=code not in KNOCKOUT_SESSIONS)


def _session_kind(samples: list[Samples], told: str, *, closed: bool) -> tuple[str, str]:
    """("R" or "Q", a warning or ""): what the caller said, or ("auto") what the data shows.

    A race starts together (the grid): at least half of the cars with positions have their
    first sample within :data:`START_WINDOW_S` of the first car's. In a qualifying session
    cars leave the pit lane one by one over minutes -- on a circuit: cars setting off one by
    one on an open path (a time trial, a stage) are still read as a race. A told kind that
    contradicts the data is kept, with a warning; a guessed qualifying is warned about too
    (it changes the order).
    """
    code = told.strip().upper()
    starts = np.sort([float(s.t[0]) for s in samples if not s.no_positions and s.t.size])
    together = int(np.sum(starts <= starts[0] + START_WINDOW_S)) if starts.size else 0
    common = not closed or (starts.size > 0 and 2 * together >= starts.size)
    spread = f"{together} of {starts.size} cars' data begins within {START_WINDOW_S:g} s of the first car's"
    if code == "AUTO":
        if common:
            return "R", ""
        return "Q", (f"read as a qualifying session (knockout order): no common start ({spread}); "
                     "pass --session R (session='R') if it is a race")
    if code == "R" and not common:
        return code, f"read as a race as told, but there is no common start ({spread}): a qualifying? (--session Q)"
    if code in KNOCKOUT_SESSIONS and closed and together == starts.size > 1:
        return code, f"read as a qualifying session as told, but the cars start together ({spread}): a race? (--session R)"
    return code, ""


def _default_id(p: Path) -> str:
    stem = p.name
    for suf in reversed(p.suffixes):
        stem = stem[: -len(suf)] if stem.endswith(suf) else stem
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip("_.-")[:64].rstrip("_.-")
    return safe or "table"  # a valid bundle id: 1-64 of [A-Za-z0-9_.-], starting alphanumeric


def race_from_samples(
    samples: list[Samples],
    *,
    race_id: str,
    title: str,
    fps: int = DEFAULT_FPS,
    progress: ProgressFn | None = None,
    geometry: TrackGeometry | None = None,
    event: dict[str, Any] | None = None,
) -> Race:
    """A :class:`Race` from per-driver samples: resampled channels, the track (derived unless
    given), line crossings, classification at the line and the running order."""
    live = [s for s in samples if not s.no_positions]
    if not live:
        raise IngestError("no driver has a valid position (every x/y is blank, or all at 0,0)")
    t_begin = min(float(s.t[0]) for s in live)
    t_last = max(float(s.t[-1]) for s in live)
    nd = len(samples)
    ev = dict(event or {})
    warnings: list[str] = ev.setdefault("warnings", [])
    if (t_last - t_begin) * fps * nd > MAX_CELLS:
        raise IngestError(
            f"the table spans {(t_last - t_begin) / 3600:.1f} h: too long to replay at {fps} fps "
            "(is the time column in seconds? use e.g. 'time_ms' for milliseconds)"
        )
    # the last frame is at or after the last sample: the last car over the line is shown finished
    grid = frame_grid(t_begin, t_last + (1.0 - 1e-6) / fps, fps)
    n = grid.size
    dists = [path_distance(s.x, s.y) for s in samples]
    report(progress, "geometry", 0.0)
    if geometry is None:
        geo, closed = _derive_geometry(samples, dists)
    else:
        geo, closed = geometry, True
    report(progress, "geometry", 1.0)

    ch = empty_channels(n, nd)
    dist = _resample(ch, samples, grid, dists, progress)

    # -- progress, status, order --------------------------------------------------------
    report(progress, "order", 0.0)
    lap_len = float(geo.length)
    crossings = [_crossings(s, dists[j], geo, closed, lap_len) for j, s in enumerate(samples)]
    if closed:
        crossings = [_end_at_line(s, geo, crossings[j]) if not s.no_positions else crossings[j] for j, s in enumerate(samples)]
    lap_len = _lap_length(crossings, grid, dist, lap_len)
    prog = np.zeros((n, nd))
    status = np.zeros((n, nd), dtype=np.int8)
    col_status = np.full((n, nd), -1, dtype=np.int8)  # the table's own status (-1: none)
    for j, s in enumerate(samples):
        if s.no_positions:
            continue
        ct, ck = crossings[j]
        if ct.size:
            prog[:, j] = progress_from_crossings(grid, dist[:, j], ct, ck, lap_len)
        else:
            s0 = float(project_along(geo, s.x[:1], s.y[:1], closed=closed)[0])
            if closed and s0 > geo.length / 2:
                s0 -= geo.length
            p = (s0 + dist[:, j] - dist[0, j]) / lap_len
            prog[:, j] = np.minimum(p, 0.999) if closed else p
        if "status" in s.extra:
            tt, vv = _finite(s.t, s.extra["status"])
            col_status[:, j] = _fill(resample_hold(tt, vv, grid), float(Status.RUNNING)).astype(np.int8)
            status[:, j] = np.where(col_status[:, j] == Status.PIT, Status.PIT, Status.RUNNING)
        if s.t[0] > t_begin + STOP_SENDING:  # joined late: not running before its first sample
            status[grid < s.t[0], j] = Status.OUT

    t_fin, by_line = _finish_times(samples, crossings, col_status, grid, closed, warnings)
    t_out = _finish_and_retire(samples, crossings, t_fin, col_status, grid, t_last, prog, status, dist)
    finished = np.flatnonzero(np.isfinite(t_fin))
    finish_order = np.full(nd, np.nan)
    finish_order[finished[np.argsort(t_fin[finished], kind="stable")]] = np.arange(1, finished.size + 1)
    # before its first crossing a car holds its grid slot (pit-lane starters behind the grid)
    ranks, pit_start = _grid_ranks(samples, geo, closed, grid, col_status)
    if by_line:
        lap1 = [
            lap1_along(geo, grid, s.t, s.x, s.y, float(ct[0]) if ct.size else math.inf) if not s.no_positions else (np.zeros(0, dtype=np.int64), np.zeros(0), math.nan)
            for s, (ct, _ck) in zip(samples, crossings)
        ]
        key = order_key(grid, prog, crossings, ranks, fps, lap1, geo.length, pit_start)
        # between the lines the feed moves a car up only by more than its own error at the line
        traces = [None if s.no_positions else (s.t, s.x, s.y) for s in samples]
        key, margin_m = anchored_order_key(key, grid, crossings, ranks, pit_start, geo, traces, lap_len)
        ev["order_margin_m"] = round(margin_m, 2)
    else:
        key = prog
    positions = running_order(key, status, finish_order)
    del key  # (memory) whole-race temporaries go as soon as they are used
    rel = fill_order(ch, positions, status, prog)
    np.clip(rel if closed else prog, 0.0, 1.0, out=ch["rel_dist"])
    del rel
    dist -= dist[0].copy()[None, :]
    lap = _lap_channel(samples, prog, status, grid, closed)
    ch["lap"][:] = lap
    leader = np.argmax(positions == 1, axis=1)
    # the header shows LAP 1 from lights out (the first frame), even with the grid behind the line
    leader_lap = np.maximum(np.maximum.accumulate(lap[np.arange(n), leader]), 1)
    del lap, prog  # (memory)
    _crossing_channels(ch, samples, grid, crossings, t_out)
    del dist, positions, status, col_status  # (memory) before the race is validated
    report(progress, "order", 1.0)

    drivers = []
    for j, s in enumerate(samples):
        num = s.meta.get("number") or (s.code if s.code.isdigit() else "")
        drivers.append(
            Driver(
                code=s.code,
                number=int(num) if num else j + 1,
                name=s.meta.get("name") or s.code,
                team=s.meta.get("team", ""),
                color=valid_color(s.meta.get("color")) or fallback_color(j),
            )
        )
    total = max((int(ck.max()) for _, ck in crossings if ck.size), default=0) if closed else 1
    ev.update({"session_time_offset": round(t_begin, 3), "closed_track": closed})
    return build_race(
        "the table",
        id=race_id,
        title=title,
        event=ev,
        geometry=geo,
        drivers=tuple(drivers),
        fps=fps,
        channels=ch,
        leader_lap=leader_lap,
        total_laps=max(int(total), 0),
        pit_stops=_pit_stops(samples, t_begin),
    )


def _resample(
    ch: dict[str, np.ndarray], samples: list[Samples], grid: np.ndarray, dists: list[np.ndarray], progress: ProgressFn | None
) -> np.ndarray:
    """Every driver's channels onto the frame grid (into ``ch``); returns the distance driven per frame."""
    nd = len(samples)
    dist = ch["dist"]  # (memory) the channel itself, filled in place; made relative to frame 0 later
    for j, s in enumerate(samples):
        gaps = np.diff(s.t)
        max_gap = max(MAX_GAP, 3.0 * float(np.median(gaps))) if gaps.size else MAX_GAP
        ch["x"][:, j] = resample_linear(s.t, s.x, grid, max_gap)
        ch["y"][:, j] = resample_linear(s.t, s.y, grid, max_gap)
        dist[:, j] = np.interp(grid, s.t, dists[j])
        e = s.extra
        speed = e["speed"] if "speed" in e else speed_from_distance(s.t, dists[j])
        ch["speed"][:, j] = _fill(resample_linear(*_finite(s.t, speed), grid, max_gap), 0.0)
        for name, how, default in (
            ("throttle", "linear", 0.0), ("gear", "hold", 0.0), ("tyre", "hold", 0.0), ("tyre_age", "hold", 0.0),
        ):  # fmt: skip
            if name in e:
                tt, vv = _finite(s.t, e[name])
                v = resample_linear(tt, vv, grid, max_gap) if how == "linear" else resample_hold(tt, vv, grid)
                ch[name][:, j] = _fill(v, default)
        if "brake" in e:
            tt, vv = _finite(s.t, e["brake"])
            binary = bool(np.isin(vv, (0.0, 100.0)).all()) or bool(np.isin(vv, (0.0, 1.0)).all() and vv.max(initial=0) <= 1)
            if binary and vv.max(initial=0) <= 1:
                vv = vv * 100.0
            ch["brake"][:, j] = _fill(resample_hold(tt, vv, grid) if binary else resample_linear(tt, vv, grid, max_gap), 0.0)
        if "drs" in e:
            tt, vv = _finite(s.t, e["drs"])
            if vv.size and vv.max() > 2:  # FastF1's raw codes
                vv = np.where(vv >= 10, 2.0, np.where(vv == 8, 1.0, 0.0))
            ch["drs"][:, j] = _fill(resample_hold(tt, vv, grid), 0.0)
        for name in ("lap_time", "sector1", "sector2", "sector3", "gap", "interval"):
            if name in e:
                tt, vv = _finite(s.t, e[name])
                ch[name][:, j] = resample_hold(tt, vv, grid, before=np.nan)
        report(progress, "resample", (j + 1) / nd)
    return dist


def _finish_times(
    samples: list[Samples], crossings: list[tuple[np.ndarray, np.ndarray]], col_status: np.ndarray, grid: np.ndarray,
    closed: bool, warnings: list[str],
) -> tuple[np.ndarray, bool]:
    """(when each car took the flag, NaN: never; whether the line decided it)."""
    nd = len(samples)
    # Classification at the line: the flag falls when the first car completes the last lap;
    # every other car takes it at its first crossing after that, on the lead lap or laps down.
    by_line = closed and any(ct.size for ct, _ in crossings)
    t_fin = np.full(nd, np.nan)
    if by_line:
        t_flag, _total, t_fin = chequered_flag(crossings)
        # A table that just stops mid-race has no flag: the race is over only when the table
        # says so (a 'finished' status) or the winner's data ends on that crossing.
        said_finished = bool((col_status == Status.FINISHED).any())
        winner_stops = any(
            ct.size and abs(float(ct.min(initial=math.inf, where=ct >= t_flag - 1e-9)) - t_flag) < 1e-9 and s.t[-1] <= t_flag + 1.0
            for s, (ct, _ck) in zip(samples, crossings)
        )
        if not (said_finished or winner_stops):
            t_fin[:] = np.nan
        for j, s in enumerate(samples):
            # a column that calls a car finished when its laps never took the flag would
            # silently reorder the result (the reverse, a column that lags the line, is common)
            said = bool((col_status[:, j] == Status.FINISHED).any())
            if said and not np.isfinite(t_fin[j]) and not s.no_positions:
                warnings.append(
                    f"driver {s.code!r}: the status column says finished, but its laps never took the chequered flag "
                    "(no line crossing after the winner's); the laps win"
                )
    else:  # no line: the status column's finish (first 'finished' sample)
        for j in range(nd):
            fin = np.flatnonzero(col_status[:, j] == Status.FINISHED)
            if fin.size:
                t_fin[j] = grid[int(fin[0])]
    return t_fin, by_line


def _finish_and_retire(
    samples: list[Samples], crossings: list[tuple[np.ndarray, np.ndarray]], t_fin: np.ndarray, col_status: np.ndarray,
    grid: np.ndarray, t_last: float, prog: np.ndarray, status: np.ndarray, dist: np.ndarray,
) -> np.ndarray:
    """Finished cars frozen from their flag, retired cars OUT from where they stopped, non-starters
    DNS (written into ``prog``, ``status``, ``dist``); returns when each car went OUT (inf: never)."""
    n, nd = grid.size, len(samples)
    t_out = np.full(nd, math.inf)
    for j, s in enumerate(samples):
        if s.no_positions:
            continue
        if np.isfinite(t_fin[j]):
            f0 = int(np.searchsorted(grid, t_fin[j] - 1e-9))
            ct, ck = crossings[j]
            at = np.flatnonzero(np.abs(ct - t_fin[j]) < 1e-9)
            frozen = float(ck[at[0]]) if at.size else prog[min(f0, n - 1), j]
            status[f0:, j] = Status.FINISHED
            prog[f0:, j] = frozen
            dist[f0:, j] = dist[min(f0, n - 1), j]
            continue
        # not finished: out from the table's own 'out', else from where a car whose data ends early stopped
        col_out = col_status[:, j] == Status.OUT
        if col_out[-1]:
            t_out[j] = grid[_last_run_start(col_out)]
        elif s.t[-1] < t_last - STOP_SENDING:
            t_out[j] = stop_time(s.t, s.x, s.y)
        if math.isfinite(t_out[j]):
            status[grid >= t_out[j], j] = Status.OUT
    for j, s in enumerate(samples):
        if s.no_positions:
            status[:, j] = Status.DNS
            prog[:, j] = 0.0
            dist[:, j] = 0.0
    return t_out


def _lap_channel(samples: list[Samples], prog: np.ndarray, status: np.ndarray, grid: np.ndarray, closed: bool) -> np.ndarray:
    """Each car's current lap per frame: from its progress, never below the table's own lap."""
    n, nd = prog.shape
    if closed:
        lap = np.floor(prog)
        lap += 1
        lap = lap.astype(np.int64)
        for j, s in enumerate(samples):  # the table's own lap where it gives one (grid behind the line)
            if "lap" in s.extra and not s.no_positions:
                tt, vv = _finite(s.t, s.extra["lap"])
                if tt.size:
                    lap[:, j] = np.maximum(lap[:, j], resample_hold(tt, vv, grid).astype(np.int64))
        fin = status == Status.FINISHED
        lap[fin] = np.round(prog[fin]).astype(np.int64)
        np.maximum(lap, 0, out=lap)
    else:
        lap = np.ones((n, nd), dtype=np.int64)
    lap[status == Status.DNS] = 0
    return lap


def _crossing_channels(
    ch: dict[str, np.ndarray], samples: list[Samples], grid: np.ndarray, crossings: list[tuple[np.ndarray, np.ndarray]],
    t_out: np.ndarray,
) -> None:
    """Timing-screen gaps and lap times from the crossings, unless the table gave them; blank
    channels for the cars without positions."""
    # timing-screen gaps and lap times from the crossings, unless the table gave them
    gap, interval = race_gaps(grid, crossings, t_out)
    for j, s in enumerate(samples):
        if "gap" not in s.extra:
            ch["gap"][:, j] = gap[:, j]
        if "interval" not in s.extra:
            ch["interval"][:, j] = interval[:, j]
        ct, ck = crossings[j]
        if "lap_time" not in s.extra and ct.size > 1:
            consecutive = np.diff(ck) == 1
            ch["lap_time"][:, j] = step_values(ct[1:][consecutive], np.diff(ct)[consecutive], grid, np.nan)
    for j, s in enumerate(samples):
        if s.no_positions:
            for name in ("x", "y", "speed", "throttle", "brake", "gear", "drs", "tyre", "tyre_age", "dist", "rel_dist", "race_progress"):
                ch[name][:, j] = 0


# -- the track and its line --------------------------------------------------------------


def _find_loop(s: Samples, d: np.ndarray) -> tuple[int, int] | None:
    """Sample indices (i0, j) of the first closed lap of a trace, or None."""
    n = s.t.size
    if n < 10 or d[-1] <= 0:
        return None
    steps = np.diff(d)
    steps = steps[steps > 0]
    tol = max(3.0, 2.0 * float(np.median(steps))) if steps.size else 3.0
    min_len = max(50.0, 10.0 * tol)
    moving = np.flatnonzero(np.diff(d) > 0)
    starts = [int(moving[0])] if moving.size else []
    starts += [int(np.searchsorted(d, f * d[-1])) for f in (0.2, 0.4, 0.6)]
    for i0 in starts:
        j0 = int(np.searchsorted(d, d[i0] + min_len))
        if j0 >= n:
            continue
        r = np.hypot(s.x[j0:] - s.x[i0], s.y[j0:] - s.y[i0])
        close = np.flatnonzero(r <= tol)
        if close.size:
            j = j0 + int(close[0])
            while j + 1 < n and math.hypot(s.x[j + 1] - s.x[i0], s.y[j + 1] - s.y[i0]) < math.hypot(s.x[j] - s.x[i0], s.y[j] - s.y[i0]):
                j += 1
            return i0, j
    return None


def _lap_loop(s: Samples) -> tuple[int, int] | None:
    """(first sample of lap v, first sample of lap v+1) for the first complete lap v.

    Where the data marks its crossings exactly (the boundary sample twice), the lap runs
    from that sample to the next one, so the derived start line is the timing line.
    """
    bt, bk = s.boundaries
    for a in range(bt.size - 1):
        if bk[a + 1] - bk[a] == 1:
            i0 = int(np.searchsorted(s.t, bt[a]))
            j = int(np.searchsorted(s.t, bt[a + 1]))
            if j - i0 >= 10 and j < s.t.size:
                return i0, j
    lap = s.extra.get("lap")
    if lap is None:
        return None
    ok = np.isfinite(lap)
    idx = np.flatnonzero(ok)
    if idx.size < 3:
        return None
    incs = idx[1:][np.diff(lap[idx]) > 0]  # first samples of each new lap
    for a, b in zip(incs[:-1], incs[1:]):
        if b - a >= 10 and lap[b] - lap[a] == 1:
            return int(a), int(b)
    return None


def _derive_geometry(samples: list[Samples], dists: list[np.ndarray]) -> tuple[TrackGeometry, bool]:
    best = max(range(len(samples)), key=lambda i: (not samples[i].no_positions, samples[i].t.size, -i))
    s, d = samples[best], dists[best]
    loop = _lap_loop(s) or _find_loop(s, d)
    if loop is not None:
        i0, j = loop
        x, y, closed = s.x[i0:j], s.y[i0:j], True
    else:
        x, y, closed = s.x, s.y, False
    total = float(path_distance(x, y)[-1]) if x.size else 0.0
    if x.size < 3 or total <= 0:
        raise IngestError("the traces don't move: cannot derive a track from them")
    try:
        geo = geometry_from_path(x, y, closed=closed, spacing=max(2.0, total / 1500.0))
    except ValueError as exc:
        raise IngestError(f"cannot derive a track from driver {s.code!r}'s trace: {exc}") from exc
    return geo, closed


def _line_crossings(s: Samples, d: np.ndarray, geo: TrackGeometry, half_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Forward crossings of the start line: (times, distance driven at each)."""
    lx, ly, h = geo.start_finish
    hx, hy = math.cos(h), math.sin(h)
    a = (s.x - lx) * hx + (s.y - ly) * hy
    lat = -(s.x - lx) * hy + (s.y - ly) * hx
    i = np.flatnonzero((a[:-1] < 0) & (a[1:] >= 0))
    w = -a[i] / (a[i + 1] - a[i])
    ok = np.abs(lat[i] + w * (lat[i + 1] - lat[i])) <= half_len
    i, w = i[ok], w[ok]
    return s.t[i] + w * (s.t[i + 1] - s.t[i]), d[i] + w * (d[i + 1] - d[i])


def _crossings(s: Samples, d: np.ndarray, geo: TrackGeometry, closed: bool, lap_len: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, laps completed) at each line crossing of one driver."""
    if not closed:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    geo_t, geo_d = _line_crossings(s, d, geo, half_len=3 * HALF_WIDTH)
    lap = s.extra.get("lap")
    bt, bk = s.boundaries
    if lap is not None and np.isfinite(lap).sum() >= 2:
        idx = np.flatnonzero(np.isfinite(lap))
        inc = np.flatnonzero(np.diff(lap[idx]) > 0)
        cand = list(zip(bt.tolist(), bk.tolist()))  # the data's own instants
        for q in inc:
            i0, i1 = idx[q], idx[q + 1]
            k = int(lap[i1]) - 1
            if ((bt >= s.t[i0]) & (bt <= s.t[i1]) & (bk == k)).any():
                continue
            # no instant given: where the trace crosses the derived line, else halfway
            inside = geo_t[(geo_t >= s.t[i0]) & (geo_t <= s.t[i1])]
            cand.append((float(inside[0]) if inside.size else 0.5 * (s.t[i0] + s.t[i1]), k))
        cand.sort()
        ct, ck = [], []
        for t, k in cand:
            if not ct or (t > ct[-1] and k > ck[-1]):
                ct.append(float(t))
                ck.append(int(k))
        return np.array(ct, dtype=np.float64), np.array(ck, dtype=np.int64)
    # no lap column: count crossings of the derived start line, ignoring any that come
    # less than half a lap after the previous one (jitter on the line)
    keep_t, keep_d = [], []
    for t, dd in zip(geo_t, geo_d):
        if not keep_d or dd - keep_d[-1] >= 0.5 * lap_len:
            keep_t.append(float(t))
            keep_d.append(float(dd))
    if not keep_t:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    # which lap the first crossing completes: where the car started on the lap, plus how
    # far it drove to that crossing, is a whole number of laps
    s0 = float(project_along(geo, s.x[:1], s.y[:1])[0])
    p0 = (s0 if s0 < geo.length / 2 else s0 - geo.length) / geo.length
    k1 = int(round(p0 + (keep_d[0] - d[0]) / lap_len))
    return np.array(keep_t), np.arange(k1, k1 + len(keep_t), dtype=np.int64)


def _end_at_line(s: Samples, geo: TrackGeometry, cross: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A car whose data ends on the timing line while moving crossed it there (a finish or a
    retirement into the pits whose last row is the crossing): count that crossing."""
    ct, ck = cross
    if s.t.size < 2 or (ct.size and ct[-1] >= s.t[-1] - 1e-6):
        return cross
    along = float(project_along(geo, s.x[-1:], s.y[-1:])[0])
    if min(along, geo.length - along) > LINE_TOLERANCE:
        return cross
    recent = s.t >= s.t[-1] - 1.0
    moved = float(np.hypot(s.x[recent][-1] - s.x[recent][0], s.y[recent][-1] - s.y[recent][0]))
    if moved < 1.0:
        return cross  # it stopped on the line: that is not a crossing
    lap = s.extra.get("lap")
    if lap is not None and np.isfinite(lap[-1]):
        k = int(lap[-1])  # the lap it was on, completed here
    elif ck.size:
        k = int(ck[-1]) + 1
    else:
        return cross
    if ck.size and k <= ck[-1]:
        return cross
    return np.append(ct, float(s.t[-1])), np.append(ck, k).astype(np.int64)


# -- small helpers -----------------------------------------------------------------------


def _grid_ranks(
    samples: list[Samples], geo: TrackGeometry, closed: bool, grid: np.ndarray, col_status: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grid slots from the data: the order along the track at the start; cars in the pit lane
    (the status column says pit, or off the track) start behind the grid."""
    nd = len(samples)
    x0 = np.array([float(s.x[0]) for s in samples])
    y0 = np.array([float(s.y[0]) for s in samples])
    ahead, off = start_slots(geo, x0, y0)
    pit = pit_lane_start(ahead, off) if closed else np.zeros(nd, dtype=bool)
    for j, s in enumerate(samples):
        i = int(np.searchsorted(grid, s.t[0]))
        if i < grid.size and col_status[i, j] == Status.PIT:
            pit[j] = True
        if s.no_positions:
            pit[j] = True
    return grid_ranks(ahead, pit), pit


def _pit_stops(samples: list[Samples], t_begin: float) -> tuple[PitStop, ...]:
    """Stops from the status column's pit stretches (not a pit-lane start, not a retirement in the pits)."""
    stops = []
    for s in samples:
        st = s.extra.get("status")
        if st is None or s.no_positions:
            continue
        pit = st == Status.PIT
        edges = np.flatnonzero(np.diff(pit.astype(np.int8)) != 0) + 1
        bounds = np.concatenate([[0], edges, [pit.size]])
        lap = s.extra.get("lap")
        tyre = s.extra.get("tyre")
        for a, b in zip(bounds[:-1], bounds[1:]):
            if not pit[a] or a == 0 or b >= pit.size or st[b] != Status.RUNNING:
                continue
            k = int(lap[a]) if lap is not None and np.isfinite(lap[a]) else 0

            def comp(i: int) -> Compound:
                v = tyre[i] if tyre is not None else math.nan
                return Compound(int(v)) if np.isfinite(v) else Compound.UNKNOWN

            stops.append(PitStop(s.code, k, round(float(s.t[a] - t_begin), 3), round(float(s.t[b] - t_begin), 3), comp(a - 1), comp(b)))
    return tuple(sorted(stops, key=lambda p: (p.t_in, p.driver)))


def _finite(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(v)
    return t[ok], v[ok]


def _fill(v: np.ndarray, default: float) -> np.ndarray:
    return np.where(np.isfinite(v), v, default)


def _last_run_start(mask: np.ndarray) -> int:
    """First index of the final run of True values in ``mask`` (which ends True)."""
    false = np.flatnonzero(~mask)
    return int(false[-1]) + 1 if false.size else 0


def _lap_length(crossings: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray, dist: np.ndarray, fallback: float) -> float:
    vals = []
    for j, (ct, ck) in enumerate(crossings):
        if ct.size < 2:
            continue
        dc = np.interp(ct, grid, dist[:, j])
        one = np.diff(ck) == 1
        vals.extend(np.diff(dc)[one].tolist())
    return median_lap_length(vals, fallback)
