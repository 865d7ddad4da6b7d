"""Table ingest: CSV/Parquet round trips against known traces, and every kind of bad file."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest

from racecast.race import Status
from racecast.sources import IngestError
from racecast.sources.table import load_table
from tests.fastf1_shapes import L, centerline

DURATION = 120.0
HZ = 10.0


def true_s(code: str, t: np.ndarray) -> np.ndarray:
    """Along-track distance (m from the line): A steady, B slow then fast (passes A), C slowest."""
    t = np.asarray(t, dtype=float)
    if code == "A":
        return 30.0 * t
    if code == "B":
        return -8.0 + np.where(t < 40, 29.0 * t, 29.0 * 40 + 33.0 * (t - 40))
    return -16.0 + 28.0 * t


def true_speed(code: str, t: np.ndarray) -> np.ndarray:
    if code == "A":
        return np.full(t.shape, 30.0)
    if code == "B":
        return np.where(t < 40, 29.0, 33.0)
    return np.full(t.shape, 28.0)


def true_xy(code: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, _, _ = centerline(true_s(code, t))
    return x, y


def traces(codes=("A", "B", "C"), seed: int = 1, duration: float = DURATION) -> pd.DataFrame:
    """Long-form samples at ~10 Hz with jittered timestamps, drivers interleaved by time."""
    rng = np.random.default_rng(seed)
    rows = []
    for code in codes:
        t = np.round(np.arange(0.0, duration, 1 / HZ) + rng.uniform(0, 0.02, int(duration * HZ)), 3)
        x, y = true_xy(code, t)
        s = true_s(code, t)
        rows.append(
            pd.DataFrame(
                {
                    "time": t,
                    "driver": code,
                    "x": np.round(x, 3),
                    "y": np.round(y, 3),
                    "speed": np.round(true_speed(code, t) * 3.6, 3),
                    "lap": np.floor(s / L).astype(int) + 1,
                    "team": f"Team {code}",
                }
            )
        )
    return pd.concat(rows).sort_values(["time", "driver"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return traces()


@pytest.fixture(scope="module")
def csv_race(table, tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "kart_race.csv"
    table.to_csv(path, index=False)
    return load_table(path)


def clock(race):
    """The table's own times of the frames (the replay starts at the earliest sample)."""
    return race.t + race.event["session_time_offset"]


def check_against_truth(race, codes=("A", "B", "C"), until=DURATION, xy_tol=0.2, min_pairs=1000):
    t = clock(race)
    for code in codes:
        j = race.codes.index(code)
        ok = (t > 0.03) & (t < until - 0.2)
        x, y = true_xy(code, t[ok])
        assert np.abs(race["x"][ok, j] - x).max() < xy_tol, code
        assert np.abs(race["y"][ok, j] - y).max() < xy_tol, code
    # running order: every pair more than 2 m apart in true track order, and further apart than
    # the margin the replay measured on its own feed (a few metres at most on these clean traces)
    margin = race.event.get("order_margin_m", 0.0)
    assert margin < 5.0
    pairs = 0
    for f in range(0, race.n_frames, 5):
        s = {c: float(true_s(c, t[f])) for c in codes}
        for i, a in enumerate(codes):
            for b in codes[i + 1 :]:
                if abs(s[a] - s[b]) > max(2.0, margin) and t[f] < until:
                    pairs += 1
                    pa, pb = race["position"][f, race.codes.index(a)], race["position"][f, race.codes.index(b)]
                    assert (s[a] > s[b]) == (pa < pb), (t[f], a, b)
    assert pairs > min_pairs


def test_csv_round_trip(csv_race):
    race = csv_race
    assert race.id == "kart_race" and race.codes == ["B", "A", "C"]  # order of first appearance (jittered times)
    assert race.drivers[race.codes.index("A")].team == "Team A"
    assert clock(race)[-1] == pytest.approx(DURATION - 0.1, abs=0.05)
    check_against_truth(race)
    for j, code in enumerate(race.codes):
        ok = (clock(race) > 0.2) & (clock(race) < DURATION - 0.2) & (np.abs(clock(race) - 40) > 0.2)
        assert np.abs(race["speed"][ok, j] - true_speed(code, clock(race)[ok]) * 3.6).max() < 0.5
        # the lap channel follows the file's lap column except at the instant of the line
        s = true_s(code, clock(race))
        away = np.abs((s + L / 2) % L - L / 2) > 4.0
        expect = np.floor(s / L).astype(int) + 1
        assert (race["lap"][away, j] == expect[away]).all(), code
    # B passes A on lap 2, and the lap times come from the crossings
    b, a = race.codes.index("B"), race.codes.index("A")
    assert race["position"][0, b] == 2 and race["position"][-1, b] == 1
    assert np.nanmax(race["lap_time"][:, a]) == pytest.approx(L / 30.0, abs=0.05)
    assert race["gap"][-1, b] == 0.0 and race["gap"][-1, a] > 0


