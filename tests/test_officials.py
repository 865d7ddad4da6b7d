"""FastF1 for real (offline cache, the real library's objects), official results and qualifying knockout.

Real sessions come from ../shared/realdata (tests/officials_pack.py: skip without it,
fail under CI=true). Nothing here may reach the network: every test that runs FastF1
has a guard that makes a socket connect fail and records it, and asserts none happened.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from racecast.bundle import write_bundle
from racecast.cli import app as cli_app
from racecast.server import create_app
from racecast.sources import IngestError
from racecast.sources.fastf1 import load_fastf1_session
from racecast.sources.fastf1_cache import CacheMisses, describe_url
from racecast.sources.officials import attach_officials
from racecast.sources.qualifying import knockout
from racecast.sources.results import final_order, official_results
from racecast.sources.table import load_table
from tests.factories import tiny_race
from tests.officials_pack import NetworkGuard, prime_schedule, real_fastf1_session, session_dir, truth
from tests.serverutil import running

RACES = ("2025_2_R", "2025_15_R")


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Any:
    guard = NetworkGuard(monkeypatch)
    yield guard
    assert guard.attempts == [], f"the test tried to reach the network: {guard.attempts}"


def _load_real(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, Any, dict]:
    import fastf1.core as core

    d = session_dir(name)
    ses = real_fastf1_session(d, monkeypatch)
    sc = json.loads((d / "fastf1" / "frames.json").read_text())["scalars"]
    race = load_fastf1_session(int(sc["year"]), int(sc["round"]), sc["session"], cache_dir=tmp_path / "ff1", fps=5)
    # the loader really got FastF1's own classes
    assert isinstance(ses.laps, core.Laps) and isinstance(ses.results, core.SessionResults)
    assert all(isinstance(v, core.Telemetry) for v in ses.pos_data.values())
    return ses, race, truth(d)


# -- the real library's objects, through load_fastf1_session -------------------------------


@pytest.mark.parametrize("name", RACES)
def test_real_fastf1_race_official_classification(name: str, net: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, race, tr = _load_real(name, monkeypatch, tmp_path)
    res = race.event["results"]
    assert res["official"] is True and res["source"] == "FastF1 results"
    assert final_order(res) == tr["official_order"]
    line = {c: i + 1 for i, c in enumerate(tr["line_order"])}
    for row in res["rows"]:
        assert row["line_position"] == line[row["code"]], row  # "P5 at the line" must be true
    by_code = {r["code"]: r for r in res["rows"]}
    # every difference the officials made is noted: disqualifications and time penalties
    checked = 0
    for diff in tr["official_vs_line"]:
        if m := re.match(r"(\w+): disqualified", diff):
            assert by_code[m[1]]["note"].startswith("disqualified"), by_code[m[1]]
            checked += 1
        elif m := re.match(r"(\w+): official gap .*: \+([\d.]+) s \(time penalty\)", diff):
            assert f"+{float(m[2]):.1f} s after the flag (time penalty)" in by_code[m[1]]["note"], by_code[m[1]]
            checked += 1
    assert checked >= 1
    noted = {r["code"] for r in res["rows"] if r["note"]}
    assert noted == {re.match(r"(\w+):", d)[1] for d in tr["official_vs_line"] if re.match(r"\w+: (disqualified|official gap)", d)}
    assert race.event.get("warnings", []) == []  # real results agree with the laps: nothing to warn about
    # the replay itself still ends in the order at the line
    last = race["position"][-1]
    assert [race.codes[j] for j in np.argsort(last)] == tr["line_order"]


def test_real_fastf1_qualifying_knockout(net: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, race, tr = _load_real("2025_1_Q", monkeypatch, tmp_path)
    q = race.event["qualifying"]
    assert [s["name"] for s in q["segments"]] == ["Q1", "Q2", "Q3"]
    assert q["source"] == "results"
    assert q["order"] == tr["official_order"] != tr["best_lap_order"]
    assert [race.codes[j] for j in np.argsort(race["position"][-1])] == tr["official_order"]
    assert race.event["results"]["official"] is True and final_order(race.event["results"]) == tr["official_order"]
    _check_segments(race, tr)


def _eliminated(tr: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"Q1": set(), "Q2": set()}
    for r in tr["classification_official"]:
        if not r.get("q2"):
            out["Q1"].add(r["driver"])
        elif not r.get("q3"):
            out["Q2"].add(r["driver"])
    return out


def _check_segments(race: Any, tr: dict) -> None:
    q = race.event["qualifying"]
    assert {k: set(v) for k, v in q["eliminated"].items()} == _eliminated(tr)
    segs = q["segments"]
    assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))
    # a car knocked out stays frozen below every car still in: from the end of its segment on
    for k, seg in enumerate(segs[:-1]):
        f = race.frame_at(seg["end"] + 1.0)
        out = {race.codes.index(c) for c in q["eliminated"][seg["name"]]}
        n_in = race.n_drivers - sum(len(q["eliminated"][s["name"]]) for s in segs[: k + 1])
        assert all(race["position"][f, j] > n_in for j in out)
        frozen = race["position"][f:, sorted(out)]
        assert (frozen == frozen[0]).all()


@pytest.mark.parametrize("session", ["Q", "auto"])
def test_table_qualifying_knockout_from_the_data_alone(tmp_path: Path, session: str) -> None:
    """Told it is a qualifying, or not told (a qualifying has no common start: cars leave the
    pit lane one by one), the table replays the knockout."""
    d = session_dir("2025_1_Q")
    tr = truth(d)
    race = load_table(d / "table.parquet", session=session, fps=5)
    assert race.event["session_type"] == "Q"
    guessed = [w for w in race.event["warnings"] if "no common start" in w]
    assert len(guessed) == (session == "auto")
    q = race.event["qualifying"]
    assert [s["name"] for s in q["segments"]] == ["Q1", "Q2", "Q3"] and q["source"] == "data"
    _check_segments(race, tr)
    order = q["order"]
    assert set(order[:10]) == set(tr["official_order"][:10])
    assert order[10:] == tr["official_order"][10:]  # the knocked-out cars, in their segments' order
    res = race.event["results"]
    assert res["official"] is False and "unofficial" in res["note"]


def test_knockout_without_results_matches_official_from_the_fastf1_data(net: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ses, race, tr = _load_real("2025_1_Q", monkeypatch, tmp_path)
    no_results = dataclasses.replace(race, event={k: v for k, v in race.event.items() if k not in ("qualifying", "results")})
    again, warnings = knockout(no_results)
    assert again.event["qualifying"]["source"] == "data" and warnings == []
    assert again.event["qualifying"]["order"] == tr["official_order"]


# -- offline ---------------------------------------------------------------------------------


def test_offline_without_a_cache_directory_says_where_it_looked(tmp_path: Path, net: Any) -> None:
    missing = tmp_path / "no-cache"
    with pytest.raises(IngestError) as e:
        load_fastf1_session(2025, 2, "R", cache_dir=missing, offline=True)
    assert "--offline needs an existing FastF1 cache" in str(e.value) and str(missing) in str(e.value)
    assert not missing.exists()  # offline never creates an empty cache


def test_offline_default_cache_is_fastf1s_env(tmp_path: Path, net: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTF1_CACHE", str(tmp_path / "env-cache"))
    with pytest.raises(IngestError, match=re.escape(str(tmp_path / "env-cache"))):
        load_fastf1_session(2025, 2, "R", offline=True)


# FastF1's Ergast client warns "Request returned: 504" for requests-cache's only-if-cached miss:
# the offline mode working as meant, not a problem of this test.
@pytest.mark.filterwarnings("ignore:Request returned. 504:UserWarning")
def test_offline_with_an_empty_cache_names_what_is_missing_without_network(tmp_path: Path, net: Any) -> None:
    """The real FastF1 in offline mode: not one request, and the error names the data the cache lacks."""
    import fastf1

    cache = tmp_path / "cache"
    cache.mkdir()
    try:
        with pytest.raises(IngestError) as e:
            load_fastf1_session(2025, 2, "R", cache_dir=cache, offline=True)
    finally:
        fastf1.Cache.offline_mode(False)
    msg = str(e.value)
    assert "offline: this session is not (fully) in the FastF1 cache at" in msg and str(cache) in msg
    assert "missing: event schedule" in msg


def test_offline_with_the_event_but_not_the_session_names_each_missing_piece(tmp_path: Path, net: Any) -> None:
    """A cache that knows the 2025 schedule but holds no session data: the error lists what a load needs."""
    import fastf1

    cache = tmp_path / "cache"
    cache.mkdir()
    prime_schedule(cache)
    try:
        with pytest.raises(IngestError) as e:
            load_fastf1_session(2025, 2, "R", cache_dir=cache, offline=True)
    finally:
        fastf1.Cache.offline_mode(False)
    msg = str(e.value)
    assert msg.startswith("FastF1 loaded no lap timing data for 2025 Chinese Grand Prix R (offline:"), msg
    missing = msg.split("missing: ", 1)[1]
    for piece in ("session info (SessionInfo)", "lap timing (TimingData)", "position telemetry (Position.z)",
                  "car telemetry (CarData.z)", "official results (Ergast results)"):
        assert piece in missing
    assert "event schedule" not in missing  # that one the cache had


def test_offline_load_reports_data_the_cache_lacks(net: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A cache with the session but not its weather: the race loads, the ingest report says what was missing."""
    import fastf1

    d = session_dir("2025_2_R")
    ses = real_fastf1_session(d, monkeypatch)
    real_load = ses.load

    def load(**kw: Any) -> None:
        real_load(**kw)
        url = f"https://livetiming.formula1.com/static/{ses.api_path}WeatherData.jsonStream"
        logging.getLogger("fastf1.fastf1.req").warning("Offline mode is enabled but no cached response", extra={"offline_cache_miss_url": url})

    monkeypatch.setattr(ses, "load", load)
    (tmp_path / "ff1").mkdir()
    try:
        race = load_fastf1_session(2025, 2, "R", cache_dir=tmp_path / "ff1", offline=True, fps=5)
    finally:
        fastf1.Cache.offline_mode(False)
    assert race.event["warnings"] == ["not in the FastF1 cache (offline): weather (WeatherData)"]


