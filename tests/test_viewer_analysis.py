"""The viewer's event list, event jumps, timeline markers and charts panel in real Chromium.

One ``racecast serve`` on a short simulated race (its pit stops, safety car, retirement and
overtakes are events) and one browser for the module; pages must log no console error
(the fixtures come from tests/test_viewer.py).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from playwright.sync_api import Page

from racecast.bundle import write_bundle
from racecast.sources.simulate import simulate_race
from tests.test_viewer import Server, browser, console_errors, new_page, open_viewer, state, wait_state  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("viewer-analysis")
    write_bundle(simulate_race(laps=4, n_drivers=8, seed=3, id="demo"), data / "demo")
    srv = Server(data)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def events(server: Server) -> list[dict]:
    with urllib.request.urlopen(server.url + "/api/replays/demo/events") as r:
        return json.loads(r.read())["events"]


@pytest.fixture(scope="module")
def laps(server: Server) -> dict:
    with urllib.request.urlopen(server.url + "/api/replays/demo/laps") as r:
        return json.loads(r.read())


def ready(new_page: Callable[..., Page], server: Server) -> Page:
    page = open_viewer(new_page, server)
    wait_state(page, "s.frame === 0")
    page.wait_for_function("() => document.querySelector('#events').dataset.shown !== undefined")
    return page


def test_event_list_shows_every_event_and_seeks_on_click(new_page: Callable[..., Page], server: Server, events: list[dict]) -> None:
    assert {"pit_stop", "overtake", "safety_car", "retirement"} <= {e["kind"] for e in events}
    page = ready(new_page, server)
    rows = page.locator("#event-list li[data-frame]")
    assert rows.count() == len(events) == int(page.locator("#events").get_attribute("data-count"))
    assert int(page.locator("#scrubber").get_attribute("data-events")) == len(events)  # marked on the timeline
    stop = next(e for e in events if e["kind"] == "pit_stop")
    row = page.locator(f"#event-list li[data-kind=pit_stop][data-frame='{stop['frame']}']")
    assert stop["drivers"][0] in row.inner_text() and "pits" in row.inner_text()
    row.click()
    wait_state(page, f"s.frame === {stop['frame']}")
    # once there, the events up to now are marked as past
    page.wait_for_function(f"() => document.querySelector(\"#event-list li[data-frame='{stop['frame']}']\").classList.contains('past')")
    # filter by kind: only that kind is listed
    page.select_option("#event-kind", "overtake")
    assert page.locator("#event-list li[data-frame]").count() == sum(e["kind"] == "overtake" for e in events)
    assert set(page.eval_on_selector_all("#event-list li[data-frame]", "els => els.map(e => e.dataset.kind)")) == {"overtake"}


def test_keys_jump_to_the_next_and_previous_event(new_page: Callable[..., Page], server: Server, events: list[dict]) -> None:
    page = ready(new_page, server)
    frames = sorted({e["frame"] for e in events if e["frame"] > 0})
    kb = page.keyboard
    kb.press("]")
    wait_state(page, f"s.frame === {frames[0]}")
    kb.press("]")
    wait_state(page, f"s.frame === {frames[1]}")
    kb.press("[")
    wait_state(page, f"s.frame === {frames[0]}")
    # of a kind: the list's filter
    page.select_option("#event-kind", "pit_stop")
    stops = [e["frame"] for e in events if e["kind"] == "pit_stop"]
    kb.press("]")
    wait_state(page, f"s.frame === {stops[0]}")
    kb.press("]")
    wait_state(page, f"s.frame === {stops[1]}")
    kb.press("[")
    wait_state(page, f"s.frame === {stops[0]}")


def test_keys_jump_between_the_selected_drivers_events(new_page: Callable[..., Page], server: Server, events: list[dict]) -> None:
    page = ready(new_page, server)
    counts: dict[str, int] = {}
    for e in events:
        for c in e["drivers"]:
            counts[c] = counts.get(c, 0) + 1
    code = max(counts, key=lambda c: counts[c])
    mine = [e["frame"] for e in events if code in e["drivers"] and e["frame"] > 0]
    assert len(mine) >= 2
    page.locator(f"#board-rows .row[data-code={code}]").click()
    wait_state(page, f"s.selected.length === 1 && s.selected[0] === '{code}'")
    page.keyboard.press(".")
    wait_state(page, f"s.frame === {mine[0]}")
    page.keyboard.press(".")
    wait_state(page, f"s.frame === {mine[1]}")
    page.keyboard.press(",")
    wait_state(page, f"s.frame === {mine[0]}")
    # "selected only" narrows the list to that driver's events
    page.check("#event-mine")
    assert page.locator("#event-list li[data-frame]").count() == sum(code in e["drivers"] for e in events)


def test_charts_panel_is_linked_to_the_replay(new_page: Callable[..., Page], server: Server, laps: dict) -> None:
    page = ready(new_page, server)
    charts = page.locator("#charts")
    assert charts.is_hidden()
    page.keyboard.press("c")
    assert charts.is_visible()
    page.wait_for_function("() => document.querySelector('#charts').dataset.series !== undefined")
    assert charts.get_attribute("data-kind") == "gaps"
    assert int(charts.get_attribute("data-series")) == len(laps["drivers"])
    assert float(charts.get_attribute("data-marker-lap")) == 0.0
    # click the middle of the plot: the replay goes to a lap crossing (a driver's, or the leader's)
    box = page.locator("#chart").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5)
    crossings = {f for code in laps["drivers"] for f in laps["crossing_frame"][code] if f is not None}
    wait_state(page, f"[{','.join(map(str, sorted(crossings)))}].includes(s.frame)")
    frame = state(page)["frame"]
    # the current-time marker followed the seek (to the lap the clicked crossing ends)
    lap = next(k + 1 for code in laps["drivers"] for k, f in enumerate(laps["crossing_frame"][code]) if f == frame)
    page.wait_for_function(f"() => Math.abs(Number(document.querySelector('#charts').dataset.markerLap) - {lap}) < 1.0")
    # selecting a driver highlights it in the chart
    code = laps["drivers"][2]
    page.locator(f"#board-rows .row[data-code={code}]").click()
    page.wait_for_function(f"() => document.querySelector('#charts').dataset.highlight === '{code}'")
    # every chart kind draws
    for kind, n in (("positions", len(laps["drivers"])), ("laptimes", len(laps["drivers"])), ("strategy", len(laps["drivers"]))):
        page.select_option("#chart-kind", kind)
        assert charts.get_attribute("data-kind") == kind and int(charts.get_attribute("data-series")) == n
    page.keyboard.press("c")
    assert charts.is_hidden()


def test_chart_click_on_the_start_of_the_lap_chart_seeks_to_lights_out(new_page: Callable[..., Page], server: Server, laps: dict) -> None:
    page = ready(new_page, server)
    page.keyboard.press("]")  # somewhere else first
    wait_state(page, "s.frame > 0")
    page.click("#charts-toggle")
    page.select_option("#chart-kind", "positions")
    box = page.locator("#chart").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 41, box["y"] + 4)  # lap 0, above every line
    wait_state(page, f"s.frame === {laps['start_frame']}")


def test_pit_rejoin_prediction_for_the_selected_driver(new_page: Callable[..., Page], server: Server, events: list[dict]) -> None:
    import statistics

    page = ready(new_page, server)
    stops = [e for e in events if e["kind"] == "pit_stop"]
    last = max(stops, key=lambda e: e["exit_frame"])
    frame = last["exit_frame"] + 250  # ten seconds after the last stop: every loss is known
    page.evaluate(f"() => window.racecast.viewer.seek({frame})")
    wait_state(page, f"s.frame === {frame}")
    panel = page.locator("#pit-predict")
    assert panel.is_hidden()
    page.keyboard.press("p")
    assert panel.is_visible() and "Select a driver" in panel.inner_text()
    cur = page.evaluate("() => window.racecast.viewer.cur")
    running = sorted((d for d in cur["drivers"].items() if d[1]["status"] == "running"), key=lambda d: d[1]["position"])
    code = running[1][0]  # second on the road: a stop drops it some places
    page.locator(f"#board-rows .row[data-code={code}]").click()
    page.wait_for_function(f"() => document.querySelector('#pit-predict').dataset.driver === '{code}' && document.querySelector('#pit-predict').dataset.position !== ''")
    t = cur["t"]
    assert state(page)["status"] == "GREEN"
    green = [e["loss_s"] for e in stops if e["loss_s"] is not None and not e["laps_neutralised"] and e["t_out"] <= t]
    loss = statistics.median(green)
    assert float(panel.get_attribute("data-loss")) == pytest.approx(loss, abs=0.01)

    def gap(d: dict) -> float:
        return 0.0 if d["position"] == 1 else d["gap"]

    mine = gap(cur["drivers"][code]) + loss
    others = [c for c, d in cur["drivers"].items() if c != code and d["status"] in ("running", "pit") and gap(d) <= mine]
    assert int(panel.get_attribute("data-position")) == len(others) + 1
    assert f"P{len(others) + 1}" in panel.inner_text() and "pit loss" in panel.inner_text()
    page.keyboard.press("p")
    assert panel.is_hidden()


def api_compare(server: Server, a: str, b: str) -> dict:
    from urllib.parse import urlencode

    with urllib.request.urlopen(server.url + "/api/replays/demo/compare?" + urlencode({"a": a, "b": b})) as r:
        return json.loads(r.read())


def test_compare_lap_picker_chooses_the_laps_and_every_channel_is_drawn(
    new_page: Callable[..., Page], server: Server, laps: dict, console_errors: list[str]
) -> None:
    """Two selected drivers; the lap picker offers each one's fastest, the same lap number and every
    completed lap; speed, throttle, brake and gear (two lines each) and the delta (one) are drawn
    from GET /compare; a click on the chart seeks along the first driver's lap."""
    page = ready(new_page, server)
    page.keyboard.press("c")
    page.select_option("#chart-kind", "compare")
    charts, pick = page.locator("#charts"), page.locator("#compare-pick")
    page.wait_for_function("() => document.querySelector('#charts').dataset.kind === 'compare'")
    assert charts.get_attribute("data-series") == "0" and pick.is_visible()  # nobody selected: a hint, no lines
    assert page.locator("#compare-lap-a").is_disabled()
    timed = [c for c in laps["drivers"] if sum(v is not None for v in laps["lap_times"][c]) >= 3]
    a, b = timed[:2]
    page.locator(f"#board-rows .row[data-code={a}]").click()
    page.locator(f"#board-rows .row[data-code={b}]").click(modifiers=["Shift"])

    def drawn(key: str) -> None:
        try:
            page.wait_for_function(
                f"() => {{ const d = document.querySelector('#charts').dataset; return d.compare === '{key}' && d.series === '9' && d.panels === '5'; }}"
            )
        except Exception:
            raise AssertionError(f"{key} not drawn: {page.evaluate('() => ({...document.querySelector(`#charts`).dataset})')}") from None

    # default: each one's fastest lap, as the server (and the CLI) resolve it
    fast = api_compare(server, f"{a}:fastest", f"{b}:fastest")
    drawn(f"{a}:{fast['a']['lap']}|{b}:{fast['b']['lap']}")
    assert page.locator("#compare-a").inner_text() == a and page.locator("#compare-b").inner_text() == b
    assert page.locator("#compare-lap-a option[value=fastest]").inner_text() == f"fastest (L{fast['a']['lap']})"
    # the options: fastest, (b: same lap as a), then each completed lap
    done = lambda c: [str(k + 1) for k, t in enumerate(laps["crossing_t"][c]) if t is not None]  # noqa: E731
    assert page.eval_on_selector_all("#compare-lap-a option", "os => os.map(o => o.value)") == ["fastest", *done(a)]
    assert page.eval_on_selector_all("#compare-lap-b option", "os => os.map(o => o.value)") == ["fastest", "same", *done(b)]
    # the same lap number
    page.select_option("#compare-lap-a", "2")
    page.select_option("#compare-lap-b", "same")
    drawn(f"{a}:2|{b}:2")
    # any lap each
    page.select_option("#compare-lap-b", "3")
    drawn(f"{a}:2|{b}:3")
    want = api_compare(server, f"{a}:2", f"{b}:3")
    assert charts.get_attribute("data-points") == str(len(want["distance"]))
    for ch in ("speed", "throttle", "brake", "gear"):  # every channel moves over a lap
        assert len(set(want["a"][ch])) > 1 and len(set(want["b"][ch])) > 1, ch
    # hovering shows a cursor with both drivers' values there
    box = page.locator("#chart").bounding_box()
    assert box is not None
    # a pointer's path, not one synthetic event (one can be lost while the page is busy laying out)
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
    page.wait_for_function("() => Number(document.querySelector('#charts').dataset.cursor) > 0")
    k = int(charts.get_attribute("data-cursor"))
    assert 0.3 * len(want["distance"]) < k < 0.7 * len(want["distance"]), k
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] - 40, steps=5)  # off the chart: the cursor goes
    page.wait_for_function("() => document.querySelector('#charts').dataset.cursor === undefined")
    # a click half way along the plot: the replay goes to where a was on lap 2 at that distance
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    lap_frames = round(want["a"]["time"][-1] * 25)
    wait_state(page, f"s.frame > {want['a']['frame'] + lap_frames // 4} && s.frame < {want['a']['frame'] + 3 * lap_frames // 4}")
    # another pair of drivers: the picker is rebuilt, choices still offered are kept
    page.locator(f"#board-rows .row[data-code={a}]").click(modifiers=["Shift"])  # a out: b alone
    page.wait_for_function("() => document.querySelector('#charts').dataset.series === '0'")
    assert page.locator("#compare-lap-a").is_disabled()
    c = timed[2]
    page.locator(f"#board-rows .row[data-code={c}]").click(modifiers=["Shift"])
    drawn(f"{b}:2|{c}:3")  # b first now; its lap 2, c's lap 3
    # a lap the driver never drove (the picker offers none, the API is the judge): the reason is shown
    page.evaluate("() => { const ch = window.racecast.viewer.charts; ch.lapChoice[0] = '99'; ch.draw(); }")
    page.wait_for_function("() => (document.querySelector('#charts').dataset.compareError || '').includes('no lap 99')")
    assert charts.get_attribute("data-series") == "0"
    # Chromium logs the refused request itself; that one (and nothing else) is expected
    assert [e for e in console_errors if "404" in e] == ["console: Failed to load resource: the server responded with a status of 404 (Not Found)"]
    console_errors.remove("console: Failed to load resource: the server responded with a status of 404 (Not Found)")