def test_geometry_derived_from_the_traces(csv_race):
    g = csv_race.geometry
    assert csv_race.event["closed_track"] is True
    assert g.length == pytest.approx(L, rel=0.01)
    cx, cy = g.centerline_x, g.centerline_y
    assert math.hypot(cx[0] - cx[-1], cy[0] - cy[-1]) < 3 * np.hypot(np.diff(cx), np.diff(cy)).max()
    x0, y0, _ = g.start_finish
    lx, ly, _, _ = centerline(np.array([0.0]))
    assert math.hypot(x0 - lx[0], y0 - ly[0]) < 3.0  # the line where lap 1 began


def test_parquet_gives_the_same_race_as_csv(table, csv_race, tmp_path):
    path = tmp_path / "kart_race.parquet"
    table.to_parquet(path, index=False)
    race = load_table(path, id="from-parquet")
    assert race.id == "from-parquet"
    for name in race.channels:
        np.testing.assert_array_equal(race[name], csv_race[name], err_msg=name)
    assert race.geometry.to_dict() == csv_race.geometry.to_dict()


def test_ingesting_twice_is_identical(table, csv_race, tmp_path):
    path = tmp_path / "again.csv"
    table.to_csv(path, index=False)
    again = load_table(path, id="kart_race")
    for name in csv_race.channels:
        np.testing.assert_array_equal(again[name], csv_race[name], err_msg=name)
    assert again.geometry.to_dict() == csv_race.geometry.to_dict() and again.drivers == csv_race.drivers


