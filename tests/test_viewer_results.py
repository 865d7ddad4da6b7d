"""The end-of-session results view and the qualifying segment, in real Chromium against a real server.

Three small bundles: a race with an official classification (a disqualification, a time
penalty), a race without one (the order at the line, unofficial) and a qualifying with
three segments. Fixtures (browser, pages that must log no console error, the server
subprocess) come from tests/test_viewer.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Page

from racecast.bundle import write_bundle
from racecast.race import Race, Status
from racecast.sources.ingest_report import with_event
from racecast.sources.officials import attach_officials
from tests.factories import tiny_race
from tests.test_viewer import Server, browser, console_errors, new_page, state, wait_state  # noqa: F401 -- fixtures

FPS = 25
N = FPS * 40
FLAG = FPS * 30  # the leader takes the flag here; everyone has by FLAG + 2 s


def finished_race(race_id: str) -> Race:
    race = tiny_race(n_frames=N, n_drivers=4, race_id=race_id)
    ch = {k: v.copy() for k, v in race.channels.items()}
    order = np.argsort(ch["position"][FLAG])
    for i, j in enumerate(order):
        ch["status"][FLAG + i * FPS // 2 :, j] = Status.FINISHED
        ch["position"][FLAG:, j] = i + 1
        ch["gap"][FLAG:, j] = 0.5 * i
    return dataclasses.replace(race, channels=ch)


def official_race() -> Race:
    race = finished_race("official")
    line = [race.codes[j] for j in np.argsort(race["position"][-1])]
    # officially: the line's P2 disqualified, P3 gets a 5 s penalty and drops behind P4
    rows = [(line[0], 1, "1", "Finished", 3600.0), (line[3], 2, "2", "Finished", 1.5 + 0.0), (line[2], 3, "3", "Finished", 6.0),
            (line[1], 4, "D", "Disqualified", None)]
    res = pd.DataFrame({
        "DriverNumber": [str(race.drivers[race.codes.index(c)].number) for c, *_ in rows],
        "Abbreviation": [c for c, *_ in rows], "Position": [float(p) for _, p, *_ in rows],
        "ClassifiedPosition": [cp for _, _, cp, *_ in rows], "Status": [s for *_, s, _ in rows],
        "Time": [pd.Timedelta(seconds=t) if t is not None else pd.NaT for *_, t in rows],
        "GridPosition": [1.0, 2.0, 3.0, 0.0],
    })
    return attach_officials(race, results=res, session="R")


def quali_race() -> Race:
    race = tiny_race(n_frames=N, n_drivers=4, race_id="quali")
    ch = {k: v.copy() for k, v in race.channels.items()}
    ch["race_progress"] += 2.0 * np.arange(race.n_drivers)[None, :]  # cars have done different numbers of laps
    race = dataclasses.replace(race, channels=ch)
    segs = [{"name": "Q1", "start": 0.0, "end": 10.0}, {"name": "Q2", "start": 15.0, "end": 24.0}, {"name": "Q3", "start": 28.0, "end": 36.0}]
    race = with_event(race, session_type="Q", qualifying={"source": "data", "segments": segs, "eliminated": {}, "order": race.codes})
    return attach_officials(race, session="R")  # results: the order at the end, unofficial


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("results-data")
    write_bundle(official_race(), data / "official")
    write_bundle(attach_officials(finished_race("line"), session="R"), data / "line")
    write_bundle(quali_race(), data / "quali")
    srv = Server(data)
    srv.start()
    yield srv
    srv.stop()


def open_replay(new_page: Callable[..., Page], server: Server, rid: str) -> Page:
    page = new_page()
    page.goto(f"{server.url}/?replay={rid}&encoding=msgpack")
    wait_state(page, "s.loaded && s.connected && s.frame >= 0")
    return page


def seek(page: Page, frame: int) -> None:
    page.evaluate(f"() => window.racecast.viewer.seek({frame})")
    wait_state(page, f"s.frame === {frame}")


def test_results_view_appears_after_the_flag_with_dsq_and_penalty(new_page: Callable[..., Page], server: Server) -> None:
    race = official_race()
    doc = race.event["results"]
    page = open_replay(new_page, server, "official")
    panel = page.locator("#results")
    seek(page, FLAG - FPS)
    assert panel.is_hidden() and state(page)["results_shown"] is False
    seek(page, FLAG + 1)  # the leader has taken the flag
    wait_state(page, "s.results_shown === true")
    assert panel.get_attribute("data-official") == "true"
    assert panel.locator("h2").text_content() == "Official classification"
    got = page.evaluate("() => [...document.querySelectorAll('#results tbody tr')].map((r) => r.dataset.code)")
    assert got == [r["code"] for r in doc["rows"]]
    dsq = panel.locator("tr.dsq")
    assert dsq.count() == 1 and dsq.get_attribute("data-code") == doc["rows"][3]["code"]
    assert "DSQ" in dsq.inner_text() and "P2 at the line" in dsq.inner_text()
    pen = panel.locator(f'tr[data-code="{doc["rows"][2]["code"]}"]')
    assert "time penalty" in pen.inner_text()
    # the replay itself keeps the order at the line
    board = page.evaluate("() => [...document.querySelectorAll('#board-rows .row')].sort((a, b) => a.dataset.position - b.dataset.position).map((r) => r.dataset.code)")
    line = [race.codes[j] for j in np.argsort(race["position"][FLAG + 1])]
    assert board == line != got
    # closed, it stays closed; a button brings it back; going back before the flag resets it
    panel.locator(".close").click()
    wait_state(page, "s.results_shown === false")
    assert page.locator("#results-open").is_visible()
    page.locator("#results-open").click()
    assert panel.is_visible()
    seek(page, FLAG - FPS)
    wait_state(page, "s.results_shown === false")
    assert page.locator("#results-open").is_hidden()


def test_results_view_without_a_classification_says_unofficial(new_page: Callable[..., Page], server: Server) -> None:
    page = open_replay(new_page, server, "line")
    seek(page, N - 1)
    wait_state(page, "s.results_shown === true")
    panel = page.locator("#results")
    assert panel.get_attribute("data-official") == "false"
    text = panel.inner_text()
    assert panel.locator("h2").text_content() == "Unofficial result" and "order at the line" in text


def test_qualifying_header_shows_the_segment(new_page: Callable[..., Page], server: Server) -> None:
    page = open_replay(new_page, server, "quali")
    seg = page.locator("#segment")
    for t, want in ((5, "Q1"), (12, "Q1 ended"), (20, "Q2"), (26, "Q2 ended"), (30, "Q3")):
        seek(page, t * FPS)
        wait_state(page, f"s.segment === {want!r}")
        assert seg.inner_text() == want and seg.is_visible()
    assert state(page)["results_shown"] is False
    seek(page, 37 * FPS)  # after Q3: the result
    wait_state(page, "s.results_shown === true")


def test_a_race_has_no_segment_in_the_header(new_page: Callable[..., Page], server: Server) -> None:
    page = open_replay(new_page, server, "line")
    assert page.locator("#segment").is_hidden() and state(page).get("segment") in (None, "")


def test_bundles_from_before_results_open_without_a_results_view(new_page: Callable[..., Page], server: Server, tmp_path: Path) -> None:
    write_bundle(finished_race("oldstyle"), server.data / "oldstyle")  # no event.results
    page = open_replay(new_page, server, "oldstyle")
    seek(page, N - 1)
    assert page.locator("#results").is_hidden() and state(page)["results_shown"] is False


def test_qualifying_leaderboard_shows_times_not_laps_behind(new_page: Callable[..., Page], server: Server) -> None:
    """A qualifying is ranked by lap times: no "+N LAPS" from race progress, no places gained vs frame 0."""
    page = open_replay(new_page, server, "quali")
    seek(page, N - 1)
    texts = page.evaluate("() => [...document.querySelectorAll('#board-rows .row')].map((r) => r.querySelector('.gap').textContent + '|' + r.querySelector('.delta').textContent)")
    assert texts and not any("LAP" in t for t in texts)
    assert all(t.split("|")[1] == "" for t in texts)
