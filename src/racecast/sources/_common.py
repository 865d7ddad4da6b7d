"""Building blocks shared by the real-data sources (FastF1, tables).

Everything here is pure numpy: time series cleaning, resampling onto the frame grid
without inventing motion, distance travelled, running order from line crossings, and
track geometry from a lap's trace.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from racecast.race import ROW_BLOCK, Race, RaceError, Status, TrackGeometry, rank_positions
from racecast.sources import IngestError, ProgressFn

#: Samples further apart than this (s) are a gap: hold the last value, don't interpolate.
MAX_GAP = 1.0
#: Steps shorter than this (m) between position samples are jitter, not travel.
DEADBAND = 0.25
#: Half the track width (m) used for the edges drawn around a centre line.
HALF_WIDTH = 6.0

PALETTE = (
    "#3671C6", "#E8002D", "#27F4D2", "#FF8000", "#229971", "#0093CC",
    "#64C4FF", "#B6BABD", "#52E252", "#FF87BC", "#6692FF", "#C92D4B",
)


def report(progress: ProgressFn | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, float(min(max(fraction, 0.0), 1.0)))


def fallback_color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def valid_color(value: object) -> str | None:
    """``"#RRGGBB"`` from ``"RRGGBB"``/``"#RRGGBB"``, or None when it is not a colour."""
    if value is None:
        return None
    s = str(value).strip().lstrip("#")
    if len(s) == 6 and all(c in "0123456789abcdefABCDEF" for c in s):
        return "#" + s.upper()
    return None


def frame_grid(t_begin: float, t_end: float, fps: int) -> np.ndarray:
    """Frame times (in the source's own clock) from ``t_begin`` to ``t_end`` inclusive-ish."""
    n = int(math.floor((t_end - t_begin) * fps + 1e-9)) + 1
    return t_begin + np.arange(max(n, 1), dtype=np.float64) / fps


def clean_samples(t: np.ndarray, *cols: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Sort samples by time and drop unusable ones.

    Drops samples with a non-finite time or ``valid`` False, then repeated timestamps
    (keeping the first: FastF1 lap slices repeat the boundary sample of each lap).
    """
    t = np.asarray(t, dtype=np.float64)
    keep = np.isfinite(t)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    t = t[keep]
    cols = tuple(np.asarray(c)[keep] for c in cols)
    order = np.argsort(t, kind="stable")
    t = t[order]
    cols = tuple(c[order] for c in cols)
    if t.size:
        first = np.concatenate([[True], np.diff(t) > 0])
        t = t[first]
        cols = tuple(c[first] for c in cols)
    return (t, *cols)


def _segment_index(ts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.searchsorted(ts, grid, side="right") - 1


def resample_linear(ts: np.ndarray, v: np.ndarray, grid: np.ndarray, max_gap: float = MAX_GAP) -> np.ndarray:
    """Linear interpolation between samples at most ``max_gap`` apart; hold otherwise.

    Across a longer gap the last value is held until the next sample (no invented
    motion); before the first sample the first value, after the last the last value.
    """
    n = ts.size
    if n == 0:
        return np.full(grid.shape, np.nan)
    v = np.asarray(v, dtype=np.float64)
    i = _segment_index(ts, grid)
    i0 = np.clip(i, 0, n - 1)
    i1 = np.clip(i + 1, 0, n - 1)
    dt = ts[i1] - ts[i0]
    inside = (i >= 0) & (i < n - 1) & (dt > 0) & (dt <= max_gap)
    w = np.where(inside, (grid - ts[i0]) / np.where(dt > 0, dt, 1.0), 0.0)
    return v[i0] + w * (v[i1] - v[i0])


def resample_hold(ts: np.ndarray, v: np.ndarray, grid: np.ndarray, before: float | None = None) -> np.ndarray:
    """Last sample at or before each frame (discrete channels: gear, DRS, status...)."""
    n = ts.size
    v = np.asarray(v)
    if n == 0:
        return np.full(grid.shape, np.nan if before is None else before)
    i = _segment_index(ts, grid)
    out = v[np.clip(i, 0, n - 1)].astype(np.float64)
    if before is not None:
        out[i < 0] = before
    return out


def step_values(event_t: np.ndarray, values: np.ndarray, grid: np.ndarray, initial: float) -> np.ndarray:
    """A value that changes at event times: ``values[k]`` from ``event_t[k]`` on."""
    event_t = np.asarray(event_t, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(event_t)
    event_t, values = event_t[ok], values[ok]
    if event_t.size == 0:
        return np.full(grid.shape, initial, dtype=np.float64)
    order = np.argsort(event_t, kind="stable")
    event_t, values = event_t[order], values[order]
    i = _segment_index(event_t, grid)
    out = values[np.clip(i, 0, None)]
    return np.where(i < 0, initial, out)


def path_distance(x: np.ndarray, y: np.ndarray, deadband: float = DEADBAND) -> np.ndarray:
    """Cumulative distance along a trace (m), ignoring jitter steps below ``deadband``."""
    if x.size == 0:
        return np.zeros(0)
    step = np.hypot(np.diff(x), np.diff(y))
    step[~np.isfinite(step) | (step < deadband)] = 0.0
    return np.concatenate([[0.0], np.cumsum(step)])


def speed_from_distance(ts: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """km/h from a cumulative distance series (central differences, gaps give 0)."""
    if ts.size < 2:
        return np.zeros(ts.size)
    v = np.gradient(dist, ts) * 3.6
    v[~np.isfinite(v)] = 0.0
    return np.clip(v, 0.0, None)


def progress_from_crossings(
    grid: np.ndarray,
    dist: np.ndarray,
    cross_t: np.ndarray,
    cross_k: np.ndarray,
    lap_len: float,
) -> np.ndarray:
    """Race progress (laps completed + fraction) per frame, anchored at line crossings.

    ``cross_t``/``cross_k``: times at which the car crossed the line completing lap
    ``cross_k`` (strictly increasing both). At each crossing the progress is exactly
    ``cross_k``; between two crossings the fraction is the share of the distance the car
    drove between them (``dist``: its own distance travelled, per frame). Before the
    first crossing the progress counts back the distance still to go, measured with
    ``lap_len`` -- so on the grid the car nearest the line is ahead. After the last
    crossing it counts forward with ``lap_len`` but never reaches the next lap.
    """
    m = cross_t.size
    if m == 0:
        raise ValueError("progress_from_crossings needs at least one crossing")
    dc = np.interp(cross_t, grid, dist)
    k = cross_k.astype(np.float64)
    j = np.searchsorted(cross_t, grid, side="right")  # crossings done by each frame
    p = np.empty(grid.shape, dtype=np.float64)
    before = j == 0
    p[before] = k[0] - (dc[0] - dist[before]) / lap_len
    after = j == m
    p[after] = k[-1] + np.minimum((dist[after] - dc[-1]) / lap_len, 0.999)
    mid = ~before & ~after
    if mid.any():
        a = j[mid] - 1
        b = a + 1
        dk = k[b] - k[a]
        den = dc[b] - dc[a]
        by_dist = (dist[mid] - dc[a]) / np.where(den > 0, den, 1.0)
        by_time = (grid[mid] - cross_t[a]) / (cross_t[b] - cross_t[a])
        # A lap whose positions barely moved (position feed broken) falls back to time.
        frac = np.where(den >= 0.5 * lap_len * dk, by_dist, by_time)
        # a lap is complete at its crossing, not a frame before (interpolation can round up)
        p[mid] = k[a] + dk * np.clip(frac, 0.0, 1.0 - 1e-7)
    return p


def running_order(progress: np.ndarray, status: np.ndarray, finish_order: np.ndarray | None = None) -> np.ndarray:
    """Positions per frame: by progress; finished cars in the order they took the flag; OUT last.

    ``finish_order`` (per driver, 1-based, NaN when the car never finished) breaks the
    tie between finished cars frozen on the same lap count.
    """
    if finish_order is None:
        return rank_positions(progress, status)
    fo = np.nan_to_num(np.asarray(finish_order, dtype=np.float64), nan=0.0)
    pos = np.empty(progress.shape, dtype=np.int8)
    for f0 in range(0, len(progress), ROW_BLOCK):  # frame blocks: bounded temporaries
        p, st = progress[f0 : f0 + ROW_BLOCK], status[f0 : f0 + ROW_BLOCK]
        # a finished car is ahead of one still on the same lap count (whose progress may round
        # up to it a frame early); finishers among themselves in the order they took the flag
        key = np.where(st == Status.FINISHED, p + 1e-4 - 1e-6 * fo[None, :], p)
        pos[f0 : f0 + len(p)] = rank_positions(key, st)
    return pos


def fill_order(ch: Mapping[str, np.ndarray], positions: np.ndarray, status: np.ndarray, prog: np.ndarray) -> np.ndarray:
    """Write the position, status and race_progress channels; return the fraction of the current lap.

    The fraction is ``prog``'s decimal part, 0 before the first crossing (negative progress).
    """
    ch["position"][:] = positions
    ch["status"][:] = status
    np.maximum(prog, 0.0, out=ch["race_progress"])
    rel = np.floor(prog)
    np.subtract(prog, rel, out=rel)  # in place: no whole-race temporaries
    rel[prog < 0] = 0.0
    return rel


def median_lap_length(values: Iterable[float], fallback: float) -> float:
    """The median of the positive lap distances, unless it is implausible (off by 2x) or there are none."""
    vals = [v for v in values if v > 0]
    if not vals:
        return float(fallback)
    med = float(np.median(vals))
    return med if 0.5 * fallback < med < 2.0 * fallback else float(fallback)


def build_race(what: str, *, fps: int, channels: Mapping[str, np.ndarray], **fields: Any) -> Race:
    """A :class:`Race` on the frame grid of ``channels``; a failed validation is an IngestError about ``what``."""
    n = len(channels["x"])
    try:
        return Race(fps=fps, t=np.arange(n, dtype=np.float64) / fps, channels=channels, **fields)
    except RaceError as exc:
        raise IngestError(f"{what} did not make a valid race: {exc}") from exc


def race_gaps(
    grid: np.ndarray, crossings: Sequence[tuple[np.ndarray, np.ndarray]], t_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Timing-screen gap and interval (s) per frame, shaped (frames, drivers).

    At each line crossing a car's gap is the time since the first car still running
    completed that lap, its interval the time since the previous one did (NaN for the
    leader); both are held until its next crossing, NaN before its first and once OUT
    (``t_out``: per driver, inf when never).
    """
    n, nd = grid.size, len(crossings)
    by_lap: dict[int, list[tuple[float, int]]] = {}
    for j, (ct, ck) in enumerate(crossings):
        for t, k in zip(ct, ck):
            by_lap.setdefault(int(k), []).append((float(t), j))
    events: list[list[tuple[float, float, float]]] = [[] for _ in range(nd)]
    for items in by_lap.values():
        items.sort()
        for i, (t, j) in enumerate(items):
            ahead = [ta for ta, ja in items[:i] if t_out[ja] >= t]
            events[j].append((t, t - ahead[0] if ahead else 0.0, t - ahead[-1] if ahead else math.nan))
    # float32, the channels' dtype: the values are the same, in half the memory
    gap = np.full((n, nd), np.nan, dtype=np.float32)
    interval = np.full((n, nd), np.nan, dtype=np.float32)
    for j, ev in enumerate(events):
        if not ev:
            continue
        ev.sort()
        et = np.array([e[0] for e in ev])
        gap[:, j] = step_values(et, np.array([e[1] for e in ev]), grid, np.nan)
        interval[:, j] = step_values(et, np.array([e[2] for e in ev]), grid, np.nan)
        out = grid > t_out[j]
        gap[out, j] = np.nan
        interval[out, j] = np.nan
    return gap, interval


# -- geometry ---------------------------------------------------------------------------


def _dedupe_path(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return x, y
    keep = np.concatenate([[True], np.hypot(np.diff(x), np.diff(y)) > 1e-6])
    return x[keep], y[keep]


def resample_path(x: np.ndarray, y: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """An open polyline resampled every ``spacing`` metres (endpoints kept)."""
    x, y = _dedupe_path(np.asarray(x, float), np.asarray(y, float))
    if x.size < 2:
        return x, y
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    n = max(2, int(round(s[-1] / spacing)) + 1)
    su = np.linspace(0.0, s[-1], n)
    return np.interp(su, s, x), np.interp(su, s, y)


def _smooth(a: np.ndarray, half: int, closed: bool) -> np.ndarray:
    if half <= 0 or a.size < 2 * half + 3:
        return a
    w = np.ones(2 * half + 1) / (2 * half + 1)
    padded = np.concatenate([a[-half:], a, a[:half]]) if closed else np.pad(a, half, mode="edge")
    return np.convolve(padded, w, mode="valid")


def geometry_from_path(
    x: np.ndarray,
    y: np.ndarray,
    *,
    closed: bool = True,
    half_width: float = HALF_WIDTH,
    spacing: float = 5.0,
    smooth: int = 1,
    sectors: Iterable[float] = (),
    drs_zones: Iterable[tuple[float, float]] = (),
    pit_lane: tuple[np.ndarray, np.ndarray] | None = None,
    rotation: float = 0.0,
) -> TrackGeometry:
    """Track geometry from one lap's trace (m), in driving order from the timing line.

    The trace is resampled every ``spacing`` metres and lightly smoothed into the centre
    line; the edges are offset ``half_width`` metres along the normals, ``inner`` on
    the side of the loop's interior. ``sectors`` and ``drs_zones`` are given as
    fractions of the lap (0-1) and returned as distances along the centre line.
    """
    x, y = _dedupe_path(np.asarray(x, float), np.asarray(y, float))
    if x.size < 3:
        raise ValueError("a track needs a trace of at least 3 distinct points")
    if closed:
        x, y = np.append(x, x[0]), np.append(y, y[0])
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    total = float(s[-1])
    if not total > 0:
        raise ValueError("a track needs a trace that moves")
    n = max(16, int(round(total / spacing)))
    su = np.linspace(0.0, total, n, endpoint=not closed)
    cx = _smooth(np.interp(su, s, x), smooth, closed)
    cy = _smooth(np.interp(su, s, y), smooth, closed)
    if closed:
        tx, ty = np.roll(cx, -1) - np.roll(cx, 1), np.roll(cy, -1) - np.roll(cy, 1)
        seg = np.hypot(np.diff(np.append(cx, cx[0])), np.diff(np.append(cy, cy[0])))
        area = 0.5 * float(np.sum(cx * np.roll(cy, -1) - np.roll(cx, -1) * cy))
    else:
        tx, ty = np.gradient(cx), np.gradient(cy)
        seg = np.hypot(np.diff(cx), np.diff(cy))
        area = 1.0
    norm = np.hypot(tx, ty)
    norm[norm == 0] = 1.0
    nx, ny = -ty / norm, tx / norm  # left of the driving direction
    side = 1.0 if area > 0 else -1.0  # counter-clockwise loop: its interior is on the left
    length = float(seg.sum())
    pit_x, pit_y = (np.zeros(0), np.zeros(0)) if pit_lane is None else pit_lane
    return TrackGeometry(
        centerline_x=cx,
        centerline_y=cy,
        inner_x=cx + side * half_width * nx,
        inner_y=cy + side * half_width * ny,
        outer_x=cx - side * half_width * nx,
        outer_y=cy - side * half_width * ny,
        length=length,
        sectors=tuple(round(float(f) * length, 2) for f in sectors),
        drs_zones=tuple((round(float(a) * length, 2), round(float(b) * length, 2)) for a, b in drs_zones),
        pit_lane_x=np.asarray(pit_x, dtype=np.float64),
        pit_lane_y=np.asarray(pit_y, dtype=np.float64),
        start_finish=(float(cx[0]), float(cy[0]), float(math.atan2(ty[0], tx[0]))),
        rotation=float(rotation),
    )


def project_along(geometry: TrackGeometry, px: np.ndarray, py: np.ndarray, closed: bool = True) -> np.ndarray:
    """Distance along the centre line (m, from its first point) of the nearest point."""
    cx, cy = geometry.centerline_x, geometry.centerline_y
    if closed:
        ax, ay = cx, cy
        bx, by = np.roll(cx, -1), np.roll(cy, -1)
    else:
        ax, ay, bx, by = cx[:-1], cy[:-1], cx[1:], cy[1:]
    seg = np.hypot(bx - ax, by - ay)
    s0 = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    px = np.atleast_1d(np.asarray(px, float))
    py = np.atleast_1d(np.asarray(py, float))
    out = np.empty(px.shape)
    for lo in range(0, px.size, 256):
        qx, qy = px[lo : lo + 256, None], py[lo : lo + 256, None]
        dx, dy = bx - ax, by - ay
        l2 = np.where(seg > 0, seg**2, 1.0)
        u = np.clip(((qx - ax) * dx + (qy - ay) * dy) / l2, 0.0, 1.0)
        d2 = (ax + u * dx - qx) ** 2 + (ay + u * dy - qy) ** 2
        best = np.argmin(d2, axis=1)
        rows = np.arange(best.size)
        out[lo : lo + 256] = s0[best] + u[rows, best] * seg[best]
    return out


def path_fractions(x: np.ndarray, y: np.ndarray, ts: np.ndarray, at: Sequence[float]) -> list[float]:
    """Share of a trace's length driven by each time in ``at`` (for sectors, DRS zones)."""
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    if s[-1] <= 0:
        return [0.0 for _ in at]
    return [float(np.interp(a, ts, s) / s[-1]) for a in at]


# -- race rules shared by the real-data sources --------------------------------------------

#: A car that ends within this distance (m) of where its data ends has stopped there.
STOP_RADIUS = 5.0
#: Running-order key step between grid slots (ties before the first crossing).
_GRID_STEP = 1e-3


#: A car that spends less than this (s) within STOP_RADIUS of its last position was still driving
#: when its data ended.
STOP_DWELL = 1.0


def stop_time(t: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float = STOP_RADIUS) -> float:
    """When a car reached the place where its data ends: the first sample from which it stays
    within ``radius`` m of its last position; a car still driving when its data ends (there
    for less than :data:`STOP_DWELL`) stopped at its last sample."""
    if t.size == 0:
        return math.nan
    far = np.hypot(x - x[-1], y - y[-1]) > radius
    idx = np.flatnonzero(far)
    first = float(t[idx[-1] + 1]) if idx.size else float(t[0])
    return first if float(t[-1]) - first >= STOP_DWELL else float(t[-1])


def chequered_flag(
    crossings: Sequence[tuple[np.ndarray, np.ndarray]], scheduled: int | None = None
) -> tuple[float, int, np.ndarray]:
    """(flag time, race laps, each car's finish time) from the line crossings.

    The race is over when the first car completes the last lap (the most laps anyone
    completed, capped at ``scheduled`` when known); every other car takes the flag at its
    first crossing after that, on the lead lap or laps down. Finish time is NaN for a car
    that never crossed after the flag.
    """
    ks = [int(ck.max()) for _, ck in crossings if ck.size]
    n = len(crossings)
    if not ks:
        return math.inf, 0, np.full(n, np.nan)
    total = max(ks)
    if scheduled is not None and 0 < scheduled < total:
        total = int(scheduled)
    t_flag = min(float(ct[ck == total].min()) for ct, ck in crossings if (ck == total).any())
    fin = np.full(n, np.nan)
    for j, (ct, _ck) in enumerate(crossings):
        after = np.flatnonzero(ct >= t_flag - 1e-9)
        if after.size:
            fin[j] = float(ct[after[0]])
    return t_flag, total, fin


def order_key(
    grid: np.ndarray,
    prog: np.ndarray,
    crossings: Sequence[tuple[np.ndarray, np.ndarray]],
    grid_rank: np.ndarray,
    fps: int,
    lap1: Sequence[tuple[np.ndarray, np.ndarray, float]] | None = None,
    lap_len: float = 0.0,
    pit_start: np.ndarray | None = None,
) -> np.ndarray:
    """The progress used to rank cars.

    Before its first line crossing a car is placed by where it is along the track
    (``lap1``: per car, frame indices and their along-track positions from
    :func:`along_track`), counted back from the line it will cross next -- not by the
    length of its own path to that line, which weaving, a safety car or the pit lane
    make longer or shorter. At lights out that is the grid; ties (and cars without
    ``lap1``) go by ``grid_rank`` (0 = pole). Pit-lane starters (``pit_start``) are
    behind every car on the grid until their first crossing. On the frame where a
    crossing registers, cars that crossed within that frame are in the order they
    crossed (timing order), not by the centimetres each drove since.
    """
    key = prog.astype(np.float64, copy=True)
    dt = 1.0 / fps
    # how far ahead of its lights-out position a car's first crossing lies (whole laps of the
    # centre line past the grid), for cars that never cross: as for the cars that do
    ahead_of_start = [
        lap_len * round(sc / lap_len) - float(sv[0]) for _i, sv, sc in (lap1 or ()) if sv.size and math.isfinite(sc)
    ] if lap_len > 0 else []
    to_line = float(np.median(ahead_of_start)) if ahead_of_start else math.nan
    for j, (ct, ck) in enumerate(crossings):
        first = float(ct[0]) if ct.size else math.inf
        k1 = int(ck[0]) if ck.size else 1
        before = np.flatnonzero(grid < first)
        tie = _GRID_STEP * 1e-3 * float(grid_rank[j])
        if pit_start is not None and pit_start[j]:
            key[before, j] = k1 - 1.5 - tie
        elif lap1 is not None and lap_len > 0 and lap1[j][0].size:
            idx, s, s_cross = lap1[j]
            # the line ahead: the whole lap nearest to where the car is when it first crosses
            # (positions at a timing instant scatter by metres; the line is exact)
            if math.isfinite(s_cross):
                nominal = lap_len * round(s_cross / lap_len)
            elif math.isfinite(to_line):
                nominal = lap_len * round((float(s[0]) + to_line) / lap_len)
            else:
                nominal = lap_len * math.ceil(float(s[0]) / lap_len + 1e-9)
            vals = np.full(before.size, np.nan)
            pos = np.searchsorted(idx, before)
            ok = (pos < idx.size) & (idx[np.minimum(pos, idx.size - 1)] == before)
            vals[ok] = k1 + (s[pos[ok]] - nominal) / lap_len
            vals = np.minimum(vals, k1 - 1e-7) - tie
            key[before[ok], j] = vals[ok]
        else:
            key[before, j] = k1 - 0.5 - _GRID_STEP * float(grid_rank[j])
        for t, k in zip(ct.tolist(), ck.tolist()):
            i = int(np.searchsorted(grid, t - 1e-9))
            if i < grid.size and grid[i] - t < dt:
                key[i, j] = k + 1e-9 * (grid[i] - t)
    return key


def lap1_along(
    geometry: TrackGeometry, grid: np.ndarray, t: np.ndarray, x: np.ndarray, y: np.ndarray, first_cross: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """One car before its first crossing: (frame indices, along-track position at each, and
    at the crossing -- NaN without one); positions projected on the track, unwrapped."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0), math.nan)
    if t.size == 0:
        return empty
    end = first_cross if math.isfinite(first_cross) else float(t[-1])
    m = t <= end + 1.0
    m[: min(2, t.size)] = True
    s = along_track(geometry, x[m], y[m])
    idx = np.flatnonzero(grid < end)
    if idx.size == 0:
        return empty
    vals = np.interp(grid[idx], t[m], s)
    s_cross = float(np.interp(first_cross, t[m], s)) if math.isfinite(first_cross) else math.nan
    return idx, vals, s_cross


def grid_ranks(slot_s: np.ndarray, pit_lane: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
    """Grid rank per car (0 = pole): ``given`` grid positions (1-based; 0 or NaN = pit lane or
    unknown) where known, else the order along the track at the start (``slot_s``: metres ahead
    of the line, larger = further ahead); pit-lane starters after every grid car."""
    nd = slot_s.size
    pos = np.full(nd, np.nan) if given is None else np.asarray(given, dtype=np.float64).copy()
    pit = np.asarray(pit_lane, dtype=bool).copy()
    has_grid = np.isfinite(pos) & (pos > 0)
    if given is not None:
        pit |= np.isfinite(pos) & (pos <= 0)
    key = np.where(has_grid, pos, np.nan)
    if not has_grid.any():
        key = -np.asarray(slot_s, dtype=np.float64)
    else:  # cars without a given slot go by where they stood, after those with one
        key = np.where(has_grid, key, 1e6 - np.asarray(slot_s, dtype=np.float64))
    key = np.where(pit, 1e9 + key, key)
    rank = np.empty(nd, dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(nd)
    return rank


def start_slots(geometry: TrackGeometry, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(metres ahead of the line, metres off the centre line) of each car's start position."""
    s = project_along(geometry, x, y)
    L = geometry.length
    ahead = np.where(s > L / 2, s - L, s)
    cx, cy = geometry.centerline_x, geometry.centerline_y
    off = np.array([float(np.min(np.hypot(cx - a, cy - b))) for a, b in zip(np.atleast_1d(x), np.atleast_1d(y))])
    return ahead, off


def pit_lane_start(ahead: np.ndarray, off: np.ndarray, half_width: float = HALF_WIDTH) -> np.ndarray:
    """Cars that start from the pit lane: off the track (further from the centre line than two
    track half-widths), or standing apart from the grid (further from the nearest other car
    than four times the typical slot spacing, and than 30 m): grid slots are a few metres apart."""
    ahead = np.asarray(ahead, dtype=np.float64)
    pit = np.asarray(off) > 2.0 * half_width
    on = np.flatnonzero(~pit)
    if on.size >= 3:
        a = ahead[on]
        gap = np.abs(a[:, None] - a[None, :])
        np.fill_diagonal(gap, np.inf)
        nearest = gap.min(axis=1)
        spacing = float(np.median(nearest))
        pit[on[nearest > max(30.0, 4.0 * spacing)]] = True
    return pit



def along_track(geometry: TrackGeometry, x: np.ndarray, y: np.ndarray, coarse: float = 25.0) -> np.ndarray:
    """Distance along the track (m), unwrapped over laps, of each point of a trace in driving order.

    The nearest centre-line point is found on a coarse copy of the line first, then on the
    segments around it (cheap enough for thousands of samples).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0)
    cx, cy = geometry.centerline_x, geometry.centerline_y
    m = cx.size
    seg = np.hypot(np.roll(cx, -1) - cx, np.roll(cy, -1) - cy)
    s0 = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    total = float(seg.sum())
    step = max(1, int(round(coarse / max(float(np.median(seg)), 1e-6))))
    ci = np.arange(0, m, step)
    near = np.empty(x.size, dtype=np.int64)
    for lo in range(0, x.size, 4096):
        qx, qy = x[lo : lo + 4096, None], y[lo : lo + 4096, None]
        near[lo : lo + 4096] = ci[np.argmin((cx[ci] - qx) ** 2 + (cy[ci] - qy) ** 2, axis=1)]
    best_d = np.full(x.size, np.inf)
    best_s = np.zeros(x.size)
    for off in range(-step - 1, step + 2):
        a = (near + off) % m
        b = (a + 1) % m
        ax, ay, dx, dy = cx[a], cy[a], cx[b] - cx[a], cy[b] - cy[a]
        l2 = np.where(seg[a] > 0, seg[a] ** 2, 1.0)
        u = np.clip(((x - ax) * dx + (y - ay) * dy) / l2, 0.0, 1.0)
        d = (ax + u * dx - x) ** 2 + (ay + u * dy - y) ** 2
        better = d < best_d
        best_d = np.where(better, d, best_d)
        best_s = np.where(better, s0[a] + u * seg[a], best_s)
    return np.unwrap(best_s, period=total)


# -- the order between timing lines ---------------------------------------------------------

#: Share of the line-crossing position offsets the order margin covers (see :func:`order_margin`).
MARGIN_QUANTILE = 0.99


def line_offsets(
    geometry: TrackGeometry, crossings: Sequence[tuple[np.ndarray, np.ndarray]], traces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None]
) -> np.ndarray:
    """Metres between where the position feed puts each car at each of its line crossings
    and the line itself (the crossing instants are exact, so this is the feed's own error)."""
    L = float(geometry.length)
    out = []
    for (ct, _ck), tr in zip(crossings, traces):
        if tr is None or not ct.size or tr[0].size < 2:
            continue
        t, x, y = tr
        inside = (ct >= t[0]) & (ct <= t[-1])
        if not inside.any():
            continue
        px = np.interp(ct[inside], t, x)
        py = np.interp(ct[inside], t, y)
        s = project_along(geometry, px, py)
        out.append((s + L / 2) % L - L / 2)
    return np.concatenate(out) if out else np.zeros(0)


def order_margin(offsets: np.ndarray, lap_len: float, quantile: float = MARGIN_QUANTILE) -> float:
    """How far (laps) one car must be ahead of another on the position feed before the
    replay believes it over the timing order: twice the feed's offset at the line that
    ``quantile`` of the crossings stay within (two cars, each off by up to that much)."""
    if not offsets.size or lap_len <= 0:
        return 0.0
    return 2.0 * float(np.quantile(np.abs(offsets), quantile)) / lap_len


def timing_order_key(
    grid: np.ndarray,
    crossings: Sequence[tuple[np.ndarray, np.ndarray]],
    grid_rank: np.ndarray,
    pit_start: np.ndarray | None = None,
) -> np.ndarray:
    """The order the timing shows at each frame: laps completed, then who completed the last
    one first; before its first crossing a car holds its grid slot (pit-lane starters last)."""
    n, nd = grid.size, len(crossings)
    key = np.empty((n, nd))
    t0 = float(grid[0])
    for j, (ct, ck) in enumerate(crossings):
        k1 = int(ck[0]) if ck.size else 1
        slot = 0.3 if pit_start is not None and pit_start[j] else 0.1
        key[:, j] = k1 - 1 - slot - 1e-4 * float(grid_rank[j])
        if ct.size:
            done = np.searchsorted(ct, grid + 1e-9, side="right")
            m = done > 0
            i = done[m] - 1
            key[m, j] = ck[i] - 1e-7 * (ct[i] - t0)
    return key


def anchored_order_key(
    key: np.ndarray,
    grid: np.ndarray,
    crossings: Sequence[tuple[np.ndarray, np.ndarray]],
    grid_rank: np.ndarray,
    pit_start: np.ndarray | None,
    geometry: TrackGeometry,
    traces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None],
    lap_len: float,
) -> tuple[np.ndarray, float]:
    """(ranking key, margin in metres): :func:`order_key`'s ``key`` anchored to the timing order
    with the margin measured on this session's own feed (:func:`order_margin`)."""
    margin = order_margin(line_offsets(geometry, crossings, traces), lap_len)
    timing = timing_order_key(grid, crossings, grid_rank, pit_start)
    return anchor_to_timing(key, timing, margin), margin * lap_len


def anchor_to_timing(key: np.ndarray, timing: np.ndarray, margin: float) -> np.ndarray:
    """A ranking key per frame: the timing order (``timing``), except where the position feed
    (``key``) puts a car more than ``margin`` ahead of the car before it -- then it moves up.

    Between timing lines the feed is the only evidence of a pass, but nose to tail (a safety
    car restart, the first corners) it is noisier than the gaps it would have to resolve:
    the order changes where the evidence is beyond the feed's own error, not on its noise.
    """
    out = np.empty(key.shape)
    for f0 in range(0, len(key), ROW_BLOCK):  # (memory) frames are independent: a block at a time
        out[f0 : f0 + ROW_BLOCK] = _anchor_rows(key[f0 : f0 + ROW_BLOCK], timing[f0 : f0 + ROW_BLOCK], margin)
    return out


def _anchor_rows(key: np.ndarray, timing: np.ndarray, margin: float) -> np.ndarray:
    """:func:`anchor_to_timing` on a block of frames."""
    n, nd = key.shape
    order = np.argsort(-timing, axis=1, kind="stable")
    kk = np.take_along_axis(key, order, axis=1)
    rows = np.flatnonzero((kk[:, 1:] > kk[:, :-1] + margin).any(axis=1))
    if rows.size:
        o, k = order[rows], kk[rows]
        for _ in range(nd):
            moved = False
            for i in range(nd - 1):
                sw = k[:, i + 1] > k[:, i] + margin
                if sw.any():
                    moved = True
                    k[sw, i], k[sw, i + 1] = k[sw, i + 1], k[sw, i].copy()
                    o[sw, i], o[sw, i + 1] = o[sw, i + 1], o[sw, i].copy()
            if not moved:
                break
        order[rows] = o
    out = np.empty((n, nd))
    np.put_along_axis(out, order, -np.arange(nd, dtype=np.float64)[None, :].repeat(n, axis=0), axis=1)
    return out
