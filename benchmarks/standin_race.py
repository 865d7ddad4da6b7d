"""A stand-in race with realistic telemetry, for the bandwidth benchmark until the simulator is on main.

Bandwidth depends on how much the data moves, so a benchmark on constant
telemetry would flatter every encoding. This race drives 20 cars round a
curvy 5 km track: speed follows curvature with braking and traction limits,
cars weave a couple of metres off the centre line, throttle and speed carry
sensor noise, gears follow speed, gaps and intervals move every frame, lap and
sector times change once a lap. Vectorised: time as a function of distance,
inverted by interpolation.
"""

from __future__ import annotations

import numpy as np

from racecast.race import Compound, Driver, Race, TrackGeometry, empty_channels, rank_positions


def standin_race(laps: int = 10, n_drivers: int = 20, fps: int = 25, seed: int = 0) -> Race:
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 2 * np.pi, 5000, endpoint=False)
    r = 800 + 250 * np.sin(3 * s) + 120 * np.cos(7 * s)
    cx, cy = r * np.cos(s), 0.6 * r * np.sin(s)
    seg = np.hypot(np.diff(cx, append=cx[0]), np.diff(cy, append=cy[0]))
    length = float(seg.sum())
    sd = np.concatenate([[0], np.cumsum(seg)[:-1]])
    dx, dy = np.gradient(cx), np.gradient(cy)
    ddx, ddy = np.gradient(dx), np.gradient(dy)
    curv = np.abs(dx * ddy - dy * ddx) / (dx * dx + dy * dy) ** 1.5 + 1e-6
    grid = np.arange(0, length, 1.0)
    v = np.interp(grid, sd, np.minimum(92, np.sqrt(40 / curv)), period=length)
    for _ in range(2):  # traction (12 m/s²) and braking (40 m/s²) limits on a 1 m grid
        for i in range(1, len(v)):
            v[i] = min(v[i], np.sqrt(v[i - 1] ** 2 + 24))
        for i in range(len(v) - 2, -1, -1):
            v[i] = min(v[i], np.sqrt(v[i + 1] ** 2 + 80))
    lap_t = float(np.sum(1 / v))
    n = int((laps * lap_t * 1.03 + 5) * fps)
    t = np.arange(n) / fps
    ch = empty_channels(n, n_drivers)
    total = (laps + 1) * length
    g = np.arange(0, total + 200, 1.0)
    for d in range(n_drivers):
        pace = 1 + 0.004 * d + 0.002 * rng.standard_normal()
        vg = np.interp(g % length, grid, v) / pace * (1 + 0.01 * np.sin(g / 2000 + d))
        tg = np.concatenate([[0], np.cumsum(1 / vg[:-1])])
        dist = np.interp(t, tg, g) - 8.0 * d
        sp = np.gradient(dist) * fps
        sm = dist % length
        lat = 2 * np.sin(dist / 300 + d)
        nx, ny = -np.interp(sm, sd, dy, period=length), np.interp(sm, sd, dx, period=length)
        nn = np.hypot(nx, ny)
        ch["x"][:, d] = np.interp(sm, sd, cx, period=length) + lat * nx / nn
        ch["y"][:, d] = np.interp(sm, sd, cy, period=length) + lat * ny / nn
        ch["dist"][:, d] = dist
        ch["speed"][:, d] = sp * 3.6 + 0.3 * rng.standard_normal(n)
        acc = np.gradient(sp) * fps
        ch["throttle"][:, d] = np.clip(np.where(acc > -3, 60 + 40 * np.clip(acc / 10, 0, 1), 0) + rng.integers(0, 3, n), 0, 100)
        ch["brake"][:, d] = np.where(acc < -5, 100, 0)
        ch["gear"][:, d] = np.clip((sp / 12).astype(int) + 1, 1, 8)
        ch["rel_dist"][:, d] = sm / length
        ch["race_progress"][:, d] = dist / length
        lap = np.floor(dist / length).astype(int) + 1
        ch["lap"][:, d] = lap
        ch["tyre"][:, d] = Compound.MEDIUM
        ch["tyre_age"][:, d] = lap + 2
        lt = np.full(n, np.nan)
        starts = np.flatnonzero(np.diff(lap) > 0) + 1
        for a, b in zip(starts[:-1], np.append(starts[1:], n)):
            lt[a:b] = lap_t * pace + rng.random()
        ch["lap_time"][:, d] = lt
        for k, frac in ((1, 0.31), (2, 0.37), (3, 0.32)):
            ch[f"sector{k}"][:, d] = lt * frac
    ch["position"][:] = rank_positions(ch["race_progress"], ch["status"])
    prog = ch["race_progress"].astype(np.float64)
    ch["gap"][:] = (prog.max(axis=1, keepdims=True) - prog) * lap_t
    order = np.argsort(-prog, axis=1)
    ahead = np.take_along_axis(prog, order, axis=1)
    iv = np.concatenate([np.full((n, 1), np.nan), -np.diff(ahead, axis=1)], axis=1) * lap_t
    interval = np.empty_like(iv)
    np.put_along_axis(interval, order, iv, axis=1)
    ch["interval"][:] = interval
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    geo = TrackGeometry(np.interp(a, s, cx), np.interp(a, s, cy), 0.98 * np.interp(a, s, cx), 0.98 * np.interp(a, s, cy),
                        1.02 * np.interp(a, s, cx), 1.02 * np.interp(a, s, cy), length=length)  # fmt: skip
    drivers = tuple(Driver(f"S{i:02d}", i + 1, f"Stand-in {i}", f"Team {i // 2}", "#3671C6") for i in range(n_drivers))
    return Race(
        fps=fps, t=t, drivers=drivers, channels=ch, leader_lap=ch["lap"].max(axis=1), total_laps=laps, geometry=geo,
        id="standin", title="Stand-in race",
        weather={"t": np.array([0.0, 600.0]), "air_temp": np.array([22.0, 22.4]), "track_temp": np.array([35.0, 36.1])},
    )  # fmt: skip
