"""The built-in simulated race: realism ranges, race logic, determinism, argument checks.

One 3-lap race is shared by the module (about a second to simulate); one test adds an 8-lap race
at a low frame rate for what only happens after the first laps (DRS, green-flag passing).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from racecast.race import WEATHER_FIELDS, Compound, Drs, Race, Status, TrackStatus
from racecast.sources.simulate import PIT_SPEED_KMH, simulate_race

SEED = int(os.environ.get("RACECAST_SIM_SEED", "7"))
LAPS = 3


@pytest.fixture(scope="module")
def calls() -> list[float]:
    return []


@pytest.fixture(scope="module")
def race(calls: list[float]) -> Race:
    return simulate_race(laps=LAPS, seed=SEED, progress=calls.append)


# -- helpers ---------------------------------------------------------------------------------------
def non_green(race: Race) -> list:
    return [p for p in race.track_status if p.status != TrackStatus.GREEN]


def green_laps(race: Race, include_first: bool = True) -> list[tuple[int, float, float, float]]:
    """(driver, start, end, lap time) of every completed lap run entirely under green flags and
    outside the pit lane."""
    lt, st, t = race["lap_time"], race["status"], race.t
    flagged = non_green(race)
    out = []
    for i in range(race.n_drivers):
        done = np.flatnonzero((lt[1:, i] != lt[:-1, i]) & ~np.isnan(lt[1:, i])) + 1
        for f in done:
            end = float(t[f])
            start = end - float(lt[f, i])
            if not include_first and start < 10.0:
                continue
            if any(p.start < end and p.end > start for p in flagged):
                continue
            w = (t >= start) & (t <= end)
            if np.any(st[w, i] == Status.PIT):
                continue
            out.append((i, start, end, float(lt[f, i])))
    return out


def retired(race: Race) -> list[int]:
    return [int(i) for i in np.flatnonzero(race["status"][-1] == Status.OUT)]


def overtakes(race: Race, after: float = 0.0, green_only: bool = False) -> list[tuple[float, str, str]]:
    """Position swaps between two cars both running on track (neither in the pit lane, finished,
    retired or about to retire) on consecutive frames."""
    pos = race["position"].astype(np.int64)
    running = race["status"] == Status.RUNNING
    for i in retired(race):
        running[:, i] = False  # a slowing, retiring car being passed is not an overtake
    for stop in race.pit_stops:  # nor is one braking for the pit entry or leaving the pit exit
        near = (race.t >= stop.t_in - 8.0) & (race.t <= stop.t_out + 8.0)
        running[near, race.codes.index(stop.driver)] = False
    ok = running[:-1] & running[1:]
    keep = race.t[1:] > after
    if green_only:
        for p in non_green(race):
            keep &= ~((race.t[1:] >= p.start) & (race.t[1:] <= p.end))
    found = []
    for a in range(race.n_drivers):
        for b in range(race.n_drivers):
            if a == b:
                continue
            swap = ok[:, a] & ok[:, b] & keep & (pos[:-1, a] < pos[:-1, b]) & (pos[1:, a] > pos[1:, b])
            found += [(float(race.t[f + 1]), race.codes[b], race.codes[a]) for f in np.flatnonzero(swap)]
    return sorted(found)


def segments_cross(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether a closed polyline (last point == first) crosses itself."""
    px, py = x[:-1], y[:-1]
    qx, qy = x[1:], y[1:]
    n = len(px)
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))
    i, j = i[keep], j[keep]

    def side(ax, ay, bx, by, cx, cy):
        return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    d1 = side(px[i], py[i], qx[i], qy[i], px[j], py[j])
    d2 = side(px[i], py[i], qx[i], qy[i], qx[j], qy[j])
    d3 = side(px[j], py[j], qx[j], qy[j], px[i], py[i])
    d4 = side(px[j], py[j], qx[j], qy[j], qx[i], qy[i])
    return bool(np.any((d1 != d2) & (d3 != d4)))


