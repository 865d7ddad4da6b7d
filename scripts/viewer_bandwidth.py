#!/usr/bin/env python3
"""Bytes the web viewer receives per second of replay at 1x, per mode (chunks, compact, msgpack).

Simulates a short race (20 cars) into a temporary data directory, starts ``racecast serve`` on a
free port, opens the viewer in Chromium once per mode, seeks mid-race, plays at 1x for a while and
reads the viewer's own byte counter (``window.racecast.state.bytes_received``: WebSocket message
payloads as the page receives them, before WebSocket framing and TCP/IP overhead) and the page's
main-thread task time (Chrome DevTools Protocol ``Performance.getMetrics`` ``TaskDuration``; the
decoding worker's time is not in it).

    python scripts/viewer_bandwidth.py [--seconds 8] [--laps 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from playwright.sync_api import sync_playwright  # noqa: E402
from screenshot import CHROMIUM, CHROMIUM_ARGS, free_port, wait_for  # noqa: E402

MODES = ("chunks", "compact", "msgpack")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="wall seconds played per mode (default 8)")
    ap.add_argument("--laps", type=int, default=3, help="laps of the simulated race (default 3)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "racecast.cli", "simulate", "--laps", str(args.laps), "--id", "bw", "--data", str(data)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "racecast.cli", "serve", "--data", str(data), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(url + "/api/replays", proc)
            rows = []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for mode in MODES:
                    page = browser.new_page(viewport={"width": 1280, "height": 720})
                    cdp = page.context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    task = lambda: next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "TaskDuration")  # noqa: E731
                    page.goto(f"{url}/?replay=bw&encoding={mode}&t=120")
                    page.wait_for_function("() => { const s = window.racecast && window.racecast.state; return s && s.loaded && s.frame >= 3000 && !s.buffering; }", timeout=30_000)
                    read = "() => ({b: window.racecast.state.bytes_received, f: window.racecast.state.frame})"
                    s0, t0, c0 = page.evaluate(read), time.monotonic(), task()
                    page.keyboard.press("Space")
                    time.sleep(args.seconds)
                    s1, t1, c1 = page.evaluate(read), time.monotonic(), task()
                    page.close()
                    nbytes, frames = s1["b"] - s0["b"], s1["f"] - s0["f"]
                    rows.append((mode, nbytes / (t1 - t0), nbytes / max(1, frames), frames / (t1 - t0), (c1 - c0) / (t1 - t0)))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"Viewer at 1x, {args.laps}-lap simulated race, 20 cars, {args.seconds:.0f} s per mode (incl. the lookahead pushed at play)\n")
    print("| mode | KB/s | bytes per frame played | frames/s shown | main thread busy |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode, rate, per_frame, fps, busy in rows:
        print(f"| {mode} | {rate / 1000:.1f} | {per_frame:.0f} | {fps:.1f} | {100 * busy:.0f}% |")


if __name__ == "__main__":
    main()
