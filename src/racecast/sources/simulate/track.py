"""The simulated circuit: a seeded closed layout with a pit lane, sectors and DRS zones, and its
reference speed profile (cornering limit from curvature, then acceleration and braking passes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...race import TrackGeometry
from .params import (
    BRK0,
    BRK_AERO,
    DRAG,
    HALF_WIDTH,
    LAT0,
    LAT_AERO,
    PIT_BLEND,
    PIT_IN_BEFORE,
    PIT_OFFSET,
    PIT_OUT_AFTER,
    POWER,
    TRACTION,
    VMAX,
)

__all__ = ["Track", "build_track", "lookup"]

#: Clearance checks and the viewers' outline use every 5th point of the 2 m tables (every 10 m).
CLEARANCE_STEP = 5


def _catmull_rom_closed(p: np.ndarray, n_per: int = 60) -> np.ndarray:
    """Centripetal Catmull-Rom through closed control points (no cusps or loops within a segment)."""
    n = len(p)
    out = []
    for i in range(n):
        p0, p1, p2, p3 = p[(i - 1) % n], p[i], p[(i + 1) % n], p[(i + 2) % n]
        t1 = float(np.linalg.norm(p1 - p0)) ** 0.5
        t2 = t1 + float(np.linalg.norm(p2 - p1)) ** 0.5
        t3 = t2 + float(np.linalg.norm(p3 - p2)) ** 0.5
        t = np.linspace(t1, t2, n_per, endpoint=False)[:, None]
        a1 = (t1 - t) / t1 * p0 + t / t1 * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / t2 * a1 + t / t2 * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.concatenate(out)


def _resample_closed(xy: np.ndarray, ds: float) -> tuple[np.ndarray, float]:
    """Uniform arc-length resampling of a closed polyline (returned without the closing point)."""
    closed = np.vstack([xy, xy[:1]])
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    n = int(round(s[-1] / ds))
    su = np.arange(n) * (s[-1] / n)
    return np.column_stack([np.interp(su, s, closed[:, 0]), np.interp(su, s, closed[:, 1])]), float(s[-1])


def _smooth_closed(a: np.ndarray, sigma_pts: float) -> np.ndarray:
    """Periodic Gaussian smoothing along axis 0 (FFT)."""
    n = a.shape[0]
    g = np.exp(-2.0 * (np.pi * np.fft.rfftfreq(n) * sigma_pts) ** 2)
    return np.fft.irfft(np.fft.rfft(a, axis=0) * g.reshape((-1,) + (1,) * (a.ndim - 1)), n=n, axis=0)


def _control_points(rng: np.random.Generator) -> np.ndarray:
    """Control points, in driving order: the main straight along +x through (0, 0), then a
    counter-clockwise loop of varied radius with a hairpin lobe and (usually) a chicane."""
    ls = rng.uniform(950, 1200)
    a, b = 0.45 * ls, 0.55 * ls
    straight = np.column_stack([np.linspace(-a, b, 10), np.zeros(10)])
    cx, cy = 0.05 * ls, rng.uniform(330, 560)
    c = np.array([cx, cy])
    th_e = math.atan2(-cy, b - cx)
    th_s = math.atan2(-cy, -a - cx) + 2 * math.pi
    r_e, r_s = math.hypot(b - cx, cy), math.hypot(a + cx, cy)
    k = int(rng.integers(12, 17))
    th = np.linspace(th_e + 0.28, th_s - 0.28, k)
    th += rng.uniform(-0.2, 0.2, k) * (th[1] - th[0])
    base = (r_e + (r_s - r_e) * (th - th[0]) / (th[-1] - th[0])) * rng.uniform(0.95, 1.25)
    rho = rng.uniform(0.5, 1.1, k)
    rho[0], rho[-1] = rng.uniform(0.95, 1.1, 2)
    pts = c + (base * rho)[:, None] * np.column_stack([np.cos(th), np.sin(th)])
    # A hairpin: a narrow lobe sticking out of the loop.
    j = int(rng.integers(2, k - 2))
    tang = pts[j + 1] - pts[j - 1]
    tang /= np.linalg.norm(tang)
    out = (pts[j] - c) / np.linalg.norm(pts[j] - c)
    tip = pts[j] + out * rng.uniform(220, 380)
    w = rng.uniform(60, 85)
    lobe = [pts[j] - tang * w, tip - tang * w * 0.4, tip + tang * w * 0.4, pts[j] + tang * w]
    pts = np.vstack([pts[:j], lobe, pts[j + 1 :]])
    # A chicane: a small left-right kink between two distant neighbours.
    cands = [i for i in range(1, len(pts) - 2) if np.linalg.norm(pts[i + 1] - pts[i]) > 280 and not (j - 1 <= i <= j + 3)]
    if cands:
        i = cands[int(rng.integers(len(cands)))]
        p, q = pts[i], pts[i + 1]
        t = (q - p) / np.linalg.norm(q - p)
        nrm = np.array([-t[1], t[0]]) * (1 if rng.random() < 0.5 else -1)
        mid = (p + q) / 2
        pts = np.vstack([pts[: i + 1], [mid - t * 45 + nrm * 12, mid + t * 45 - nrm * 12], pts[i + 1 :]])
    return np.vstack([straight, pts])


def _speed_profile(kappa: np.ndarray, ds: float) -> np.ndarray:
    """Reference (green-flag, clear-air) speed per track point: cornering limit from curvature with
    aero grip, then the acceleration limit (forward pass) and braking limit (backward pass)."""
    k = np.abs(kappa)
    vc = np.full(k.shape, VMAX)
    tight = k > LAT_AERO + 1e-6
    vc[tight] = np.minimum(VMAX, np.sqrt(LAT0 / (k[tight] - LAT_AERO)))
    v = vc.tolist()
    n = len(v)
    start = int(np.argmin(vc))
    sqrt = math.sqrt
    for _ in range(2):  # twice round so the loop closes consistently
        for j in range(n):
            i = (start + j) % n
            vi = v[i]
            a = min(TRACTION, POWER / max(vi, 1.0)) - DRAG * vi * vi
            nv2 = vi * vi + 2.0 * a * ds
            i1 = (i + 1) % n
            if nv2 < v[i1] * v[i1]:
                v[i1] = sqrt(max(nv2, 0.0))
        for j in range(n):
            i = (start - j) % n
            vi = v[i]
            nv2 = vi * vi + 2.0 * (BRK0 + (DRAG + BRK_AERO) * vi * vi) * ds
            i0 = (i - 1) % n
            if nv2 < v[i0] * v[i0]:
                v[i0] = sqrt(nv2)
    return np.asarray(v)


def _segments_intersect(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether a closed polyline crosses itself (non-adjacent segments), vectorised."""
    n = len(x)
    ax, ay, bx, by = x, y, np.roll(x, -1), np.roll(y, -1)

    def orient(px, py, qx, qy, rx, ry):
        return np.sign((qx - px) * (ry - py) - (qy - py) * (rx - px))

    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))
    i, j = i[keep], j[keep]
    o1 = orient(ax[i], ay[i], bx[i], by[i], ax[j], ay[j])
    o2 = orient(ax[i], ay[i], bx[i], by[i], bx[j], by[j])
    o3 = orient(ax[j], ay[j], bx[j], by[j], ax[i], ay[i])
    o4 = orient(ax[j], ay[j], bx[j], by[j], bx[i], by[i])
    return bool(np.any((o1 != o2) & (o3 != o4)))


