"""``/api/replays/{id}/events`` and ``/laps`` over a real server, on bundles written with and without
the stored analysis, with good and bad filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from racecast.analysis.store import ANALYSIS_FILE, analyse
from racecast.bundle import open_bundle, write_bundle
from racecast.server import create_app
from racecast.sources.simulate import simulate_race
from tests.serverutil import Running, running

SIM_KW = dict(laps=4, n_drivers=8, seed=3, fps=10)


def _strip_analysis(path: Path) -> None:
    """Make a bundle look like one written before the analysis existed."""
    m = json.loads((path / "manifest.json").read_text())
    del m["analysis"]
    del m["files"][ANALYSIS_FILE]
    (path / ANALYSIS_FILE).unlink()
    (path / "manifest.json").write_text(json.dumps(m))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    race = simulate_race(**SIM_KW, id="sim")
    write_bundle(race, root / "sim")
    write_bundle(race, root / "old")  # same race, analysis removed below
    m = json.loads((root / "old" / "manifest.json").read_text())
    m["id"] = "old"
    (root / "old" / "manifest.json").write_text(json.dumps(m))
    _strip_analysis(root / "old")
    write_bundle(race, root / "damaged")
    p = root / "damaged" / ANALYSIS_FILE
    p.write_bytes(b"{" + b"x" * (p.stat().st_size - 1))  # same size: opens, but unreadable
    return root


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[Running]:
    with running(create_app(data)) as r:
        yield r


def test_the_bundle_stores_the_analysis_computed_at_ingest(data: Path) -> None:
    with open_bundle(data / "sim") as b:
        entry = b.manifest["analysis"]
        assert entry["file"] == ANALYSIS_FILE and entry["version"] == 1
        stored = json.loads((data / "sim" / ANALYSIS_FILE).read_text())
        assert entry["events"] == len(stored["events"]) > 0
        b.verify()  # the analysis file is covered by the content hash
    assert stored == json.loads(json.dumps(analyse(simulate_race(**SIM_KW, id="sim"))))


def test_events_endpoint(srv: Running, data: Path) -> None:
    stored = json.loads((data / "sim" / ANALYSIS_FILE).read_text())["events"]
    with srv.http() as c:
        r = c.get("/api/replays/sim/events")
        assert r.status_code == 200
        body = r.json()
        assert body["events"] == stored and body["count"] == len(stored) and body["derived"] is False
        kinds = {e["kind"] for e in stored}
        assert {"pit_stop", "overtake", "start", "chequered_flag"} <= kinds
        for e in body["events"]:
            assert {"kind", "t", "frame", "lap", "drivers"} <= set(e)
        pits = c.get("/api/replays/sim/events", params={"kind": "pit_stop"}).json()["events"]
        assert pits and all(e["kind"] == "pit_stop" for e in pits)
        assert len(pits) == sum(e["kind"] == "pit_stop" for e in stored)
        two = c.get("/api/replays/sim/events?kind=pit_stop,overtake").json()["events"]
        assert len(two) == sum(e["kind"] in ("pit_stop", "overtake") for e in stored)
        code = pits[0]["drivers"][0]
        mine = c.get(f"/api/replays/sim/events?driver={code}").json()["events"]
        assert mine and all(code in e["drivers"] for e in mine)
        assert len(mine) == sum(code in e["drivers"] for e in stored)
        both = c.get(f"/api/replays/sim/events?driver={code}&kind=pit_stop").json()["events"]
        assert [e for e in pits if e["drivers"] == [code]] == both


def test_an_old_bundle_without_analysis_gets_it_derived(srv: Running, data: Path) -> None:
    stored = json.loads((data / "sim" / ANALYSIS_FILE).read_text())
    with srv.http() as c:
        body = c.get("/api/replays/old/events").json()
        assert body["derived"] is True and body["events"] == stored["events"]
        laps = c.get("/api/replays/old/laps").json()
    assert laps.pop("derived") is True and laps == stored["laps"]


def test_laps_endpoint(srv: Running) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/sim/laps")
    assert r.status_code == 200
    laps = r.json()
    assert laps["drivers"] and laps["laps"] == SIM_KW["laps"]
    for key in ("crossing_t", "crossing_frame", "positions", "gaps", "lap_times", "pit_laps"):
        assert set(laps[key]) == set(laps["drivers"])
    assert laps["stints"] and {"driver", "compound", "start_lap", "end_lap"} <= set(laps["stints"][0])


@pytest.mark.parametrize(
    "url, status, words",
    [
        ("/api/replays/sim/events?kind=overtakes", 400, "unknown event kind"),
        ("/api/replays/sim/events?kind=pit_stop,bogus", 400, "bogus"),
        ("/api/replays/sim/events?driver=ZZZ", 400, "unknown driver"),
        ("/api/replays/sim/events?kind=" + "x" * 400, 422, ""),
        ("/api/replays/nope/events", 404, "no replay"),
        ("/api/replays/..%2Fetc/events", 404, ""),
        ("/api/replays/bad%20id/events", 400, ""),
        ("/api/replays/nope/laps", 404, "no replay"),
        ("/api/replays/damaged/events", 500, "analysis unreadable"),
        ("/api/replays/damaged/laps", 500, "analysis unreadable"),
    ],
)
def test_bad_requests_get_json_errors(srv: Running, url: str, status: int, words: str) -> None:
    with srv.http() as c:
        r = c.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert words in json.dumps(r.json()["detail"])


def test_the_damaged_bundle_still_plays(srv: Running) -> None:
    """A broken analysis file costs the events, not the replay."""
    with srv.http() as c:
        assert c.get("/api/replays/damaged").status_code == 200
