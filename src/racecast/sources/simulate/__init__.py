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

Modules, in pipeline order: :mod:`.params` (the numbers), :mod:`.track` (1-2),
:mod:`.strategy` (every random decision about the race, drawn up front), :mod:`.run` (3),
:mod:`.channels` (4).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...race import Race
from .channels import assemble
from .params import CIRCUITS, PIT_SPEED_KMH
from .run import run_race
from .strategy import plan_race
from .track import build_track

__all__ = ["simulate_race", "PIT_SPEED_KMH"]


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
    track = build_track(rng)
    plan = plan_race(rng, track, laps, n_drivers)
    run = run_race(track, plan, laps, progress)
    parts = assemble(track, plan, run, laps, fps, rng)
    if progress is not None:
        progress(0.95)
    circuit = CIRCUITS[int(seed) % len(CIRCUITS)]
    race = Race(
        fps=fps,
        t=parts.t,
        drivers=plan.drivers,
        channels=parts.channels,
        leader_lap=parts.leader_lap,
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
        track_status=parts.track_status,
        messages=parts.messages,
        pit_stops=parts.pit_stops,
        weather=parts.weather,
    )
    if progress is not None:
        progress(1.0)
    return race
