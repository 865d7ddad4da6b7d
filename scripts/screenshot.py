#!/usr/bin/env python3
"""Take the README's screenshot: the viewer mid-race in Chromium at 1280x720 -> docs/screenshot.png.

Starts ``racecast serve`` on a free port (simulating the demo race into a temporary data
directory unless ``--data`` already holds the replay), opens the viewer a few minutes before
the chosen moment, fast-forwards so the telemetry chart has laps to show, selects the two
leaders and saves the picture. Run it again (``make screenshot``) whenever the viewer changes.

    python scripts/screenshot.py [--data DIR] [--replay demo] [--at 0.45] [--out docs/screenshot.png]
                                 [--charts gaps|positions|laptimes|strategy|compare]   (open the charts panel)
                                 [--compare-laps fastest,same]   (compare: the lap picker's choices)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from playwright.sync_api import sync_playwright  # noqa: E402

from racecast.bundle import DataDir, open_bundle  # noqa: E402

CHROMIUM = os.environ.get("RACECAST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WARMUP_RACE_SECONDS = 200.0  # race time replayed before the shot (about two laps of telemetry history)
WARMUP_SPEED = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server did not answer at {url} within {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="data directory holding the replay (default: a temporary one with the demo race)")
    ap.add_argument("--replay", default="demo", help="replay id (default: demo)")
    ap.add_argument("--laps", type=int, default=57, help="laps of the demo race when it has to be simulated")
    ap.add_argument("--at", type=float, default=0.45, help="moment of the shot as a fraction of the race (default: 0.45)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--size", default="1280x720", help="viewport WxH (default: 1280x720)")
    ap.add_argument("--charts", choices=("gaps", "positions", "laptimes", "strategy", "compare"), help="open the charts panel on this chart")
    ap.add_argument("--compare-laps", default="fastest,fastest", help="compare: the two leaders' laps, e.g. 20,same (default: fastest,fastest)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="racecast-shot-") as tmp:
        store = DataDir(args.data or tmp)
        if not store.exists(args.replay):
            if args.replay != "demo":
                raise SystemExit(f"no replay {args.replay!r} in {store.root}")
            from racecast.cli import build_demo

            try:
                build_demo(store, laps=args.laps)
            except ImportError as e:
                raise SystemExit(f"cannot simulate the demo race ({e}); pass --data DIR --replay ID for an existing bundle")
        with open_bundle(store.path_of(args.replay)) as b:
            duration = b.duration
        shot_t = max(0.0, args.at * duration)
        start_t = max(0.0, shot_t - WARMUP_RACE_SECONDS)

        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        server = subprocess.Popen(
            [sys.executable, "-m", "racecast.cli", "serve", "--data", str(store.root), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(base + "/api/replays", server)
            w, h = (int(v) for v in args.size.split("x"))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": w, "height": h})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{base}/?replay={args.replay}&t={start_t:.1f}&speed={WARMUP_SPEED}&play=1")
                page.wait_for_function("() => window.racecast && window.racecast.state.playing", timeout=30_000)
                page.wait_for_function(
                    f"() => window.racecast.state.clock >= {shot_t - 2:.1f} || window.racecast.state.frame >= {b.n_frames - 1}",
                    timeout=int(1000 * (WARMUP_RACE_SECONDS / WARMUP_SPEED + 30)),
                    polling=100,
                )
                page.keyboard.press("1")  # back to 1x for the shot
                page.evaluate(
                    """() => {
                        const v = window.racecast.viewer, cars = v.cur.drivers;
                        const top = Object.keys(cars).sort((a, b) => cars[a].position - cars[b].position).slice(0, 2);
                        top.forEach((c, i) => v.select(c, i > 0));
                    }"""
                )
                if args.charts:
                    page.keyboard.press("c")
                    page.select_option("#chart-kind", args.charts)
                    if args.charts == "compare":
                        for side, choice in zip("ab", args.compare_laps.split(",")):
                            page.select_option(f"#compare-lap-{side}", choice.strip())
                    done = "dataset.compare" if args.charts == "compare" else "dataset.series"
                    page.wait_for_function(f"() => document.querySelector('#charts').{done} !== undefined")
                page.mouse.move(w / 2, 5)  # no hover effects in the picture
                if args.charts == "compare":  # ... except the comparison's cursor, with its readout
                    box = page.locator("#chart").bounding_box()
                    if box:
                        page.mouse.move(box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.5)
                        page.wait_for_function("() => document.querySelector('#charts').dataset.cursor !== undefined")
                page.wait_for_timeout(1500)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                state = page.evaluate("() => ({...window.racecast.state})")
                browser.close()
            if errors:
                raise SystemExit("the browser logged errors:\n" + "\n".join(errors))
            print(f"wrote {args.out} ({args.replay}, lap {state['lap']}, race clock {state['clock']:.0f} s)")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
