"""Storage benchmark: bundle format 2 (every stream stored) against format 3 (chunks stored, the rest derived), one run.

    .venv/bin/python -m benchmarks.storage [--laps 57] [--real DIR] [--out docs/performance.md]

For the simulated race and every real race under ``--real`` (default ../shared/realdata, the
``table.parquet`` of each session): write time and peak RSS of an ingest in a child process
per format, bundle size per stream, open time (fresh process) and bytes read, verify time.
For the simulated race also: the cost of deriving a block per stream, the serving CPU per
delivered frame per mode (the engine's calls, no sockets: V viewers spread over the race,
cold cache) for the format-2 mmap design racecast had before (``before``), format 2 read
with pread blocks and format 3, and the sizes of the alternatives measured for the design.
Numbers go to stdout as JSON and into the "Storage" section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import mmap
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import machine_summary, replace_section

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
from racecast.ingest_memory import tune_for_ingest
tune_for_ingest()  # as `racecast ingest` does
from racecast.bundle import write_bundle
src, fmt, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
if src.startswith("sim:"):
    from racecast.sources.simulate import simulate_race
    race = simulate_race(laps=int(src[4:]), seed=0, id="bench")
else:
    from racecast.sources.table import load_table
    race = load_table(src, id="bench")
t1 = time.perf_counter()
rss_source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
write_bundle(race, out, format_version=fmt, overwrite=True)
t2 = time.perf_counter()
print(json.dumps({"source_s": round(t1 - t0, 2), "write_s": round(t2 - t1, 2), "frames": race.n_frames,
                  "drivers": race.n_drivers, "peak_rss_mb_source": round(rss_source),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""

OPEN_PROBE = """
import sys, time
from racecast.bundle import open_bundle
def rchar():
    return int(open('/proc/self/io').read().split('rchar: ')[1].split()[0])
