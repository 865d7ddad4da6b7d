"""The built-in simulated race: deterministic, and realistic enough to demo and test everything.

Pipeline:

1. a seeded closed circuit (centripetal Catmull-Rom spline through control points around a main
   straight, smoothed, checked for self-intersection and clearances) with a pit lane, sectors and
   DRS zones;
2. a reference speed profile from curvature (speed-dependent grip), then acceleration and braking
   limits (forward / backward passes);
3. a 10 Hz simulation of every car at once (numpy over drivers per step): pace and tyre model,
   traffic (following, passing on straights, DRS, tow, blue flags), standing start, pit stops,
   a retirement, a safety car and the chequered flag. The race outcome therefore does not depend
   on the output frame rate;
4. resampling to the frame grid (cubic Hermite for distance, linear for speed) and derived
   channels: x/y, gear, throttle, brake, positions (:func:`rank_positions`), gaps, lap and sector
   times, tyres.

Everything random comes from one ``np.random.default_rng(seed)``: same arguments, same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..race import (
    CHANNELS,
    Compound,
    Driver,
    Drs,
    PitStop,
    Race,
    RaceControlMessage,
    Status,
    TrackGeometry,
    TrackStatus,
    TrackStatusPeriod,
    rank_positions,
)

__all__ = ["simulate_race", "PIT_SPEED_KMH"]

# -- car physics (per kg, SI units) --------------------------------------------------------------
G = 9.81
POWER = 860.0  # W/kg: power-limited acceleration is POWER / v
TRACTION = 11.0  # m/s², traction-limited acceleration at low speed
DRAG = 0.0012  # 1/m: drag deceleration is DRAG * v²  (top speed ~ 320 km/h)
LAT0, LAT_AERO = 2.0 * G, 0.0042  # lateral grip: LAT0 + LAT_AERO * v²
BRK0, BRK_AERO = 1.5 * G, 0.0040  # braking: BRK0 + (DRAG + BRK_AERO) * v²
VMAX = 360 / 3.6
SPEED_CAP = 349 / 3.6  # hard ceiling, whatever DRS and tow add

# -- race rules and layout -----------------------------------------------------------------------
SIM_DT = 0.1  # s, simulation step (10 Hz), independent of the output fps
GRID_TIME = 5.0  # s on the grid before the lights go out
PIT_SPEED_KMH = 80.0
PIT_SPEED = PIT_SPEED_KMH / 3.6
PIT_OFFSET = 18.0  # m between the pit lane and the centre line, inside the circuit
PIT_IN_BEFORE = 260.0  # pit entry, metres before the start/finish line
PIT_OUT_AFTER = 280.0  # pit exit, metres after it
PIT_BLEND = 80.0  # m over which the pit lane leaves / rejoins the track
HALF_WIDTH = 6.0
GRID_SPACING = 8.0
POLE_BEHIND = 6.0  # pole slot, metres behind the line
GRID_STAGGER = 2.0
DRS_BOOST, TOW_BOOST = 0.05, 0.015
SC_CATCH_UP = 1.6  # behind the safety car, cars may close up at this multiple of its pace
DIRTY_AIR = 0.005  # pace lost following within 0.7 s through corners
RETIRE_OFFSET = -14.0  # the retired car parks this far outside the centre line

# -- tyres: lap-time offset (s), linear and quadratic degradation (s per lap of age) ---------------
TYRES = {
    Compound.SOFT: (-0.55, 0.090, 0.0016),
    Compound.MEDIUM: (0.0, 0.055, 0.0007),
    Compound.HARD: (0.45, 0.030, 0.0003),
}

# -- the entry list: 13 teams x 2 (fictional) ----------------------------------------------------
TEAMS = (
    ("Aurora Racing", "#1E5BC6", (("Lukas Brandt", "BRA", 7), ("Mateo Quiroga", "QUI", 12))),
    ("Scuderia Vulcano", "#DC0000", (("Enzo Marchetti", "MAR", 16), ("Hugo Lefevre", "LEF", 55))),
    ("Silverline GP", "#00D2BE", (("Oliver Hartley", "HAR", 63), ("Kenji Watanabe", "WAT", 22))),
    ("Papaya Motorsport", "#FF8000", (("Liam Doyle", "DOY", 4), ("Rafael Costa", "COS", 81))),
    ("Verde Racing", "#006F62", (("Anders Lund", "LUN", 14), ("Tomas Ribeiro", "RIB", 18))),
    ("Alpenglow F1", "#FF87BC", (("Pierre Dubois", "DUB", 10), ("Jack Whitmore", "WHI", 31))),
    ("Nordic Grand Prix", "#64C4FF", (("Erik Solberg", "SOL", 23), ("Noah Fischer", "FIS", 2))),
    ("Black Arrow", "#B6BABD", (("Daniel Kowalski", "KOW", 20), ("Marco Bianchi", "BIA", 27))),
    ("Kestrel Racing", "#52E252", (("Yuki Tanabe", "TAN", 24), ("Sami Virtanen", "VIR", 77))),
    ("Sable Team", "#FFD700", (("Felipe Araujo", "ARA", 30), ("Ivan Petrov", "PET", 11))),
    ("Crimson Peak", "#900050", (("Ravi Menon", "MEN", 9), ("Lars Eriksen", "ERI", 8))),
    ("Ironwood", "#8B5A2B", (("Carlos Vidal", "VID", 5), ("Oscar Lindqvist", "LIN", 3))),
    ("Polar Star", "#FFFFFF", (("Theo Laurent", "LAU", 6), ("Adam Novak", "NOV", 19))),
)
CIRCUITS = (
    "Autodromo Valle Nera",
    "Circuito del Lago",
    "Kestrel Park",
    "Nordkapp Ring",
    "Circuit des Dunes",
    "Harbour Street Circuit",
    "Sierra Alta Raceway",
    "Marina Bay Loop",
)


# ================================================================================================
# Track
# ================================================================================================
def _a_brk(v):
    return BRK0 + (DRAG + BRK_AERO) * v * v


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
class _Track:
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


def _lookup(tab: np.ndarray, s_mod: np.ndarray, inv_ds: float) -> np.ndarray:
    u = s_mod * inv_ds
    i = u.astype(np.int64)
    np.clip(i, 0, len(tab) - 2, out=i)
    f = u - i
    return tab[i] * (1.0 - f) + tab[i + 1] * f


def _build_track(rng: np.random.Generator) -> _Track:
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
        step = 5  # every 10 m
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
        break
    else:  # pragma: no cover - the generator accepts within a few attempts
        raise RuntimeError("could not generate a circuit")

    # Passing zones: straights (and their braking zones), radius over ~350 m.
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

    vsc = np.minimum(0.8 * vref, 175 / 3.6)
    sectors = (round(length * rng.uniform(0.28, 0.36), 1), round(length * rng.uniform(0.62, 0.70), 1))

    def periodic(a):
        return np.concatenate([a, a[:1]])

    # Geometry for viewers: every ~10 m, closed (first point repeated at the end).
    gi = np.concatenate([np.arange(0, n, step), [0]])
    lp_pts = np.arange(0.0, PIT_IN_BEFORE + PIT_OUT_AFTER + 1e-9, 5.0)
    ps = (length - PIT_IN_BEFORE + lp_pts) % length
    inv = 1.0 / ds
    tab_x, tab_y, tab_nx, tab_ny, tab_off = (periodic(a) for a in (xy[:, 0], xy[:, 1], nx, ny, pit_off))
    off = _lookup(tab_off, ps, inv)
    pit_x = _lookup(tab_x, ps, inv) + _lookup(tab_nx, ps, inv) * off
    pit_y = _lookup(tab_y, ps, inv) + _lookup(tab_ny, ps, inv) * off
    # Viewer rotation: turn the principal axis horizontal (landscape).
    cov = np.cov(xy.T)
    w, vecs = np.linalg.eigh(cov)
    major = vecs[:, int(np.argmax(w))]
    rotation = -math.degrees(math.atan2(major[1], major[0]))
    rotation = (rotation + 90.0) % 180.0 - 90.0
    heading = math.atan2(xy[1, 1] - xy[n - 1, 1], xy[1, 0] - xy[n - 1, 0])
    geometry = TrackGeometry(
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
    return _Track(
        L=float(length),
        ds=ds,
        x=tab_x,
        y=tab_y,
        nx=tab_nx,
        ny=tab_ny,
        vref=periodic(vref),
        vsc=periodic(vsc),
        passing=periodic(passing),
        drs_tab=periodic(drs_tab),
        pit_off=tab_off,
        t_ref=t_ref,
        geometry=geometry,
    )


# ================================================================================================
# The plan: every random decision about the race, drawn up front
# ================================================================================================
@dataclass
class _Plan:
    drivers: tuple[Driver, ...]
    team: np.ndarray  # team index per driver
    grid: np.ndarray  # grid slot per driver (0 = pole)
    k: np.ndarray  # (drivers, laps + 2): pace factor per lap (speed-profile scale)
    launch_delay: np.ndarray
    launch_trac: np.ndarray
    stop_laps: np.ndarray  # (drivers, max_stops + 1): in-lap of each stop, 0 = none
    stop_time: np.ndarray  # stationary time of each stop
    compounds: np.ndarray  # (drivers, max_stops + 1): compound of each stint
    start_age: np.ndarray  # tyre age at the start
    box_off: np.ndarray  # pit box, metres after the line
    retire: int  # driver index that retires (-1: none)
    incident_dist: float  # race distance (m) of the retiring car / debris where the incident starts
    sc_laps: int


def _plan(rng: np.random.Generator, track: _Track, laps: int, n: int) -> _Plan:
    drivers = []
    team = np.zeros(n, dtype=np.int64)
    for i in range(n):
        tname, color, members = TEAMS[i // 2]
        name, code, number = members[i % 2]
        drivers.append(Driver(code=code, number=number, name=name, team=tname, color=color))
        team[i] = i // 2
    n_teams = int(team.max()) + 1
    # Pace: teams spread over ~2.5 s a lap, drivers within a few tenths of their team-mate.
    team_gap = np.sort(np.cumsum(rng.uniform(0.08, 0.42, n_teams)) - 0.08)
    team_pace = rng.permutation(team_gap)
    pace = team_pace[team] + rng.uniform(-0.2, 0.2, n)
    # Qualifying order with noise, then a grid penalty or two that put fast cars in the midfield.
    quali = pace + rng.normal(0.0, 0.15, n)
    order = list(np.argsort(quali, kind="stable"))
    if n >= 8:
        fast = list(np.argsort(pace, kind="stable")[:6])
        for d in rng.choice(fast, size=2 if n >= 14 else 1, replace=False):
            order.remove(d)
            order.insert(int(rng.integers(n // 2, n - 2)), d)
    grid = np.empty(n, dtype=np.int64)
    grid[np.array(order)] = np.arange(n)

    # Strategy: one or two stops at fractions of the race, so short races still see stops.
    max_stops = 2
    stop_laps = np.zeros((n, max_stops + 1), dtype=np.int64)
    stop_time = np.zeros((n, max_stops + 1))
    compounds = np.zeros((n, max_stops + 1), dtype=np.int64)
    start_age = np.zeros(n, dtype=np.int64)
    S, M, H = int(Compound.SOFT), int(Compound.MEDIUM), int(Compound.HARD)
    # In short races only some cars stop (at least two, so a stop is always seen).
    stoppers = np.ones(n, dtype=bool) if laps >= 10 else rng.random(n) < 0.3
    if laps < 10 and stoppers.sum() < min(2, n):
        stoppers[rng.choice(n, size=min(2, n), replace=False)] = True
    for i in range(n):
        two = laps >= 20 and rng.random() < 0.3
        if two:
            fr = [rng.uniform(0.25, 0.36), rng.uniform(0.58, 0.72)]
        else:
            fr = [rng.uniform(0.32, 0.62) if laps >= 10 else rng.uniform(0.5, 0.75)]
        lap_list = sorted({min(max(int(round(f * laps)), 1), laps - 1) for f in fr}) if laps >= 2 and stoppers[i] else []
        front = grid[i] < n // 2
        c0 = (S if rng.random() < 0.55 else M) if front else (M if rng.random() < 0.6 else H)
        if c0 == S:
            seq = [S, M, H] if two else [S, H if rng.random() < 0.6 else M]
        elif c0 == M:
            seq = [M, H, M] if two else [M, H]
        else:
            seq = [H, M, S] if two else [H, M]
        start_age[i] = int(rng.integers(2, 4)) if c0 == S else 0
        for j, lap in enumerate(lap_list):
            stop_laps[i, j] = lap
            stop_time[i, j] = rng.uniform(4.5, 8.0) if rng.random() < 0.08 else rng.uniform(2.0, 2.9)
        compounds[i, : len(seq)] = seq
    # Pace factor per lap: reference lap time over the car's lap time on that lap.
    k = np.zeros((n, laps + 2))
    noise = rng.normal(0.0, 0.12, (n, laps + 2))
    noise[:, 1] = rng.normal(0.4, 0.7, n)  # first-lap chaos: traffic, lines, a lock-up or two
    for i in range(n):
        stint, age0, stint_start = 0, start_age[i], 1
        for lap in range(1, laps + 2):
            while stint < max_stops and stop_laps[i, stint] and lap > stop_laps[i, stint]:
                stint, age0, stint_start = stint + 1, 0, stop_laps[i, stint] + 1
            age = age0 + lap - stint_start
            off, lin, quad = TYRES[Compound(compounds[i, stint])]
            lap_time = track.t_ref + pace[i] + off + lin * age + quad * age * age + noise[i, lap]
            k[i, lap] = track.t_ref / lap_time
    k[:, 0] = k[:, 1]
    launch_delay = 0.18 + rng.uniform(0.0, 0.35, n) + (rng.random(n) < 0.06) * 0.6
    launch_trac = rng.uniform(0.86, 1.0, n)
    box_off = 25.0 + 13.0 * team + 6.0 * (np.arange(n) % 2)
    # One retirement from the back two-thirds of the grid, 15-40% into the race (lap 2 of a
    # 3-lap race), in time for a safety car that ends before the last lap when the race allows.
    penalised = {int(d) for d in np.flatnonzero(grid >= n // 2) if pace[d] <= np.sort(pace)[5]} if n >= 8 else set()
    pool = [d for d in range(n) if grid[d] >= n // 3 and d not in penalised]
    retire = int(rng.choice(pool)) if n >= 3 and pool else -1
    ret_lap = min(max(int(rng.uniform(0.15, 0.4) * laps), 1 if laps >= 3 else 0), max(0, laps - 2))
    incident = ret_lap * track.L + rng.uniform(0.1, 0.25) * track.L  # past the pit exit
    sc_laps = int(np.clip(round(laps / 14 + rng.uniform(-0.5, 0.5)), 1, 5))
    return _Plan(
        drivers=tuple(drivers),
        team=team,
        grid=grid,
        k=k,
        launch_delay=launch_delay,
        launch_trac=launch_trac,
        stop_laps=stop_laps,
        stop_time=stop_time,
        compounds=compounds,
        start_age=start_age,
        box_off=box_off,
        retire=retire,
        incident_dist=float(incident),
        sc_laps=sc_laps,
    )


# ================================================================================================
# The 10 Hz simulation
# ================================================================================================
@dataclass
class _Stop:
    driver: int
    index: int
    lap: int
    entry: float  # race distances (m)
    exit: float
    box: float
    t_box: float = math.nan
    served: bool = False


@dataclass
class _Run:
    t: np.ndarray  # (steps,)
    s: np.ndarray  # (steps, drivers) race distance, m
    v: np.ndarray  # m/s
    lat: np.ndarray  # lateral offset, m (+ = inside)
    drs: np.ndarray  # Drs code
    fin_dist: np.ndarray  # race distance at which each car took the flag (inf: never)
    t_fin: np.ndarray
    t_out: np.ndarray  # time a retired car stopped (inf: never)
    stops: list[_Stop]
    messages: list[RaceControlMessage]
    t_yellow: float
    t_sc: float
    t_sc_end: float
    t_end: float


def _simulate(track: _Track, plan: _Plan, laps: int, progress: Callable[[float], None] | None) -> _Run:
    n = len(plan.drivers)
    L, inv = track.L, 1.0 / track.ds
    ar = np.arange(n)
    inf = math.inf

    s = -(POLE_BEHIND + GRID_SPACING * plan.grid).astype(np.float64)
    v = np.zeros(n)
    lat = np.where(plan.grid % 2 == 0, GRID_STAGGER, -GRID_STAGGER).astype(np.float64)
    drs_open = np.zeros(n, dtype=bool)
    prev_dtab = np.zeros(n, dtype=np.int8)
    finished = np.zeros(n, dtype=bool)
    fin_dist = np.full(n, inf)
    t_fin = np.full(n, inf)
    out = np.zeros(n, dtype=bool)
    t_out = np.full(n, inf)
    retiring = np.zeros(n, dtype=bool)
    stop_i = np.zeros(n, dtype=np.int64)
    entered = np.zeros(n, dtype=bool)
    served = np.zeros(n, dtype=bool)
    hold_until = np.full(n, -inf)
    current: dict[int, _Stop] = {}
    stops: list[_Stop] = []
    messages: list[RaceControlMessage] = []
    lights = GRID_TIME
    start_at = lights + plan.launch_delay

    sc = False
    t_yellow = t_sc = t_sc_end = inf
    sc_cross, n_sc, sc_in_msg = 0, plan.sc_laps, False
    incident = False
    drs_enabled, drs_after = False, 2
    lead_done = 0
    cheq = False
    t_end = inf
    max_time = lights + laps * track.t_ref * 3.0 + 900.0

    def msg(t: float, text: str, category: str, driver: str | None = None) -> None:
        messages.append(RaceControlMessage(t=round(float(t), 3), message=text, category=category, lap=min(lead_done + 1, laps), driver=driver))

    msg(0.0, "GREEN LIGHT - PIT EXIT OPEN", "Flag")
    rec_s, rec_v, rec_lat, rec_drs = [], [], [], []
    step = 0
    # tables and cached per-car state for the loop (numpy call count is what costs here)
    vref, vsc = track.vref, track.vsc
    dvref = np.append(np.diff(vref), 0.0)
    dvsc = np.append(np.diff(vsc), 0.0)
    passing, drs_tab = track.passing, track.drs_tab
    half_lap = 0.5 * L
    cnz = np.count_nonzero
    ones = np.ones(n)
    DRS_OPEN, DRS_ELIGIBLE, DRS_OFF = np.int8(Drs.OPEN), np.int8(Drs.ELIGIBLE), np.int8(Drs.OFF)
    drs_off = np.zeros(n, dtype=np.int8)
    drs_code = drs_off
    dirty_state, out_any = True, False
    next_line = np.zeros(n)
    att_vs = np.full(n, -1)  # the car each car is attacking (-1: none)
    att_until = np.zeros(n)
    att_any = False
    no_attack = np.zeros(n, dtype=bool)
    while True:
        t = step * SIM_DT
        rec_s.append(s)
        rec_v.append(v)
        rec_lat.append(lat)
        rec_drs.append(drs_code)
        if t >= t_end:
            break
        if t > max_time:  # pragma: no cover - a bug, not a race
            raise RuntimeError("simulation did not finish")
        t_new = t + SIM_DT

        # -- where everyone is (cached: changes only at the line, in the pits, at the flag) -------
        if dirty_state or cnz(s >= next_line):
            lap_idx = np.clip(np.floor(s / L).astype(np.int64) + 1, 1, laps + 1)
            next_line = (lap_idx.astype(np.float64)) * L
            kk = plan.k[ar, lap_idx]
            cur = plan.stop_laps[ar, stop_i]
            has = (cur > 0) & (~finished | entered) & ~out
            entry = np.where(has, cur * L - PIT_IN_BEFORE, inf)
            exit_ = cur * L + PIT_OUT_AFTER
            box = cur * L + plan.box_off
            dirty_state = False
        in_pit = has & (s >= entry) & (s < exit_)
        pit_any = bool(cnz(in_pit))
        vis = ~(out | in_pit)
        obst = vis & ~(retiring | finished)
        pen = np.where(obst, 0.0, inf)

        # -- traffic: the car physically ahead on the circuit ------------------------------------
        D = s[None, :] - s[:, None]
        D %= L  # D[i, j]: metres from i forward to j
        D.flat[:: n + 1] = inf
        Do = D + pen  # only obstacles count as "ahead"
        ahead = Do.argmin(axis=1)
        gap_m = Do[ar, ahead]
        vsafe = np.maximum(v, 5.0)
        gap_t = gap_m / vsafe
        green = not sc
        s_ahead = s[ahead]
        lapping = s > s_ahead + half_lap if green else None  # the car ahead is being lapped by this one
        if green and cnz(lapping):
            Db = D + pen[:, None]
            behind = Db.argmin(axis=0)
            blue = obst & (s[behind] > s + half_lap) & (Db[behind, ar] < vsafe[behind])
        else:
            blue = None

        look = s + v * SIM_DT
        sm = look % L
        u = sm * inv
        ti = u.astype(np.int64)
        fr = u - ti
        vr = vref[ti] + dvref[ti] * fr
        pz = passing[ti]
        dtab = drs_tab[ti]

        # -- DRS: opens on entering a zone within a second of the car ahead ----------------------
        if drs_enabled:
            in_zone = dtab == 2
            close = obst & (gap_t < 1.0)
            drs_open = in_zone & (drs_open | (close & (prev_dtab != 2)))
            drs_code = np.where(drs_open, DRS_OPEN, np.where((dtab == 1) & close, DRS_ELIGIBLE, DRS_OFF))
            boost = 1.0 + DRS_BOOST * drs_open
        else:
            if drs_code is not drs_off:
                drs_open = np.zeros(n, dtype=bool)
                drs_code = drs_off
            boost = ones.copy()
        prev_dtab = dtab
        if green:
            boost += TOW_BOOST * (obst & pz & ~drs_open & (gap_t < 1.0))
            boost -= DIRTY_AIR * (obst & ~pz & (gap_t < 0.7))  # dirty air in corners
            if blue is not None:
                boost -= 0.015 * blue
        k_eff = kk * boost
        target = vr * k_eff

        # -- safety car: the leader at SC pace, the rest catch up to the queue -------------------
        if sc:
            r = min(1.0, (t - t_sc) / 8.0)
            leader = int(np.where(out | finished, -inf, s).argmax())
            mult = np.full(n, SC_CATCH_UP)
            mult[leader] = 1.0
            cap = (vsc[ti] + dvsc[ti] * fr) * mult
            target = np.minimum(target, target * (1.0 - r) + np.minimum(target, cap) * r)

        # -- pit lane: brake to the limit before the entry, stop at the box ----------------------
        approach = has & ~entered
        approach_any = bool(cnz(approach))
        if approach_any:
            # at the limit a step before the line, so interpolated frames never show more
            d_in = np.maximum(np.where(approach, entry - look - v * SIM_DT - 1.0, 1e9), 0.0)
            np.minimum(target, np.sqrt(PIT_SPEED**2 + 24.0 * d_in), out=target)
        if pit_any:
            target = np.where(in_pit, np.minimum(target, PIT_SPEED), target)
            unserved = in_pit & ~served
            target = np.where(unserved, np.minimum(target, np.sqrt(16.0 * np.maximum(box - s, 0.0))), target)
        if cheq and cnz(finished):  # cool-down lap
            target = np.where(finished, np.minimum(target, np.maximum(0.6 * vr, v - 4.0 * SIM_DT)), target)

        # -- overtaking: a car faster this lap that gets within 12 m on a straight (tow, DRS) goes
        # for the gap under braking; the defender backs off until it is through, or 4 s pass ------
        attacking = no_attack
        if green and t > lights + 8.0:
            close = gap_m < 12.0
            if cnz(close):
                new_att = close & obst & pz & (v > v[ahead] + 2.0) & (att_vs < 0) & ~lapping & (kk > kk[ahead] * 1.001)
                if cnz(new_att):
                    att_vs = np.where(new_att, ahead, att_vs)
                    att_until = np.where(new_att, t + 4.0, att_until)
                    att_any = True
            if att_any:
                attacking = att_vs >= 0
                vic = np.where(attacking, att_vs, ar)
                done = attacking & ((s > s[vic] + 3.0) | (t > att_until) | ~obst | ~obst[vic])
                att_vs = np.where(done, -1, att_vs)
                attacking = attacking & ~done
                if cnz(attacking):
                    ai = np.flatnonzero(attacking)
                    defend = np.full(n, inf)
                    np.minimum.at(defend, att_vs[ai], np.maximum(v[ai] - 3.0, 0.0))
                    np.minimum(target, defend, out=target)
                else:
                    att_any = False
        elif att_any:
            att_vs = np.full(n, -1)
            att_any = False

        # -- speed: limited by the car's acceleration and braking --------------------------------
        vk = np.maximum(v / k_eff, 1.0)
        a_up = k_eff * k_eff * (np.minimum(TRACTION * plan.launch_trac if t < lights + 6.0 else TRACTION, POWER / vk) - DRAG * vk * vk)
        np.maximum(a_up, 0.2, out=a_up)
        v_floor = v - (BRK0 + (DRAG + BRK_AERO) * v * v) * SIM_DT
        v_new = np.minimum(np.maximum(target, v_floor), v + a_up * SIM_DT)
        # following: close in at a comfortable deceleration, then hold the headway d_min; on a
        # straight (green flag) a faster car may pass instead, and a lapping car always may
        if green:
            apply = obst & ~pz & ~lapping & ~attacking & (gap_m < 400.0)
            d_min, b_close, tau = 5.0 + 0.2 * v, 12.0, 1.0
        else:
            apply = obst & (gap_m < 400.0)
            d_min, b_close, tau = 8.0 + 0.1 * v, 8.0, 2.0
        if cnz(apply):
            va = v_new[ahead]
            err = gap_m - d_min
            # too close: drop back, but never below 85% of the car ahead's speed (no cascades)
            cap_f = np.where(err > 0, np.sqrt(va * va + 2.0 * b_close * np.maximum(err, 0.0)), np.maximum(va + err / tau, 0.85 * va))
            v_new = np.where(apply, np.maximum(np.minimum(v_new, cap_f), v_floor), v_new)
        np.maximum(v_new, 0.0, out=v_new)
        np.minimum(v_new, SPEED_CAP, out=v_new)
        if t < lights + 2.0:
            v_new[t < start_at] = 0.0
        if pit_any:
            v_new[t < hold_until] = 0.0
        if out_any:
            v_new[out] = 0.0
        if cnz(retiring):
            v_new = np.where(retiring, np.maximum(v - 6.0 * SIM_DT, 0.0), v_new)
        s_new = s + 0.5 * (v + v_new) * SIM_DT

        # -- pit events -----------------------------------------------------------------------------
        if approach_any or pit_any:
            newly = has & ~entered & (s_new >= entry)
            for i in np.flatnonzero(newly):
                st = _Stop(int(i), int(stop_i[i]), int(cur[i]), float(entry[i]), float(exit_[i]), float(box[i]))
                current[int(i)] = st
                stops.append(st)
            entered |= newly
            if cnz(newly):
                dirty_state = True
            unserved = entered & ~served & has
            if cnz(unserved):
                s_new = np.where(unserved, np.minimum(s_new, box), s_new)
                snap = unserved & (s_new >= box - 0.4)
                if cnz(snap):
                    s_new = np.where(snap, box, s_new)
                    v_new = np.where(snap, 0.0, v_new)
                    served |= snap
                    hold_until = np.where(snap, t_new + plan.stop_time[ar, stop_i], hold_until)
                    for i in np.flatnonzero(snap):
                        current[int(i)].t_box = t_new
                        current[int(i)].served = True
            left = entered & (s_new >= exit_)
            if cnz(left):
                stop_i = stop_i + left
                entered &= ~left
                served &= ~left
                dirty_state = True

        # -- lateral position: side by side when close, off the track when retiring --------------
        if t >= lights:
            Dv = D + np.where(vis, 0.0, inf)
            av = Dv.argmin(axis=1)
            near = vis & (Dv[ar, av] < 8.5)
            lat_t = np.where(near, np.where(lat[av] > 0.3, -2.2, 2.2), 0.0)
            if approach_any or pit_any:
                lat_t[in_pit | (approach & (entry - s < 150.0))] = 0.0  # line up for the pit entry
            if cnz(retiring) or out_any:
                lat_t[retiring | out] = RETIRE_OFFSET
                rate = np.where(retiring, 4.0, 2.5) * SIM_DT
                lat = np.where(out, lat, lat + np.minimum(np.maximum(lat_t - lat, -rate), rate))
            else:
                lat = lat + np.minimum(np.maximum(lat_t - lat, -0.25), 0.25)

        # -- race control ---------------------------------------------------------------------------
        if not incident:
            who = plan.retire
            d = s_new[who] if who >= 0 else float(np.max(s_new))
            if d >= plan.incident_dist:
                incident = True
                t_yellow = t_new
                if who >= 0:
                    retiring[who] = True
                sector = 1 + int(np.searchsorted(track.geometry.sectors, d % L, side="right"))
                msg(t_new, f"YELLOW IN TRACK SECTOR {sector}", "Flag")
        if cnz(retiring):
            stopped = retiring & (v_new <= 0.0)
            for i in np.flatnonzero(stopped):
                d = plan.drivers[i]
                msg(t_new, f"CAR {d.number} ({d.code}) RETIRED", "CarEvent", d.code)
            out |= stopped
            t_out = np.where(stopped, t_new, t_out)
            retiring &= ~stopped
            if cnz(stopped):
                out_any = dirty_state = True
        if sc and not sc_in_msg and t_new >= t_sc + 20.0:  # a one-lap safety car
            sc_in_msg = True
            msg(t_new, "SAFETY CAR IN THIS LAP", "SafetyCar")
        if incident and not sc and t_sc == inf and not cheq and t_new >= t_yellow + 10.0:
            sc, t_sc = True, t_new
            # the SC comes in as the leader completes its n_sc-th lap from now, before the last lap
            n_sc = max(1, min(plan.sc_laps, laps - 1 - lead_done))
            msg(t_new, "SAFETY CAR DEPLOYED", "SafetyCar")
            sc_in_msg = n_sc > 1
            if drs_enabled:
                drs_enabled = False
                msg(t_new, "DRS DISABLED", "Drs")

        done_now = lead_done
        if not cheq and s_new.max() >= (lead_done + 1) * L:  # cheap test first; retired cars never lead
            alive = ~out
            lead = int(np.where(alive, s_new, -inf).argmax())
            done_now = int(math.floor(s_new[lead] / L)) if s_new[lead] >= 0 else 0
        if done_now > lead_done and not cheq:
            lead_done = done_now
            frac = (lead_done * L - s[lead]) / max(s_new[lead] - s[lead], 1e-9)
            t_c = float(t + min(max(frac, 0.0), 1.0) * SIM_DT)
            if lead_done >= laps:
                cheq = True
                msg(t_c, "CHEQUERED FLAG", "Flag")
                s_at = s + (s_new - s) * min(max(frac, 0.0), 1.0)
                fin_dist = np.where(alive, (np.floor(s_at / L) + 1.0) * L, inf)
                fin_dist[lead] = laps * L
                if sc:
                    t_sc_end = inf  # the race finishes behind the safety car
            else:
                if sc:
                    sc_cross += 1
                    if sc_cross == n_sc - 1:
                        msg(t_c, "SAFETY CAR IN THIS LAP", "SafetyCar")
                    elif sc_cross >= n_sc:
                        sc, t_sc_end = False, t_c
                        drs_after = lead_done + 1
                        msg(t_c, "TRACK CLEAR", "Flag")
                if not sc and not drs_enabled and lead_done >= drs_after:
                    drs_enabled = True
                    msg(t_c, "DRS ENABLED", "Drs")
        if cheq:
            newly = ~finished & ~out & (s_new >= fin_dist)
            if cnz(newly):
                frac = (fin_dist - s) / np.maximum(s_new - s, 1e-9)
                t_fin = np.where(newly, t + np.minimum(np.maximum(frac, 0.0), 1.0) * SIM_DT, t_fin)
                finished |= newly
                drs_open &= ~newly
                dirty_state = True
            if t_end == inf and np.all(finished | out):
                t_end = math.ceil((float(np.max(t_fin[finished])) + 4.0) / SIM_DT) * SIM_DT

        s, v = s_new, v_new
        step += 1
        if progress is not None and step % 250 == 0:
            progress(min(0.9, 0.9 * max(0.0, float(np.max(s))) / (laps * L)))

    return _Run(
        t=np.arange(len(rec_s)) * SIM_DT,
        s=np.array(rec_s),
        v=np.array(rec_v),
        lat=np.array(rec_lat),
        drs=np.array(rec_drs, dtype=np.int8),
        fin_dist=fin_dist,
        t_fin=t_fin,
        t_out=t_out,
        stops=stops,
        messages=messages,
        t_yellow=t_yellow,
        t_sc=t_sc,
        t_sc_end=t_sc_end,
        t_end=t_end,
    )


# ================================================================================================
# From the 10 Hz run to the frame grid
# ================================================================================================
GEAR_BINS_KMH = np.array([75.0, 110.0, 145.0, 180.0, 215.0, 250.0, 285.0])


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


def _assemble(track: _Track, plan: _Plan, run: _Run, laps: int, fps: int, rng: np.random.Generator) -> dict:
    n = len(plan.drivers)
    L, inv = track.L, 1.0 / track.ds
    t_end = run.t_end
    nf = int(math.floor(t_end * fps + 1e-9)) + 1
    t = np.arange(nf, dtype=np.float64) / fps
    m = len(run.t)
    u = t / SIM_DT
    k0 = np.minimum(np.floor(u + 1e-9).astype(np.int64), m - 2)
    f = (u - k0)[:, None]
    # distance: cubic Hermite with the speeds as slopes (monotone: speeds are never negative)
    f2, f3 = f * f, f * f * f
    S0, S1, V0, V1 = run.s[k0], run.s[k0 + 1], run.v[k0], run.v[k0 + 1]
    dist = (2 * f3 - 3 * f2 + 1) * S0 + (f3 - 2 * f2 + f) * (SIM_DT * V0) + (3 * f2 - 2 * f3) * S1 + (f3 - f2) * (SIM_DT * V1)
    del S0, S1
    np.maximum.accumulate(dist, axis=0, out=dist)
    speed = V0 + (V1 - V0) * f  # m/s
    del V0, V1
    lat = run.lat[k0] + (run.lat[k0 + 1] - run.lat[k0]) * f
    drs = run.drs[k0]

    # pit lane windows (by distance, so x/y and status agree exactly)
    in_pit = np.zeros((nf, n), dtype=bool)
    for st in run.stops:
        col = dist[:, st.driver]
        in_pit[:, st.driver] |= (col >= st.entry) & (col < st.exit)

    s_mod = dist % L
    off = lat + _lookup(track.pit_off, s_mod, inv) * in_pit
    x = _lookup(track.x, s_mod, inv) + _lookup(track.nx, s_mod, inv) * off
    y = _lookup(track.y, s_mod, inv) + _lookup(track.ny, s_mod, inv) * off
    del off, lat, s_mod

    status = np.zeros((nf, n), dtype=np.int8)
    status[in_pit] = Status.PIT
    fin = dist >= run.fin_dist[None, :]
    status[fin] = Status.FINISHED
    status[t[:, None] >= run.t_out[None, :]] = Status.OUT

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

    # gap: now minus the time the leading car was at this car's distance
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
    del gs, ivs, order

    # lap and sector times, from the 10 Hz run (accurate), shown from the frame the line is crossed
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

    # tyres: compound changes at the box, age counts laps completed on the set
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

    # driver inputs consistent with the speed trace
    acc = np.zeros_like(speed)
    acc[:-1] = np.diff(speed, axis=0) * fps
    drag = DRAG * speed * speed
    a_pow = np.minimum(TRACTION, POWER / np.maximum(speed, 1.0))
    braking = acc < -(drag + 0.5)
    brake = np.where(braking, np.clip((-acc - drag) / (_a_brk(speed) - drag) * 100.0, 1.0, 100.0), 0.0)
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
    del acc, drag, a_pow, braking, lifting
    drs = np.where(status == Status.RUNNING, drs, np.int8(Drs.OFF)).astype(np.int8)

    channels = {
        "x": x.astype(np.float32),
        "y": y.astype(np.float32),
        "speed": kmh.astype(np.float32),
        "gear": gear,
        "throttle": throttle.astype(np.float32),
        "brake": brake.astype(np.float32),
        "drs": drs,
        "lap": lap.astype(np.int16),
        "position": position,
        "tyre": tyre,
        "tyre_age": tyre_age,
        "dist": dist,
        "rel_dist": np.minimum((dist % L) / L, np.nextafter(np.float32(1.0), np.float32(0.0))).astype(np.float32),
        "race_progress": progress,
        "status": status,
        "gap": gap.astype(np.float32),
        "interval": interval.astype(np.float32),
        "lap_time": lap_time.astype(np.float32),
        "sector1": sectors[0].astype(np.float32),
        "sector2": sectors[1].astype(np.float32),
        "sector3": sectors[2].astype(np.float32),
    }
    assert set(channels) == set(CHANNELS)

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

    periods = []
    edges = [(0.0, TrackStatus.GREEN)]
    if math.isfinite(run.t_yellow):
        edges.append((run.t_yellow, TrackStatus.YELLOW))
        if math.isfinite(run.t_sc):
            edges.append((run.t_sc, TrackStatus.SC))
            if math.isfinite(run.t_sc_end):
                edges.append((run.t_sc_end, TrackStatus.GREEN))
        else:
            edges.append((min(run.t_yellow + 20.0, t_end), TrackStatus.GREEN))
    end = float(t[-1])
    for (a, st), (b, _) in zip(edges, edges[1:] + [(end, None)]):
        if b > a:
            periods.append(TrackStatusPeriod(start=round(float(a), 3), end=round(float(b), 3), status=st))

    # weather: slow random walks sampled every minute
    tw = np.arange(0.0, end + 60.0, 60.0)
    k = len(tw)

    def walk(start: float, sd: float, lo: float, hi: float) -> np.ndarray:
        return np.clip(start + np.cumsum(rng.normal(0.0, sd, k)), lo, hi)

    air = walk(rng.uniform(21.0, 27.0), 0.08, 20.0, 30.0)
    weather = {
        "t": tw,
        "air_temp": np.round(air, 1),
        "track_temp": np.round(np.clip(air + walk(rng.uniform(10.0, 14.0), 0.12, 8.0, 16.0), 30.0, 45.0), 1),
        "humidity": np.round(walk(rng.uniform(35.0, 65.0), 0.5, 20.0, 90.0), 1),
        "rainfall": np.zeros(k),
        "wind_speed": np.round(walk(rng.uniform(0.5, 3.5), 0.1, 0.0, 8.0), 1),
        "wind_direction": np.round(walk(rng.uniform(0.0, 360.0), 3.0, -1e9, 1e9)) % 360.0,
    }
    return dict(
        t=t,
        channels=channels,
        leader_lap=leader_lap,
        pit_stops=tuple(pit_stops),
        track_status=tuple(periods),
        weather=weather,
        messages=tuple(sorted(run.messages, key=lambda mm: mm.t)),
    )


# ================================================================================================
# Public API
# ================================================================================================
def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)


def simulate_race(
    laps: int = 57,
    seed: int = 0,
    *,
    n_drivers: int = 20,
    fps: int = 25,
    id: str | None = None,  # noqa: A002 - the Race field is called id
    title: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> Race:
    """Simulate a whole race: deterministic for given arguments (byte-identical arrays).

    ``laps`` 1..200, ``n_drivers`` 2..26, ``fps`` 1..100 (the race itself is simulated at 10 Hz and
    resampled, so the same seed gives the same race at any frame rate). ``progress`` is called now
    and then with the fraction done (0..1). Raises :class:`ValueError` on bad arguments.
    """
    laps = _check_int("laps", laps, 1, 200)
    n_drivers = _check_int("n_drivers", n_drivers, 2, 26)
    fps = _check_int("fps", fps, 1, 100)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if progress is not None:
        progress(0.0)
    rng = np.random.default_rng(int(seed))
    track = _build_track(rng)
    plan = _plan(rng, track, laps, n_drivers)
    run = _simulate(track, plan, laps, progress)
    parts = _assemble(track, plan, run, laps, fps, rng)
    if progress is not None:
        progress(0.95)
    circuit = CIRCUITS[int(seed) % len(CIRCUITS)]
    race = Race(
        fps=fps,
        t=parts["t"],
        drivers=plan.drivers,
        channels=parts["channels"],
        leader_lap=parts["leader_lap"],
        total_laps=laps,
        geometry=track.geometry,
        id=id if id is not None else f"sim-{seed}",
        title=title if title is not None else f"racecast Grand Prix (simulated, {laps} laps)",
        event={
            "year": 2026,
            "round": 0,
            "session_type": "R",
            "name": "racecast Grand Prix",
            "circuit": circuit,
            "date": "2026-06-14",
        },
        track_status=parts["track_status"],
        messages=parts["messages"],
        pit_stops=parts["pit_stops"],
        weather=parts["weather"],
    )
    if progress is not None:
        progress(1.0)
    return race
