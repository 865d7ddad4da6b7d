"""Bandwidth benchmark: bytes per frame and per second of race for every encoding, and decode costs.

    .venv/bin/python -m benchmarks.bandwidth [--laps 10] [--out docs/performance.md]

Writes a bundle of a simulated race (the stand-in race of benchmarks/standin_race.py
while the simulator is not installed), then reports for msgpack, compact frames and
chunks (raw and each pre-compression): bytes per frame, KB/s per viewer at 1x,
stream size, ingest time, and decode time per frame in Python and in Node (the
viewer's decoder, src/racecast/viewer/compact.js). Numbers go to stdout as JSON
and into the "Bandwidth" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_summary, replace_section
from racecast.bundle import default_encoders, open_bundle, write_bundle
from racecast.bundle.chunks import decode_chunk
from racecast.bundle.compact import decode_compact
from racecast.bundle.msgpack_frames import decode_msgpack_frame
from racecast.race import Race

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "tests" / "js" / "compact_node.mjs"
SEED_BYTES_PER_FRAME = 5466  # the seed system, measured on this machine (issue 6)


def make_race(laps: int, seed: int) -> tuple[Race, str]:
    try:
        from racecast.sources.simulate import simulate_race
    except ImportError:
        from benchmarks.standin_race import standin_race

        return standin_race(laps=laps, seed=seed), "stand-in race (benchmarks/standin_race.py; simulator not installed)"
    return simulate_race(laps=laps, seed=seed, id="bandwidth"), "simulated race (racecast.sources.simulate)"


def _per_frame_us(fn, frames: int, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best / frames * 1e6, 2)


def run(laps: int, seed: int, sample_frames: int) -> dict:
    race, source = make_race(laps, seed)
    fps = race.fps
    r: dict = {"source": source, "laps": laps, "frames": race.n_frames, "drivers": race.n_drivers, "fps": fps,
               "load": os.getloadavg()[0]}  # fmt: skip
    encode_us = {}
    for enc in default_encoders():
        t = time.perf_counter()
        for _ in enc.encode(race):
            pass
        encode_us[enc.name] = round((time.perf_counter() - t) / race.n_frames * 1e6, 2)
    r["ingest_us_per_frame"] = encode_us  # chunk variants reuse the raw chunks computed for "chunks"
    with tempfile.TemporaryDirectory() as d:
        path = write_bundle(race, Path(d) / "bw")
        b = open_bundle(path)
        arrays = sum(v for k, v in b.manifest["files"].items() if k.startswith("arrays/"))
        r["arrays_bytes"] = arrays
        streams = {}
        for name, s in b.streams.items():
            nbytes = int(s.info["bytes"])
            per_frame = nbytes / race.n_frames
            streams[name] = {
                "bytes": nbytes,
                "bytes_per_item": round(nbytes / s.count, 1),
                "bytes_per_frame": round(per_frame, 1),
                "kb_per_s": round(per_frame * fps / 1000, 2),
                "vs_seed": round(SEED_BYTES_PER_FRAME / per_frame, 1),
            }
        r["streams"] = streams
        n = min(sample_frames, b.n_frames)
        ms = b.streams["msgpack"]
        cs = b.streams["compact"]
        ch = b.streams["chunks"]
        n_chunks = max(1, n // ch.frames_per_item)

        def compact_all() -> None:
            key = None
            for i in range(n):
                key = decode_compact(cs[i], key).key

        def compact_dicts() -> None:
            key = None
            for i in range(n):
                f = decode_compact(cs[i], key)
                key = f.key
                f.to_dict()

        r["python_decode_us_per_frame"] = {
            "msgpack": _per_frame_us(lambda: [decode_msgpack_frame(ms[i]) for i in range(n)], n),
            "compact (integer arrays)": _per_frame_us(compact_all, n),
            "compact (frame dicts)": _per_frame_us(compact_dicts, n),
            "chunks (integer arrays)": _per_frame_us(lambda: [decode_chunk(ch[c]) for c in range(n_chunks)], n_chunks * ch.frames_per_item),
            "chunks (frame dicts)": _per_frame_us(lambda: [decode_chunk(ch[c]).frames() for c in range(n_chunks)], n_chunks * ch.frames_per_item),
        }  # fmt: skip
        node = shutil.which("node")
        if node:
            out = subprocess.run([node, str(NODE_SCRIPT), "bench", str(path)], capture_output=True, text=True, check=True)
            r["node_decode"] = json.loads(out.stdout)
        b.close()
    return r


def markdown(r: dict, command: str) -> str:
    fps = r["fps"]
    s = r["streams"]
    rows = [
        ("msgpack (seed-compatible, default)", "msgpack"),
        ("compact frames (`?encoding=compact`)", "compact"),
        ("chunks, identity", "chunks"),
        ("chunks, gzip", "chunks.gz"),
        ("chunks, br", "chunks.br"),
        ("chunks, zstd", "chunks.zst"),
    ]
    lines = [
        "## Bandwidth",
        "",
        f"Command: `{command}` · {machine_summary()} · {time.strftime('%Y-%m-%d')} · "
        f"load average {r['load']:.1f} (a shared machine: read timings as upper bounds; sizes are exact)",
        "",
        f"{r['source']}: {r['laps']} laps, {r['frames']:,} frames × {r['drivers']} drivers at {fps} FPS.",
        f"Seed system for comparison: {SEED_BYTES_PER_FRAME:,} B per frame = {SEED_BYTES_PER_FRAME * fps / 1000:.1f} KB/s per viewer.",
        "Target: at most 4 KB/s per viewer at 1x for the full frame content.",
        "",
        "| encoding | bytes per frame | KB/s per viewer at 1x | × less than seed | stream size in bundle | ingest µs per frame |",
        "|---|---|---|---|---|---|",
    ]
    for label, name in rows:
        if name not in s:
            continue
        v = s[name]
        ing = r["ingest_us_per_frame"].get(name, "")
        lines.append(
            f"| {label} | {v['bytes_per_frame']:,} | {v['kb_per_s']} | {v['vs_seed']} | {v['bytes'] / 1e6:.2f} MB | {ing} |"
        )
    lines += [
        "",
        f"Bundle: arrays {r['arrays_bytes'] / 1e6:.1f} MB plus the streams above (every bundle carries all of them).",
        f"A keyframe of compact frames is sent once a second; chunks are {s['chunks']['bytes_per_item']:,} B raw, "
        f"{s.get('chunks.gz', {}).get('bytes_per_item', '?')} B gzip per second of race.",
        "",
        "Decode time per frame (best of 3):",
        "",
        "| decoder | µs per frame |",
        "|---|---|",
        *[f"| Python: {k} | {v} |" for k, v in r["python_decode_us_per_frame"].items()],
    ]
    n = r.get("node_decode")
    if n:
        lines += [
            f"| JS (Node {n['node']}): compact frames → frame objects | {n['compact_us_per_frame']:.1f} |",
            f"| JS: chunks → frame objects | {n['chunk_us_per_frame']:.1f} |",
            f"| JS: chunks → integer columns | {n['chunk_columns_us_per_frame']:.1f} |",
            f"| JS: gunzip of a gzip chunk (Node zlib) | {n['gunzip_us_per_frame']:.1f} |",
            "",
            f"In the browser's decoder that is {n['chunk_us_per_frame'] * fps / 1000:.2f} ms per second of race for chunks "
            f"and {n['compact_us_per_frame'] * fps / 1000:.2f} ms for compact frames (target: under 1 ms).",
        ]
    lines += [
        "",
        "Viewers per core in chunk mode are measured by the benchmark harness (branch `bench`): its clients",
        "connect with `?mode=chunks` and can check that every chunk arrives before the playhead reaches it",
        "with `racecast.chunk_client.ChunkPacer` (`late` counts chunks that did not).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-frames", type=int, default=5000, help="frames decoded for the timing")
    ap.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="Markdown file to update ('-' for none)")
    args = ap.parse_args()
    r = run(args.laps, args.seed, args.sample_frames)
    print(json.dumps(r, indent=1))
    if str(args.out) != "-":
        replace_section(args.out, "bandwidth", markdown(r, f"python -m benchmarks.bandwidth --laps {args.laps}"))


if __name__ == "__main__":
    main()