@dataclass
class Track:
    """The circuit as the simulation reads it: fine periodic tables along the lap distance."""

    L: float
    ds: float
    x: np.ndarray  # fine periodic tables, n + 1 points (last == first)
    y: np.ndarray
    nx: np.ndarray  # unit normal pointing to the inside of the circuit
    ny: np.ndarray
    vref: np.ndarray
    vsc: np.ndarray  # safety-car pace
    passing: np.ndarray  # bool: a straight where a faster car may pass
    drs_tab: np.ndarray  # int8: 0 none, 1 detection (150 m before a zone), 2 in a zone
    pit_off: np.ndarray  # lateral offset of the pit lane (0 off the pit section)
    t_ref: float  # reference lap time, s
    geometry: TrackGeometry = field(repr=False)


def lookup(tab: np.ndarray, s_mod: np.ndarray, inv_ds: float) -> np.ndarray:
    """``tab`` (periodic, n + 1 points) at lap distances ``s_mod``, linearly interpolated."""
    u = s_mod * inv_ds
    i = u.astype(np.int64)
    np.clip(i, 0, len(tab) - 2, out=i)
    f = u - i
    return tab[i] * (1.0 - f) + tab[i + 1] * f


@dataclass
class _Layout:
    """An accepted centre line (2 m points, start/finish at index 0) and what was checked on it."""

    xy: np.ndarray
    length: float
    n: int
    ds: float
    s: np.ndarray  # lap distance of each point
    kappa: np.ndarray  # smoothed curvature
    vref: np.ndarray
    t_ref: float
    nx: np.ndarray
    ny: np.ndarray
    pit_off: np.ndarray


