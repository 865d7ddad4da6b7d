"""Races the benchmarks (and the tests) use, written as bundles.

* :func:`write_bench_bundle` -- the race every design serves in a benchmark run: the simulator's
  (realistic frame sizes, so bytes and CPU per frame are representative);
* :func:`tiny_race` / :func:`write_race` -- small hand-built races that do not depend on the
  simulator (cars circling a circle), for fast tests and micro-benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from racecast.bundle import write_bundle
from racecast.race import (
    Compound,
    Driver,
    PitStop,
    Race,
    RaceControlMessage,
    Status,
    TrackGeometry,
    TrackStatus,
    TrackStatusPeriod,
    empty_channels,
    rank_positions,
)
from racecast.sources.simulate import simulate_race

__all__ = ["BENCH_ID", "TEAM_COLORS", "bench_race", "write_bench_bundle", "circle_geometry", "tiny_race", "write_race"]

BENCH_ID = "bench"
TEAM_COLORS = ["#3671C6", "#E8002D", "#27F4D2", "#FF8000", "#229971"]


def bench_race(laps: int, seed: int = 0, n_drivers: int = 20) -> tuple[Race, str]:
    """The benchmark race and where it came from."""
    return simulate_race(laps=laps, seed=seed, n_drivers=n_drivers, id=BENCH_ID), "simulator"


def write_bench_bundle(data_dir: Path, laps: int, seed: int = 0, format_version: int = 3) -> tuple[Path, str]:
    """Write the benchmark race into ``data_dir/bench``; return the bundle path and its source."""
    race, source = bench_race(laps, seed)
    path = write_bundle(race, Path(data_dir) / BENCH_ID, overwrite=True, format_version=format_version)
    return path, source


def circle_geometry(radius: float = 500.0, n: int = 200) -> TrackGeometry:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c = lambda r: (r * np.cos(a), r * np.sin(a))  # noqa: E731
    (cx, cy), (ix, iy), (ox, oy) = c(radius), c(radius - 6), c(radius + 6)
    return TrackGeometry(cx, cy, ix, iy, ox, oy, length=2 * np.pi * radius, sectors=(1000.0, 2000.0))



def tiny_race(n_frames: int = 250, n_drivers: int = 3, fps: int = 25, race_id: str = "tiny", retire: bool = False) -> Race:
    """Cars circling a 500 m-radius track at slightly different speeds; one pits, one may retire."""
    geo = circle_geometry()
    t = np.arange(n_frames) / fps
    drivers = tuple(
        Driver(f"D{i:02d}"[:3] if i < 10 else f"X{i}", i + 1, f"Driver {i}", f"Team {i // 2}", TEAM_COLORS[i % 5])
        for i in range(n_drivers)
    )
    ch = empty_channels(n_frames, n_drivers)
    speed_ms = 60.0 + 2.0 * np.arange(n_drivers)[None, :] + 0.0 * t[:, None]
    dist = speed_ms * t[:, None] - 20.0 * np.arange(n_drivers)[None, :]
    status = np.zeros((n_frames, n_drivers), dtype=np.int8)
    if retire and n_drivers > 1:
        stop = n_frames // 2
        status[stop:, 0] = Status.OUT
        dist[stop:, 0] = dist[stop, 0]
        speed_ms = np.broadcast_to(speed_ms, dist.shape).copy()
        speed_ms[stop:, 0] = 0
    ang = dist / 500.0
    ch["x"][:] = 500 * np.cos(ang)
    ch["y"][:] = 500 * np.sin(ang)
    ch["speed"][:] = np.broadcast_to(speed_ms * 3.6, dist.shape)
    ch["gear"][:] = 6
    ch["throttle"][:] = 100
    ch["dist"][:] = dist
    length = geo.length
    ch["race_progress"][:] = dist / length
    ch["lap"][:] = np.floor(dist / length).astype(int) + 1
    ch["rel_dist"][:] = (dist / length) % 1.0
    ch["tyre"][:] = Compound.MEDIUM
    ch["status"][:] = status
    ch["position"][:] = rank_positions(ch["race_progress"], status)
    ch["gap"][:, :] = 0.5
    ch["lap_time"][n_frames // 2 :, :] = 52.3
    leader = ch["lap"].max(axis=1)
    return Race(
        fps=fps,
        t=t,
        drivers=drivers,
        channels=ch,
        leader_lap=leader,
        total_laps=3,
        geometry=geo,
        id=race_id,
        title="Tiny test race",
        event={"year": 2026, "round": 0, "session_type": "R", "name": "Tiny"},
        track_status=(TrackStatusPeriod(0.0, float(t[-1]), TrackStatus.GREEN),),
        messages=(RaceControlMessage(1.0, "GREEN LIGHT - PIT EXIT OPEN", "Flag"),),
        pit_stops=(PitStop(drivers[-1].code, 1, 3.0, 5.0, Compound.MEDIUM, Compound.HARD),),
        weather={"t": np.array([0.0, 60.0]), "air_temp": np.array([22.0, 22.5]), "track_temp": np.array([35.0, 35.2])},
    )


def write_race(root: Path, race_id: str, n_frames: int, n_drivers: int = 3) -> None:
    """A :func:`tiny_race` of ``n_frames`` written as the bundle ``root/race_id``."""
    write_bundle(tiny_race(n_frames=n_frames, n_drivers=n_drivers, race_id=race_id), root / race_id)
