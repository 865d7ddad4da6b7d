"""Serving seed-compatible (msgpack) viewers before and after bundle format 3, over several rounds.

A format-3 bundle ships only the chunks; the msgpack frames seed clients read are derived per
block of 100 frames the first time a process needs them, then shared from the memory cache and
kept on disk (``bundle/streams.py``, ``bundle/diskcache.py``). Issue 14's bar: CPU per delivered
msgpack frame at most :data:`TARGET` times what racecast spent before format 3, in the same run.

One round is a sweep of the streaming benchmark (:mod:`benchmarks.harness`): the full run's
points (window, warm-up, seekers) at the quick run's viewer counts, every design's server started fresh: ``racecast`` (cold: empty disk cache, every block built on first
use), ``racecast-warm`` (disk cache filled before the server starts: every start after the
first) and ``racecast-before`` (racecast as it was before format 3, from git, serving the race as
format 2). Single points on this shared 2-CPU machine drift by tens of percent, so the report
takes the median over rounds of each point's ratio. The cost of one block is measured in the
same run (``process_time``, best pass).

Run: ``python -m benchmarks.before_after [--rounds 3] [--before REV]`` (the section
``bench-storage`` of docs/performance.md and ``benchmarks/results/*-before-after.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import harness
from .common import ROOT
from .race import write_bench_bundle
from .report import replace_section

#: The last commit before bundle format 3 (format 2: every msgpack frame stored, memory-mapped).
BEFORE_REV = "81d3004~1"
DESIGNS = ("racecast", "racecast-warm", "racecast-before")
#: Issue 14: CPU per delivered msgpack frame at most this many times the design before format 3.
TARGET = 1.5
LABELS = {"racecast": "cold", "racecast-warm": "warm", "racecast-before": "before"}


def before_tree(rev: str, dest: Path) -> Path:
    """The ``src`` directory of racecast at ``rev``, unpacked from this checkout's git history."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"cannot read racecast at {rev} from git ({archive.stderr.decode().strip()}); "
                         "set RACECAST_BEFORE_SRC to the src directory of a checkout instead")  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "src"


