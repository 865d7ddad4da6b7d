"""The plan: every random decision about a simulated race, drawn up front."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...race import Compound, Driver
from .params import TEAMS, TYRES
from .track import Track

__all__ = ["Plan", "plan_race"]


@dataclass
class Plan:
    """Every random decision about the race, drawn up front (before the simulation runs)."""

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


def plan_race(rng: np.random.Generator, track: Track, laps: int, n: int) -> Plan:
    """The entry list, pace, grid, strategies, pace factor per lap, launches, pit boxes, the retirement
    and the safety car's length, drawn from ``rng`` in a fixed order (same seed, same plan)."""
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
    return Plan(
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
