"""Rooms and the caching proxy, measured: writes the "Rooms and the caching proxy" section of docs/performance.md.

    python -m benchmarks.rooms [--members 40] [--seconds 8] [--chunk-clients 1000]

Everything runs on 127.0.0.1: `racecast serve` processes, a redis-server and an nginx on free
ports, the members in this process (real WebSocket clients). Measured:

* frame gap between members at the same instants (benchmarks/roomutil.py: at each instant every
  member's frame is the last it received; the gap is the spread), p50 / p99 / max in frames and
  in ms of race at the room's speed: one server; two servers sharing a room through Redis; the
  same two servers while Redis is down and after it is back;
* commands per second one room sustains (many members with control sending seeks as fast as
  their rate limit allows), alone and through Redis;
* Redis traffic per command (Redis's own command statistics, and messages a subscriber sees);
* origin requests per chunk behind nginx with N concurrent HTTP chunk clients on a cold cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from .common import CountingApp, RedisServer, ServeProcess, nginx_proxy, running
from .race import write_race
from .roomutil import Member, create_room, gaps, percentile

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "benchmarks" / "results" / "rooms.json"
BEGIN, END = "<!-- rooms:begin -->", "<!-- rooms:end -->"
FPS = 25
N_FRAMES = FPS * 60 * 20  # a 20-minute race
GAP_STEP_S = 0.002  # the frame gap between members is read at instants this far apart
COMMAND_INTERVAL_S = 0.05  # each controller's pace: within the per-connection command budget


Serve = ServeProcess  # `racecast serve` in a child process on a free port


def same_frames(a: Member, b: Member, t0: float, t1: float) -> float:
    """Share of the frames ``a`` received in [t0, t1) that ``b`` received too: both servers compute the
    frame of each tick from the room clock, so members get the same frames whatever their delivery jitter."""
    fa = {f for t, f in a.frames if t0 <= t < t1}
    fb = {f for _, f in b.frames}
    return len(fa & fb) / len(fa) if fa else float("nan")


def gap_stats(members: list[Member], t0: float, t1: float, speed: float) -> dict[str, float]:
    g = gaps(members, t0, t1, step=GAP_STEP_S)
    ms = 1000 / (FPS * speed)  # ms of race per frame at this speed... per frame shown per tick
    return {"instants": len(g), "p50": percentile(g, 50), "p99": percentile(g, 99), "max": max(g) if g else float("nan"),
            "p50_ms": percentile(g, 50) * ms, "p99_ms": percentile(g, 99) * ms, "max_ms": (max(g) if g else 0) * ms}  # fmt: skip


async def measure_gap(servers: list[Serve], n_members: int, seconds: float) -> dict[str, Any]:
    """Members spread over ``servers``; play at 1x, then seek + 4x; gaps in both windows."""
    room = create_room(servers[0].http, "race", "host")
    host = await Member.join(servers[0].ws, "race", room["room"], room["host_token"])
    members = [host] + [await Member.join(servers[i % len(servers)].ws, "race", room["room"]) for i in range(1, n_members)]
    out: dict[str, Any] = {}

    async def window(speed: float) -> dict[str, Any]:
        """A second to settle, then ``seconds`` measured: the gaps, and the frames two members share."""
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        t1 = time.monotonic()
        return {**gap_stats(members, t0, t1, speed), "same_frames": same_frames(members[0], members[1], t0, t1)}

    await host.command(action="play", speed=1)
    out["play_1x"] = await window(1)
    await host.command(action="seek", frame=N_FRAMES // 2)
    await host.command(action="speed", speed=4)
    out["seek_4x"] = await window(4)
    for m in members:
        await m.close()
    return out


async def measure_restart(servers: list[Serve], redis: RedisServer, n_members: int, seconds: float) -> dict[str, Any]:
    room = create_room(servers[0].http, "race", "everyone")
    members = [await Member.join(servers[i % len(servers)].ws, "race", room["room"]) for i in range(n_members)]
    await members[0].command(action="play", speed=1)
    await asyncio.sleep(1.0)
    redis.stop()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    down = gap_stats(members, t0 + 0.5, time.monotonic(), 1)
    down["same_frames"] = same_frames(members[0], members[1], t0 + 0.5, time.monotonic())
    redis.start()
    t_back = time.monotonic()
    # A command on server A right after Redis returns: how long until every member (on both) has it.
    ack = await members[0].command(action="seek", frame=1000)
    seq = ack["seq"]
    while not all(m.states() and m.states()[-1]["seq"] >= seq for m in members):
        await asyncio.sleep(0.01)
    converge = time.monotonic() - t_back
    await asyncio.sleep(1.0)
    t1 = time.monotonic()
    await asyncio.sleep(seconds)
    after = gap_stats(members, t1, time.monotonic(), 1)
    after["same_frames"] = same_frames(members[0], members[1], t1, time.monotonic())
    for m in members:
        await m.close()
    return {"redis_down": down, "after_restart": after, "command_reaches_all_after_restart_s": converge}


async def measure_commands(server: Serve, redis_url: str | None, controllers: int, seconds: float) -> dict[str, Any]:
    """Controllers in an "everyone" room send seeks as fast as acks come (each within its rate limit)."""
    room = create_room(server.http, "race", "everyone")
    ms = [await Member.join(server.ws, "race", room["room"]) for _ in range(controllers)]
    # Background traffic first (the once-a-second reconciliation of the rooms this server knows), to subtract.
    b0, tb0 = redis_stats(redis_url), time.monotonic()
    await asyncio.sleep(3.0)
    b1, tb1 = redis_stats(redis_url), time.monotonic()
    background = {k: (b1.get(k, 0) - b0.get(k, 0)) / (tb1 - tb0) for k in set(b0) | set(b1)}
    stats0, ts0 = redis_stats(redis_url), time.monotonic()
    sub = await redis_subscriber(redis_url)
    end = time.monotonic() + seconds
    sent = 0

    async def drive(m: Member, k: int) -> None:
        nonlocal sent
        i = 0
        while time.monotonic() < end:
            await m.send(action="seek", frame=(k * 997 + i * 31) % N_FRAMES)
            sent += 1
            i += 1
            await asyncio.sleep(COMMAND_INTERVAL_S)

    seq0 = httpx.get(f"{server.http}/api/rooms/{room['room']}", trust_env=False).json()["seq"]
    t0 = time.monotonic()
    await asyncio.gather(*(drive(m, k) for k, m in enumerate(ms)))
    await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0 - 0.5
    seq1 = httpx.get(f"{server.http}/api/rooms/{room['room']}", trust_env=False).json()["seq"]
    applied = seq1 - seq0
    out: dict[str, Any] = {"controllers": controllers, "sent": sent, "applied": applied, "commands_per_s": applied / elapsed}
    last_seq = [m.states()[-1]["seq"] for m in ms]
    out["members_on_last_seq"] = sum(s == seq1 for s in last_seq) / len(ms)
    if redis_url:
        stats1, ts1 = redis_stats(redis_url), time.monotonic()

        def per_command(k: str | None) -> float:
            keys = [k] if k else list(set(stats0) | set(stats1))
            delta = sum(stats1.get(x, 0) - stats0.get(x, 0) for x in keys if x != "info")
            bg = sum(background.get(x, 0) for x in keys if x != "info") * (ts1 - ts0)
            return (delta - bg) / applied

        out["redis_evalsha_per_command"] = per_command("evalsha")
        out["redis_publish_per_command"] = per_command("publish")
        out["redis_commands_per_command"] = per_command(None)
        out["redis_background_commands_per_s"] = sum(v for k, v in background.items() if k != "info")
        out["pubsub_messages_per_command_per_subscriber"] = (await sub()) / applied
    for m in ms:
        await m.close()
    return out


def redis_stats(url: str | None) -> dict[str, int]:
    if not url:
        return {}
    import redis

    info = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def redis_subscriber(url: str | None) -> Any:
    if not url:
        async def none() -> int:
            return 0
        return none
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    ps = client.pubsub()
    await ps.subscribe("racecast:rooms:0")
    count = 0

    async def reader() -> None:
        nonlocal count
        async for m in ps.listen():
            if m["type"] == "message":
                count += 1

    task = asyncio.create_task(reader())

    async def done() -> int:
        task.cancel()
        await ps.aclose()
        await client.aclose()
        return count

    return done


def measure_nginx(data: Path, clients: int, chunks: int) -> dict[str, Any]:
    from racecast.server import create_app

    app = CountingApp(create_app(data))
    with running(app) as srv, nginx_proxy(f"127.0.0.1:{srv.port}") as port:

        async def client(k0: int) -> list[int]:
            # One keep-alive HTTP/1.1 connection asking for every chunk in turn (a bare client: the
            # load generator must not be the bottleneck).
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            codes = []
            try:
                for k in range(chunks):
                    writer.write(f"GET /api/replays/race/chunks/{k} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                 "Accept-Encoding: gzip\r\n\r\n".encode())  # fmt: skip
                    head = await reader.readuntil(b"\r\n\r\n")
                    codes.append(int(head.split(b" ", 2)[1]))
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                    await reader.readexactly(length)
            finally:
                writer.close()
            return codes

        async def go() -> tuple[list[int], float]:
            t0 = time.monotonic()
            # Every client asks for the same chunks in the same order, all starting together.
            per = await asyncio.gather(*(client(i) for i in range(clients)))
            return [c for p in per for c in p], time.monotonic() - t0

        codes, elapsed = asyncio.run(go())
    per_chunk = [app.paths[f"/api/replays/race/chunks/{k}"] for k in range(chunks)]
    return {"clients": clients, "chunks": chunks, "requests": len(codes), "ok": sum(c == 200 for c in codes),
            "origin_requests_per_chunk_max": max(per_chunk), "origin_requests_per_chunk_mean": sum(per_chunk) / chunks,
            "origin_requests_total": sum(per_chunk), "elapsed_s": elapsed}  # fmt: skip


def render(r: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, float], speed: str) -> str:
        return f"| {name} | {speed} | {s['p50']:.0f} | {s['p99']:.0f} | {s['max']:.0f} | {s['p50_ms']:.0f} / {s['p99_ms']:.0f} / {s['max_ms']:.0f} | {s['instants']} |"

    one, two, rs = r["one_server"], r["two_servers_redis"], r["redis_restart"]
    c1, c2, ng = r["commands_local"], r["commands_redis"], r["nginx"]
    lines = [
        BEGIN,
        "## Rooms and the caching proxy",
        "",
        f"`python -m benchmarks.rooms` ({r['when']}, {r['machine']}, load average {r['load']} at the start; everything on",
        "127.0.0.1, members are real WebSocket clients in the benchmark process, servers are `racecast serve` processes).",
        "Raw results: benchmarks/results/rooms.json.",
        "",
        f"**Frame gap between members** of one room ({r['members']} members, {r['seconds']:g} s windows), read at the same",
        f"instants every {GAP_STEP_S * 1000:g} ms: at each instant every member's frame is the last one it received; the gap is the spread",
        f"(highest − lowest). In frames, and in ms of wall time (one frame is {1000 / FPS:g} ms at 1x, {1000 / FPS / 4:g} ms at 4x).",
        "",
        "| setup | speed | p50 frames | p99 | max | ms p50 / p99 / max | instants |",
        "|---|---|---:|---:|---:|---|---:|",
        row("one server", one["play_1x"], "1x"),
        row("one server, after a seek", one["seek_4x"], "4x"),
        row("two servers via Redis", two["play_1x"], "1x"),
        row("two servers via Redis, after a seek", two["seek_4x"], "4x"),
        row("two servers, Redis down", rs["redis_down"], "1x"),
        row("two servers, after Redis restarted", rs["after_restart"], "1x"),
        "",
        f"The spread above includes delivery: the members are {r['members']} clients read by one Python process on a box",
        "shared with other work, and a server tick that runs late shows as a gap until the next. What the room",
        "clock itself guarantees is that both servers compute the same frame at each tick; the share of frames a",
        "member of the first server received that a member of the second received too:",
        f"{one['play_1x']['same_frames']:.1%} on one server at 1x, {two['play_1x']['same_frames']:.1%} across two servers at 1x,",
        f"{two['seek_4x']['same_frames']:.1%} at 4x after a seek, {rs['redis_down']['same_frames']:.1%} while Redis was down",
        f"and {rs['after_restart']['same_frames']:.1%} after it came back (frames skipped by backpressure make up the rest).",
        "",
        f"A command sent right after Redis came back reached every member on both servers "
        f"{rs['command_reaches_all_after_restart_s'] * 1000:.0f} ms after the restart (reconnect + reconciliation).",
        "",
        f"**Commands per second one room sustains**: {c1['controllers']} members with control sending seeks, each at",
        f"most {1 / COMMAND_INTERVAL_S:g}/s. Every command sent was applied and acknowledged to every member (each seek also pushes a frame to",
        "each member, so the benchmark process reads members × commands messages): the load generator, not the room,",
        "set these rates — they are lower bounds:",
        "",
        "| room store | commands sent | applied | commands/s | members on the last seq at the end |",
        "|---|---:|---:|---:|---:|",
        f"| in the process | {c1['sent']} | {c1['applied']} | {c1['commands_per_s']:.0f} | {c1['members_on_last_seq']:.0%} |",
        f"| Redis | {c2['sent']} | {c2['applied']} | {c2['commands_per_s']:.0f} | {c2['members_on_last_seq']:.0%} |",
        "",
        f"**Redis traffic per command** (Redis's command statistics over that run): {c2['redis_evalsha_per_command']:.2f} `EVALSHA`",
        f"(the one round trip from the server), {c2['redis_publish_per_command']:.2f} `PUBLISH` (inside the script),",
        f"{c2['redis_commands_per_command']:.2f} Redis commands in all (`EVALSHA` and, inside it, `GET`, `SET`, `PUBLISH`), and",
        f"{c2['pubsub_messages_per_command_per_subscriber']:.2f} pub/sub messages per command per subscribed server",
        f"(the once-a-second reconciliation, measured alone first and subtracted, was {c2['redis_background_commands_per_s']:.0f}",
        "Redis commands/s for the rooms the two servers knew). Frames never cross Redis.",
        "",
        f"**Origin requests per chunk behind nginx** (`racecast deploy nginx`): {ng['clients']:,} concurrent HTTP clients",
        f"each fetching the same {ng['chunks']} chunks on a cold cache ({ng['requests']:,} requests, {ng['ok']:,} answered 200",
        f"in {ng['elapsed_s']:.1f} s, bare keep-alive HTTP/1.1 clients in one process): the origin saw **{ng['origin_requests_per_chunk_mean']:.2f} requests per chunk**",
        f"(max {ng['origin_requests_per_chunk_max']}, {ng['origin_requests_total']} in all): nginx's cache lock collapses",
        "the concurrent misses into one.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN in doc:
        a, b = doc.index(BEGIN), doc.index(END) + len(END) + 1
        doc = doc[:a] + text + doc[b:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--controllers", type=int, default=40)
    ap.add_argument("--chunk-clients", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--render-only", action="store_true", help="re-render the doc section from the results JSON")
    a = ap.parse_args()
    if a.render_only:
        write_doc(render(json.loads(RESULTS.read_text())))
        return
    r: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
                         "load": f"{os.getloadavg()[0]:.1f}", "members": a.members, "seconds": a.seconds}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="racecast-bench-rooms-") as d:
        data = Path(d) / "data"
        write_race(data, "race", N_FRAMES, n_drivers=20)
        redis = RedisServer(Path(d) / "redis").start()
        servers: list[Serve] = []
        try:
            one = Serve(data)
            servers.append(one)
            print("one server: gap", flush=True)
            r["one_server"] = asyncio.run(measure_gap([one], a.members, a.seconds))
            print("one server: commands/s", flush=True)
            r["commands_local"] = asyncio.run(measure_commands(one, None, a.controllers, a.seconds))
            two = [Serve(data, "--redis", redis.url), Serve(data, "--redis", redis.url)]
            servers.extend(two)
            print("two servers via Redis: gap", flush=True)
            r["two_servers_redis"] = asyncio.run(measure_gap(two, a.members, a.seconds))
            print("two servers via Redis: commands/s", flush=True)
            r["commands_redis"] = asyncio.run(measure_commands(two[0], redis.url, a.controllers, a.seconds))
            print("Redis restart", flush=True)
            r["redis_restart"] = asyncio.run(measure_restart(two, redis, a.members, a.seconds))
        finally:
            for s in servers:
                s.stop()
            redis.stop()
        print("nginx", flush=True)
        r["nginx"] = measure_nginx(data, a.chunk_clients, a.chunks)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=1))
    write_doc(render(r))
    print(render(r))


if __name__ == "__main__":
    main()
