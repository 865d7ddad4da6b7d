"""Rooms across processes: a real redis-server, two `racecast serve --redis` processes, members on both.

The frame gap is read between members at the same instants (benchmarks/roomutil.py), never
against wall-clock bands; bounds are in ticks (one tick = `speed` frames) and generous.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from benchmarks.common import RacecastProcess as Proc
from benchmarks.common import ServeProcess
from benchmarks.roomutil import Member, create_room, gaps, percentile
from tests.services import RedisServer
from tests.serverutil import StalledClient, write_race

N = 6000  # 4 minutes at 25 fps


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", N, n_drivers=3)
    return root


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield r
    finally:
        r.stop()


Server = ServeProcess  # `racecast serve` in a child process, answering /healthz


@pytest.fixture(scope="module")
def servers(data: Path, redis: RedisServer) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started.extend(Server(data, "--redis", redis.url) for _ in range(2))
        yield started
    finally:
        for s in started:
            s.stop()


def tick_gap(members: list[Member], t0: float, t1: float, speed: float) -> tuple[float, float]:
    """p50 and p90 of the members' spread at the same instants, in ticks (frames / speed)."""
    g = [x / speed for x in gaps(members, t0, t1)]
    assert len(g) > 20, "too few instants where every member had a frame"
    return percentile(g, 50), percentile(g, 90)


async def converged(members: list[Member], seq: int, timeout: float = 15.0) -> None:
    for m in members:
        await m.wait(lambda m=m: m.states() and m.states()[-1]["seq"] >= seq, timeout, what=f"seq {seq}")


def test_two_servers_play_one_room_within_a_tick(servers: list[Server]) -> None:
    a, b = servers
    room = create_room(a.http, "race", "host")

    async def go() -> None:
        host = await Member.join(a.ws, "race", room["room"], room["host_token"])
        on_a = await Member.join(a.ws, "race", room["room"])
        on_b = await Member.join(b.ws, "race", room["room"])  # b never saw the room: it reads Redis
        on_b2 = await Member.join(b.ws, "race", room["room"], mode="compact")
        everyone = [host, on_a, on_b, on_b2]
        assert on_b.of("room")[0]["you_control"] is False and on_b.states()[0]["seq"] == 0

        await host.command(action="play", speed=1)
        await converged(everyone, 1)
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        p50, p90 = tick_gap(everyone, t0 + 0.3, time.monotonic(), 1)
        assert p50 <= 1 and p90 <= 3, (p50, p90)
        fa, fb = {f for _, f in on_a.frames}, {f for _, f in on_b.frames}
        assert len(fa & fb) >= 0.8 * len(fa)  # the same frames at the same ticks on both servers

        await host.command(action="seek", frame=3000)
        await host.command(action="speed", speed=4)
        await converged(everyone, 3)
        # b jumped too: to the room's frame when the state reached it (the seek target plus what played since).
        assert any(3000 <= f <= 3000 + 25 for _, f in on_b.frames)
        t1 = time.monotonic()
        await asyncio.sleep(2.0)
        p50, p90 = tick_gap(everyone, t1 + 0.3, time.monotonic(), 4)
        assert p50 <= 1 and p90 <= 3, (p50, p90)

        # A member of b that stops reading does not hold anyone back.
        stalled = StalledClient(b.port, f"/ws/replay/race?room={room['room']}")
        try:
            t2 = time.monotonic()
            await asyncio.sleep(1.5)
            p50, _ = tick_gap(everyone, t2 + 0.3, time.monotonic(), 4)
            assert p50 <= 1
            fs = [f for t, f in on_b.frames if t > t2]
            assert fs[-1] - fs[0] >= 4 * 25  # b's room kept playing at 4x
        finally:
            stalled.close()

        # Members of both servers are counted everywhere (synced once a second).
        async def count_is(n: int) -> bool:
            async with httpx.AsyncClient(trust_env=False) as c:
                return (await c.get(f"{b.http}/api/rooms/{room['room']}")).json()["members"] == n

        end = time.monotonic() + 10
        while not await count_is(4):
            assert time.monotonic() < end
            await asyncio.sleep(0.2)
        for m in everyone:
            await m.close()

    asyncio.run(go())


