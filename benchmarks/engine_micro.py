"""Micro-benchmark of the engine's tick, sans I/O: CPU per viewer per tick for frame and chunk viewers.

    python -m benchmarks.engine_micro [--viewers 5000] [--seconds 20] [--out docs/performance.md]

Viewers of a real bundle (a tiny race, 10 drivers) play at 1x on a fake clock into
sinks that accept everything and keep nothing, framed like the direct path's.
Reports µs of CPU per tick and per viewer-second of race for frame-mode
(msgpack) and chunk-mode (gzip) viewers, and how many viewer visits the engine
made per viewer-second: what the chunk scheduler is for. No sockets, so this
isolates the engine's own cost; docs/performance.md has the end-to-end numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_summary, replace_section

from racecast.bundle import open_bundle, write_bundle
from racecast.feeds import make_feed
from racecast.playback import FakeClock, Playback
from racecast.protocol import Play
from racecast.server.engine import Engine, Viewer


class NullSink:
    """Accepts every frame (a socket with room), keeps nothing."""

    framed = True
    alive = True

    def offer(self, data) -> bool:  # noqa: ANN001
        return True

    def push(self, data) -> None:  # noqa: ANN001
        pass

    def post(self, text: str) -> None:
        pass

    def buffered(self) -> int:
        return 0


def measure(bundle, params: dict[str, str], viewers: int, seconds: float) -> dict[str, float]:  # noqa: ANN001
    clock = FakeClock()
    eng = Engine(clock=clock)
    for k in range(viewers):
        pb = Playback(bundle.n_frames, bundle.fps)
        feed = make_feed(bundle, pb, params)
        v = Viewer("m", pb, feed.stream, NullSink(), feed)  # type: ignore[arg-type]
        eng.viewers.add(v)
        pb.start()
        eng.command(v, Play(speed=1.0), clock.t + k * 1e-5)  # spread over a tick, like real connections
    ticks = round(seconds * eng.fps)
    visits0 = eng.visits
    cpu0 = time.process_time()
    for _ in range(ticks):
        eng.tick(clock.advance(eng.period))
    cpu = time.process_time() - cpu0
    return {
        "viewers": viewers,
        "ticks": ticks,
        "us_per_tick": round(cpu / ticks * 1e6, 1),
        "us_per_viewer_second": round(cpu / (viewers * seconds) * 1e6, 2),
        "visits_per_viewer_second": round((eng.visits - visits0) / (viewers * seconds), 2),
        "frames_sent": eng.frames_sent,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--reps", type=int, default=3, help="best of")
    ap.add_argument("--out", default="-", help="Markdown file whose 'engine-micro' section is replaced ('-': none)")
    a = ap.parse_args(argv)
    from benchmarks.race import tiny_race

    with tempfile.TemporaryDirectory() as d:
        race = tiny_race(n_frames=int((a.seconds + 10) * 25), n_drivers=10, race_id="micro")
        b = open_bundle(write_bundle(race, Path(d) / "micro"))
        out = {}
        for name, params in (("frames (msgpack)", {}), ("chunks (gzip)", {"mode": "chunks"})):
            runs = [measure(b, params, a.viewers, a.seconds) for _ in range(a.reps)]
            out[name] = min(runs, key=lambda r: r["us_per_tick"])
        b.close()
    print(json.dumps(out, indent=1))
    if a.out != "-":
        replace_section(Path(a.out), "engine-micro", markdown(out, a))
    return 0


def markdown(out: dict, a: argparse.Namespace) -> str:
    lines = [
        "## Engine tick without I/O",
        "",
        f"Command: `python -m benchmarks.engine_micro --viewers {a.viewers} --seconds {a.seconds:g} --out docs/performance.md` · "
        f"{machine_summary()} · {time.strftime('%Y-%m-%d')} · load average {os.getloadavg()[0]:.1f} (best of {a.reps}; "
        "a shared machine: read as upper bounds)",
        "",
        f"{a.viewers:,} viewers of one replay play at 1x on a fake clock into sinks that take everything (framed like "
        "the direct path's); the engine's own CPU per tick, without sockets. Chunk-mode viewers are filed in the "
        "timing wheel and visited when a chunk is due, not every tick.",
        "",
        "| mode | CPU µs per tick | CPU µs per viewer-second | visits per viewer-second | messages sent |",
        "|---|---|---|---|---|",
    ]
    for name, r in out.items():
        lines.append(f"| {name} | {r['us_per_tick']:,} | {r['us_per_viewer_second']} | {r['visits_per_viewer_second']} | "
                     f"{r['frames_sent']:,} |")  # fmt: skip
    if any(name.startswith("chunks") and r["visits_per_viewer_second"] > 1 for name, r in out.items()):
        lines += ["", "Visits above 1 per viewer-second in chunk mode are the lookahead filling at play (two chunks at once)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