def test_cache_miss_urls_in_words() -> None:
    assert describe_url("https://livetiming.formula1.com/static/2025/x/Position.z.jsonStream") == "position telemetry (Position.z)"
    assert describe_url("https://api.jolpi.ca/ergast/f1/2025/2/results.json") == "official results (Ergast results)"
    assert describe_url("https://api.jolpi.ca/ergast/f1/2025/2/laps/1.json") == "lap times (Ergast laps)"
    assert describe_url("https://api.jolpi.ca/ergast/f1/2025.json") == "event schedule (Ergast 2025)"
    assert describe_url("https://raw.githubusercontent.com/theOehrly/f1schedule/master/schedule_2025.json").startswith("event schedule")
    with CacheMisses() as m:
        logging.getLogger("fastf1.api").warning("x", extra={"offline_cache_miss_url": "https://h/static/a/TimingData.jsonStream"})
    assert m.missing() == ["lap timing (TimingData)"]


def test_cli_ingest_fastf1_offline_error(tmp_path: Path, net: Any) -> None:
    r = CliRunner().invoke(cli_app, ["ingest", "fastf1", "2025", "2", "--offline", "--cache", str(tmp_path / "nope"), "--data", str(tmp_path / "data")])
    assert r.exit_code == 1
    assert "--offline needs an existing FastF1 cache" in r.output and "Traceback" not in r.output


