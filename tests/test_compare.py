"""Lap comparison (racecast.analysis.compare) on a simulated race: laps, distance alignment, times."""

from __future__ import annotations

import numpy as np
import pytest

from racecast.analysis.compare import CompareError, compare_laps, driver_laps, lap_trace, seed_lap_telemetry, seed_sector_times, source_of
from racecast.race import Status
from racecast.sources.simulate import simulate_race


@pytest.fixture(scope="module")
def race():
    return simulate_race(laps=3, seed=7)


def test_a_lap_is_the_drivers_frames_on_that_lap_with_its_times(race) -> None:
    src = source_of(race)
    code = race.codes[2]
    d = race.codes.index(code)
    assert driver_laps(src, race.codes, code) == [1, 2, 3]
    for lap in (2, 3):
        tr = lap_trace(src, race.codes, code, lap)
        lap_col = race.channels["lap"][:, d]
        on_track = (lap_col == lap) & (race.channels["status"][:, d] != Status.FINISHED)
        assert len(tr.t) == int(on_track.sum())
        assert tr.distance[0] == 0 and np.all(np.diff(tr.distance) >= 0)
        assert tr.distance[-1] == pytest.approx(race.geometry.length, rel=0.03)  # one lap of track
        assert tr.lap_time is not None and tr.lap_time == pytest.approx(tr.t[-1], abs=0.1)  # frames span the lap
        assert sum(tr.sectors) == pytest.approx(tr.lap_time, abs=0.01)
        assert tr.channels["speed"].max() > 150 and set(np.unique(tr.channels["gear"])) <= set(range(9))


def test_unknown_drivers_and_laps_say_what_exists(race) -> None:
    src = source_of(race)
    with pytest.raises(CompareError, match="no driver 'ZZZ'.*" + race.codes[0]):
        lap_trace(src, race.codes, "ZZZ", 1)
    with pytest.raises(CompareError, match="has no lap 40 .*laps 1-3"):
        lap_trace(src, race.codes, race.codes[0], 40)
    with pytest.raises(CompareError):
        lap_trace(src, race.codes, race.codes[0], 0)


def test_laps_align_by_distance_and_delta_is_the_time_difference(race) -> None:
    src = source_of(race)
    a = lap_trace(src, race.codes, race.codes[0], 2)
    b = lap_trace(src, race.codes, race.codes[4], 2)
    c = compare_laps(a, b, step=10)
    grid = np.asarray(c["distance"])
    assert grid[0] == 0 and np.allclose(np.diff(grid), 10) and grid[-1] <= min(a.distance[-1], b.distance[-1])
    for side in ("a", "b"):
        assert {len(c[side][k]) for k in ("speed", "throttle", "brake", "gear", "x", "y", "time")} == {len(grid)}
        assert all(isinstance(g, int) for g in c[side]["gear"])
    # At the end of the common distance the delta is the lap time difference, give or take the last few metres.
    assert c["delta"][-1] == pytest.approx(b.lap_time - a.lap_time, abs=0.3)
    assert c["delta"][0] == 0
    same = compare_laps(a, a)
    assert not any(same["delta"])


def test_seed_shapes(race) -> None:
    src = source_of(race)
    tr = lap_trace(src, race.codes, race.codes[1], 2)
    t = seed_lap_telemetry(tr)
    assert set(t) == {"driver_code", "lap_number", "lap_time", "telemetry"}
    p = t["telemetry"]
    assert set(p[0]) == {"distance", "speed", "throttle", "brake", "rpm", "gear", "x", "y"}
    assert len(p) == len(tr.t) and all(0 <= q["brake"] <= 1 and 0 <= q["throttle"] <= 100 for q in p)
    assert p[10]["x"] == pytest.approx(10 * float(tr.channels["x"][10]), abs=0.06)  # FastF1 units
    s = seed_sector_times(tr)
    assert s == {"driver_code": race.codes[1], "lap_number": 2, "sector_1": tr.sectors[0], "sector_2": tr.sectors[1],
                 "sector_3": tr.sectors[2], "lap_time": tr.lap_time}  # fmt: skip


