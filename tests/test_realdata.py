"""Replays of real sessions (../shared/realdata) against their official facts (truth.json).

Each session is ingested once per way (table, table without its status column, FastF1
frames; cached for the run, no bundle written) and scored by racecast.accuracy.metrics; the
targets of issue 11 are asserted per metric, so a regression names the rule it broke.
"""

from __future__ import annotations

import numpy as np
import pytest

from racecast.accuracy import realdata
from racecast.race import Status
from tests.realdata import QUALI, RACES, real_race, scores, truth

PATHS = realdata.PATHS
RACE_CASES = [(s, p) for s in RACES for p in PATHS]

#: Targets met on every race and path.
TARGETS = (
    "final_order", "final_status", "total_laps", "crossing_order", "crossing_error", "leader_share", "start_order", "retirements",
)


@pytest.mark.parametrize("session,path", RACE_CASES, ids=[f"{s}-{p}" for s, p in RACE_CASES], scope="class")
class TestRace:
    """Grouped per (session, path) so each race is built once and not kept after its group."""

    @pytest.mark.parametrize("target", TARGETS)
    def test_target(self, session, path, target):
        r = scores(session, path)[target]
        assert r.ok, f"{r.label}: {r.value}; " + "; ".join(r.details)

    def test_header_shows_lap_one_from_lights_out(self, session, path):
        race = real_race(session, path)
        f0 = int(np.searchsorted(race.t, race.event.get("start_t", 0.0) + 1e-6))
        assert (race.leader_lap[f0:] >= 1).all()
        assert race.leader_lap[-1] == truth(session)["total_laps"]

    def test_retired_cars_stay_out_behind_every_running_car(self, session, path):
        race = real_race(session, path)
        st, pos = race["status"], race["position"]
        out = st == Status.OUT
        assert not (out[:-1] & ~out[1:]).any()  # once out, out for good
        running = (st == Status.RUNNING) | (st == Status.PIT)
        worst_running = np.where(running, pos, 0).max(axis=1)
        best_out = np.where(out, pos, 99).min(axis=1)
        assert (worst_running < best_out).all()


@pytest.mark.parametrize("session", QUALI)
@pytest.mark.parametrize("path", PATHS)
def test_qualifying_still_ingests_and_scores(session, path):
    """The race rules must not break a qualifying session: it ingests every way, scores, and
    its laps are all there (its order is the knockout's: tests/test_officials.py)."""
    s = scores(session, path)
    assert s["total_laps"].ok, s["total_laps"].value
    assert "best_lap_order" in s
