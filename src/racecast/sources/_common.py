"""Building blocks shared by the real-data sources (FastF1, tables).

Everything here is pure numpy: time series cleaning, resampling onto the frame grid
without inventing motion, distance travelled, running order from line crossings, and
track geometry from a lap's trace.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from racecast.race import Race, RaceError, Status, TrackGeometry, rank_positions
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
        p[mid] = k[a] + dk * np.clip(frac, 0.0, 1.0)
    return p


def running_order(progress: np.ndarray, status: np.ndarray, finish_order: np.ndarray | None = None) -> np.ndarray:
    """Positions per frame: by progress; finished cars in the order they took the flag; OUT last.

    ``finish_order`` (per driver, 1-based, NaN when the car never finished) breaks the
    tie between finished cars frozen on the same lap count.
    """
    key = progress.astype(np.float64, copy=True)
    if finish_order is not None:
        fo = np.nan_to_num(np.asarray(finish_order, dtype=np.float64), nan=0.0)
        key = np.where(status == Status.FINISHED, key - 1e-6 * fo[None, :], key)
    return rank_positions(key, status)


def fill_order(ch: Mapping[str, np.ndarray], positions: np.ndarray, status: np.ndarray, prog: np.ndarray) -> np.ndarray:
    """Write the position, status and race_progress channels; return the fraction of the current lap.

    The fraction is ``prog``'s decimal part, 0 before the first crossing (negative progress).
    """
    ch["position"][:] = positions
    ch["status"][:] = status
    ch["race_progress"][:] = np.maximum(prog, 0.0)
    rel = prog - np.floor(prog)
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
    gap = np.full((n, nd), np.nan)
    interval = np.full((n, nd), np.nan)
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
