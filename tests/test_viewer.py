"""The web viewer in a real browser: Debian's Chromium driven by Playwright against a real server.

One server (``racecast serve`` in a subprocess, on a free port, serving a short hand-built race) and
one browser are shared by the module; each test gets a fresh page that must log no console error.
The tests read the viewer's test hook (``window.racecast.state``) and ``data-*`` attributes, and
compare canvas pixels where the claim is about the picture. If Chromium cannot start, every test
here errors (they never skip): ``make test`` installs it when missing.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

import racecast
from racecast.bundle import open_bundle, write_bundle
from racecast.race import Compound, Race, Status
from benchmarks.common import free_port
from tests.factories import tiny_race
from tests.serverutil import T

CHROMIUM = os.environ.get("RACECAST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SRC = str(Path(racecast.__file__).resolve().parent.parent)
FPS = 25
N_FRAMES = 25 * 120  # two minutes: leaders change, laps 1-3
N_DRIVERS = 6
PIT = (3 * FPS, 5 * FPS)  # frames in which the last car is in the pit lane (tiny_race's pit stop)
WAIT_MS = round(T(10) * 1000)  # scaled by RACECAST_TEST_TIME_SCALE
#: What the viewer can play: chunk mode (its default) and the two frame encodings (?encoding=...).
ENCODINGS = ["chunks", "compact", "msgpack"]
CHUNK = 25  # frames per chunk


def viewer_race() -> Race:
    """tiny_race with its pit stop in the frames too: the last car in the pit lane, then on hards."""
    race = tiny_race(n_frames=N_FRAMES, n_drivers=N_DRIVERS, race_id="demo")
    ch = {k: v.copy() for k, v in race.channels.items()}
    a, b = PIT
    ch["status"][a:b, -1] = Status.PIT
    ch["tyre"][b:, -1] = Compound.HARD
    return dataclasses.replace(race, channels=ch)


# -- fixtures -------------------------------------------------------------------------------------


class Server:
    """``racecast serve`` in a subprocess; :meth:`restart` brings it back on the same port."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "racecast.cli", "serve", "--data", str(self.data), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                with urllib.request.urlopen(self.url + "/api/replays", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("viewer-data")
    write_bundle(viewer_race(), data / "demo")
    srv = Server(data)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # No skip here: a browser that cannot start is a failure (make test installs Chromium).
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def console_errors() -> list[str]:
    return []


@pytest.fixture
def new_page(browser: Browser, console_errors: list[str]) -> Iterator[Callable[..., Page]]:
    """Open pages that record console errors (page and worker) and page exceptions; none allowed."""
    contexts = []

    def record(where: str) -> Callable[[ConsoleMessage], None]:
        def on(msg: ConsoleMessage) -> None:
            if msg.type in ("error", "assert"):
                console_errors.append(f"{where}: {msg.text}")

        return on

    def make(width: int = 1280, height: int = 720) -> Page:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", record("console"))
        page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
        page.on("worker", lambda w: w.on("console", record("worker")))
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert console_errors == [], "the browser logged errors"


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.racecast.state})")


def wait_state(page: Page, expr: str, timeout: int = WAIT_MS) -> None:
    """Wait until a JS expression over ``s`` (the viewer's state) holds; on timeout, say what the state was."""
    try:
        page.wait_for_function(f"() => {{ const s = window.racecast && window.racecast.state; return !!s && ({expr}); }}", timeout=timeout)
    except PlaywrightTimeout:
        raise AssertionError(f"timed out waiting for {expr!r}; state: {page.evaluate('() => window.racecast && window.racecast.state')}") from None


def open_viewer(new_page: Callable[..., Page], server: Server, query: str = "", **size: int) -> Page:
    page = new_page(**size)
    page.goto(f"{server.url}/?replay=demo{query}")
    wait_state(page, "s.loaded && s.connected && s.frame >= 0")
    return page


def map_png(page: Page) -> bytes:
    return page.locator("#track").screenshot()


def board_order(page: Page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('#board-rows .row')]"
        ".sort((a, b) => a.dataset.position - b.dataset.position).map((r) => r.dataset.code)"
    )


