"""Seed-style viewers against a real ``racecast serve``: the issue's 60 s runs and the CPU they cost.

Three parts, one server (a simulated race long enough for 60 s at 16x):

1. **Speeds.** One client behaving like the seed's (benchmarks/seed_client.py: seek on every
   frame it draws at 60 Hz, its own clock) plays ``--seconds`` at each of 0.5x, 1x, 2x, 4x and 16x,
   then scrubs five times paused. Reported: connected throughout, frames, commands, how far frames
   were behind the client's own position (race s), the longest wait for a scrub's frame, and the
   text messages the seed would have logged as unknown.
2. **CPU per viewer.** ``--viewers`` seed clients at 1x for ``--cpu-seconds``, then the same number of
   racecast-protocol viewers (play, no seeks) in the same way: server CPU (user + system, /proc) per
   viewer, and what a seed client's command stream adds.
3. **Flood.** A client sending ``{"action":"ping"}`` as fast as the socket takes them: how many commands
   the server applied, the CPU it spent until it closed the connection, and whether a playing viewer
   kept every frame meanwhile.

``python -m benchmarks.seed_viewers`` (about 6 minutes) writes benchmarks/results/<stamp>-seed-viewers.json
and the ``seed-viewers`` section of docs/performance.md. ``--quick`` for a short smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from benchmarks.harness import Server
from benchmarks.procstat import cpu_seconds
from benchmarks.report import replace_section
from benchmarks.seed_client import RAF_HZ, SeedClient, run_one

ROOT = Path(__file__).resolve().parent.parent
SPEEDS = (0.5, 1.0, 2.0, 4.0, 16.0)
SID = "2026_0_R"
FPS = 25  # racecast serves every replay at 25 frames a second


def build_data(laps: int) -> Path:
    from racecast.bundle import write_bundle
    from racecast.sources.simulate import simulate_race

    d = Path(tempfile.mkdtemp(prefix="racecast-seedbench-"))
    write_bundle(simulate_race(laps=laps, seed=3), d / SID)
    return d


async def speeds_part(url: str, seconds: float) -> list[dict[str, Any]]:
    out = []
    for s in SPEEDS:
        r = await run_one(url, s, seconds)
        print(f"  {s:>4g}x: {json.dumps(r)}", flush=True)
        out.append(r)
    return out


async def _playing_viewers(url: str, n: int, seconds: float, seed: bool) -> dict[str, Any]:
    """n viewers playing at 1x for ``seconds``; seed ones drive with their seek-per-frame stream."""
    clients: list[SeedClient] = []
    plain: list[Any] = []
    frames = [0] * n
    readers: list[asyncio.Task[Any]] = []
    for k in range(n):
        if seed:
            c = SeedClient(url)
            await c.open()
            await asyncio.wait_for(c.loaded.wait(), 30)
            clients.append(c)
        else:
            ws = await websockets.connect(url + "?encoding=msgpack", max_size=2**24, ping_interval=None)
            plain.append(ws)

            async def read(ws: Any = ws, k: int = k) -> None:
                async for m in ws:
                    frames[k] += isinstance(m, bytes)

            readers.append(asyncio.ensure_future(read()))
    await asyncio.sleep(1.0)
    for c in clients:
        await c.play(1.0)
    for ws in plain:
        await ws.send(json.dumps({"action": "play", "speed": 1}))
    await asyncio.sleep(1.0)  # warm-up
    return {"clients": clients, "plain": plain, "frames": frames, "readers": readers}


async def cpu_part(server: Server, url: str, n: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"viewers": n, "seconds": seconds}
    for label, seed in (("seed", True), ("racecast", False)):
        st = await _playing_viewers(url, n, seconds, seed)
        c0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
        cmd0 = sum(c.stats.commands for c in st["clients"])
        f0 = sum(c.stats.frames for c in st["clients"]) + sum(st["frames"])
        await asyncio.sleep(seconds)
        c1, t1 = cpu_seconds(server.proc.pid), time.monotonic()
        cmds = sum(c.stats.commands for c in st["clients"]) - cmd0
        frames = sum(c.stats.frames for c in st["clients"]) + sum(st["frames"]) - f0
        wall = t1 - t0
        closed = sum(c.stats.closed is not None for c in st["clients"])
        out[label] = {
            "server_cpu_pct": round(100 * (c1 - c0) / wall, 2),
            "cpu_pct_per_viewer": round(100 * (c1 - c0) / wall / n, 3),
            "commands_per_s": round(cmds / wall, 1),
            "frames_per_viewer_per_s": round(frames / wall / n, 2),
            "closed": closed,
            "lag_max_s": max((max(c.stats.lags) for c in st["clients"] if c.stats.lags), default=None),
        }
        print(f"  {label}: {json.dumps(out[label])}", flush=True)
        for c in st["clients"]:
            await c.close()
        for ws in st["plain"]:
            await ws.close()
        for r in st["readers"]:
            r.cancel()
        await asyncio.sleep(1.0)
    s, r = out["seed"], out["racecast"]
    extra = s["server_cpu_pct"] - r["server_cpu_pct"]
    out["command_us"] = round(1e4 * extra / s["commands_per_s"], 1) if s["commands_per_s"] and extra > 0 else None
    return out


async def flood_part(server: Server, url: str) -> dict[str, Any]:
    other = await websockets.connect(url + "?encoding=msgpack", max_size=2**24)
    await other.send(json.dumps({"action": "play", "speed": 1}))
    got: list[int] = []

    async def read_other() -> None:
        import msgpack

        async for m in other:
            if isinstance(m, bytes):
                got.append(msgpack.unpackb(m)["frame_index"])

    reader = asyncio.ensure_future(read_other())
    await asyncio.sleep(1.0)
    flood = await websockets.connect(url + "?encoding=msgpack", max_size=2**24)
    c0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
    sent = 0
    pongs = 0
    code = None
    msg = json.dumps({"action": "ping"})

    async def read_flood() -> None:
        nonlocal pongs, code
        try:
            async for m in flood:
                pongs += isinstance(m, str) and '"pong"' in m
        except websockets.ConnectionClosed:
            pass
        code = flood.close_code

    fr = asyncio.ensure_future(read_flood())
    try:
        while time.monotonic() - t0 < 10:
            await flood.send(msg)
            sent += 1
            if sent % 200 == 0:
                await asyncio.sleep(0)
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(fr, 15)
    t_closed = time.monotonic() - t0
    c1 = cpu_seconds(server.proc.pid)
    n_before = len(got)
    await asyncio.sleep(2.0)
    reader.cancel()
    await other.close()
    gaps = [b - a for a, b in zip(got, got[1:])]
    out = {
        "sent_before_close": sent,
        "applied_pongs": pongs,
        "close_code": code,
        "closed_after_s": round(t_closed, 3),
        "server_cpu_s_until_closed": round(c1 - c0, 3),
        "other_viewer_frames_in_order": all(g >= 1 for g in gaps),
        "other_viewer_max_frame_step": max(gaps) if gaps else None,
        "other_viewer_frames": n_before,
    }
    print(f"  flood: {json.dumps(out)}", flush=True)
    return out


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "## Seed-style viewers",
        "",
        "Clients that behave like the seed system's browser client (`benchmarks/seed_client.py`: a seek for every",
        f"frame it draws at {RAF_HZ:g} Hz from its own clock, `play`/`pause` on changes) against `racecast serve` on a",
        f"simulated race ({doc['frames']} frames). Run of `python -m benchmarks.seed_viewers{' --quick' if doc['quick'] else ''}`",
        f"({doc['stamp']}, {m['cpus']} CPUs shared with other work, load average {m['load']} at the start).",
        "",
        f"**Speeds** ({doc['seconds']:g} s of play each, then 5 scrubs while paused):",
        "",
        "| speed | connected throughout | frames | commands sent | behind the client p50 / p99 / max (race s) | max behind (wall s) | client's own longest stall | slowest scrub answer | unknown text messages |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in doc["speeds"]:
        lines.append(
            f"| {r['speed']:g}x | {'yes' if r['connected_throughout'] else 'NO'} | {r['frames']} | {r['commands']} | "
            f"{r['lag_p50_s']} / {r['lag_p99_s']} / {r['lag_max_s']} | {r['lag_wall_max_s']} | {r.get('client_stall_max_s')} s | "
            f"{r['seek_wait_max_ms']} ms | {r['unknown_text']} |"
        )
    lines += [
        "",
        "\"Behind\" is measured when the client reads a frame: its own position then minus the frame's, in race",
        f"seconds and divided by the speed (wall seconds: how old the picture is). A {FPS} Hz stream's frames are",
        f"speed × {1 / FPS:g} s of race apart ({max(SPEEDS) / FPS:g} s at {max(SPEEDS):g}x), so a race-time bound below that cannot hold at high speed",
        f"for any {FPS} Hz design; the wall-time column is the one that says whether the picture keeps up. When the",
        "client's own event loop stalls (last column: this shared machine was loaded), the frames that arrived",
        "meanwhile are read late and count as behind by up to the stall.",
    ]
    c = doc["cpu"]
    s, r = c["seed"], c["racecast"]
    lines += [
        "",
        f"**CPU per viewer** ({c['viewers']} viewers at 1x for {c['seconds']:g} s each way; server process, user + system):",
        "",
        "| viewers | server CPU | per viewer | commands/s received | frames/s per viewer | closed |",
        "|---|---:|---:|---:|---:|---:|",
        f"| seed-style (seek per drawn frame) | {s['server_cpu_pct']} % | {s['cpu_pct_per_viewer']} % | {s['commands_per_s']} | {s['frames_per_viewer_per_s']} | {s['closed']} |",
        f"| racecast protocol (play, no seeks) | {r['server_cpu_pct']} % | {r['cpu_pct_per_viewer']} % | {r['commands_per_s']} | {r['frames_per_viewer_per_s']} | {r['closed']} |",
        "",
        (f"A seed-style viewer's command stream costs about {c['command_us']} µs of server CPU per command "
         f"(the difference between the two rows over the commands received): almost all of them are seeks to "
         f"where the viewer already is, which change nothing." if c.get("command_us") else
         "The difference between the two rows is within the noise of this machine."),
    ]
    f = doc["flood"]
    lines += [
        "",
        f"**Flood**: one client sending `ping` commands as fast as its socket takes them was closed with "
        f"{f['close_code']} after {f['closed_after_s']} s, having had {f['applied_pongs']} commands applied "
        f"(the budget's burst is 600) out of {f['sent_before_close']} it got onto the socket; the server spent "
        f"{f['server_cpu_s_until_closed']} s of CPU on it. A viewer playing meanwhile received its frames in order "
        f"(largest step {f['other_viewer_max_frame_step']} frames).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="play time per speed")
    ap.add_argument("--viewers", type=int, default=40)
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="5 s per speed, 10 viewers for 10 s")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    ap.add_argument("--render", type=Path, help="only re-render docs/performance.md from this results JSON")
    a = ap.parse_args(argv)
    if a.render:
        replace_section(ROOT / "docs" / "performance.md", "seed-viewers", render(json.loads(a.render.read_text())))
        return 0
    if a.quick:
        a.seconds, a.viewers, a.cpu_seconds = 5.0, 10, 10.0
    laps = 12 if a.seconds * max(SPEEDS) * FPS > 6000 else 3
    data = build_data(laps)
    n_frames = json.loads((data / SID / "manifest.json").read_text()).get("n_frames")
    log_dir = Path(tempfile.mkdtemp(prefix="racecast-seedbench-log-"))
    server = Server("racecast", data, None, log_dir)
    server.wait_ready()
    url = f"ws://127.0.0.1:{server.port}/ws/replay/{SID}"
    load = os.getloadavg()[0]
    try:
        print("speeds:", flush=True)
        speeds = asyncio.run(speeds_part(url, a.seconds))
        print("cpu:", flush=True)
        cpu = asyncio.run(cpu_part(server, url, a.viewers, a.cpu_seconds))
        print("flood:", flush=True)
        flood = asyncio.run(flood_part(server, url))
    finally:
        server.stop()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    doc = {
        "stamp": stamp,
        "quick": a.quick,
        "seconds": a.seconds,
        "frames": n_frames,
        "machine": {"cpus": os.cpu_count(), "load": round(load, 2)},
        "speeds": speeds,
        "cpu": cpu,
        "flood": flood,
    }
    out = ROOT / "benchmarks" / "results" / f"{stamp}-seed-viewers.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    if not a.no_doc:
        replace_section(ROOT / "docs" / "performance.md", "seed-viewers", render(doc))
        print("updated docs/performance.md (seed-viewers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