def test_server_ingest_passes_offline_to_the_child(tmp_path: Path) -> None:
    """``racecast serve --offline --fastf1-cache DIR``: the ingest child loads with FastF1 offline from DIR."""
    import time

    data = tmp_path / "data"
    data.mkdir()
    missing = tmp_path / "no-cache"
    with running(create_app(data, ingest_options={"offline": True, "cache_dir": str(missing)})) as srv:
        with srv.http() as c:
            assert c.post("/api/sessions", json={"year": 2024, "round_num": 2, "session_type": "R"}).status_code in (200, 202)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                st = c.get("/api/sessions/2024_2_R").json()
                if st.get("status") == "failed":
                    break
                time.sleep(0.1)
    assert st.get("status") == "failed", st
    assert "--offline needs an existing FastF1 cache" in st["error"] and str(missing) in st["error"]


def test_cli_serve_offline_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    import racecast.server.serve as serve_mod

    monkeypatch.setattr(serve_mod, "serve", lambda *a, **kw: seen.update(kw))
    r = CliRunner().invoke(cli_app, ["serve", "--data", str(tmp_path), "--offline", "--fastf1-cache", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert seen["ingest_options"] == {"offline": True, "cache_dir": str((tmp_path / "c").absolute())}


# -- results that disagree with the laps -------------------------------------------------------


def _results(codes: list[str], positions: list[Any], **cols: list[Any]) -> pd.DataFrame:
    df = pd.DataFrame({"DriverNumber": [str(i + 1) for i in range(len(codes))], "Abbreviation": codes, "Position": positions,
                       "ClassifiedPosition": [str(p) for p in positions], "Status": ["Finished"] * len(codes), **cols})
    df.index = df["DriverNumber"]
    return df


def test_results_with_a_duplicated_position_are_not_used() -> None:
    race = tiny_race()
    doc, warnings = official_results(race, _results(race.codes, [1.0, 1.0, 2.0]))
    assert doc["official"] is False and final_order(doc) == [race.codes[j] for j in np.argsort(race["position"][-1])]
    assert any("one position to several drivers (P1: D00, D01)" in w for w in warnings)


def test_results_naming_a_driver_without_laps_and_missing_one() -> None:
    race = tiny_race()
    codes = [race.codes[0], "ZZZ", race.codes[2]]
    res = _results(codes, [1.0, 2.0, 3.0])
    res.loc[res["Abbreviation"] == "ZZZ", "DriverNumber"] = "99"  # a number the data doesn't have either
    doc, warnings = official_results(race, res)
    assert doc["official"] is True
    assert any("ZZZ (P2), who has no laps or positions in the data" in w for w in warnings)
    assert any(f"{race.codes[1]} is in the data but not in the official results" in w for w in warnings)
    assert final_order(doc) == [race.codes[0], "ZZZ", race.codes[2], race.codes[1]]


def test_results_without_positions_fall_back_to_the_line() -> None:
    race = tiny_race()
    doc, warnings = official_results(race, _results(race.codes, [None, None, None]))
    assert doc["official"] is False and warnings and "no positions" in warnings[0]


def test_attach_officials_records_warnings_in_the_race_and_the_api(tmp_path: Path) -> None:
    race = tiny_race()
    race = attach_officials(race, results=_results(race.codes, [2.0, 2.0, 1.0]), session="R")
    assert race.event["results"]["official"] is False and race.event["warnings"]
    write_bundle(race, tmp_path / race.id)
    old = dataclasses.replace(tiny_race(), id="old")  # a bundle from before: no results
    write_bundle(old, tmp_path / "old")
    with running(create_app(tmp_path, ingest=False)) as srv, srv.http() as c:
        meta = c.get(f"/api/replays/{race.id}").json()
        assert meta["results"]["official"] is False and meta["results"]["rows"][0]["code"] == race.codes[int(np.argmin(race["position"][-1]))]
        assert meta["warnings"] == race.event["warnings"] and meta["qualifying"] is None
        meta_old = c.get("/api/replays/old").json()
        assert meta_old["results"] is None and meta_old["warnings"] == []


def test_a_qualifying_without_breaks_is_one_segment_in_best_lap_order() -> None:
    race = tiny_race()
    new, warnings = knockout(race)
    assert [s["name"] for s in new.event["qualifying"]["segments"]] == ["Q1"]
    assert any("one segment" in w for w in warnings)


def test_qualifying_results_that_disagree_with_the_data_are_a_warning() -> None:
    """Results say three segments, the data shows one (no breaks): the data's segments, and a warning."""
    race = tiny_race()
    q = lambda s: pd.Timedelta(seconds=s)  # noqa: E731
    res = _results(race.codes, [1.0, 2.0, 3.0], Q1=[q(80), q(81), q(82)], Q2=[q(79), q(80), pd.NaT], Q3=[q(78), pd.NaT, pd.NaT])
    new = attach_officials(race, results=res, session="Q", race_like=False)
    assert new.event["qualifying"]["source"] == "data"
    assert any("the official results have 3 segments, the data shows 1" in w for w in new.event["warnings"])
    rows = new.event["results"]["rows"]
    assert rows[0]["segment_times"] == {"Q1": 80.0, "Q2": 79.0, "Q3": 78.0} and rows[2]["segment_times"] == {"Q1": 82.0}
    # positions stay a valid running order on every frame (the Race validated them)
    assert (np.sort(new["position"], axis=1) == np.arange(1, race.n_drivers + 1)).all()


def test_results_with_lap_counts_that_disagree_are_a_warning() -> None:
    race = finished_tiny()
    laps = [int(race["lap"][-1, j]) for j in np.argsort(race["position"][-1])]
    codes = [race.codes[j] for j in np.argsort(race["position"][-1])]
    res = _results(codes, [1.0, 2.0, 3.0], Laps=[laps[0], laps[1] + 3, laps[2]])
    doc, warnings = official_results(race, res)
    assert doc["official"] is True
    assert warnings == [f"the official results give {codes[1]} {laps[1] + 3} laps, the data {laps[1]}"]


def finished_tiny() -> Any:
    from racecast.race import Status

    race = tiny_race()
    ch = {k: v.copy() for k, v in race.channels.items()}
    ch["status"][-10:, :] = Status.FINISHED
    return dataclasses.replace(race, channels=ch)


def test_practice_results_are_the_best_lap_order_unofficial() -> None:
    race = tiny_race()
    new = attach_officials(race, results=_results(race.codes, [None, None, None]), session="FP1", race_like=False)
    doc = new.event["results"]
    assert doc["official"] is False and "best-lap order" in doc["note"] and "warnings" not in new.event
    assert "qualifying" not in new.event
