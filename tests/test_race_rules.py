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
from racecast.sources._common import chequered_flag, grid_ranks, stop_time
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