def test_quali_segments_hold_every_drivers_fastest_lap(race) -> None:
    from racecast.analysis.compare import fastest_lap, seed_quali_segments

    src = source_of(race)
    q = seed_quali_segments(src, race.codes, hz=5)
    assert set(q) == {"Q1", "Q2", "Q3"} and q["Q2"]["drivers"] == {} and q["Q3"]["drivers"] == {}
    q1 = q["Q1"]
    assert set(q1["drivers"]) == set(race.codes)
    for code, d in q1["drivers"].items():
        lap, best = fastest_lap(src, race.codes, code)
        tr = lap_trace(src, race.codes, code, lap)
        times = [lap_trace(src, race.codes, code, k).lap_time for k in driver_laps(src, race.codes, code)]
        assert d["lap_time"] == best == min(t for t in times if t)  # (a retired car has a lap without a time)
        assert tr.lap_time == pytest.approx(best, abs=1e-3)
        f = d["frames"]
        assert set(f[0]) == {"t", "x", "y", "dist", "speed", "gear", "throttle", "brake", "drs"}
        assert f[0]["t"] == 0 and f[1]["t"] == pytest.approx(0.2, abs=1e-6)  # 5 Hz
        assert f[-1]["t"] == pytest.approx(best, abs=0.25) and all(0 <= x["brake"] <= 100 for x in f)
    assert q1["duration"] == max(d["lap_time"] for d in q1["drivers"].values())


def test_quali_segments_follow_the_knockout_segments(race) -> None:
    from racecast.analysis.compare import fastest_lap, seed_quali_segments

    src = source_of(race)
    t = race.t
    mid = float(t[len(t) // 2])
    segs = [{"name": "Q1", "start": float(t[0]), "end": mid}, {"name": "Q2", "start": mid, "end": float(t[-1])}]
    q = seed_quali_segments(src, race.codes, segs)
    assert q["Q3"] == {"duration": 0.0, "drivers": {}}
    for name, (a, b) in (("Q1", (float(t[0]), mid)), ("Q2", (mid, float(t[-1])))):
        want = {c: fastest_lap(src, race.codes, c, (a, b)) for c in race.codes}
        want = {c: v for c, v in want.items() if v is not None}
        assert want and set(q[name]["drivers"]) <= set(want)
        for code, d in q[name]["drivers"].items():
            assert d["lap_time"] == want[code][1]


def test_real_qualifying_gets_the_seeds_segments_with_who_ran_in_each() -> None:
    """2025 Australian GP qualifying from the shared pack (skipped without it, failing under CI=true)."""
    import json

    from racecast.analysis.compare import seed_quali_segments
    from racecast.sources.table import load_table
    from tests.realdata import require_pack

    d = require_pack("2025_1_Q")
    race = load_table(d / "table.parquet", session="Q", fps=5)
    q = race.event["qualifying"]
    segs = seed_quali_segments(source_of(race), race.codes, q["segments"])
    truth = json.loads((d / "truth.json").read_text())

    def secs(v: str | None) -> float | None:
        if not v:
            return None
        m, _, s = v.rpartition(":")
        return 60 * int(m or 0) + float(s)

    official = {r["driver"]: r for r in truth["classification_official"]}
    diffs = []
    for name in ("Q1", "Q2", "Q3"):
        timed = {c for c, r in official.items() if secs(r.get(name.lower()))}
        assert set(segs[name]["drivers"]) == timed, name  # who set a time in that segment, no one else
        for code, lap in segs[name]["drivers"].items():
            diffs.append(abs(lap["lap_time"] - secs(official[code][name.lower()])))
            assert lap["frames"][0]["t"] == 0 and len(lap["frames"]) >= 5 * 70  # a ~76 s lap at the data's 5 fps
    assert float(np.median(diffs)) < 0.2  # the data's lap times against the official ones
