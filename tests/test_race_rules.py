"""Race rules shared by the sources, on small hand-made data: non-starters, pit-lane starters,
the grid before the first crossing, retirements where the car stopped, bad tables warned about."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from racecast.cli import app
from racecast.race import Race, Status
from racecast.sources._common import (
    anchor_to_timing,
    chequered_flag,
    grid_ranks,
    order_margin,
    stop_time,
    timing_order_key,
)
from racecast.sources.fastf1 import race_from_fastf1_frames
from racecast.sources.table import load_table
from tests.fastf1_shapes import race_frames
from tests.test_ingest_table import DURATION, L, clock, traces, true_s


def test_chequered_flag_classifies_laps_down_at_their_first_crossing_after_the_winner():
    cross = [
        (np.array([10.0, 20.0, 30.0]), np.array([1, 2, 3])),  # winner: 3 laps at 30
        (np.array([11.0, 21.0, 31.0]), np.array([1, 2, 3])),  # second
        (np.array([15.0, 29.0, 40.0]), np.array([1, 2, 3]) - 1),  # a lap down: 0,1,2 -> flag at 40 with 2 laps
        (np.array([12.0]), np.array([1])),  # retired
    ]
    t_flag, total, fin = chequered_flag(cross)
    assert (t_flag, total) == (30.0, 3)
    assert fin[:3].tolist() == [30.0, 31.0, 40.0] and np.isnan(fin[3])
    assert chequered_flag(cross, scheduled=2)[:2] == (20.0, 2)  # a race shortened to the scheduled laps


def test_grid_ranks_put_pit_lane_starters_last_and_follow_given_slots():
    ahead = np.array([0.0, 10.0, -8.0, 150.0])
    assert grid_ranks(ahead, np.array([False, False, False, True])).tolist() == [1, 0, 2, 3]
    given = np.array([2.0, 1.0, 0.0, 3.0])  # 0 = pit lane
    assert grid_ranks(ahead, np.zeros(4, bool), given).tolist() == [1, 0, 3, 2]


def _ranked(key: np.ndarray) -> list[list[int]]:
    """Driver columns in running order, per frame."""
    return np.argsort(-key, axis=1, kind="stable").tolist()


def test_timing_order_is_laps_then_who_crossed_first_and_the_grid_before_the_first_crossing():
    grid = np.arange(0.0, 30.0, 1.0)
    cross = [
        (np.array([10.0, 20.0]), np.array([1, 2])),
        (np.array([10.5, 19.5]), np.array([1, 2])),  # second at lap 1, first at lap 2
        (np.array([12.0]), np.array([1])),  # pole, slow: third from lap 1
    ]
    key = timing_order_key(grid, cross, np.array([1, 2, 0]))
    assert _ranked(key)[5] == [2, 0, 1]  # the grid (rank 0 = pole)
    assert _ranked(key)[10] == [0, 2, 1]  # car 0 over the line; the others still hold their slots
    assert _ranked(key)[11] == [0, 1, 2]
    assert _ranked(key)[19] == [0, 1, 2] and _ranked(key)[20] == [1, 0, 2]
    pit = timing_order_key(grid, cross, np.array([1, 2, 0]), np.array([False, False, True]))
    assert _ranked(pit)[5] == [0, 1, 2]  # a pit-lane starter behind the grid


def test_anchor_to_timing_ignores_feed_noise_below_the_margin_and_follows_a_real_pass():
    # car 1 runs 0.004 lap behind car 0 (timing says 0 first); the feed wobbles it up to 0.006
    # ahead between the lines (the margin is 0.01), then car 1 really passes mid-lap.
    n = 100
    timing = np.tile(np.array([1.0, 0.0]), (n, 1))
    p0 = np.linspace(0.0, 0.9, n)
    p1 = p0 - 0.004 + 0.01 * np.sin(np.arange(n) / 3.0)  # within -0.014 .. +0.006 of car 0
    p1[70:] = p0[70:] + np.linspace(0.0, 0.05, n - 70)  # the pass: 0.05 lap clear by frame 99
    key = anchor_to_timing(np.stack([p0, p1], axis=1), timing, 0.01)
    order = _ranked(key)
    assert all(o == [0, 1] for o in order[:70])  # noise: the timing order holds
    clear = int(np.argmax(p1 - p0 > 0.01))
    assert order[clear] == [1, 0] and all(o == [1, 0] for o in order[clear:])
    assert all(o == [0, 1] for o in order[70:clear])  # not before the evidence is beyond the margin
    # without a margin it is the feed's order: the wobble shows
    raw = _ranked(anchor_to_timing(np.stack([p0, p1], axis=1), timing, 0.0))
    assert any(o == [1, 0] for o in raw[:70])


def test_anchor_to_timing_moves_a_car_up_past_several_and_stops_at_a_close_one():
    timing = np.array([[4.0, 3.0, 2.0, 1.0]])
    # timing: 0 1 2 3; the feed: car 1 clear of car 0, car 3 clear of cars 2 and 0 but not of car 1
    key = np.array([[0.50, 0.595, 0.30, 0.60]])
    assert _ranked(anchor_to_timing(key, timing, 0.01)) == [[1, 3, 0, 2]]
    assert _ranked(anchor_to_timing(key, timing, 0.35)) == [[0, 1, 2, 3]]


def test_order_margin_is_twice_the_feeds_offset_at_the_line():
    offsets = np.concatenate([np.full(995, 3.0), np.full(5, -200.0)])  # 0.5% wild offsets
    assert order_margin(offsets, 5000.0) == pytest.approx(2 * 3.0 / 5000.0, rel=0.1)
    assert order_margin(np.zeros(0), 5000.0) == 0.0


def test_stop_time_is_where_the_car_came_to_rest_not_where_its_data_ends():
    t = np.arange(0, 10, 0.2)
    x = np.minimum(t, 6.0) * 10.0  # 10 m/s, parked at x = 60 from t = 6 (data goes on to 9.8)
    assert stop_time(t, x, np.zeros_like(x)) == pytest.approx(5.6, abs=1e-9)  # within 5 m of the resting place
    moving = t * 10.0  # still driving when the data ends: stopped at the last sample
    assert stop_time(t, moving, np.zeros_like(t)) == pytest.approx(t[-1])


# -- table ------------------------------------------------------------------------------------


def _load(df: pd.DataFrame, tmp_path, name="t.csv") -> Race:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return load_table(path)


def test_table_driver_without_positions_is_dns_listed_last_and_warned(tmp_path):
    t = traces()
    ghost = t[t["driver"] == "A"].assign(driver="Z", x=0.0, y=0.0)  # FastF1's all-zero filler
    race = _load(pd.concat([t, ghost]).sort_values("time", kind="stable"), tmp_path)
    z = race.codes.index("Z")
    assert (race["status"][:, z] == Status.DNS).all()
    assert (race["position"][:, z] == race.n_drivers).all()
    assert (race["lap"][:, z] == 0).all()
    assert any("'Z' has no valid positions" in w and "did not start" in w for w in race.event["warnings"])


def test_table_lap_column_going_backwards_is_warned_and_ignored(tmp_path):
    t = traces()
    clean = _load(t, tmp_path, "clean.csv")
    bad = t.copy()
    m = (bad["driver"] == "A") & (bad["time"] > 50) & (bad["time"] < 52)
    bad.loc[m, "lap"] = 1  # A is on lap 2 here: the column goes 2 -> 1 -> 2
    race = _load(bad, tmp_path, "bad.csv")
    assert any("'A'" in w and "lap column goes backwards" in w for w in race.event["warnings"])
    assert clean.event["warnings"] == []
    assert np.array_equal(race["position"], clean["position"])  # the order is unchanged, not silently wrong
    assert race.total_laps == clean.total_laps


def test_table_finish_is_the_crossing_not_an_early_status(tmp_path):
    t = traces()
    fin = {c: float(np.interp(2 * L, true_s(c, np.arange(0, DURATION, 0.001)), np.arange(0, DURATION, 0.001))) for c in "ABC"}
    # B takes the flag completing lap 2 and A, C at their next crossing; but the column also
    # calls C finished 20 s before it reaches the line
    early = {"A": fin["A"], "B": fin["B"], "C": fin["C"] - 20.0}
    t["status"] = ["finished" if tt >= early[d] else "running" for d, tt in zip(t["driver"], t["time"])]
    race = _load(t, tmp_path)
    c = race.codes.index("C")
    first_fin = clock(race)[np.argmax(race["status"][:, c] == Status.FINISHED)]
    assert first_fin == pytest.approx(fin["C"], abs=0.15)  # at its crossing (10 Hz samples), not when the column said
    order = [race.codes[j] for j in np.argsort(race["position"][-1])]
    assert order == ["B", "A", "C"]


def test_table_status_finished_without_a_crossing_is_warned(tmp_path):
    t = traces()
    fin = {c: float(np.interp(2 * L, true_s(c, np.arange(0, DURATION, 0.001)), np.arange(0, DURATION, 0.001))) for c in "ABC"}
    t = t[~((t["driver"] == "C") & (t["time"] > fin["B"] + 1.0))]  # C stops before it ever reaches the flag
    t["status"] = ["finished" if (tt >= fin[d] or (d == "C" and tt >= fin["B"])) else "running" for d, tt in zip(t["driver"], t["time"])]
    race = _load(t, tmp_path)
    assert [w for w in race.event["warnings"] if "status column" in w] == [
        "driver 'C': the status column says finished, but its laps never took the chequered flag "
        "(no line crossing after the winner's); the laps win"
    ]
    c = race.codes.index("C")
    assert race["status"][-1, c] == Status.OUT  # stopped sending without taking the flag


def test_table_pit_lane_starter_is_last_before_its_first_crossing(tmp_path):
    t = traces()
    # D waits in a pit lane 20 m beside the track, ahead of the grid, then joins after the field
    a = t[t["driver"] == "A"]
    d = a.assign(driver="D", x=a["x"] + 0.0, y=a["y"] + 20.0)
    race = _load(pd.concat([t, d]).sort_values("time", kind="stable"), tmp_path)
    j = race.codes.index("D")
    first_cross = clock(race)[np.argmax(race["race_progress"][:, j] >= 1.0)]
    early = clock(race) < min(first_cross, 30.0)
    assert (race["position"][early, j] == 4).all()


def test_cli_ingest_prints_the_warnings(tmp_path):
    t = traces()
    t.loc[(t["driver"] == "A") & (t["time"] > 50) & (t["time"] < 52), "lap"] = 1
    path = tmp_path / "warn.csv"
    t.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["ingest", "table", str(path), "--data", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "lap column goes backwards" in res.output


def _staggered(t: pd.DataFrame) -> pd.DataFrame:
    """Each car's data begins 20 s after the one before (cars leaving the pit lane one by one)."""
    first = {c: 20.0 * i for i, c in enumerate(sorted(t["driver"].unique()))}
    return t[t["time"] >= t["driver"].map(first)]