def frames_per_second(page: Page, seconds: float) -> float:
    f0, t0 = state(page)["frame"], time.monotonic()
    time.sleep(seconds)
    f1, t1 = state(page)["frame"], time.monotonic()
    return (f1 - f0) / (t1 - t0)


# -- tests ------------------------------------------------------------------------------------------


def test_start_page_lists_replays_and_opens_one(new_page: Callable[..., Page], server: Server) -> None:
    page = new_page()
    page.goto(server.url + "/")
    link = page.locator('a[data-id="demo"]')
    link.wait_for(timeout=WAIT_MS)
    text = link.inner_text()
    assert "Tiny test race" in text and "3 laps" in text and "1:59" in text and "6 cars" in text
    link.click()
    page.wait_for_url("**/?replay=demo")
    wait_state(page, "s.loaded && s.frame === 0")
    assert page.locator("#event-title").inner_text() == "Tiny test race"
    assert page.locator("#board-rows .row").count() == N_DRIVERS


def test_viewer_asks_for_the_smallest_encoding_the_replay_offers(new_page: Callable[..., Page], server: Server) -> None:
    with open_bundle(server.data / "demo") as b:
        assert "chunks.gz" in b.streams  # every bundle carries gzip chunks: the viewer's default
    page = open_viewer(new_page, server)
    assert state(page)["encoding"] == "chunks"
    for encoding in ("msgpack", "compact", "chunks"):
        explicit = open_viewer(new_page, server, f"&encoding={encoding}")
        assert state(explicit)["encoding"] == encoding


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_play_advances_clock_and_moves_cars_then_pause_freezes(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    page = open_viewer(new_page, server, f"&encoding={encoding}")
    wait_state(page, "s.frame === 0")
    page.wait_for_timeout(200)
    before = map_png(page)
    clock_before = page.locator("#clock").inner_text()
    page.click("#play")
    wait_state(page, "s.playing && s.frame >= 75")
    assert page.locator("#clock").inner_text() != clock_before
    assert int(page.locator("#clock").get_attribute("data-frame")) >= 75
    assert map_png(page) != before, "cars did not move on the map"
    page.click("#play")  # pause
    wait_state(page, "!s.playing")
    page.wait_for_timeout(400)  # the last interpolation settles
    frozen = state(page)["frame"]
    a = map_png(page)
    page.wait_for_timeout(600)
    assert map_png(page) == a, "the picture changed while paused"
    assert state(page)["frame"] == frozen
    assert page.locator("#play").get_attribute("data-playing") == "false"


def test_lap_counter_follows_the_leader(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    assert page.locator("#lap").get_attribute("data-lap") == "1"
    assert page.locator("#lap-total").inner_text() == "3"
    page.fill("#lap-input", "2")
    page.press("#lap-input", "Enter")
    with open_bundle(server.data / "demo") as b:
        lap2 = b.frame_of_lap(2)
    wait_state(page, f"s.frame === {lap2}")
    assert page.locator("#lap").get_attribute("data-lap") == "2"


def test_header_and_race_control_feed_follow_the_replay(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    wait_state(page, "s.frame === 0")
    assert page.locator("#track-status").get_attribute("data-status") == "GREEN"
    assert "Air 22°" in page.locator("#weather").inner_text()
    assert page.locator("#feed").get_attribute("data-count") == "0"  # tiny_race's one message is at 1 s
    page.evaluate("() => window.racecast.viewer.seek(2 * 25)")
    wait_state(page, "s.frame === 50")
    assert page.locator("#feed").get_attribute("data-count") == "1"
    assert "GREEN LIGHT - PIT EXIT OPEN" in page.locator("#feed").inner_text()
    page.keyboard.press("Home")
    wait_state(page, "s.frame === 0")
    assert page.locator("#feed").get_attribute("data-count") == "0"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_motion_is_interpolated_between_frames(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    """Between two frames the map draws cars part-way: positions that no frame holds."""
    page = open_viewer(new_page, server, f"&play=1&encoding={encoding}")
    wait_state(page, "s.playing && s.frame > 25")
    samples, between, frames = page.evaluate(
        """() => new Promise((done) => {
            const v = window.racecast.viewer, f0 = v.state.frames_shown, t0 = performance.now();
            let samples = 0, between = 0;
            const sample = () => {
                const drawn = v.map.screen.get("D00"), c = v.cur.drivers.D00, [fx, fy] = v.map.project(c.x, c.y);
                samples += 1;
                if (Math.hypot(drawn[0] - fx, drawn[1] - fy) > 0.01) between += 1;
                if (performance.now() - t0 < 1500) requestAnimationFrame(sample);
                else done([samples, between, v.state.frames_shown - f0]);
            };
            requestAnimationFrame(sample);
        })"""
    )
    assert frames > 5
    assert between >= 5, f"{between} of {samples} animation frames drew a car between frames ({frames} frames)"


def test_scrubber_seeks_and_the_leaderboard_changes(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    wait_state(page, "s.frame === 0")
    order_before = board_order(page)
    clock_before = page.locator("#clock").inner_text()
    box = page.locator("#scrubber").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
    target = round(0.75 * (N_FRAMES - 1))
    wait_state(page, f"Math.abs(s.frame - {target}) <= {N_FRAMES // 100}")
    assert page.locator("#clock").inner_text() != clock_before
    assert page.locator("#clock").inner_text().startswith("1:")  # 90 s into a 2-minute race
    assert board_order(page) != order_before
    assert int(page.locator("#scrubber").get_attribute("data-frame")) == state(page)["frame"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_after_a_seek_no_frame_from_the_old_position_is_shown(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    page = open_viewer(new_page, server, f"&play=1&speed=4&encoding={encoding}")
    wait_state(page, "s.playing && s.frame > 150")
    page.evaluate(
        """() => {
            const v = window.racecast.viewer, ingest = v._ingest.bind(v);
            window.shown = [];
            v._ingest = (f) => { window.shown.push(f.frame_index); ingest(f); };
            v.seek(50);
        }"""
    )
    wait_state(page, "window.shown.length >= 10")
    shown = page.evaluate("() => window.shown")
    assert shown[0] == 50, shown
    assert shown == sorted(shown), shown


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_end_of_the_replay_stops_and_play_starts_over(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    page = open_viewer(new_page, server, f"&encoding={encoding}")
    page.evaluate(f"() => window.racecast.viewer.seek({N_FRAMES - 40})")
    wait_state(page, f"s.frame === {N_FRAMES - 40}")
    page.keyboard.press("2")  # 4x: the last 40 frames take 0.4 s
    page.keyboard.press("Space")
    wait_state(page, f"!s.playing && s.frame === {N_FRAMES - 1}")
    assert page.locator("#play").get_attribute("data-playing") == "false"
    page.keyboard.press("Space")
    wait_state(page, f"s.playing && s.frame < {N_FRAMES // 2}")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_speed_4x_advances_about_four_times_faster(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    page = open_viewer(new_page, server, f"&play=1&encoding={encoding}")
    wait_state(page, "s.playing && s.frame > 10")
    one = frames_per_second(page, 1.5)
    page.select_option("#speed", "4")
    wait_state(page, "s.speed === 4")
    page.wait_for_timeout(200)
    four = frames_per_second(page, 1.5)
    assert one > 0
    assert 2.0 < four / one < 8.0, f"1x: {one:.1f} frames/s, 4x: {four:.1f} frames/s"


def test_selecting_drivers_shows_telemetry(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    assert page.locator("#telemetry").get_attribute("data-drivers") == ""
    page.click('#board-rows .row[data-code="D02"]')
    wait_state(page, "s.selected.join() === 'D02'")
    card = page.locator('#telemetry .card[data-code="D02"]')
    assert card.is_visible()
    speed = card.locator(".speed").get_attribute("data-speed")
    assert speed is not None and int(speed) == round(64 * 3.6)  # tiny_race: driver 2 runs 64 m/s
    assert card.locator('[data-field="gear"]').inner_text() == "6"
    assert card.locator('[data-field="lap_time"]').inner_text() == "–"  # no lap completed at the start
    page.evaluate(f"() => window.racecast.viewer.seek({N_FRAMES - 1})")
    wait_state(page, f"s.frame === {N_FRAMES - 1}")
    assert card.locator('[data-field="lap_time"]').inner_text() == "0:52.300"  # tiny_race's lap time
    assert page.locator("#telemetry-chart").is_visible()
    # A long lap line (real sector times) truncates inside the panel instead of widening the card.
    overflow = page.evaluate("""() => {
        const panel = document.querySelector('#telemetry').getBoundingClientRect();
        document.querySelector('#telemetry .card .laps').textContent = 'Last lap 1:23.831 · S1 31.010 · S2 25.406 · S3 27.415'.repeat(3);
        const card = document.querySelector('#telemetry .card').getBoundingClientRect();
        return card.right - panel.right;
    }""")
    assert overflow <= 0.5, f"the telemetry card sticks out of its panel by {overflow:.0f} px"
    assert "selected" in (page.locator('#board-rows .row[data-code="D02"]').get_attribute("class") or "")
    page.click('#board-rows .row[data-code="D04"]', modifiers=["Shift"])
    wait_state(page, "s.selected.join() === 'D02,D04'")
    assert page.locator("#telemetry .card").count() == 2
    # Click a car on the map: select it alone.
    x, y = page.evaluate("() => window.racecast.viewer.map.screen.get('D01')")
    canvas = page.locator("#track").bounding_box()
    assert canvas is not None
    page.mouse.click(canvas["x"] + x, canvas["y"] + y)
    wait_state(page, "s.selected.join() === 'D01'")
    assert page.locator("#telemetry").get_attribute("data-drivers") == "D01"


def test_keyboard_shortcuts(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    wait_state(page, "s.frame === 0")
    kb = page.keyboard
    kb.press("ArrowRight")
    wait_state(page, f"s.frame === {FPS}")
    kb.press("Shift+ArrowRight")
    wait_state(page, f"s.frame === {11 * FPS}")
    kb.press("ArrowLeft")
    wait_state(page, f"s.frame === {10 * FPS}")
    kb.press("Shift+ArrowLeft")
    wait_state(page, "s.frame === 0")
    for _ in range(5):  # quick presses add up (seeks are coalesced, not dropped)
        kb.press("ArrowRight")
    wait_state(page, f"s.frame === {5 * FPS}")
    kb.press("Home")
    wait_state(page, "s.frame === 0")
    kb.press("ArrowUp")
    wait_state(page, "s.speed === 2")
    kb.press("ArrowDown")
    kb.press("ArrowDown")
    wait_state(page, "s.speed === 0.5")
    kb.press("3")
    wait_state(page, "s.speed === 16")
    kb.press("1")
    wait_state(page, "s.speed === 1")
    kb.press("Space")
    wait_state(page, "s.playing && s.frame > 10")
    kb.press("Space")
    wait_state(page, "!s.playing")
    kb.press("Home")
    wait_state(page, "s.frame === 0")
    assert page.locator("#help").is_hidden()
    kb.press("?")
    assert page.locator("#help").is_visible()
    assert "Shift" in page.locator("#help").inner_text()
    kb.press("Escape")
    assert page.locator("#help").is_hidden()
    assert page.locator("#board-rows").get_attribute("data-mode") == "gap"
    kb.press("g")
    assert page.locator("#board-rows").get_attribute("data-mode") == "interval"
    assert page.locator("#labels-toggle").get_attribute("aria-pressed") == "true"
    kb.press("l")
    assert page.locator("#labels-toggle").get_attribute("aria-pressed") == "false"


def test_leaderboard_shows_tyres_pits_grid_changes_and_fastest_lap(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    wait_state(page, "s.frame === 0")
    row = page.locator('#board-rows .row[data-code="D00"]')
    assert row.locator(".tyre i").inner_text() == "M"
    assert row.locator(".gap").inner_text() == "Leader"
    last = page.locator(f'#board-rows .row[data-code="D0{N_DRIVERS - 1}"]')
    assert last.locator(".flags .pit").count() == 0
    page.evaluate(f"() => window.racecast.viewer.seek({PIT[0] + 10})")
    wait_state(page, f"s.frame === {PIT[0] + 10}")
    assert last.locator(".flags .pit").inner_text() == "PIT"
    page.evaluate(f"() => window.racecast.viewer.seek({PIT[1] + 10})")
    wait_state(page, f"s.frame === {PIT[1] + 10}")
    assert last.locator(".flags .pit").count() == 0
    assert last.locator(".tyre i").inner_text() == "H"
    page.evaluate("() => window.racecast.viewer.seek(30 * 25)")
    wait_state(page, "s.frame === 750")
    d5 = page.locator('#board-rows .row[data-code="D05"]')
    assert d5.locator(".delta").inner_text().startswith("▲")  # faster car, started last
    assert row.locator(".delta").inner_text().startswith("▼")
    page.evaluate(f"() => window.racecast.viewer.seek({N_FRAMES - 1})")
    wait_state(page, f"s.frame === {N_FRAMES - 1}")
    assert page.locator("#board-rows .flags .fl").count() == 1  # every car's last lap is 52.3 s: one marker
    page.click("#gap-toggle")
    assert page.locator("#board-rows").get_attribute("data-mode") == "interval"
    page.keyboard.press("Space")  # after a mouse click on a control, Space still plays
    wait_state(page, "s.playing")
    assert page.locator("#board-rows").get_attribute("data-mode") == "interval"


def test_reconnects_and_resumes_after_the_server_restarts(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server)
    # Paused at a known frame: after the restart the viewer is back on exactly that frame.
    page.evaluate("() => window.racecast.viewer.seek(1000)")
    wait_state(page, "s.frame === 1000")
    server.stop()
    wait_state(page, "!s.connected")
    page.locator("#reconnect").wait_for(state="visible", timeout=WAIT_MS)
    time.sleep(0.5)  # a few reconnect attempts fail while the server is gone
    server.start()
    wait_state(page, "s.connected && s.reconnects === 1 && s.frame === 1000", timeout=2 * WAIT_MS)
    assert page.locator("#reconnect").is_hidden()
    assert not state(page)["playing"]
    # Playing: it comes back playing, from where it was (not from the start).
    page.click("#play")
    wait_state(page, "s.playing && s.frame > 1050")
    server.restart()
    wait_state(page, "s.connected && s.reconnects === 2", timeout=2 * WAIT_MS)
    at = state(page)["frame"]
    assert at >= 1050
    wait_state(page, f"s.playing && s.frame > {at + 25}")
    assert page.locator("#conn").get_attribute("data-connected") == "true"


def test_unknown_replay_shows_an_error(new_page: Callable[..., Page], server: Server) -> None:
    page = new_page()
    page.goto(f"{server.url}/?replay=no-such-race")
    page.locator("#error").wait_for(state="visible", timeout=WAIT_MS)
    assert page.locator("#error-title").inner_text() == "Replay not found"
    assert "no-such-race" in page.locator("#error-text").inner_text()
    assert page.locator("#loading").is_hidden()


def test_refused_encoding_shows_the_servers_reason(new_page: Callable[..., Page], server: Server) -> None:
    page = new_page()
    page.goto(f"{server.url}/?replay=demo&encoding=nope")
    page.locator("#error").wait_for(state="visible", timeout=WAIT_MS)
    assert page.locator("#error-title").inner_text() == "Cannot show this replay"
    assert "nope" in page.locator("#error-text").inner_text()
    assert state(page)["reconnects"] == 0 and not state(page)["connected"]


@pytest.mark.parametrize("width,height", [(1280, 720), (390, 844)])
def test_layout_fits_desktop_and_phone(new_page: Callable[..., Page], server: Server, width: int, height: int) -> None:
    page = open_viewer(new_page, server, **{"width": width, "height": height})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width, "horizontal scrolling"
    for sel in ("#track", "#play", "#scrubber", "#clock", "#lap"):
        box = page.locator(sel).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, sel
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, sel
    track = page.locator("#track").bounding_box()
    assert track is not None and track["height"] >= 250
    if width >= 1280:  # desktop: everything on one screen, nothing below the fold
        for sel in ("#board-rows", "#telemetry", "#feed", "#play"):
            box = page.locator(sel).bounding_box()
            assert box is not None and box["y"] + box["height"] <= height + 1, sel


# -- every encoding shows the right data; chunk mode's own behaviour --------------------------------------


SNAPSHOT_JS = """() => {
    const v = window.racecast.viewer, f = v.cur;
    return {
        frame: v.state.frame,
        clock: Number(document.querySelector('#clock').dataset.frame),
        scrubber: Number(document.querySelector('#scrubber').dataset.frame),
        board: Object.fromEntries([...document.querySelectorAll('#board-rows .row')].map((r) => [r.dataset.code, Number(r.dataset.position)])),
        cars: Object.fromEntries(Object.entries(f.drivers).map(([c, d]) => [c, [d.x, d.y]])),
        drawn: Object.fromEntries([...v.map.screen].map(([c, p]) => [c, [...p, ...v.map.project(f.drivers[c].x, f.drivers[c].y)]])),
        playing: v.state.playing,
    };
}"""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_frame_shown_matches_the_bundle(new_page: Callable[..., Page], server: Server, encoding: str) -> None:
    """Clock, scrubber, leaderboard and car positions all show the bundle's data for the frame on screen."""
    with open_bundle(server.data / "demo") as b:
        codes = [d["code"] for d in b.manifest["drivers"]]
        pos, xs, ys = (b.array(n).copy() for n in ("position", "x", "y"))

    def check(snap: dict[str, Any]) -> None:
        i = snap["frame"]
        assert snap["clock"] == snap["scrubber"] == i
        assert snap["board"] == {c: int(pos[i, d]) for d, c in enumerate(codes)}, f"leaderboard at frame {i}"
        for d, c in enumerate(codes):
            assert snap["cars"][c] == pytest.approx([float(xs[i, d]), float(ys[i, d])], abs=0.02), f"{c} at frame {i}"

    page = open_viewer(new_page, server, f"&encoding={encoding}&play=1&speed=4")
    wait_state(page, "s.playing && s.frame > 100")
    seen = set()
    for _ in range(8):  # while playing: whatever frame is on screen, the page agrees with the bundle
        snap = page.evaluate(SNAPSHOT_JS)
        check(snap)
        seen.add(snap["frame"])
        page.wait_for_timeout(120)
    assert len(seen) >= 3, f"playback did not advance: {sorted(seen)}"
    page.keyboard.press("Space")
    wait_state(page, "!s.playing")
    for target in (1234, 40, N_FRAMES - 1):  # paused after seeks: the map draws the cars exactly there
        page.evaluate(f"() => window.racecast.viewer.seek({target})")
        wait_state(page, f"s.frame === {target}")
        page.wait_for_timeout(250)  # the last animation frame is drawn
        snap = page.evaluate(SNAPSHOT_JS)
        check(snap)
        for c, (px, py, fx, fy) in snap["drawn"].items():
            assert (px, py) == pytest.approx((fx, fy), abs=0.5), f"{c} drawn away from its position at frame {target}"


def test_chunk_mode_plays_at_about_real_time(new_page: Callable[..., Page], server: Server) -> None:
    page = open_viewer(new_page, server, "&encoding=chunks&play=1")
    wait_state(page, "s.playing && s.frame > 10")
    rate = frames_per_second(page, 2.0)
    assert 0.5 * FPS < rate < 2 * FPS, f"{rate:.1f} frames/s at 1x (the replay has {FPS})"
    st = state(page)
    assert st["encoding"] == "chunks" and not st["buffering"]
    assert st["frames_received"] % CHUNK == 0  # whole chunks only


def test_chunk_mode_ignores_chunks_from_before_a_seek(new_page: Callable[..., Page], server: Server) -> None:
    """Chunks from the old position (arriving late, or while the seek awaits its reply) are never held or shown."""
    page = open_viewer(new_page, server, "&encoding=chunks")
    page.evaluate("() => window.racecast.viewer.seek(1500)")
    wait_state(page, "s.frame === 1500 && !s.buffering")
    page.evaluate(
        """() => {
            const v = window.racecast.viewer, ingest = v._ingest.bind(v);
            window.old = v.buf.chunks.get(60);  // frames 1500-1524
            window.shown = [];
            v._ingest = (f) => { window.shown.push(f.frame_index); ingest(f); };
            v.seek(300);
            v._chunk(window.old);  // arrives before the seek's reply: from the old position
        }"""
    )
    wait_state(page, "s.frame === 300 && !s.buffering")
    held = page.evaluate("() => { const v = window.racecast.viewer; v._chunk(window.old); return v.buf.held(); }")  # late
    assert 60 not in held and 12 in held, held
    page.keyboard.press("Space")
    wait_state(page, "s.playing && s.frame > 330")
    shown = page.evaluate("() => window.shown")
    assert shown[0] == 300 and shown == sorted(shown) and max(shown) < 1000, shown


def test_chunk_mode_holds_the_last_frame_while_buffering_then_resumes_there(new_page: Callable[..., Page], server: Server) -> None:
    """A chunk that does not come: the picture holds (no jump), a banner says so, the viewer asks
    for it again (a seek to the playhead) and goes on from where it held."""
    page = open_viewer(new_page, server, "&encoding=chunks")
    page.evaluate(
        """() => {
            const v = window.racecast.viewer, chunk = v._chunk.bind(v), ingest = v._ingest.bind(v);
            // Chunks from the fourth on are lost in transit until the viewer asks again.
            v._chunk = (frames) => { if (frames[0].frame_index < 75 || v.state.resyncs > 0) chunk(frames); };
            window.shown = [];
            v._ingest = (f) => { window.shown.push(f.frame_index); ingest(f); };
        }"""
    )
    page.keyboard.press("Space")
    wait_state(page, "s.playing && s.buffering")
    page.locator("#buffering").wait_for(state="visible", timeout=WAIT_MS)
    held = state(page)["frame"]
    assert 60 <= held <= 74, held  # a frame of the chunks received
    wait_state(page, f"s.resyncs >= 1 && s.frame > {held + 25} && !s.buffering")
    assert page.locator("#buffering").is_hidden()
    shown = page.evaluate("() => window.shown")
    assert shown == sorted(shown), shown
    after = shown[shown.index(held) + 1]  # nothing was shown for the >= 1 s until the viewer asked again
    assert held < after <= 80, f"resumed at {after} after holding {held}: {shown}"
    assert state(page)["resyncs"] == 1


def test_chunk_mode_buffer_is_bounded(new_page: Callable[..., Page], server: Server) -> None:
    """At 16x the server pushes chunks fast; the viewer holds a few around the playhead, never more."""
    page = open_viewer(new_page, server, "&encoding=chunks&speed=16&play=1")
    wait_state(page, "s.playing && s.frame > 200")
    most, behind, samples = page.evaluate(
        """() => new Promise((done) => {
            const v = window.racecast.viewer, t0 = performance.now();
            let most = 0, behind = 0, samples = 0;
            const sample = () => {
                const held = v.buf.held(), k = Math.floor(v.state.frame / 25);
                most = Math.max(most, held.length);
                behind = Math.max(behind, held.filter((c) => c < k - 1).length);
                samples += 1;
                if (performance.now() - t0 < 1500 && v.state.playing) requestAnimationFrame(sample);
                else done([most, behind, samples]);
            };
            requestAnimationFrame(sample);
        })"""
    )
    assert samples > 10
    assert 2 <= most <= 12, f"held up to {most} chunks"
    assert behind == 0, "chunks behind the playhead were kept"


def test_chunk_mode_receives_a_small_fraction_of_the_bytes_of_frame_modes(new_page: Callable[..., Page], server: Server) -> None:
    """Bytes received per frame of replay played at 1x: chunks are far below msgpack frames (bandwidth, not timing)."""
    pages = {e: open_viewer(new_page, server, f"&encoding={e}") for e in ENCODINGS}
    start = {}
    for e, page in pages.items():
        wait_state(page, "s.frame === 0")
        start[e] = state(page)
        page.keyboard.press("Space")
    rates = {}
    for e, page in pages.items():
        wait_state(page, "s.playing && s.frame >= 75")
        page.keyboard.press("Space")
        wait_state(page, "!s.playing")
        page.wait_for_timeout(200)
        end = state(page)
        rates[e] = (end["bytes_received"] - start[e]["bytes_received"]) / (end["frame"] - start[e]["frame"])
    print("bytes received per frame played at 1x:", {e: round(r) for e, r in rates.items()})
    assert all(r > 0 for r in rates.values()), rates
    assert rates["chunks"] < rates["msgpack"] / 5, rates
    assert rates["compact"] < rates["msgpack"], rates


@pytest.mark.parametrize("starved_ms", [0, 500], ids=["steady", "starved-decoder"])
def test_chunk_mode_plays_through_at_64x(new_page: Callable[..., Page], server: Server, starved_ms: int) -> None:
    """Over 25x the server pushes one chunk per tick and skips the rest: the viewer goes on from the
    chunks it gets (as frame modes skip frames) instead of waiting for chunks that never come.

    "starved-decoder" holds every chunk from the fourth on for ``starved_ms`` and then delivers them
    at once, as a tab starved of CPU does: the playhead waited for the late chunk meanwhile, so the
    server is ahead of it; the viewer follows the server (a chunk past its window moves the
    playhead there) rather than dropping all it is sent and stalling until a resync (which, after
    the server's end of replay, used to leave the page paused mid-race). The hold is half the
    resync delay (1 s), so the test does not depend on the machine's speed."""
    page = open_viewer(new_page, server, "&encoding=chunks")
    page.evaluate(
        """(starvedMs) => {
            const v = window.racecast.viewer, ingest = v._ingest.bind(v), chunk = v._chunk.bind(v);
            window.shown = [];
            v._ingest = (f) => { window.shown.push(f.frame_index); ingest(f); };
            let n = 0, held = null;
            v._chunk = (frames) => {
                if (held) return void held.push(frames);
                if (starvedMs && v.state.speed === 64 && ++n === 4) {
                    held = [frames];
                    setTimeout(() => { const q = held; held = null; q.forEach(chunk); }, starvedMs);
                    return;
                }
                chunk(frames);
            };
        }""",
        starved_ms,
    )
    page.keyboard.press("4")
    wait_state(page, "s.speed === 64")
    page.keyboard.press("Space")
    wait_state(page, f"!s.playing && s.frame === {N_FRAMES - 1}", timeout=2 * WAIT_MS)
    st = state(page)
    shown = page.evaluate("() => window.shown")
    assert shown == sorted(shown) and len(shown) >= 10, shown
    assert st["resyncs"] == 0 and st["chunks_skipped"] > 0, st


def test_chunk_mode_without_decompression_stream_asks_for_raw_chunks(browser: Browser, server: Server, console_errors: list[str]) -> None:
    """A browser that cannot inflate gzip asks for identity chunks and plays them all the same."""
    ctx = browser.new_context()
    try:
        ctx.add_init_script("delete globalThis.DecompressionStream;")
        page = ctx.new_page()
        page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
        page.goto(f"{server.url}/?replay=demo&play=1")
        wait_state(page, "s.loaded && s.playing && s.frame > 50")
        assert state(page)["encoding"] == "chunks"
        assert "compression=identity" in page.evaluate("() => window.racecast.viewer.conn.url")
        snap = page.evaluate(SNAPSHOT_JS)
        with open_bundle(server.data / "demo") as b:
            assert snap["board"]["D00"] == int(b.array("position")[snap["frame"], 0])
    finally:
        ctx.close()
    assert console_errors == []