r0 = rchar(); t1 = time.perf_counter()
b = open_bundle(sys.argv[1])
t2 = time.perf_counter(); r1 = rchar()
print(f"{(t2 - t1) * 1e3:.3f} {r1 - r0}")
"""


def child_ingest(src: str, fmt: int, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, src, str(fmt), str(out)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def open_in_fresh_process(path: Path) -> tuple[float, int]:
    runs = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", OPEN_PROBE, str(path)], capture_output=True, text=True, check=True)
        ms, nbytes = out.stdout.split()
        runs.append((float(ms), int(nbytes)))
    runs.sort()
    return runs[2]


def bundle_facts(path: Path) -> dict:
    from racecast.bundle import open_bundle

    b = open_bundle(path)
    t = time.perf_counter()
    b.verify()
    verify_s = time.perf_counter() - t
    files = {k: int(v) for k, v in b.manifest["files"].items()}
    streams = {n: int(s.info["bytes"]) for n, s in b.streams.items() if not s.derived}
    arrays = sum(v for k, v in files.items() if k.startswith("arrays/"))
    ms, nread = open_in_fresh_process(path)
    out = {"bundle_bytes": b.size_bytes, "arrays_bytes": arrays, "stored_streams": streams, "verify_s": round(verify_s, 2),
           "open_ms": round(ms, 2), "open_bytes_read": nread, "channels": b.manifest.get("channels", {})}  # fmt: skip
    b.close()
    return out


def compare_ingest(src: str, tmp: Path, name: str) -> dict:
    res = {}
    for fmt in (2, 3):
        path = tmp / f"{name}-v{fmt}"
        res[f"v{fmt}"] = {**child_ingest(src, fmt, path), **bundle_facts(path)}
    return res


# -- derivation and serving ---------------------------------------------------------------------


def derive_costs(path: Path) -> dict:
    """Median time to build one block of each derived stream, per item and per frame."""
    from racecast.bundle import open_bundle

    b = open_bundle(path)
    out = {}
    for name in ("chunks", "msgpack", "compact", "chunks.br", "chunks.zst"):
        s = b.streams.get(name)
        if s is None:
            continue
        nb = -(-s.count // s.block_items)
        picks = sorted({int(x) for x in np.linspace(0, nb - 2, 9)})
        times = []
        for k in picks:
            t = time.perf_counter()
            blk = s.load_block(k)
            times.append((time.perf_counter() - t) / len(blk))
        per_item = float(np.median(times))
        out[name] = {"block_items": s.block_items, "us_per_item": round(per_item * 1e6, 1),
                     "us_per_frame": round(per_item * 1e6 / s.frames_per_item, 2)}  # fmt: skip
    b.close()
    return out


class MmapStream:
    """What racecast served before format 3: the v2 stream file memory-mapped, item i one slice."""

    def __init__(self, path: Path, name: str) -> None:
        m = json.loads((path / "manifest.json").read_text())["streams"][name]
        self.offsets = np.load(path / m["index"]).tolist()
        with open(path / m["data"], "rb") as f:
            self.mv = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        self.count = int(m["count"])
        self.framed = m.get("framing") == "websocket"

    def message(self, i: int) -> memoryview:
        o = self.offsets
        return self.mv[o[i] : o[i + 1]]

    def __getitem__(self, i: int) -> memoryview:
        from racecast.bundle.wsframe import header_size

        o = self.offsets
        a, b = o[i], o[i + 1]
        return self.mv[a + (header_size(b - a) if self.framed else 0) : b]


def serve_cpu(mode: str, streams: dict, n_frames: int, viewers: int, ticks: int, seed: int = 0) -> dict:
    """CPU per delivered frame of the engine's per-tick calls for ``viewers`` spread over the first half."""
    rng = random.Random(seed)
    starts = [rng.randrange(0, max(1, n_frames // 2)) for _ in range(viewers)]
    out = {}
    for design, stream in streams.items():
        if hasattr(stream, "forget_blocks"):
            stream.forget_blocks()  # a cold cache: block builds are part of the cost
        total = 0
        sink = []
        t0 = time.process_time()
        for k in range(ticks):
            for s0 in starts:
                i = min(n_frames - 1, s0 + k)
                if mode.startswith("compact"):
                    kk = i - i % 25
                    m = stream.message(i) if i == kk or k else b"".join((stream[kk], stream[i]))
                elif mode.startswith("chunks"):
                    if i % 25:
                        continue
                    m = stream[i // 25]
                else:
                    m = stream.message(i)
                sink.append(m)
                total += 1
            sink.clear()
        dt = time.process_time() - t0
        out[design] = round(dt / max(1, total) * 1e6, 2)
    return out


def serving(v2: Path, v3: Path, viewer_counts: list[int], ticks: int) -> dict:
    from racecast.bundle import open_bundle

    b2, b3 = open_bundle(v2), open_bundle(v3)
    n = b3.n_frames
    res = {}
    for nv in viewer_counts:
        row = {}
        for mode, name in (("msgpack", "msgpack"), ("compact", "compact"), ("chunks.gz", "chunks.gz")):
            streams = {"before": MmapStream(v2, name), "v2": b2.streams[name], "v3": b3.streams[name]}
            row[mode] = serve_cpu(mode, streams, n, nv, ticks)
        res[str(nv)] = row
    b2.close()
    b3.close()
    return res


# -- alternatives -------------------------------------------------------------------------------


def alternatives(v2: Path, v3: Path) -> dict:
    """Sizes of the designs not chosen, measured on this race."""
    from racecast.bundle import open_bundle

    out: dict = {}
    b2 = open_bundle(v2)
    ms = b2.streams["msgpack"]
    raw = gz = zs = 0
    try:
        import zstandard

        z = zstandard.ZstdCompressor(level=3)
    except ImportError:
        z = None
    for k in range(-(-ms.count // 250)):
        data = b"".join(bytes(ms[i]) for i in range(k * 250, min(ms.count, k * 250 + 250)))
        raw += len(data)
        gz += len(gzip.compress(data, 6, mtime=0))
        if z is not None:
            zs += len(z.compress(data))
    out["msgpack_raw"] = raw
    out["msgpack_gzip_blocks_250"] = gz
    if z is not None:
        out["msgpack_zstd3_blocks_250"] = zs
    ch = b2.streams["chunks"]
    chunks = [bytes(ch[i]) for i in range(ch.count)]
    out["chunks_raw"] = sum(map(len, chunks))
    out["chunks_gzip6"] = sum(len(gzip.compress(c, 6, mtime=0)) for c in chunks)
    if z is not None:
        out["chunks_zstd12"] = sum(len(zstandard.ZstdCompressor(level=12).compress(c)) for c in chunks)
        d = zstandard.train_dictionary(64 * 1024, chunks[:: max(1, len(chunks) // 2000)])
        zd = zstandard.ZstdCompressor(level=12, dict_data=d)
        out["chunks_zstd12_dict64k"] = sum(len(zd.compress(c)) for c in chunks) + len(d.as_bytes())
        blocks = [b"".join(chunks[k : k + 10]) for k in range(0, len(chunks), 10)]
        out["chunks_zstd12_blocks_10"] = sum(len(zstandard.ZstdCompressor(level=12).compress(b)) for b in blocks)
    out["compact_raw"] = int(b2.streams["compact"].info["bytes"])
    out["v2_arrays"] = sum(int(v) for k, v in b2.manifest["files"].items() if k.startswith("arrays/"))
    b2.close()
    return out


# -- report -------------------------------------------------------------------------------------


def _mb(n: float | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.1f} MB"


def markdown(r: dict, command: str) -> str:
    L = [
        "## Storage: bundle format 2 → 3",
        "",
        f"Command: `{command}` · {r['machine']} · load average {r['load_avg'][0]} at start, {r['load_avg_end'][0]} at the end"
        " (2 cores shared by the whole team: read times as orders of magnitude, ratios within a row as comparable)",
        "",
        "Format 2 stores every stream pre-encoded and the per-frame arrays; format 3 stores the gzip chunks"
        " (plus `t` and `leader_lap`) and derives msgpack, compact, identity, br and zstd chunks per block"
        " when served (docs/architecture.md, \"Bundle format\").",
        "",
        "### Size, ingest, open",
        "",
        "| race | format | bundle | ingest: source s / write s | peak RSS MB (source / whole ingest) | open ms (bytes read) | verify s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in r["races"].items():
        for fmt in ("v2", "v3"):
            x = res[fmt]
            L.append(f"| {name} ({x['frames']:,} frames × {x['drivers']}) | {fmt[1]} | {_mb(x['bundle_bytes'])} |"
                     f" {x['source_s']} / {x['write_s']} | {x['peak_rss_mb_source']} / {x['peak_rss_mb']} |"
                     f" {x['open_ms']} ({x['open_bytes_read']:,}) | {x['verify_s']} |")  # fmt: skip
    L += ["", "Stored bytes per stream (simulated race):", "", "| stream | format 2 | format 3 |", "|---|---|---|"]
    sim = r["races"][r["sim_name"]]
    names = list(dict.fromkeys([*sim["v2"]["stored_streams"], *sim["v3"]["stored_streams"]]))
    for n in names:
        a, b = sim["v2"]["stored_streams"].get(n), sim["v3"]["stored_streams"].get(n)
        L.append(f"| `{n}` | {_mb(a)} | {_mb(b) if b is not None else 'derived when served'} |")
    L.append(f"| arrays | {_mb(sim['v2']['arrays_bytes'])} | {_mb(sim['v3']['arrays_bytes'])} (`t`, `leader_lap`) |")
    ch = sim["v3"]["channels"]
    if ch:
        tot = sum(c["gzip_bytes"] for c in ch.values())
        L += ["", "Where format 3's bytes go, per channel (the channel's delta-coded varints alone, gzipped; `racecast inspect` shows the same):", "",
              "| channel | gzipped | share |", "|---|---|---|"]  # fmt: skip
        for n, c in sorted(ch.items(), key=lambda kv: -kv[1]["gzip_bytes"]):
            L.append(f"| `{n}` | {c['gzip_bytes'] / 1e6:.2f} MB | {100 * c['gzip_bytes'] / tot:.1f} % |")
    L += ["", "### Deriving a block (format 3, simulated race, median of 9 blocks)", "",
          "| stream | items per block | µs per item | µs per frame |", "|---|---|---|---|"]  # fmt: skip
    for n, d in r["derive"].items():
        L.append(f"| `{n}` | {d['block_items']} | {d['us_per_item']} | {d['us_per_frame']} |")
    L += ["", f"### Serving CPU per delivered frame (µs; {r['serve_ticks']} ticks at 1x, viewers spread over the first half of the simulated race, cold cache)", "",
          "What the engine calls per viewer and tick (`stream.message(i)`, the compact keyframe pair, a chunk every 25 frames), without sockets:"
          " *before* is format 2 memory-mapped (racecast before this change), *v2* format 2 read in checked pread blocks, *v3* format 3 derived blocks.", "",
          "| viewers | mode | before | v2 | v3 | v3 ÷ before |", "|---|---|---|---|---|---|"]  # fmt: skip
    for nv, row in r["serve"].items():
        for mode, c in row.items():
            ratio = c["v3"] / c["before"] if c["before"] else float("nan")
            L.append(f"| {nv} | {mode} | {c['before']} | {c['v2']} | {c['v3']} | ×{ratio:.1f} |")
    a = r["alternatives"]
    L += ["", "### Alternatives measured (simulated race)", "", "| design | bytes |", "|---|---|",
          f"| format 2 as it was (every stream + arrays) | {_mb(sim['v2']['bundle_bytes'])} |",
          f"| per-frame arrays alone (format 2) | {_mb(a['v2_arrays'])} |",
          f"| msgpack frames raw | {_mb(a['msgpack_raw'])} |",
          f"| msgpack frames, gzip blocks of 250 frames | {_mb(a['msgpack_gzip_blocks_250'])} |",
          f"| msgpack frames, zstd-3 blocks of 250 frames | {_mb(a.get('msgpack_zstd3_blocks_250'))} |",
          f"| compact frames raw | {_mb(a['compact_raw'])} |",
          f"| chunks raw | {_mb(a['chunks_raw'])} |",
          f"| chunks gzip-6 per chunk (**chosen**: what HTTP and most browsers take as is) | {_mb(a['chunks_gzip6'])} |",
          f"| chunks zstd-12 per chunk | {_mb(a.get('chunks_zstd12'))} |",
          f"| chunks zstd-12 with a 64 KiB dictionary trained at ingest (dictionary included) | {_mb(a.get('chunks_zstd12_dict64k'))} |",
          f"| chunks zstd-12 in blocks of 10 | {_mb(a.get('chunks_zstd12_blocks_10'))} |",
          f"| format 3 bundle | {_mb(sim['v3']['bundle_bytes'])} |"]  # fmt: skip
    return "\n".join(L) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--laps", type=int, default=57)
    p.add_argument("--real", type=Path, default=None, help="real-data pack [default: ../shared/realdata, found from a worktree too]")
    p.add_argument("--viewers", default="10,100")
    p.add_argument("--sessions", default="", help="comma-separated session names to ingest (default: every one with a table)")
    p.add_argument("--ticks", type=int, default=250)
    p.add_argument("--out", type=Path, default=None, help="markdown file whose Storage section is replaced")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if a.real is None:
        from racecast.accuracy.realdata import find_pack

        a.real = find_pack()
    r: dict = {"machine": machine_summary(), "load_avg": [round(x, 2) for x in os.getloadavg()], "races": {}}
    with tempfile.TemporaryDirectory(prefix="racecast-storage-") as d:
        tmp = Path(d)
        sim = f"simulated {a.laps} laps"
        r["sim_name"] = sim
        print(f"[storage] {sim}...", file=sys.stderr, flush=True)
        r["races"][sim] = compare_ingest(f"sim:{a.laps}", tmp, "sim")
        wanted = {x for x in a.sessions.split(",") if x}
        for table in sorted(a.real.glob("*/table.parquet")) if a.real.is_dir() else []:
            name = table.parent.name
            if wanted and name not in wanted:
                continue
            print(f"[storage] {name}...", file=sys.stderr, flush=True)
            r["races"][name] = compare_ingest(str(table), tmp, name)
            if a.json:  # partial results survive an interrupted run
                a.json.write_text(json.dumps(r, indent=1))
        v2, v3 = tmp / "sim-v2", tmp / "sim-v3"
        print("[storage] derivation, serving, alternatives...", file=sys.stderr, flush=True)
        r["derive"] = derive_costs(v3)
        r["serve_ticks"] = a.ticks
        r["serve"] = serving(v2, v3, [int(x) for x in a.viewers.split(",")], a.ticks)
        r["alternatives"] = alternatives(v2, v3)
    r["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(r, indent=1))
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    if a.out:
        cmd = "python -m benchmarks.storage" + (f" --laps {a.laps}" if a.laps != 57 else "")
        replace_section(a.out, "storage", markdown(r, cmd))


if __name__ == "__main__":
    main()