def test_table_session_kind_from_the_data(tmp_path):
    race = _load(traces(), tmp_path)  # every car starts at once: a race, nothing to say
    assert race.event["session_type"] == "R" and not race.event["warnings"]
    quali = _load(_staggered(traces()), tmp_path, "q.csv")
    assert quali.event["session_type"] == "Q" and "qualifying" in quali.event
    assert any("no common start" in w and "--session R" in w for w in quali.event["warnings"])


def test_table_open_path_with_staggered_starts_stays_a_race(tmp_path):
    # cars setting off one by one on a point-to-point path (a time trial, a rally stage) are
    # not a knockout qualifying: that needs laps of a circuit
    t = np.round(np.arange(0, 60, 0.5), 3)
    rows = []
    for code, delay in (("P", 0.0), ("Q", 20.0), ("R", 40.0)):
        d = np.clip(10.0 * (t - delay), 0, None)
        keep = t >= delay
        rows.append(pd.DataFrame({"t": t[keep], "driver": code, "x": d[keep], "y": 0.002 * d[keep] ** 2 / 10}))
    race = _load(pd.concat(rows), tmp_path, "open.csv")
    assert race.event["closed_track"] is False
    assert race.event["session_type"] == "R" and "qualifying" not in race.event and not race.event["warnings"]