def _layout(rng: np.random.Generator) -> _Layout:
    """Draw layouts until one has a straight pit lane, a realistic lap time and speeds, clearances
    between distant parts of the track and the pit lane, and no crossing."""
    for _attempt in range(500):
        ctrl = _control_points(rng)
        mirror = rng.random() < 0.5  # clockwise circuits are as common as anticlockwise
        angle = rng.uniform(0, 2 * math.pi)
        xy, _ = _resample_closed(_catmull_rom_closed(ctrl), 2.0)
        xy = _smooth_closed(xy, 8.0)
        xy, length = _resample_closed(xy, 2.0)
        if not 4200 <= length <= 6500:
            continue
        n = len(xy)
        ds = length / n
        # Start/finish line at the point nearest (0, 0), on the main straight.
        i0 = int(np.argmin(np.hypot(xy[:, 0], xy[:, 1])))
        xy = np.roll(xy, -i0, axis=0)
        s = np.arange(n) * ds
        # The pit lane runs beside the main straight: it must really be straight there.
        pit_zone = (s >= length - PIT_IN_BEFORE - 60) | (s <= PIT_OUT_AFTER + 60)
        if np.abs(xy[pit_zone, 1]).max() > 1.5:
            continue
        d1 = (np.roll(xy, -1, 0) - np.roll(xy, 1, 0)) / (2 * ds)
        d2 = (np.roll(xy, -1, 0) - 2 * xy + np.roll(xy, 1, 0)) / ds**2
        kappa = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / np.hypot(d1[:, 0], d1[:, 1]) ** 3
        kappa = _smooth_closed(kappa, 3.0)
        vref = _speed_profile(kappa, ds)
        t_ref = float(np.sum(ds / (0.5 * (vref + np.roll(vref, -1)))))
        if not (76 <= t_ref <= 92 and 66 / 3.6 <= vref.min() <= 112 / 3.6 and 305 / 3.6 <= vref.max() <= 335 / 3.6):
            continue
        tx, ty = d1[:, 0], d1[:, 1]
        tn = np.hypot(tx, ty)
        nx, ny = -ty / tn, tx / tn  # left normal: inside for an anticlockwise loop
        if mirror:
            xy = xy * np.array([-1.0, 1.0])
            nx = -nx  # mirrored left normal becomes the right normal, still inside
        c, sn = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -sn], [sn, c]])
        xy = xy @ rot.T
        nx, ny = nx * c - ny * sn, nx * sn + ny * c
        # Pit lane lateral offset as a function of lap distance.
        u = (s - (length - PIT_IN_BEFORE)) % length  # metres since pit entry
        lp = PIT_IN_BEFORE + PIT_OUT_AFTER
        smooth = lambda z: np.where(z <= 0, 0.0, np.where(z >= 1, 1.0, z * z * (3 - 2 * z)))  # noqa: E731
        pit_off = np.where(u <= lp, PIT_OFFSET * smooth(u / PIT_BLEND) * smooth((lp - u) / PIT_BLEND), 0.0)
        # Clearances: no part of the track (or the pit lane) closer than 45 m (35 m) to another
        # part more than 150 m away along the track, and no crossing.
        step = CLEARANCE_STEP
        cx_, cy_ = xy[::step, 0], xy[::step, 1]
        m = len(cx_)
        idx = np.arange(m)
        sep = np.abs(idx[:, None] - idx[None, :])
        sep = np.minimum(sep, m - sep) * ds * step
        dist = np.hypot(cx_[:, None] - cx_[None, :], cy_[:, None] - cy_[None, :])
        if np.any(dist[sep > 150] < 45):
            continue
        px = xy[:, 0] + nx * pit_off
        py = xy[:, 1] + ny * pit_off
        on_pit = pit_off > 0
        far = (s > PIT_OUT_AFTER + 250) & (s < length - PIT_IN_BEFORE - 250)
        dp = np.hypot(px[on_pit][::step, None] - xy[far][None, ::step, 0], py[on_pit][::step, None] - xy[far][None, ::step, 1])
        if dp.size and dp.min() < 35:
            continue
        if _segments_intersect(cx_, cy_):
            continue
        return _Layout(xy, float(length), n, ds, s, kappa, vref, t_ref, nx, ny, pit_off)
    raise RuntimeError("could not generate a circuit")  # pragma: no cover - accepted within a few attempts