def test_redis_restart_rooms_play_on_and_reconverge(servers: list[Server], redis: RedisServer) -> None:
    a, b = servers
    room = create_room(a.http, "race", "everyone")

    async def go() -> None:
        on_a = await Member.join(a.ws, "race", room["room"])
        on_b = await Member.join(b.ws, "race", room["room"])
        await on_a.command(action="play", speed=1)
        await converged([on_b], 1)

        redis.stop()
        t_down = time.monotonic()
        await asyncio.sleep(1.5)
        # Both servers play on locally: frames keep coming on each.
        for m in (on_a, on_b):
            fs = [f for t, f in m.frames if t > t_down + 0.5]
            assert fs and fs[-1] - fs[0] >= 10, "a server stopped playing when Redis went away"
        # Commands still work on each server (locally).
        ack = await on_a.command(action="seek", frame=4000)
        assert ack["seq"] == 2 and ack["frame"] == 4000
        await on_b.command(action="speed", speed=2)  # b's own, concurrent, divergent command
        redis.start()  # empty: it kept nothing (no persistence)
        # Re-converge: one state wins everywhere (same seq, speed and position on both).
        end = time.monotonic() + 20
        while True:
            sa, sb = on_a.states()[-1], on_b.states()[-1]
            if sa["seq"] == sb["seq"] and sa["speed"] == sb["speed"] and len(on_a.states()) > 3 or time.monotonic() > end:
                break
            await asyncio.sleep(0.1)
        sa, sb = on_a.states()[-1], on_b.states()[-1]
        assert (sa["seq"], sa["speed"], sa["playing"]) == (sb["seq"], sb["speed"], sb["playing"]), (
            on_a.states(), on_b.states(), "".join(a.output), "".join(b.output))
        t1 = time.monotonic()
        await asyncio.sleep(1.5)
        speed = sa["speed"]
        p50, _ = tick_gap([on_a, on_b], t1 + 0.3, time.monotonic(), speed)
        assert p50 <= 1
        # No crash, one log line each for the outage.
        for s in (a, b):
            assert s.p.poll() is None
            assert s.log_count("unreachable") == 1, "".join(s.output)
        for m in (on_a, on_b):
            await m.close()

    asyncio.run(go())


def test_redis_down_at_start_rooms_work_locally(data: Path, tmp_path: Path) -> None:
    dead = RedisServer(tmp_path / "r")  # never started: nothing listens on its port
    s = Server(data, "--redis", dead.url)
    try:
        room = create_room(s.http, "race", "host")

        async def go() -> None:
            host = await Member.join(s.ws, "race", room["room"], room["host_token"])
            ack = await host.command(action="play", speed=2)
            assert ack["playing"] is True and ack["seq"] == 1
            await host.close()

        asyncio.run(go())
        assert s.log_count("unreachable") == 1
    finally:
        s.stop()


def test_workers_without_redis_refuse_rooms_clearly(data: Path) -> None:
    s = Server(data, "--workers", "2")
    try:
        r = httpx.post(f"{s.http}/api/rooms", json={"replay": "race"}, trust_env=False, timeout=10)
        assert r.status_code == 501 and "--redis" in r.json()["detail"]
        assert httpx.get(f"{s.http}/api/replays", trust_env=False).status_code == 200  # the rest works
    finally:
        s.stop()


def test_serve_refuses_a_malformed_redis_url(data: Path) -> None:
    p = Proc("serve", "--data", str(data), "--port", "0", "--redis", "http://nope")
    try:
        assert p.p.wait(60) != 0
        assert "redis://" in "".join(p.output)
    finally:
        p.stop()