def distance_to_polyline(px: np.ndarray, py: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest segment of a polyline."""
    ax, ay, bx, by = lx[:-1], ly[:-1], lx[1:], ly[1:]
    dx, dy = bx - ax, by - ay
    ll = np.maximum(dx * dx + dy * dy, 1e-12)
    u = np.clip(((px[:, None] - ax) * dx + (py[:, None] - ay) * dy) / ll, 0.0, 1.0)
    return np.min(np.hypot(ax + u * dx - px[:, None], ay + u * dy - py[:, None]), axis=1)


def spread(race: Race, seconds: float, exclude: list[int]) -> float:
    """Metres from the leader to the last car running on track."""
    f = race.frame_at(seconds)
    running = race["status"][f] == Status.RUNNING
    running[exclude] = False
    d = race["dist"][f, running]
    return float(d.max() - d.min())


# -- metadata ----------------------------------------------------------------------------------------
def test_metadata_drivers_and_frame_grid(race: Race) -> None:
    assert race.id == f"sim-{SEED}"
    assert race.title == "racecast Grand Prix (simulated, 3 laps)"
    assert race.total_laps == LAPS and race.fps == 25
    assert {"year", "round", "session_type", "name", "circuit", "date"} <= set(race.event)
    assert race.event["session_type"] == "R" and race.event["year"] == 2026
    assert np.array_equal(race.t, np.arange(race.n_frames) / 25)
    assert race.n_drivers == 20
    assert all(len(d.code) == 3 and d.code.isalpha() and d.code.isupper() for d in race.drivers)
    assert len({d.number for d in race.drivers}) == 20
    teams: dict[str, set[str]] = {}
    for d in race.drivers:
        teams.setdefault(d.team, set()).add(d.color)
    assert len(teams) == 10 and all(len(c) == 1 for c in teams.values())
    assert sum(1 for d in race.drivers if d.team == race.drivers[0].team) == 2
    assert len({c for cs in teams.values() for c in cs}) == 10  # distinct team colours
    assert simulate_race(laps=1, seed=SEED, n_drivers=5, id="demo", title="Demo").id == "demo"


def test_progress_reported_from_zero_to_one(calls: list[float], race: Race) -> None:
    assert len(calls) >= 3
    assert calls[0] == 0.0 and calls[-1] == 1.0
    assert all(0.0 <= c <= 1.0 for c in calls)
    assert all(b >= a for a, b in zip(calls, calls[1:]))


# -- circuit -----------------------------------------------------------------------------------------
def test_circuit_is_realistic_closed_and_simple(race: Race) -> None:
    g = race.geometry
    x, y = g.centerline_x, g.centerline_y
    assert (x[0], y[0]) == (x[-1], y[-1])  # closed
    seg = np.hypot(np.diff(x), np.diff(y))
    assert seg.max() < 15.0
    assert 4000 <= g.length <= 7000
    assert abs(seg.sum() - g.length) < 0.01 * g.length
    assert not segments_cross(x, y)
    # edges ~6 m either side, the pit lane 15-20 m beside the main straight, joining at both ends
    assert np.allclose(np.hypot(g.inner_x - x, g.inner_y - y), 6.0, atol=0.5)
    assert np.allclose(np.hypot(g.outer_x - x, g.outer_y - y), 6.0, atol=0.5)
    d_pit = distance_to_polyline(g.pit_lane_x, g.pit_lane_y, x, y)
    assert d_pit[0] < 1.0 and d_pit[-1] < 1.0
    assert 15.0 <= d_pit.max() <= 20.5
    sx, sy, heading = g.start_finish
    assert distance_to_polyline(np.array([sx]), np.array([sy]), x, y)[0] < 1.0
    assert -math.pi <= heading <= math.pi
    assert 0 < g.sectors[0] < g.sectors[1] < g.length
    assert 1 <= len(g.drs_zones) <= 3
    assert all(0 <= a < b <= g.length for a, b in g.drs_zones)


def test_lap_times_and_speeds_are_realistic(race: Race) -> None:
    laps = green_laps(race)
    assert len(laps) >= 8
    assert all(70.0 <= lt <= 110.0 for *_, lt in laps), sorted(lt for *_, lt in laps)
    speed = race["speed"]
    assert 300.0 <= speed.max() <= 350.0
    # the slowest corner of each clean flying lap
    corner = [speed[(race.t >= a) & (race.t <= b), i].min() for i, a, b, _ in green_laps(race, include_first=False)]
    assert len(corner) >= 5
    assert 60.0 <= np.median(corner) <= 120.0
    assert min(corner) >= 40.0  # in traffic a car may be a little slower than its own best line


# -- positions and overtakes ----------------------------------------------------------------------------
def test_positions_are_a_permutation_every_frame(race: Race) -> None:
    pos = race["position"].astype(np.int64)
    assert np.array_equal(np.sort(pos, axis=1), np.broadcast_to(np.arange(1, 21), pos.shape))
    # and they follow race progress among running cars
    f = race.frame_at(race.duration / 2)
    run = np.flatnonzero(race["status"][f] == Status.RUNNING)
    by_progress = run[np.argsort(-race["race_progress"][f, run], kind="stable")]
    assert np.all(np.diff(pos[f, by_progress]) > 0)


def test_cars_overtake_on_track(race: Race) -> None:
    passes = overtakes(race, after=5.0)
    assert passes, "no on-track overtake"


# -- pit stops ------------------------------------------------------------------------------------------
def test_pit_stops_go_through_the_pit_lane_and_change_tyres(race: Race) -> None:
    assert race.pit_stops
    g = race.geometry
    for stop in race.pit_stops:
        i = race.codes.index(stop.driver)
        assert stop.compound_in != stop.compound_out
        assert 15.0 <= stop.duration <= 45.0
        before, after = race.frame_at(stop.t_in - 1.0), race.frame_at(stop.t_out + 0.5)
        assert race["tyre"][before, i] == stop.compound_in
        assert race["tyre"][after, i] == stop.compound_out
        assert race["tyre_age"][after, i] == 0
        inside = (race.t > stop.t_in + 0.1) & (race.t < stop.t_out - 0.1)
        assert np.all(race["status"][inside, i] == Status.PIT)
        pit = race["status"][:, i] == Status.PIT
        px, py = race["x"][pit, i].astype(np.float64), race["y"][pit, i].astype(np.float64)
        assert distance_to_polyline(px, py, g.pit_lane_x, g.pit_lane_y).max() < 1.0
        assert race["speed"][pit, i].max() <= PIT_SPEED_KMH + 0.5
        stationary = race["speed"][inside, i] == 0.0
        assert 1.5 <= stationary.sum() / race.fps <= 9.0


# -- safety car, flags, messages --------------------------------------------------------------------------
def test_safety_car_slows_and_bunches_the_field(race: Race) -> None:
    sc = [p for p in race.track_status if p.status == TrackStatus.SC]
    assert len(sc) == 1
    sc = sc[0]
    statuses = [p.status for p in race.track_status]
    assert TrackStatus.YELLOW in statuses and statuses[0] == TrackStatus.GREEN and statuses[-1] == TrackStatus.GREEN
    assert sc.end < race.duration - 60.0  # the last lap is green
    texts = [m.message for m in race.messages]
    for text in ("SAFETY CAR DEPLOYED", "SAFETY CAR IN THIS LAP", "CHEQUERED FLAG", "GREEN LIGHT - PIT EXIT OPEN"):
        assert text in texts
    assert texts.index("SAFETY CAR DEPLOYED") < texts.index("SAFETY CAR IN THIS LAP") < texts.index("CHEQUERED FLAG")
    assert all(a.t <= b.t for a, b in zip(race.messages, race.messages[1:]))
    out = retired(race)
    before, during = spread(race, sc.start, out), spread(race, sc.end - 0.5, out)
    assert during < 0.75 * before, (before, during)
    # everyone at safety-car pace once it has taken effect: the leader well below racing speed
    w = (race.t > sc.start + 15.0) & (race.t < sc.end)
    p1 = race["position"][w] == 1
    assert race["speed"][w][p1].max() < 200.0
    assert race["speed"][w].max() < 300.0


def test_the_retired_car_stays_out(race: Race) -> None:
    out = retired(race)
    assert len(out) == 1
    i = out[0]
    d = race.drivers[i]
    f0 = int(np.argmax(race["status"][:, i] == Status.OUT))
    assert f0 > 0
    assert np.all(race["status"][f0:, i] == Status.OUT)
    assert np.all(race["speed"][f0:, i] == 0.0)
    assert np.all(race["x"][f0:, i] == race["x"][f0, i]) and np.all(race["y"][f0:, i] == race["y"][f0, i])
    assert np.all(race["position"][f0:, i] == race.n_drivers)
    assert np.all(np.isnan(race["gap"][f0:, i]))
    g = race.geometry
    parked = distance_to_polyline(race["x"][f0:f0 + 1, i].astype(float), race["y"][f0:f0 + 1, i].astype(float), g.centerline_x, g.centerline_y)[0]
    assert parked > 6.0  # off the track
    assert any(m.message == f"CAR {d.number} ({d.code}) RETIRED" and m.driver == d.code for m in race.messages)


def test_finishers_are_frozen_in_finishing_order(race: Race) -> None:
    st, pos = race["status"], race["position"]
    last = st[-1]
    assert np.all((last == Status.FINISHED) | (last == Status.OUT))
    cheq = next(m.t for m in race.messages if m.message == "CHEQUERED FLAG")
    first_fin = {}
    for i in np.flatnonzero(last == Status.FINISHED):
        f0 = int(np.argmax(st[:, i] == Status.FINISHED))
        first_fin[int(i)] = f0
        assert np.all(st[f0:, i] == Status.FINISHED)
        assert np.all(pos[f0:, i] == pos[f0, i])
        assert np.all(race["lap_time"][f0:, i] == race["lap_time"][f0, i])
        assert race.t[f0] >= cheq - 0.05
    winner = min(first_fin, key=first_fin.get)
    assert pos[-1, winner] == 1 and race["lap"][-1, winner] == LAPS
    assert abs(race["race_progress"][-1, winner] - LAPS) < 1e-3
    assert abs(race.t[first_fin[winner]] - cheq) < 0.1
    # classification: laps completed, then who crossed the line first
    order = sorted(first_fin, key=lambda i: (-int(race["lap"][-1, i]), first_fin[i]))
    assert [int(pos[-1, i]) for i in order] == list(range(1, len(order) + 1))
    assert race.duration - race.t[max(first_fin.values())] <= 10.0
    assert race.leader_lap[-1] == LAPS and np.all(np.diff(race.leader_lap.astype(int)) >= 0)


# -- channels -------------------------------------------------------------------------------------------
def test_driver_inputs_are_consistent_with_speed(race: Race) -> None:
    v = race["speed"].astype(np.float64)
    thr, brk, gear = race["throttle"], race["brake"], race["gear"]
    dv = v[1:] - v[:-1]
    assert np.all(dv[brk[:-1] > 0] < 0)  # braking means slowing down
    assert np.all(thr[brk > 0] == 0)
    assert np.all(dv[thr[:-1] >= 99.9] >= -1e-3)  # full throttle never slows the car
    assert 0 <= thr.min() and thr.max() <= 100 and 0 <= brk.min() and brk.max() <= 100
    assert np.mean((thr > 5) & (thr < 95)) > 0.05  # partial throttle through corners
    moving = (race["status"] == Status.RUNNING) & (v > 5)
    g, s = gear[moving], v[moving]
    assert g.min() >= 1 and g.max() == 8
    o = np.argsort(s, kind="stable")
    assert np.all(np.diff(g[o].astype(int)) >= 0)  # higher gears at higher speeds
    # DRS opens only in a DRS zone, for a running car, never behind the safety car
    drs = race["drs"]
    assert set(np.unique(drs)) <= {int(Drs.OFF), int(Drs.ELIGIBLE), int(Drs.OPEN)}
    f, i = np.nonzero(drs == Drs.OPEN)
    if f.size:
        at = race["rel_dist"][f, i].astype(np.float64) * race.geometry.length
        assert np.all([any(a - 15 <= p <= b + 15 for a, b in race.geometry.drs_zones) for p in at])
        assert np.all(race["status"][f, i] == Status.RUNNING)
        for p in non_green(race):
            assert not np.any((race.t[f] > p.start + 1) & (race.t[f] < p.end))


def test_timing_channels(race: Race) -> None:
    L = race.geometry.length
    st, dist, t = race["status"], race["dist"], race.t
    lap, lt = race["lap"].astype(np.int64), race["lap_time"]
    assert np.all(lap[t < 5.0] == 0) and np.all(lap[t >= 5.0] >= 1)
    run = (st == Status.RUNNING) & (t[:, None] >= 5.0)
    assert np.all(lap[run] == np.maximum(np.floor(dist[run] / L).astype(np.int64) + 1, 1))
    assert np.allclose(race["race_progress"][run], dist[run] / L)
    rd = race["rel_dist"]
    assert rd.min() >= 0.0 and rd.max() < 1.0
    for i in range(race.n_drivers):
        first = int(np.argmax(dist[:, i] >= L)) if dist[-1, i] >= L else race.n_frames
        assert np.all(np.isnan(lt[:first, i]))
        assert first == race.n_frames or not np.isnan(lt[first, i])
        assert np.all(np.diff(dist[:, i]) >= 0)  # nobody drives backwards
    s1, s2, s3 = race["sector1"], race["sector2"], race["sector3"]
    f, i = np.nonzero((lt[1:] != lt[:-1]) & ~np.isnan(lt[1:]))
    f += 1  # the frames where a car completes a lap: its three sectors add up to the lap time
    assert f.size >= race.n_drivers * (LAPS - 1)
    assert np.allclose(s1[f, i] + s2[f, i] + s3[f, i], lt[f, i], atol=0.02)
    gap, interval, pos = race["gap"], race["interval"], race["position"]
    started = t > 30.0
    p1 = (pos == 1) & started[:, None]
    assert np.all(gap[p1] == 0.0)
    fin = np.isfinite(gap) & started[:, None]
    assert np.all(gap[fin] >= -1e-3)
    assert np.nanmax(gap) > 1.0
    # the interval of P2 is its gap to P1
    p2 = (pos == 2) & started[:, None]
    assert np.allclose(interval[p2], gap[p2], equal_nan=True, atol=1e-3)
    # tyre age only goes up, except when new tyres are fitted
    age = race["tyre_age"].astype(np.int64)
    drops = np.argwhere(np.diff(age, axis=0) < 0)
    for f, i in drops:
        assert race["tyre"][f + 1, i] != race["tyre"][f, i] or any(s.driver == race.codes[i] for s in race.pit_stops)
    assert set(np.unique(race["tyre"])) <= {int(Compound.SOFT), int(Compound.MEDIUM), int(Compound.HARD)}


def test_weather_drifts_within_ranges(race: Race) -> None:
    w = race.weather
    assert set(w) == set(WEATHER_FIELDS)
    assert np.allclose(np.diff(w["t"]), 60.0)
    assert w["t"][0] == 0.0 and w["t"][-1] >= race.duration
    assert np.all((w["air_temp"] >= 20) & (w["air_temp"] <= 30))
    assert np.all((w["track_temp"] >= 30) & (w["track_temp"] <= 45))
    assert np.all(w["rainfall"] == 0)
    assert np.all((w["wind_direction"] >= 0) & (w["wind_direction"] < 360))
    assert np.abs(np.diff(w["air_temp"])).max() < 1.0  # drifts, does not jump


# -- determinism and arguments ----------------------------------------------------------------------------
def test_same_arguments_give_identical_races(race: Race) -> None:
    again = simulate_race(laps=LAPS, seed=SEED)
    for name, a in race.channels.items():
        b = again.channels[name]
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    assert np.array_equal(race.t, again.t) and np.array_equal(race.leader_lap, again.leader_lap)
    assert race.messages == again.messages
    assert race.pit_stops == again.pit_stops
    assert race.track_status == again.track_status
    assert race.drivers == again.drivers
    assert race.geometry.to_dict() == again.geometry.to_dict()
    assert all(np.array_equal(race.weather[k], again.weather[k]) for k in WEATHER_FIELDS)
    other = simulate_race(laps=1, seed=SEED + 1, n_drivers=4)
    assert other.geometry.length != race.geometry.length


def test_the_race_does_not_depend_on_the_frame_rate() -> None:
    slow = simulate_race(laps=1, seed=SEED, n_drivers=6, fps=5)
    fast = simulate_race(laps=1, seed=SEED, n_drivers=6, fps=25)
    assert slow.n_frames < fast.n_frames
    assert np.array_equal(slow["position"][-1], fast["position"][-1])
    assert np.allclose(slow["dist"], fast["dist"][::5][: slow.n_frames])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"laps": 0},
        {"laps": 201},
        {"laps": 2.5},
        {"laps": True},
        {"n_drivers": 1},
        {"n_drivers": 27},
        {"fps": 0},
        {"fps": 101},
        {"seed": -1},
        {"seed": "x"},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        simulate_race(**kwargs)


# -- a slightly longer race ----------------------------------------------------------------------------------
def test_eight_laps_bring_drs_and_green_flag_passing() -> None:
    race = simulate_race(laps=8, seed=SEED, fps=5)
    texts = [m.message for m in race.messages]
    assert "DRS ENABLED" in texts
    assert np.any(race["drs"] == Drs.OPEN)
    # a real pass, on pace, under green flags, well after the start
    assert overtakes(race, after=3 * 80.0, green_only=True)
    laps = green_laps(race)
    assert len(laps) >= 40
    assert all(70.0 <= lt <= 110.0 for *_, lt in laps)
    assert len({s.driver for s in race.pit_stops}) >= 2
