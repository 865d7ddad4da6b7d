"""Ingest benchmark: simulate a full race, write its bundle, open it, and report the costs.

    .venv/bin/python -m benchmarks.ingest [--laps 57] [--out docs/performance.md]

Numbers go to stdout as JSON and into the "Ingest" section of docs/performance.md.
Timings are wall-clock on a shared machine: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_summary, replace_section
from racecast.bundle import default_encoders, open_bundle, write_bundle
from racecast.sources.simulate import simulate_race

OPEN_PROBE = """
import sys, time
t0 = time.perf_counter()
from racecast.bundle import open_bundle
t_import = time.perf_counter()
def rchar():
    return int(open('/proc/self/io').read().split('rchar: ')[1].split()[0])
r0 = rchar(); t1 = time.perf_counter()
b = open_bundle(sys.argv[1])
f = b.frame(b.n_frames // 2)
t2 = time.perf_counter(); r1 = rchar()
print(f"{(t2 - t1) * 1e3:.3f} {r1 - r0}")
"""


def open_in_fresh_process(path: Path) -> tuple[float, int]:
    """Open time (ms) and bytes read, in a new interpreter (nothing cached in Python)."""
    out = subprocess.run([sys.executable, "-c", OPEN_PROBE, str(path)], capture_output=True, text=True, check=True)
    ms, nbytes = out.stdout.split()
    return float(ms), int(nbytes)


def run(laps: int, seed: int) -> dict:
    t0 = time.perf_counter()
    race = simulate_race(laps=laps, seed=seed, id="bench")
    t_sim = time.perf_counter() - t0
    results: dict = {"laps": laps, "frames": race.n_frames, "drivers": race.n_drivers, "simulate_s": round(t_sim, 2)}
    encode_us = {}
    for enc in default_encoders():
        t = time.perf_counter()
        n = sum(1 for _ in enc.encode(race))
        encode_us[enc.name] = round((time.perf_counter() - t) / max(n, 1) / enc.frames_per_item * 1e6, 1)
    results["encode_us_per_frame"] = encode_us
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        path = write_bundle(race, Path(d) / "bench")
        results["write_s"] = round(time.perf_counter() - t, 2)
        opens = [open_in_fresh_process(path) for _ in range(5)]
        results["open_ms_median"] = round(sorted(o[0] for o in opens)[2], 2)
        results["open_bytes_read"] = sorted(o[1] for o in opens)[2]
        b = open_bundle(path)
        results["bundle_bytes"] = b.size_bytes
        results["streams"] = {
            name: {"bytes": int(s.info["bytes"]), "bytes_per_item": round(int(s.info["bytes"]) / s.count, 1), "items": s.count}
            for name, s in b.streams.items()
        }
        results["msgpack_bytes_per_frame"] = results["streams"]["msgpack"]["bytes_per_item"]
        t = time.perf_counter()
        b.verify()
        results["verify_s"] = round(time.perf_counter() - t, 2)
        b.close()
    return results


def markdown(r: dict, command: str) -> str:
    lines = [
        "## Ingest",
        "",
        f"Command: `{command}` · {machine_summary()} · {time.strftime('%Y-%m-%d')}",
        "",
        f"A {r['laps']}-lap simulated race: {r['frames']:,} frames × {r['drivers']} drivers.",
        "",
        "| step | result |",
        "|---|---|",
        f"| simulate | {r['simulate_s']} s |",
        *[f"| encode `{k}` at ingest | {v} µs per frame |" for k, v in r["encode_us_per_frame"].items()],
        f"| write bundle (all streams, fsync, hash) | {r['write_s']} s |",
        f"| open bundle (fresh process, median of 5) | {r['open_ms_median']} ms, {r['open_bytes_read'] / 1e6:.2f} MB read |",
        f"| verify (re-hash everything) | {r['verify_s']} s |",
        f"| bundle size | {r['bundle_bytes'] / 1e6:.1f} MB |",
        *[f"| stream `{k}` | {v['bytes_per_item']:,} B per item ({v['items']:,} items, {v['bytes'] / 1e6:.1f} MB) |" for k, v in r["streams"].items()],
        "",
        "Opening reads the manifest and the offset indexes only; frames and arrays are",
        "memory-mapped and paged in on first use.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laps", type=int, default=57)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="Markdown file to update ('-' for none)")
    args = ap.parse_args()
    r = run(args.laps, args.seed)
    print(json.dumps(r, indent=1))
    if str(args.out) != "-":
        cmd = f"python -m benchmarks.ingest --laps {args.laps}"
        replace_section(args.out, "ingest", markdown(r, cmd))


if __name__ == "__main__":
    main()