def _drs_zones(lay: _Layout) -> tuple[np.ndarray, list[tuple[float, float]], np.ndarray]:
    """Passing zones (straights, radius over ~350 m), DRS zones (the main straight from just after
    the line and up to two more long straights, each ending at its braking point) and the DRS table."""
    kappa, vref, s, n, ds, length = lay.kappa, lay.vref, lay.s, lay.n, lay.ds, lay.length
    passing = np.abs(kappa) < 1 / 350
    # DRS zones: the main straight (from just after the line) and up to two more long straights,
    # each ending at its braking point.
    zones: list[tuple[float, float]] = []
    straight = (np.abs(kappa) < 1 / 800).astype(np.int8)
    # main straight: from 60 m after the line to the first braking point after it
    j = 0
    while vref[(j + 1) % n] >= vref[j] - 1e-9 and j < n - 1:
        j += 1
    zones.append((60.0, float(j * ds)))
    # other straights: runs of low curvature at least 450 m long, away from the main straight
    runs: list[tuple[int, int]] = []
    roll = np.roll(straight, 1)
    starts = np.flatnonzero((straight == 1) & (roll == 0))
    for a0 in starts:
        b0 = a0
        while straight[(b0 + 1) % n] and b0 - a0 < n:
            b0 += 1
        runs.append((int(a0), int(b0)))
    cand = []
    for a0, b0 in runs:
        if (b0 - a0) * ds < 450 or a0 * ds < zones[0][1] + 200 or b0 * ds > length - PIT_IN_BEFORE - 100:
            continue
        # end at the braking point: the speed peak in or just after the run
        e = a0 + int(np.argmax(vref[a0 : min(b0 + 60, n)]))
        zs = a0 * ds + 80
        if e * ds - zs >= 300:
            cand.append(((b0 - a0), (zs, e * ds)))
    cand.sort(key=lambda c: -c[0])
    zones += [z for _, z in cand[:2]]
    zones.sort()
    drs_tab = np.zeros(n, dtype=np.int8)
    for zs, ze in zones:
        drs_tab[(s >= zs) & (s < ze)] = 2
        drs_tab[(s >= zs - 150) & (s < zs)] = 1
    return passing, zones, drs_tab