def test_table_session_kind_told_wins_with_a_warning_when_the_data_disagrees(tmp_path):
    path = tmp_path / "q.csv"
    _staggered(traces()).to_csv(path, index=False)
    race = load_table(path, session="R")
    assert race.event["session_type"] == "R" and "qualifying" not in race.event
    assert any("as told" in w and "no common start" in w for w in race.event["warnings"])
    path = tmp_path / "r.csv"
    traces().to_csv(path, index=False)
    quali = load_table(path, session="Q")
    assert quali.event["session_type"] == "Q" and any("start together" in w for w in quali.event["warnings"])


def test_cli_ingest_table_session_option(tmp_path):
    path = tmp_path / "q.csv"
    _staggered(traces()).to_csv(path, index=False)
    res = CliRunner().invoke(app, ["ingest", "table", str(path), "--data", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    assert "no common start" in res.output
    res = CliRunner().invoke(app, ["ingest", "table", str(path), "--session", "FP1", "--data", str(tmp_path / "data")])
    assert res.exit_code == 2 and "--session must be R, Q or auto" in res.output


# -- FastF1 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames_truth():
    return race_frames()


def _with_non_starter(frames):
    """One more driver in the results whose position data is only FastF1's all-zero filler."""
    res = frames.results.copy()
    row = res.iloc[[-1]].copy()
    row["DriverNumber"] = "99"
    row["Abbreviation"] = "DNS"
    row["Position"] = float(len(res) + 1)
    row["Status"] = "Did not start"
    row["Laps"] = 0.0
    row["GridPosition"] = 0.0
    row.index = ["99"]
    res = pd.concat([res, row])
    pos = dict(frames.pos_data)
    some = next(iter(pos.values()))
    pos["99"] = some.assign(X=0.0, Y=0.0, Z=0.0)
    cars = dict(frames.car_data)
    cars["99"] = next(iter(cars.values())).assign(Speed=0.0)
    f = copy.copy(frames)
    object.__setattr__(f, "results", res)
    object.__setattr__(f, "pos_data", pos)
    object.__setattr__(f, "car_data", cars)
    return f


def test_fastf1_non_starter_is_listed_as_dns_and_never_running(frames_truth):
    frames, _truth = frames_truth
    race = race_from_fastf1_frames(_with_non_starter(frames))
    j = race.codes.index("DNS")
    assert (race["status"][:, j] == Status.DNS).all()
    assert (race["position"][:, j] == race.n_drivers).all()
    assert (race["lap"][:, j] == 0).all() and (race["x"][:, j] == 0).all()


def test_fastf1_grid_position_zero_starts_from_the_pit_lane(frames_truth):
    frames, truth = frames_truth
    res = frames.results.copy()
    pole = res.index[res["GridPosition"] == 1.0][0]
    res.loc[pole, "GridPosition"] = 0.0
    f = copy.copy(frames)
    object.__setattr__(f, "results", res)
    race = race_from_fastf1_frames(f)
    code = res.loc[pole, "Abbreviation"]
    j = race.codes.index(code)
    st = race.t + race.event["session_time_offset"]
    lap1 = (st >= truth.start) & (st < truth.start + 5.0)
    assert (race["position"][lap1, j] == race.n_drivers).all()


def test_fastf1_header_lap_is_one_from_lights_out(frames_truth):
    frames, truth = frames_truth
    race = race_from_fastf1_frames(frames)
    st = race.t + race.event["session_time_offset"]
    assert (race.leader_lap[st >= truth.start] >= 1).all() and (race.leader_lap[st < truth.start - 0.05] == 0).all()