def block_costs(laps: int, passes: int = 3) -> dict[str, Any]:
    """ms of CPU to build one msgpack block from the chunks, and to read one from the disk cache."""
    from racecast.bundle import diskcache, open_bundle

    saved = diskcache._DISK
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="racecast-blocks-") as tmp:
        path, _ = write_bench_bundle(Path(tmp) / "data", laps)
        try:
            for what, max_bytes in (("build", 0), ("disk_hit", diskcache.DEFAULT_MAX_BYTES)):
                diskcache._DISK = diskcache.DiskBlockCache(Path(tmp) / "disk", max_bytes)
                b = open_bundle(path)
                s = b.streams["msgpack"]
                n = -(-s.count // s.block_items)
                if what == "disk_hit":
                    for k in range(n):  # fill it (the timed passes below then only read)
                        s.fetch_block(k)
                best = float("inf")
                for _ in range(passes):
                    s.forget_blocks()  # the chunks too: a build decompresses them
                    t0 = time.process_time()
                    for k in range(n):
                        s.fetch_block(k)  # what a miss of the memory cache costs
                    best = min(best, (time.process_time() - t0) / n * 1e3)
                out[f"{what}_ms"] = round(best, 3)
                out["blocks"] = n
                out["frames_per_block"] = s.block_items
                out["passes"] = passes
                b.close()
        finally:
            diskcache._DISK = saved
    return out


def points_table(rounds: list[dict[str, Any]], designs: tuple[str, ...] = DESIGNS) -> list[dict[str, Any]]:
    """Per (speed, viewers): each design's µs per delivered frame per round, their medians, and the
    per-round ratios to ``racecast-before`` with their median and range."""
    keys: list[tuple[float, int]] = []
    per: dict[tuple[float, int], dict[str, list[float | None]]] = {}
    for r, doc in enumerate(rounds):
        for d in designs:
            for p in doc["designs"].get(d, {}).get("points", []):
                k = (float(p["speed"]), int(p["n"]))
                if k not in per:
                    keys.append(k)
                    per[k] = {x: [None] * len(rounds) for x in designs}
                per[k][d][r] = None if "error" in p else p.get("server_cpu_us_per_frame")
    out = []
    for k in sorted(keys):
        row: dict[str, Any] = {"speed": k[0], "viewers": k[1], "us_per_frame": per[k]}
        row["median_us"] = {d: _median(v) for d, v in per[k].items()}
        for d in designs:
            if d == "racecast-before":
                continue
            ratios = [a / b for a, b in zip(per[k][d], per[k]["racecast-before"]) if a and b]
            row[f"ratio_{LABELS[d]}"] = {
                "median": round(statistics.median(ratios), 3) if ratios else None,
                "min": round(min(ratios), 3) if ratios else None,
                "max": round(max(ratios), 3) if ratios else None,
                "rounds": len(ratios),
            }
        out.append(row)
    return out


def _median(v: list[float | None]) -> float | None:
    xs = [x for x in v if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def run(rounds: int, before_src: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    # The full benchmark's points (`racecast bench`: window, warm-up, seeks) at the quick sweep's viewer counts.
    full, quick = harness.PROFILES["full"], harness.PROFILES["quick"]
    # No paused point first: the cold server's background warm starts with the first point's viewers, so
    # that point measures what a cold server costs while it warms (a paused point before would hide it).
    prof = harness.Profile(**{**asdict(full), "name": "before-after", "laps": quick.laps, "viewers": quick.viewers,
                              "paused": [], "caps": {}, "profile": False})  # fmt: skip
    os.environ["RACECAST_BEFORE_SRC"] = before_src
    started = time.monotonic()
    doc: dict[str, Any] = {
        "command": f"python -m benchmarks.before_after --rounds {rounds}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "before_rev": BEFORE_REV, "target": TARGET, "designs": list(DESIGNS),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()], "rounds": [],
    }  # fmt: skip
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}")
        doc["rounds"].append(harness.run(prof, DESIGNS, doc["command"], log=log))
    doc["race"] = doc["rounds"][0]["race"]
    doc["profile"] = doc["rounds"][0]["profile"]
    doc["points"] = points_table(doc["rounds"])
    log("timing one block: built from the chunks, and read from the disk cache")
    doc["block"] = block_costs(prof.laps)
    doc["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    return doc


def _x(v: float | None) -> str:
    return "–" if v is None else f"×{v:.2f}"


def _us(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def render(doc: dict[str, Any], results: str = "") -> str:
    """The ``bench-storage`` section of docs/performance.md."""
    race, prof, blk = doc["race"], doc["profile"], doc["block"]
    n = len(doc["rounds"])
    lines = [
        "## Streaming before/after format 3",
        "",
        f"Command: `{doc['command']}` — {doc['date']}, took {doc['elapsed_s']:.0f} s"
        + (f". Raw results: [`{results}`]({results})" if results else "")
        + f". Load average {doc['load_avg_start'][0]} at start, {doc['load_avg_end'][0]} at end (2 CPUs, shared).",
        "",
        f"Race: {race['laps']} laps (simulator), {race['frames']:,} frames, {race['drivers']} cars. Each of the {n} rounds is a "
        f"streaming sweep with every server started fresh (server pinned to one CPU, load generator to the other; "
        f"{prof['warmup']} s warm-up, {prof['window']} s measured window per point; viewers start spread over the first "
        f"half of the race and {prof['seekers']} of them seek {prof['seeks']} times to random frames inside the window).",
        "",
        "*cold*: racecast serving the format-3 bundle with an empty disk block cache (a msgpack block is built from "
        "the chunks the first time the process needs it, and the whole replay in the background once a viewer plays). *warm*: the same with the disk cache filled before the "
        "server starts (every start after the first, every further worker). *before*: racecast at "
        f"`{doc['before_rev']}` (format 2: every frame stored, memory-mapped).",
        "",
        f"Server CPU µs per delivered msgpack frame (median of {n} rounds) and the median of the per-round ratios "
        "(range in brackets):",
        "",
        "| speed | viewers | cold | warm | before | cold ÷ before | warm ÷ before |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for p in doc["points"]:
        m, rc, rw = p["median_us"], p["ratio_cold"], p["ratio_warm"]
        lines.append(
            f"| {p['speed']:g}x | {p['viewers']:,} | {_us(m['racecast'])} | {_us(m['racecast-warm'])} | "
            f"{_us(m['racecast-before'])} | {_x(rc['median'])} [{_x(rc['min'])}–{_x(rc['max'])}] | "
            f"{_x(rw['median'])} [{_x(rw['min'])}–{_x(rw['max'])}] |"
        )
    lines += ["", f"One block of {blk['frames_per_block']} frames, measured in the same run (`process_time`, best of "
              f"{blk['passes']} passes over the race's {blk['blocks']} blocks): built from the chunks **{blk['build_ms']:.2f} ms**, "
              f"read from the disk cache **{blk['disk_hit_ms']:.2f} ms**.", ""]  # fmt: skip
    warms = [r["designs"].get("racecast", {}).get("warm") for r in doc["rounds"]]
    warms = [w for w in warms if isinstance(w, dict) and "cpu_s" in w]
    if warms:
        lines += [f"*cold*'s background warm (the server builds every msgpack block of the replay into the disk cache "
                  f"once a msgpack viewer first plays, at the lowest CPU priority, resting as long as it works): "
                  f"{_median([w['blocks'] for w in warms]):.0f} blocks, {_median([w['cpu_s'] for w in warms]):.2f} s of CPU "
                  f"over {_median([w['wall_s'] for w in warms]):.2f} s from the first play (median of {len(warms)} rounds), "
                  "once per replay per machine. It overlaps the first point's window; the later points find it done.", ""]  # fmt: skip
    lines += _verdict(doc)
    return "\n".join(lines) + "\n"


def _verdict(doc: dict[str, Any]) -> list[str]:
    target = doc["target"]
    out = []
    for label, key in (("Warm", "ratio_warm"), ("Cold", "ratio_cold")):
        ok = [p for p in doc["points"] if p[key]["median"] is not None and p[key]["median"] <= target]
        bad = [p for p in doc["points"] if p[key]["median"] is not None and p[key]["median"] > target]
        where = ", ".join(f"{p['speed']:g}x {p['viewers']:,} viewers {_x(p[key]['median'])}" for p in bad)
        first = doc["points"][0] if doc["points"] else None
        warming_then = label == "Cold" and any(isinstance(r["designs"].get("racecast", {}).get("warm"), dict) for r in doc["rounds"])
        note = (" (the first point: the server warms the replay during it)"
                if warming_then and len(bad) == 1 and bad[0] is first else "")  # fmt: skip
        out.append(f"- **{label}:** median ratio within ×{target:g} at {len(ok)} of {len(ok) + len(bad)} points"
                   + (f"; over it at {where}{note}." if bad else "."))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.before_after", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh sweeps of every design (the report takes medians)")
    p.add_argument("--before", default=BEFORE_REV, help="git revision of the racecast to compare with")
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="Markdown file whose bench-storage section is replaced")
    p.add_argument("--no-docs", action="store_true", help="write the JSON only")
    p.add_argument("--from-json", default=None, help="re-render the section from a results file")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    if a.from_json:
        json_path = Path(a.from_json).resolve()
        doc = json.loads(json_path.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="racecast-before-") as tmp:
            src = os.environ.get("RACECAST_BEFORE_SRC") or str(before_tree(a.before, Path(tmp)))
            doc = run(a.rounds, src)
        doc["before_rev"] = a.before
        harness.RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        json_path = harness.RESULTS / f"{stamp}-before-after.json"
        json_path.write_text(json.dumps(doc, indent=1))
        print(f"results: {json_path}")
    if not a.no_docs:
        out = Path(a.out)
        rel = os.path.relpath(json_path, out.parent) if json_path.is_relative_to(ROOT) else ""
        replace_section(out, "bench-storage", render(doc, rel))
    print("\n".join(_verdict(doc)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