def _periodic(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, a[:1]])


def _geometry(lay: _Layout, zones: list[tuple[float, float]], sectors: tuple[float, float]) -> TrackGeometry:
    """What viewers draw: the outline every ~10 m (closed), the pit lane, start/finish, a landscape rotation."""
    xy, nx, ny, n, ds, length = lay.xy, lay.nx, lay.ny, lay.n, lay.ds, lay.length
    step = CLEARANCE_STEP
    # Geometry for viewers: every ~10 m, closed (first point repeated at the end).
    gi = np.concatenate([np.arange(0, n, step), [0]])
    lp_pts = np.arange(0.0, PIT_IN_BEFORE + PIT_OUT_AFTER + 1e-9, 5.0)
    ps = (length - PIT_IN_BEFORE + lp_pts) % length
    inv = 1.0 / ds
    tab_x, tab_y, tab_nx, tab_ny, tab_off = (_periodic(a) for a in (xy[:, 0], xy[:, 1], nx, ny, lay.pit_off))
    off = lookup(tab_off, ps, inv)
    pit_x = lookup(tab_x, ps, inv) + lookup(tab_nx, ps, inv) * off
    pit_y = lookup(tab_y, ps, inv) + lookup(tab_ny, ps, inv) * off
    # Viewer rotation: turn the principal axis horizontal (landscape).
    cov = np.cov(xy.T)
    w, vecs = np.linalg.eigh(cov)
    major = vecs[:, int(np.argmax(w))]
    rotation = -math.degrees(math.atan2(major[1], major[0]))
    rotation = (rotation + 90.0) % 180.0 - 90.0
    heading = math.atan2(xy[1, 1] - xy[n - 1, 1], xy[1, 0] - xy[n - 1, 0])
    return TrackGeometry(
        centerline_x=xy[gi, 0].copy(),
        centerline_y=xy[gi, 1].copy(),
        inner_x=xy[gi, 0] + nx[gi] * HALF_WIDTH,
        inner_y=xy[gi, 1] + ny[gi] * HALF_WIDTH,
        outer_x=xy[gi, 0] - nx[gi] * HALF_WIDTH,
        outer_y=xy[gi, 1] - ny[gi] * HALF_WIDTH,
        length=float(length),
        sectors=sectors,
        drs_zones=tuple((round(a, 1), round(b, 1)) for a, b in zones),
        pit_lane_x=pit_x,
        pit_lane_y=pit_y,
        start_finish=(float(xy[0, 0]), float(xy[0, 1]), heading),
        rotation=round(rotation, 1),
    )


def build_track(rng: np.random.Generator) -> Track:
    """A circuit drawn from ``rng``: layout, passing and DRS zones, sectors, safety-car pace, geometry."""
    lay = _layout(rng)
    passing, zones, drs_tab = _drs_zones(lay)
    vsc = np.minimum(0.8 * lay.vref, 175 / 3.6)
    length = lay.length
    sectors = (round(length * rng.uniform(0.28, 0.36), 1), round(length * rng.uniform(0.62, 0.70), 1))
    geometry = _geometry(lay, zones, sectors)
    return Track(
        L=float(length),
        ds=lay.ds,
        x=_periodic(lay.xy[:, 0]),
        y=_periodic(lay.xy[:, 1]),
        nx=_periodic(lay.nx),
        ny=_periodic(lay.ny),
        vref=_periodic(lay.vref),
        vsc=_periodic(vsc),
        passing=_periodic(passing),
        drs_tab=_periodic(drs_tab),
        pit_off=_periodic(lay.pit_off),
        t_ref=lay.t_ref,
        geometry=geometry,
    )
