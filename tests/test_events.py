"""The event index on the simulator (its stops, safety car and retirement are scripted, so known)
and on small hand-built races whose every swap is placed by hand."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from racecast.analysis.events import (
    HOLD_S,
    KINDS,
    compute_events,
    confirmed_changes,
    crossings,
    filter_events,
    position_changes,
    runs,
)
from racecast.analysis.laps import lap_data
from racecast.analysis.store import analyse
from racecast.race import Race, Status, TrackStatus, rank_positions
from racecast.sources.simulate import simulate_race
from tests.factories import tiny_race


@pytest.fixture(scope="module")
def sim() -> Race:
    return simulate_race(laps=12, n_drivers=20, seed=0)


@pytest.fixture(scope="module")
def sim_events(sim: Race) -> list[dict]:
    return [e.to_dict() for e in compute_events(sim)]


def of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind]


def test_every_event_has_the_documented_shape(sim: Race, sim_events: list[dict]) -> None:
    assert sim_events, "the simulated race has events"
    json.dumps(sim_events, allow_nan=False)  # JSON-ready, no NaN
    frames = [e["frame"] for e in sim_events]
    assert frames == sorted(frames)
    for e in sim_events:
        assert e["kind"] in KINDS
        assert 0 <= e["frame"] < sim.n_frames and e["t"] == pytest.approx(sim.t[e["frame"]], abs=1e-3)
        assert isinstance(e["lap"], int) and all(d in sim.codes for d in e["drivers"])


def test_simulated_pit_stops_are_the_scripted_ones(sim: Race, sim_events: list[dict]) -> None:
    stops = of(sim_events, "pit_stop")
    want = sorted((p.driver, p.lap) for p in sim.pit_stops)
    assert sorted((e["drivers"][0], e["lap"]) for e in stops) == want and len(want) >= 10
    by = {(e["drivers"][0], e["lap"]): e for e in stops}
    dt = 1.5 / sim.fps
    for p in sim.pit_stops:
        e = by[(p.driver, p.lap)]
        assert e["t_in"] == pytest.approx(p.t_in, abs=dt) and e["t_out"] == pytest.approx(p.t_out, abs=dt)
        assert (e["tyre_in"], e["tyre_out"]) == (p.compound_in.name, p.compound_out.name)
        assert e["tyre_change"] is True
        assert 1.5 < e["stationary_s"] < 9.0  # the simulator's stops are 2.0-2.9 s, a few 4.5-8 s


def test_simulated_safety_car_retirement_start_and_flag(sim: Race, sim_events: list[dict]) -> None:
    (sc,) = of(sim_events, "safety_car")
    (period,) = [p for p in sim.track_status if p.status == TrackStatus.SC]
    assert sc["t"] == pytest.approx(period.start, abs=0.05) and sc["end_t"] == pytest.approx(period.end, abs=1e-3)
    status = sim.channels["status"]
    out = [sim.codes[d] for d in range(sim.n_drivers) if status[-1, d] == Status.OUT]
    (ret,) = of(sim_events, "retirement")
    assert ret["drivers"] == out and ret["dns"] is False
    assert ret["frame"] == runs(status[:, sim.codes.index(out[0])] == Status.OUT)[-1][0]
    (start,) = of(sim_events, "start")
    assert start["frame"] == int(np.flatnonzero(sim.leader_lap >= 1)[0])
    (flag,) = of(sim_events, "chequered_flag")
    first_fin = int(np.flatnonzero(np.any(status == Status.FINISHED, axis=1))[0])
    assert flag["frame"] == first_fin and flag["drivers"] == [sim.codes[int(np.argmin(sim.channels["position"][first_fin]))]]


def test_no_overtake_through_the_pits_under_the_safety_car_or_by_retirement(sim: Race, sim_events: list[dict]) -> None:
    overtakes = of(sim_events, "overtake")
    assert len(overtakes) >= 10
    status = sim.channels["status"]
    win = int(3 * sim.fps)
    sc = [(p.start, p.end) for p in sim.track_status if p.status == TrackStatus.SC]
    for e in overtakes:
        idx = [sim.codes.index(c) for c in e["drivers"]]
        near = status[max(0, e["frame"] - win) : e["frame"] + win + 1][:, idx]
        assert not np.any(near == Status.PIT) and not np.any(near == Status.OUT), e
        assert not any(a <= e["t"] < b for a, b in sc), e
    reasons = {c.reason for c in position_changes(sim)}
    assert {"pit", "track", "retirement"} <= reasons  # the other swaps were seen and told apart


def test_overtakes_agree_with_the_order_at_the_line(sim: Race, sim_events: list[dict]) -> None:
    """Net passes of a pair between two line crossings = the change of their order at the line."""
    cross = crossings(sim)
    t = sim.t
    pos = sim.channels["position"]
    status = sim.channels["status"]
    checked = flips = 0
    for a in range(sim.n_drivers):
        for b in range(a + 1, sim.n_drivers):
            n = min(cross[a].size, cross[b].size)
            for k in range(n - 1):
                f0 = max(cross[a][k], cross[b][k])
                f1 = max(cross[a][k + 1], cross[b][k + 1])
                if np.any(status[min(cross[a][k], cross[b][k]) : f1 + 1][:, [a, b]] != Status.RUNNING):
                    continue
                before = t[cross[a][k]] < t[cross[b][k]]
                after = t[cross[a][k + 1]] < t[cross[b][k + 1]]
                gained = sum(1 for e in of(sim_events, "overtake") if f0 < e["frame"] <= f1 and e["drivers"] == [sim.codes[a], sim.codes[b]])
                lost = sum(1 for e in of(sim_events, "overtake") if f0 < e["frame"] <= f1 and e["drivers"] == [sim.codes[b], sim.codes[a]])
                checked += 1
                flips += before != after
                assert gained - lost == int(after) - int(before), (sim.codes[a], sim.codes[b], k + 2)
    assert checked > 500 and flips >= 5
    assert pos.shape[0] == sim.n_frames


def test_fastest_laps_are_a_falling_sequence_ending_at_the_race_best(sim: Race, sim_events: list[dict]) -> None:
    fl = of(sim_events, "fastest_lap")
    assert fl and fl[-1]["final"] and not any(e["final"] for e in fl[:-1])
    times = [e["lap_time"] for e in fl]
    assert times == sorted(times, reverse=True)
    laps = lap_data(sim, compute_events(sim))
    best = min(v for code in sim.codes for v in laps["lap_times"][code][1:] if v is not None)
    assert times[-1] == pytest.approx(best, abs=1e-3)


def test_lap_data_shapes(sim: Race) -> None:
    events = compute_events(sim)
    laps = lap_data(sim, events)
    assert laps["drivers"] == sim.codes and laps["laps"] == 12
    for code in sim.codes:
        n = len(laps["crossing_t"][code])
        assert len(laps["positions"][code]) == n + 1 and len(laps["gaps"][code]) == n == len(laps["lap_times"][code])
        assert all(g is None or g >= 0 for g in laps["gaps"][code])
    winner = [c for c in sim.codes if laps["positions"][c][-1] == 1 and len(laps["crossing_t"][c]) == 12]
    assert len(winner) == 1 and laps["gaps"][winner[0]][-1] == 0.0
    # stints: a stopping driver's stints split exactly at its pit laps, compounds as scripted
    for p in sim.pit_stops:
        mine = [s for s in laps["stints"] if s["driver"] == p.driver]
        assert any(s["end_lap"] == p.lap and s["compound"] == p.compound_in.name for s in mine)
        assert any(s["start_lap"] == p.lap + 1 and s["compound"] == p.compound_out.name for s in mine)
        assert p.lap in laps["pit_laps"][p.driver]


def test_confirmed_changes_ignore_flicker_shorter_than_the_hold() -> None:
    t = np.arange(0, 20, 0.5)
    v = np.zeros(t.size, dtype=np.int8)
    v[4:6] = 1  # 1 s: flicker
    v[10:] = 1  # holds to the end
    v[20:22] = 0  # a 1 s dip: flicker again
    assert confirmed_changes(t, v, 3.0) == [(10, 0, 1)]
    assert confirmed_changes(t, v, 0.5) == [(4, 0, 1), (6, 1, 0), (10, 0, 1), (20, 1, 0), (22, 0, 1)]


def _swap_race(pit_b: bool = False, retire_b: bool = False, sc: bool = False) -> Race:
    """Three cars; at t = 4 s car D01 passes D00 (by progress); optionally D00 is in the pit
    lane then, or stops for good, or a safety car is out."""
    base = tiny_race(n_frames=400, n_drivers=3)
    ch = {k: np.array(v) for k, v in base.channels.items()}
    t = base.t
    prog = np.empty((t.size, 3))
    prog[:, 0] = 0.5 + t * 0.02
    prog[:, 1] = 0.5 - 0.015 + t * 0.02 + np.clip(t - 2.5, 0, 3) * 0.01  # catches up, passes at 4 s
    prog[:, 2] = 0.2 + t * 0.02
    status = np.zeros((t.size, 3), dtype=np.int8)
    if pit_b:
        status[(t > 2) & (t < 7), 0] = Status.PIT
    if retire_b:
        status[t >= 4.0, 0] = Status.OUT
    ch["race_progress"] = prog
    ch["status"] = status
    ch["position"] = rank_positions(prog, status)
    ts = (dataclasses.replace(base.track_status[0], status=TrackStatus.SC),) if sc else base.track_status
    return dataclasses.replace(base, channels=ch, track_status=ts, leader_lap=np.ones(t.size, dtype=np.int16))


@pytest.mark.parametrize(
    "variant, reason",
    [({}, "track"), ({"pit_b": True}, "pit"), ({"retire_b": True}, "retirement"), ({"sc": True}, "neutralised")],
)
def test_a_swap_is_told_apart_by_cause(variant: dict, reason: str) -> None:
    race = _swap_race(**variant)
    changes = position_changes(race)
    pair = [c for c in changes if {c.gainer, c.loser} == {0, 1}]
    assert [(race.codes[c.gainer], race.codes[c.loser], c.reason) for c in pair] == [("D01", "D00", reason)]
    assert pair[0].t == pytest.approx(4.0, abs=0.3)
    # a retired car drops behind everyone: every one of those swaps is a retirement, never a pass
    assert all(c.reason == reason for c in changes) and len(changes) == (2 if variant.get("retire_b") else 1)
    overtakes = of([e.to_dict() for e in compute_events(race)], "overtake")
    assert [e["drivers"] for e in overtakes] == ([["D01", "D00"]] if reason == "track" else [])


def test_filter_events() -> None:
    evs = [{"kind": "overtake", "drivers": ["A", "B"]}, {"kind": "pit_stop", "drivers": ["B"]}, {"kind": "safety_car", "drivers": []}]
    assert filter_events(evs) == evs
    assert filter_events(evs, kinds=["pit_stop", "safety_car"]) == evs[1:]
    assert filter_events(evs, drivers=["A"]) == evs[:1]
    assert filter_events(evs, kinds=["overtake"], drivers=["B"]) == evs[:1]


def test_degenerate_races_analyse_without_error() -> None:
    one = tiny_race(n_frames=1, n_drivers=1)
    doc = analyse(one)
    assert doc["events"] == [] or all(e["kind"] in KINDS for e in doc["events"])
    small = tiny_race(n_frames=60, n_drivers=3, retire=True)
    doc = analyse(small)
    json.dumps(doc, allow_nan=False)
    assert [e["drivers"] for e in of(doc["events"], "retirement")] == [["D00"]]
    assert HOLD_S > 0


def test_each_stop_has_its_measured_time_loss(sim: Race, sim_events: list[dict]) -> None:
    stops = of(sim_events, "pit_stop")
    losses = [e["loss_s"] for e in stops]
    assert all(v is not None for v in losses)
    green = sorted(e["loss_s"] for e in stops if not e["laps_neutralised"])
    lane = sorted(e["pit_lane_s"] for e in stops)
    # a stop costs about its pit-lane time plus the stationary time (less the track it skips)
    assert 0.6 * lane[len(lane) // 2] < green[len(green) // 2] < 1.5 * lane[len(lane) // 2]
    # the slow stops (4.5-8 s stationary in the simulator) cost more than the quick ones
    slow = [e["loss_s"] for e in stops if e["stationary_s"] > 4.5 and not e["laps_neutralised"]]
    quick = [e["loss_s"] for e in stops if e["stationary_s"] < 3.0 and not e["laps_neutralised"]]
    if slow and quick:
        assert min(slow) > float(np.median(quick))