def test_without_a_lap_column_crossings_come_from_the_track(table, tmp_path):
    path = tmp_path / "nolap.csv"
    table.drop(columns=["lap"]).to_csv(path, index=False)
    race = load_table(path)
    check_against_truth(race)
    # laps count from the line of the derived track: where the reference driver started
    s_fine = np.arange(-L / 2, L / 2, 0.05)
    cx, cy, _, _ = centerline(s_fine)
    x0, y0, _ = race.geometry.start_finish
    s_line = s_fine[np.argmin(np.hypot(cx - x0, cy - y0))]
    assert s_line == pytest.approx(true_s(race.codes[0], np.array([0.0]))[0], abs=1.0)
    for j, code in enumerate(race.codes):
        s = true_s(code, clock(race)) - s_line
        away = np.abs((s + L / 2) % L - L / 2) > 4.0
        assert (race["lap"][away, j] == (np.floor(s / L).astype(int) + 1)[away]).all(), code
    assert race.total_laps == int((true_s("B", np.array([DURATION - 0.2]))[0] - s_line) // L)


def test_units_and_column_spellings(table, csv_race, tmp_path):
    t = table.rename(columns={"time": "Time_ms", "x": "X [km]", "y": "y (km)", "speed": "speed_mph", "driver": "Car"})
    t["Time_ms"] = t["Time_ms"] * 1000
    t["X [km]"] = t["X [km]"] / 1000
    t["y (km)"] = t["y (km)"] / 1000
    t["speed_mph"] = t["speed_mph"] / 1.609344
    path = tmp_path / "units.csv"
    t.to_csv(path, index=False)
    race = load_table(path)
    np.testing.assert_allclose(race["x"], csv_race["x"], atol=0.01)
    np.testing.assert_allclose(race["speed"], csv_race["speed"], atol=0.01)
    np.testing.assert_array_equal(race["position"], csv_race["position"])


def test_iso_timestamps_and_gps_coordinates(table, csv_race, tmp_path):
    t = table.copy()
    t["time"] = (pd.Timestamp("2024-05-01T14:00:00Z") + pd.to_timedelta(t["time"], unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lat0, r = 45.0, 6_371_000.0
    t["lat"] = lat0 + np.degrees(t["y"] / r)
    t["lon"] = 7.0 + np.degrees(t["x"] / (r * math.cos(math.radians(lat0))))
    path = tmp_path / "gps.csv"
    t.drop(columns=["x", "y"]).to_csv(path, index=False)
    race = load_table(path)
    assert race.geometry.length == pytest.approx(L, rel=0.01)
    # the projection moves the derived line a little: about the same margin, so the same order
    # except for a few frames where a pass is just at that margin
    assert race.event["order_margin_m"] == pytest.approx(csv_race.event["order_margin_m"], abs=0.5)
    differ = np.flatnonzero((race["position"] != csv_race["position"]).any(axis=1))
    assert differ.size <= 5 and (differ.size == 0 or np.ptp(differ) < differ.size), differ
    np.testing.assert_allclose(race.t, csv_race.t)


def test_a_car_that_stops_sending_is_out(table, tmp_path):
    t = table[~((table["driver"] == "A") & (table["time"] > 60))]
    path = tmp_path / "stop.csv"
    t.to_csv(path, index=False)
    race = load_table(path)
    a = race.codes.index("A")
    after = clock(race) > 60.2
    assert (race["status"][after, a] == Status.OUT).all() and (race["status"][clock(race) < 59.8, a] == Status.RUNNING).all()
    assert (race["position"][after, a] == 3).all()
    assert np.ptp(race["x"][after, a]) == 0  # held where it was last seen
    assert np.isnan(race["gap"][after, a]).all()
    check_against_truth(race, codes=("A", "B", "C"), until=60.0, min_pairs=500)


def test_status_column_freezes_finishers(table, tmp_path):
    t = table.copy()
    # B takes the flag completing lap 2; A and C finish as they next reach the line
    fin = {c: float(np.interp(2 * L, true_s(c, np.arange(0, DURATION, 0.001)), np.arange(0, DURATION, 0.001))) for c in "ABC"}
    assert fin["B"] < fin["A"] < fin["C"]
    t["status"] = ["finished" if tt >= fin[d] else "running" for d, tt in zip(t["driver"], t["time"])]
    path = tmp_path / "status.csv"
    t.to_csv(path, index=False)
    race = load_table(path)
    for c in "ABC":
        j = race.codes.index(c)
        after = clock(race) >= fin[c] + 0.15
        assert (race["status"][after, j] == Status.FINISHED).all()
        assert (race["race_progress"][after, j] == 2.0).all()  # frozen on the lap it finished
        assert (race["position"][after, j] == "BAC".index(c) + 1).all()
    # while C is still running (a lap's fraction short of 2) it stays behind the finishers
    j = race.codes.index("C")
    assert (race["position"][(clock(race) > fin["A"] + 0.15) & (clock(race) < fin["C"]), j] == 3).all()


def test_an_open_path(tmp_path):
    t = np.round(np.arange(0, 60, 0.5), 3)
    rows = []
    for code, v, delay in (("P", 10.0, 0.0), ("Q", 12.0, 5.0)):
        d = np.clip(v * (t - delay), 0, None)
        rows.append(pd.DataFrame({"t": t, "driver": code, "x": d, "y": 0.002 * d**2 / 10}))
    path = tmp_path / "open.csv"
    pd.concat(rows).to_csv(path, index=False)
    race = load_table(path)
    assert race.event["closed_track"] is False and race.total_laps == 1
    assert (race["lap"] == 1).all()
    q = race.codes.index("Q")
    assert race["position"][race.frame_at(10), q] == 2 and race["position"][race.frame_at(59), q] == 1
    p = rows[0]  # the first driver with the most samples draws the track
    assert race.geometry.length == pytest.approx(float(np.hypot(np.diff(p["x"]), np.diff(p["y"])).sum()), rel=0.01)


def test_default_id_is_a_safe_name(tmp_path):
    path = tmp_path / ("-- Monza 2024: GPS laps (final) " + "x" * 80 + ".csv.gz")
    pd.read_csv(io.StringIO(GOOD)).to_csv(path, index=False)
    race = load_table(path)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", race.id) and race.id.startswith("Monza_2024_GPS")
    assert load_table(path, id="monza-gps").id == "monza-gps"


def test_progress_callback(tmp_path, table):
    path = tmp_path / "p.csv"
    table.to_csv(path, index=False)
    calls = []
    load_table(path, progress=lambda s, f: calls.append((s, f)))
    assert list(dict.fromkeys(s for s, _ in calls)) == ["read", "geometry", "resample", "order"]
    assert calls[-1] == ("order", 1.0) and all(0 <= f <= 1 for _, f in calls)


# -- bad files ---------------------------------------------------------------------------

GOOD = "time,driver,x,y\n" + "".join(f"{i * 0.5},{d},{i * 10.0},{j * 5.0}\n" for i in range(20) for j, d in enumerate("AB"))


def write(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("time,driver,x\n0,A,1\n", r"missing column\(s\) 'y': a table needs time, driver, x, y \(found: 'time', 'driver', 'x'\)"),
        ("driver,x,y\nA,1,2\n", r"missing column\(s\) 'time'"),
        (GOOD.replace("time,driver,x,y", "time,driver,x,y,rpm").replace("\n", ",9000\n").replace("y,rpm,9000", "y,rpm"),
         r"column 'rpm' can't be mapped to a racecast channel"),
        (GOOD.replace("time,driver,x,y", "time,driver,x,y,speed_furlongs").replace("\n", ",1\n").replace("y,speed_furlongs,1", "y,speed_furlongs"),
         r"column 'speed_furlongs': unknown unit 'furlongs' for speed \(use one of km/h"),
        (GOOD.replace("time,driver,x,y", "time [fortnights],driver,x,y"), r"column 'time \[fortnights\]': unknown unit 'fortnights' for time"),
        (GOOD.replace("time,driver,x,y", "time,driver,x,y,t").replace("\n", ",0\n").replace("y,t,0", "y,t"), r"columns 'time' and 't' both give time"),
        ("time,driver,x,y\n", r"has no rows \(only a header\)"),
        ("", r"bad.csv is empty"),
        ("time,driver,x,y\n0,A,1,2\n0.5,A,abc,2\n", r"column 'x' row 2 \(line 3\): 'abc' is not a number"),
        ("time,driver,x,y\n0,A,1,2\n0.5,,1,2\n", r"column 'driver' row 2 \(line 3\) is empty"),
        ("time,driver,x,y\n0,A,1,2\n,A,1,2\n", r"column 'time' row 2 \(line 3\) is empty"),
        ("time,driver,x,y\n0,A,1,2\nsoon,A,1,2\n", r"column 'time' row 2 \(line 3\): 'soon' is neither a number of seconds nor a timestamp"),
        ("time,driver,x,y\n0,A,1,2\n0,B,1,2\n1,A,2,2\n0.5,A,3,2\n1,B,2,2\n",
         r"time goes backwards for driver 'A' at row 4 \(line 5\): 1 s then 0.5 s"),
        ("time,driver,x,y\n0,A,1,2\n1,A,inf,2\n", r"column 'x' row 2 \(line 3\): inf is not a finite number"),
        ("time,driver,x,y\n0,A,,\n1,A,,\n0,B,0,0\n", r"no driver has a valid position"),
        ("time,driver,x,y,lat,lon\n0,A,1,2,45,7\n", r"x/y or as lat/lon, not both"),
        (GOOD.replace("time,driver,x,y", "time,driver,x,y,status").replace("\n", ",flying\n").replace("y,status,flying", "y,status"),
         r"column 'status' row 1 \(line 2\): unknown status 'flying'"),
        ("time,driver,x,y\n0,A,5,5\n1,A,5,5\n", r"the traces don't move"),
    ],
    ids=[
        "missing-y", "missing-time", "unknown-column", "unknown-unit", "unknown-time-unit", "duplicate-column",
        "header-only", "empty-file", "non-numeric", "empty-driver", "empty-time", "bad-time", "non-monotonic",
        "infinite", "driver-without-positions", "xy-and-latlon", "bad-status", "no-motion",
    ],
)  # fmt: skip
def test_bad_csv_files(tmp_path, text, message):
    with pytest.raises(IngestError, match=message):
        load_table(write(tmp_path, text))


def test_the_good_file_of_the_bad_file_tests_loads(tmp_path):
    race = load_table(write(tmp_path, GOOD))  # so the cases above fail for their one defect
    assert race.codes == ["A", "B"] and race.event["closed_track"] is False


def test_bad_parquet_and_other_files(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"time": [0.0, 1.0], "driver": ["A", "A"], "x": ["1", "two"], "y": [0.0, 0.0]}).to_parquet(path)
    with pytest.raises(IngestError, match=r"column 'x' row 2: 'two' is not a number"):
        load_table(path)
    path = tmp_path / "dec.parquet"
    pd.DataFrame({"time": [1.0, 0.0], "driver": ["A", "A"], "x": [1.0, 2.0], "y": [0.0, 0.0]}).to_parquet(path)
    with pytest.raises(IngestError, match=r"time goes backwards for driver 'A' at row 2: 1 s then 0 s"):
        load_table(path)
    with pytest.raises(IngestError, match="not a readable Parquet file"):
        load_table(write(tmp_path, "not parquet at all", "junk.parquet"))
    with pytest.raises(IngestError, match=r"unsupported file type \(use .csv, .tsv or .parquet\)"):
        load_table(write(tmp_path, GOOD, "laps.xlsx"))
    with pytest.raises(IngestError, match="no such file"):
        load_table(tmp_path / "missing.csv")
