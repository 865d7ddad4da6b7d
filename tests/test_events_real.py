"""The event index on real races (../shared/realdata), judged against each session's truth.json.

Races are converted once per test session (FastF1 frames and the long table: two sources,
one set of rules); events are computed from the Race models, no bundle is written.
Truth times count from lights out; a replay's time axis may start earlier, so times are
compared relative to the replay's start frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from racecast.analysis.events import compute_events, crossings
from racecast.analysis.laps import lap_data
from racecast.race import Race
from tests.realdata import RACES, real_race, truth

SOURCES = ("fastf1", "table")
_EVENTS: dict[tuple[str, str], list[dict]] = {}


@pytest.fixture(params=[(s, src) for s in RACES for src in SOURCES], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request: pytest.FixtureRequest) -> tuple[str, str, Race, list[dict], dict]:
    session, source = request.param
    race = real_race(session, source)  # ingested once per test run, shared with the accuracy tests
    if (session, source) not in _EVENTS:
        _EVENTS[(session, source)] = [e.to_dict() for e in compute_events(race)]
    return session, source, race, _EVENTS[(session, source)], truth(session)


def _t0(race: Race, events: list[dict]) -> float:
    (start,) = [e for e in events if e["kind"] == "start"]
    return start["t"]


def test_every_official_pit_stop_found_and_none_invented(case: Any) -> None:
    session, source, race, events, tr = case
    t0 = _t0(race, events)
    stops = [e for e in events if e["kind"] == "pit_stop"]
    official = [p for p in tr["pit_stops"] if p["in_official_list"] and not p["ends_data"]]
    assert official
    matched: set[int] = set()
    for p in official:
        found = [i for i, e in enumerate(stops) if e["drivers"] == [p["driver"]] and abs(e["t_in"] - t0 - p["t_in_est"]) < 3.0]
        assert len(found) == 1, f"{session}/{source}: official stop {p['driver']} lap {p['lap_in']} not found once: {found}"
        e = stops[found[0]]
        assert e["lap"] == p["lap_in"], (p, e)
        assert abs(e["t_out"] - t0 - p["t_out_est"]) < 3.0, (p, e)
        if p["stationary_s"] > 0:
            assert e["stationary_s"] == pytest.approx(p["stationary_s"], abs=1.0), (p, e)
        matched.add(found[0])
    invented = [e for i, e in enumerate(stops) if i not in matched]
    assert invented == [], f"{session}/{source}: pit stops not in the official list: {invented}"


def test_a_car_whose_data_ends_in_the_pit_lane_is_a_retirement_there(case: Any) -> None:
    session, source, race, events, tr = case
    ended = [p for p in tr["pit_stops"] if p["ends_data"]]
    assert ended, "both races have one (LEC at Zandvoort, ALO in China)"
    for p in ended:
        rets = [e for e in events if e["kind"] == "retirement" and e["drivers"] == [p["driver"]]]
        assert len(rets) == 1 and rets[0]["in_pit"] is True, (p, rets)


def test_retirements_are_the_non_finishers(case: Any) -> None:
    session, source, race, events, tr = case
    t0 = _t0(race, events)
    dnf = {c["driver"]: c for c in tr["classification_at_line"] if c["status"] != "finished"}
    rets = {e["drivers"][0]: e for e in events if e["kind"] == "retirement"}
    assert set(rets) == set(dnf)
    for code, e in rets.items():
        assert e["dns"] is False
        if e["in_pit"]:  # the data ends at the pit lane's timing line: that last crossing is not in the replay
            assert dnf[code]["laps"] - 1 <= e["laps_completed"] <= dnf[code]["laps"], (e, dnf[code])
        else:
            assert e["laps_completed"] == dnf[code]["laps"], (e, dnf[code])
        # when the car stopped (the sources place it within seconds; the data ends soon after)
        assert dnf[code]["out_t"] - 5.0 <= e["t"] - t0 <= dnf[code]["data_end_t"] + 5.0, (e, dnf[code])


def test_no_overtake_for_a_position_change_made_in_the_pits(case: Any) -> None:
    session, source, race, events, tr = case
    t0 = _t0(race, events)
    overtakes = [e for e in events if e["kind"] == "overtake"]
    assert len(overtakes) > 30
    for p in tr["pit_stops"]:
        t_in = p["t_in_est"] + t0
        t_out = (p["t_out_est"] if p["t_out_est"] is not None else 1e9) + t0
        bad = [e for e in overtakes if p["driver"] in e["drivers"] and t_in - 1.0 <= e["t"] <= t_out + 1.0]
        assert bad == [], f"{session}/{source}: overtakes during {p['driver']}'s stop on lap {p['lap_in']}: {bad}"


def _neutral_spans(tr: dict) -> list[tuple[float, float]]:
    return [(p["start_within"][0], p["end_within"][1]) for p in tr["track_status"] if p["status"] in ("4", "5", "6", "7")]


def test_overtakes_agree_with_the_order_at_the_line(case: Any) -> None:
    """For every pair of cars and every lap on which neither pitted and the track was green, the
    net number of passes between them equals the change of their order at the timing line."""
    session, source, race, events, tr = case
    t0 = _t0(race, events)
    cross = {c: np.asarray(v) + t0 for c, v in tr["crossings"].items()}
    pits: dict[str, list[tuple[float, float]]] = {}
    for p in tr["pit_stops"]:
        end = p["t_out_est"] if p["t_out_est"] is not None else 1e9
        pits.setdefault(p["driver"], []).append((p["t_in_est"] + t0 - 5, end + t0 + 5))
    neutral = [(a + t0, b + t0) for a, b in _neutral_spans(tr)]
    passes: dict[tuple[str, str], list[float]] = {}
    for e in events:
        if e["kind"] == "overtake":
            passes.setdefault(tuple(e["drivers"]), []).append(e["t"])
    found = missed = extra = 0
    codes = sorted(cross)
    for i, a in enumerate(codes):
        for b in codes[i + 1 :]:
            n = min(cross[a].size, cross[b].size)
            for k in range(n - 1):
                lo, hi = min(cross[a][k], cross[b][k]), max(cross[a][k + 1], cross[b][k + 1])
                spans = pits.get(a, []) + pits.get(b, []) + neutral
                if any(x < hi and y > lo for x, y in spans):
                    continue
                t_from = max(cross[a][k], cross[b][k])
                want = int(cross[a][k + 1] < cross[b][k + 1]) - int(cross[a][k] < cross[b][k])
                net = sum(t_from < t <= hi for t in passes.get((a, b), [])) - sum(t_from < t <= hi for t in passes.get((b, a), []))
                if want:
                    found += net == want
                    missed += net != want
                else:
                    extra += net != 0
    # Passes right at the line may land on the neighbouring lap; allow a few per race.
    assert found >= 20 and missed <= max(3, 0.12 * (found + missed)), (found, missed, extra)
    assert extra <= max(4, 0.15 * found), (found, missed, extra)


def test_safety_cars_and_vsc_are_events(case: Any) -> None:
    session, source, race, events, tr = case
    kinds = {"4": "safety_car", "5": "red_flag", "6": "vsc"}
    if not race.track_status:  # this source carries none: then no period may be invented either
        assert not [e for e in events if e["kind"] in kinds.values()]
        return
    t0 = _t0(race, events)
    for p in tr["track_status"]:
        kind = kinds.get(p["status"])
        if kind is None:
            continue
        hits = [e for e in events if e["kind"] == kind and e["t"] - t0 < p["to_t"] and e["end_t"] - t0 > p["from_t"]]
        assert hits, (p, [e for e in events if e["kind"] in kinds.values()])


def test_fastest_lap_and_chequered_flag(case: Any) -> None:
    session, source, race, events, tr = case
    t0 = _t0(race, events)
    best = min(
        ((float(np.diff(v)[k - 1]), code, k + 1) for code, v in tr["crossings"].items() for k in range(1, len(v))),
    )
    final = [e for e in events if e["kind"] == "fastest_lap" and e["final"]]
    assert len(final) == 1
    if source == "fastf1":  # the official lap times: the very lap
        assert (final[0]["drivers"][0], final[0]["lap"]) == (best[1], best[2])
        assert final[0]["lap_time"] == pytest.approx(best[0], abs=0.01)
    else:  # a table has only its samples' line crossings (~0.1-0.3 s): a lap within that of the best
        code, lap = final[0]["drivers"][0], final[0]["lap"]
        official = float(np.diff(tr["crossings"][code])[lap - 2])
        assert official == pytest.approx(best[0], abs=0.3) and final[0]["lap_time"] == pytest.approx(best[0], abs=0.3)
    (flag,) = [e for e in events if e["kind"] == "chequered_flag"]
    assert flag["t"] - t0 == pytest.approx(tr["chequered_flag_t"], abs=0.1)
    assert flag["drivers"] == [tr["line_order"][0]]


def test_lap_chart_leader_matches_the_timing(case: Any) -> None:
    session, source, race, events, tr = case
    from racecast.analysis.events import Event

    evs = [Event(e["kind"], e["t"], e["frame"], e["lap"], tuple(e["drivers"]), {k: v for k, v in e.items() if k not in ("kind", "t", "frame", "lap", "drivers")}) for e in events]
    laps = lap_data(race, evs)
    right = sum(laps["positions"][row["driver"]][row["lap"]] == 1 for row in tr["leader_by_lap"] if row["lap"] < len(laps["positions"][row["driver"]]))
    assert right >= 0.95 * len(tr["leader_by_lap"]), right
    assert len(crossings(race)) == race.n_drivers


def test_pit_loss_is_measured_and_smaller_under_a_safety_car(case: Any) -> None:
    session, source, race, events, tr = case
    stops = [e for e in events if e["kind"] == "pit_stop"]
    green = [e["loss_s"] for e in stops if e["loss_s"] is not None and not e["laps_neutralised"]]
    assert len(green) >= 5
    lane = float(np.median([e["pit_lane_s"] for e in stops]))
    assert 0.6 * lane < float(np.median(green)) < 1.5 * lane, (np.median(green), lane)
    sc = [e["loss_s"] for e in stops if e["loss_s"] is not None and e["laps_neutralised"] == "SC"]
    if race.track_status and any(p["status"] == "4" for p in tr["track_status"]):
        assert len(sc) >= 5 and float(np.median(sc)) < float(np.median(green)) - 3.0, (sorted(sc), sorted(green))


def test_lap_comparison_has_every_channel_from_every_source(case: Any) -> None:
    """Speed, throttle, brake and gear come through each source (FastF1 frames, the long table)
    into the lap traces the comparison and the seed's telemetry endpoints serve."""
    from racecast.analysis.compare import compare_laps, fastest_lap, lap_trace, source_of

    session, source, race, events, tr = case
    src = source_of(race)
    code, other = tr["line_order"][0], tr["line_order"][1]  # the first two at the line: laps of their own
    (lap_a, _), (lap_b, _) = fastest_lap(src, race.codes, code), fastest_lap(src, race.codes, other)
    a, b = lap_trace(src, race.codes, code, lap_a), lap_trace(src, race.codes, other, lap_b)
    for t in (a, b):
        ch = t.channels
        assert float(np.max(ch["speed"])) > 250 and float(np.min(ch["speed"])) < 150, (code, source)
        assert float(np.max(ch["throttle"])) >= 95 and float(np.min(ch["throttle"])) <= 5
        assert 0.05 < float(np.mean(np.asarray(ch["brake"]) > 0)) < 0.5  # braking for a part of the lap
        assert {int(g) for g in ch["gear"]} >= {3, 4, 5, 6, 7}
        assert t.lap_time is not None and 60 < t.lap_time < 140
    cmp = compare_laps(a, b)
    assert abs(cmp["delta"][-1] - (b.lap_time - a.lap_time)) < 1.0  # the running delta ends near the lap-time difference


def test_the_viewers_safety_car_pit_factor_is_the_measured_one(case: Any) -> None:
    """viewer/pitpredict.js scales the green-flag pit loss by NEUTRAL_FACTOR.SC until a stop under
    the safety car has been measured; the factor must be what real races with SC stops show."""
    import re
    from pathlib import Path

    session, source, race, events, tr = case
    stops = [e for e in events if e["kind"] == "pit_stop" and e["loss_s"] is not None]
    sc = [e["loss_s"] for e in stops if e["laps_neutralised"] == "SC"]
    green = [e["loss_s"] for e in stops if not e["laps_neutralised"]]
    if not (race.track_status and any(p["status"] == "4" for p in tr["track_status"])):
        assert sc == []  # no safety car known to this replay: no stop made under one
        return
    assert len(sc) >= 5 and len(green) >= 5, (len(sc), len(green))
    js = (Path(__file__).parents[1] / "src/racecast/viewer/pitpredict.js").read_text()
    factor = float(re.search(r"NEUTRAL_FACTOR = \{ SC: ([0-9.]+)", js).group(1))
    measured = float(np.median(sc)) / float(np.median(green))
    assert abs(measured - factor) <= 0.1, (measured, factor, len(sc), len(green))
