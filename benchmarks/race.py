"""The race every design serves in a benchmark run, written once as a bundle.

The realistic simulator is used when this checkout has it; otherwise a synthetic
20-car race with the same channels and realistic value ranges (so frame sizes,
and therefore bytes and CPU per frame, are representative).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from racecast.bundle import write_bundle
from racecast.race import (
    Compound,
    Driver,
    Race,
    Status,
    TrackGeometry,
    TrackStatus,
    TrackStatusPeriod,
    empty_channels,
    rank_positions,
)

BENCH_ID = "bench"
_TEAMS = ["#3671C6", "#E8002D", "#27F4D2", "#FF8000", "#229971", "#0093CC", "#64C4FF", "#B6BABD", "#52E252", "#FF87BC"]
_CODES = "VER PER LEC SAI HAM RUS NOR PIA ALO STR GAS OCO ALB SAR TSU RIC HUL MAG BOT ZHO".split()


def bench_race(laps: int, seed: int = 0, n_drivers: int = 20) -> tuple[Race, str]:
    """The benchmark race and where it came from (``"simulator"`` or ``"synthetic"``)."""
    try:
        from racecast.sources.simulate import simulate_race
    except ImportError:
        return synthetic_race(laps, seed, n_drivers), "synthetic"
    return simulate_race(laps=laps, seed=seed, n_drivers=n_drivers, id=BENCH_ID), "simulator"


def synthetic_race(laps: int, seed: int = 0, n_drivers: int = 20, fps: int = 25, lap_s: float = 90.0) -> Race:
    """Cars lapping a 5 km wobbly oval with per-car pace, braking zones, gears, gaps and lap times."""
    if not 1 <= n_drivers <= len(_CODES):
        raise ValueError(f"n_drivers must be 1..{len(_CODES)}, got {n_drivers}")
    rng = np.random.default_rng(seed)
    length = 5000.0
    n = int(round((laps * lap_s + 5.0) * fps))
    t = np.arange(n) / fps
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    r = 800 + 120 * np.sin(3 * a) + 60 * np.cos(5 * a)
    cx, cy = 1.9 * r * np.cos(a), r * np.sin(a)
    geo = TrackGeometry(cx, cy, cx * 0.99, cy * 0.99, cx * 1.01, cy * 1.01, length=length, sectors=(1700.0, 3400.0))

    pace = 1.0 + rng.normal(0, 0.004, n_drivers)  # relative lap time
    # Speed profile along the lap: straights ~320 km/h, corners ~90 km/h.
    def profile(frac: np.ndarray) -> np.ndarray:
        return 205 + 110 * np.sin(2 * np.pi * 3 * frac) + 20 * np.sin(2 * np.pi * 7 * frac)

    mean_ms = length / lap_s
    dist = np.empty((n, n_drivers))
    dist[0] = -8.0 * np.arange(n_drivers)
    speed = np.empty((n, n_drivers))
    for k in range(n):  # integrate the speed profile so position and speed agree
        frac = (dist[max(k - 1, 0)] % length) / length
        v = profile(frac) / 3.6 * (mean_ms / (205 / 3.6)) / pace
        speed[k] = v * 3.6
        if k:
            dist[k] = dist[k - 1] + v / fps
    ch = empty_channels(n, n_drivers)
    frac = (dist % length) / length
    ang = 2 * np.pi * frac
    rr = 800 + 120 * np.sin(3 * ang) + 60 * np.cos(5 * ang)
    ch["x"][:] = 1.9 * rr * np.cos(ang) + rng.normal(0, 0.3, (n, n_drivers))
    ch["y"][:] = rr * np.sin(ang) + rng.normal(0, 0.3, (n, n_drivers))
    ch["speed"][:] = speed
    ch["gear"][:] = np.clip((speed / 42).astype(int) + 1, 1, 8)
    acc = np.gradient(speed, axis=0)
    ch["throttle"][:] = np.clip(60 + acc * 40, 0, 100)
    ch["brake"][:] = np.clip(-acc * 30, 0, 100)
    ch["drs"][:] = np.where((frac > 0.05) & (frac < 0.15) & (t[:, None] > 120), 2, 0)
    progress = dist / length
    ch["dist"][:] = dist
    ch["rel_dist"][:] = frac
    ch["race_progress"][:] = progress
    ch["lap"][:] = np.clip(np.floor(progress).astype(int) + 1, 1, laps)
    ch["tyre"][:] = np.where(progress < laps / 2, Compound.MEDIUM, Compound.HARD)
    ch["tyre_age"][:] = np.floor(np.where(progress < laps / 2, progress, progress - laps / 2)).astype(int)
    status = np.where(progress >= laps, Status.FINISHED, Status.RUNNING).astype(np.int8)
    ch["status"][:] = status
    ch["position"][:] = rank_positions(progress, status)
    lead = progress.max(axis=1, keepdims=True)
    ch["gap"][:] = (lead - progress) * lap_s
    order = np.sort(progress, axis=1)[:, ::-1]
    ahead = np.take_along_axis(order, np.clip(ch["position"].astype(int) - 2, 0, None), axis=1)
    ch["interval"][:] = (ahead - progress) * lap_s
    done = progress >= 1
    lt = lap_s * pace[None, :] + rng.normal(0, 0.2, (n, n_drivers))
    ch["lap_time"][:] = np.where(done, lt, np.nan)
    for s, share in (("sector1", 0.33), ("sector2", 0.34), ("sector3", 0.33)):
        ch[s][:] = np.where(done, lt * share, np.nan)
    drivers = tuple(
        Driver(_CODES[i], i + 1, f"Driver {_CODES[i]}", f"Team {i // 2}", _TEAMS[(i // 2) % len(_TEAMS)]) for i in range(n_drivers)
    )
    return Race(
        fps=fps,
        t=t,
        drivers=drivers,
        channels=ch,
        leader_lap=np.clip(np.floor(progress.max(axis=1)).astype(int) + 1, 1, laps),
        total_laps=laps,
        geometry=geo,
        id=BENCH_ID,
        title=f"Benchmark race ({laps} laps, synthetic)",
        event={"year": 2026, "round": 0, "session_type": "R", "name": "Benchmark"},
        track_status=(TrackStatusPeriod(0.0, float(t[-1]), TrackStatus.GREEN),),
        weather={"t": np.array([0.0, 600.0]), "air_temp": np.array([24.0, 24.6]), "track_temp": np.array([38.0, 39.1])},
    )


def write_bench_bundle(data_dir: Path, laps: int, seed: int = 0, format_version: int = 3) -> tuple[Path, str]:
    """Write the benchmark race into ``data_dir/bench``; return the bundle path and its source."""
    race, source = bench_race(laps, seed)
    if race.id != BENCH_ID:
        race = Race(**{**{f: getattr(race, f) for f in race.__dataclass_fields__ if f != "id"}, "id": BENCH_ID})
    path = write_bundle(race, Path(data_dir) / BENCH_ID, overwrite=True, format_version=format_version)
    return path, source
