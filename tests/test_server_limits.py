"""Limits and hostile clients against a real server: slow readers, floods, capacity, origins, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import websockets
from fastapi import FastAPI

from racecast.server import create_app
from racecast.server.transport import AsgiSink
from tests.serverutil import (
    DIRECT,
    PLAIN,
    StalledClient,
    StepClock,
    ViewerClient,
    async_wait_until,
    frames_only,
    running,
    wait_until,
    write_race,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", 3000, n_drivers=3)
    write_race(root, "wide", 3000, n_drivers=20)  # ~4 KB frames
    return root


def close_code(exc: BaseException) -> int:
    assert isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None
    return exc.rcvd.code


async def closed_with(v: ViewerClient) -> int:
    with pytest.raises(websockets.ConnectionClosed) as e:
        while True:
            await v.next()
    return close_code(e.value)


def test_a_viewer_that_stops_reading_is_bounded_and_delays_no_one(data: Path) -> None:
    limit = 16 * 1024
    clock = StepClock()
    app = create_app(data, buffer_limit=limit, socket_send_buffer=16 * 1024, clock=clock)
    with running(app, ws=DIRECT) as srv:
        stalled = StalledClient(srv.port, "/ws/replay/wide?encoding=msgpack")
        stalled.send_text('{"action":"play","speed":8}')

        async def go() -> tuple[list[int], int, list[float]]:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            f0 = (await v.command(action="play", speed=1))["frame"]
            buffers = []
            got: list[int] = []
            for _ in range(6):
                got += await v.step(clock, 25)  # one second of the server's clock per round
                buffers.append(await asyncio.to_thread(srv.metric, "racecast_viewer_buffer_max_bytes"))
            await v.close()
            return got, f0, buffers

        got, f0, buffers = asyncio.run(go())
        skipped = srv.metric("racecast_frames_skipped_total")
        stalled.close()
    # The stalled viewer had frames skipped instead of queued, and its buffer stayed under the limit + one frame.
    assert skipped > 0
    assert max(buffers) <= limit + 8 * 1024, buffers
    # The other viewer got every tick's frame, consecutive.
    assert got == list(range(f0 + 1, f0 + 151))


def test_asgi_sink_holds_at_most_one_frame_while_a_send_is_stuck() -> None:
    async def go() -> None:
        gate = asyncio.Event()
        sent: list[dict] = []

        async def send(msg: dict) -> None:
            await gate.wait()
            sent.append(msg)

        sink = AsgiSink(send)
        frame = memoryview(b"x" * 1000)
        assert sink.offer(frame) is True
        await asyncio.sleep(0)  # the writer picks it up and blocks in send()
        assert [sink.offer(frame) for _ in range(100)] == [False] * 100
        assert sink.buffered() == 1000
        sink.post('{"type":"state"}')
        gate.set()
        await sink.drain()
        assert [("bytes" in m) for m in sent] == [True, False] and sink.buffered() == 0
        assert sink.offer(frame) is True
        await sink.drain()
        sink.close()

    asyncio.run(go())


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_a_command_flood_dies_with_its_connection_and_others_keep_playing(data: Path, ws: str) -> None:
    burst = 50
    app = create_app(data, command_rate=0.5, command_burst=burst)  # a slow refill: the bound below is the burst
    with running(app, ws=ws) as srv:

        async def go() -> tuple[int, int, list[int]]:
            flood = await ViewerClient.open(srv.ws_url("race"))
            other = await ViewerClient.open(srv.ws_url("race"))
            await flood.ready()
            await other.ready()
            await other.command(action="play", speed=1)
            for _ in range(2000):  # as fast as the socket takes them, never waiting for an answer
                try:
                    await flood.send(action="ping")
                except websockets.ConnectionClosed:
                    break
            pongs = 0
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    m = await flood.next(10)
                    pongs += isinstance(m, dict) and m["type"] == "pong"
            frames = [await other.next_frame() for _ in range(15)]  # the other viewer plays on
            await other.close()
            return pongs, close_code(e.value), frames

        pongs, code, frames = asyncio.run(go())
        applied = srv.metric('racecast_commands_total{action="ping"}')
        assert srv.metric('racecast_errors_total{kind="flood"}') == 1
    assert code == 1008
    # Nothing past the budget was applied, during the flood or after the connection went.
    assert pongs <= burst + 3 and applied <= burst + 3
    assert len(frames) >= 15 and all(b - a >= 1 for a, b in zip(frames, frames[1:]))


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_keepalive_is_answered_while_a_client_seeks_every_frame(data: Path, ws: str) -> None:
    """The seed's client sends a seek per drawn frame (up to 60 a second, over any budget of
    20/s); the server keeps reading, so WebSocket pings are answered throughout."""
    with running(create_app(data), ws=ws) as srv:

        async def go() -> list[float]:
            v = await ViewerClient.open(srv.ws_url("race", ""))  # the seed protocol
            await v.until("loading_complete")
            await v.send(action="play", speed=4)

            async def drain() -> None:
                while True:
                    await v.next(10)

            reader = asyncio.ensure_future(drain())
            rtts = []
            t0 = time.monotonic()
            k = 0
            while time.monotonic() - t0 < 3.0:
                for _ in range(6):  # 60 seeks a second, the client's own position at 4x
                    k += 1
                    await v.send(action="seek", frame=int((time.monotonic() - t0) * 100) % 2900)
                    await asyncio.sleep(1 / 60)
                p0 = time.monotonic()
                await asyncio.wait_for(await v.ws.ping(), 5)
                rtts.append(time.monotonic() - p0)
            reader.cancel()
            await v.close()
            return rtts

        rtts = asyncio.run(go())
    assert len(rtts) >= 5 and max(rtts) < 2.0  # generous: the old limiter let pongs wait for minutes


def test_connection_limit_closes_1013(data: Path) -> None:
    with running(create_app(data, max_connections=2)) as srv:

        async def go() -> None:
            a = await ViewerClient.open(srv.ws_url("race"))
            b = await ViewerClient.open(srv.ws_url("race"))
            await a.ready()
            await b.ready()
            c = await ViewerClient.open(srv.ws_url("race"))
            assert await closed_with(c) == 1013
            await a.close()
            await async_wait_until(lambda: srv.metric("racecast_connections_open") == 1, what="a's slot freed")
            d = await ViewerClient.open(srv.ws_url("race"))  # room again
            await d.ready()
            await b.close()
            await d.close()

        asyncio.run(go())
        assert srv.metric('racecast_errors_total{kind="capacity"}') == 1


@pytest.mark.parametrize(
    "allowed, origin, ok",
    [
        (None, None, True),  # not a browser
        (None, "http://localhost:5173", True),
        (None, "http://127.0.0.1:9999", True),
        (None, "https://evil.example", False),
        (None, "null", False),
        (None, "SAME", True),
        (["https://viewer.example"], "https://viewer.example", True),
        (["https://viewer.example"], "http://localhost:5173", False),
        (["https://viewer.example"], "SAME", True),
        (["*"], "https://anything.example", True),
    ],
)
def test_origin_check(data: Path, allowed: list[str] | None, origin: str | None, ok: bool) -> None:
    with running(create_app(data, allowed_origins=allowed)) as srv:

        async def go() -> None:
            o = f"http://127.0.0.1:{srv.port}" if origin == "SAME" else origin
            v = await ViewerClient.open(srv.ws_url("race"), origin=o)
            if ok:
                await v.ready()
                await v.close()
            else:
                assert await closed_with(v) == 1008

        asyncio.run(go())


def test_graceful_shutdown_closes_viewers_with_1001(data: Path) -> None:
    with running(create_app(data)) as srv:

        async def go() -> int:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            await v.command(action="play", speed=1)
            srv.server.should_exit = True
            return await closed_with(v)

        assert asyncio.run(go()) == 1001


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_idle_viewers_get_json_pings(data: Path, ws: str) -> None:
    with running(create_app(data, ping_interval=0.3), ws=ws) as srv:

        async def go() -> tuple[list, list]:
            idle = await ViewerClient.open(srv.ws_url("race"))
            busy = await ViewerClient.open(srv.ws_url("race"))
            await idle.ready()
            await busy.ready()
            await busy.command(action="play", speed=1)
            await idle.until("ping", timeout=10)  # a few ping intervals (0.3 s each), scaled
            a, b = idle.texts, busy.texts + [m for m in await busy.collect(0.5) if isinstance(m, dict)]
            await idle.close()
            await busy.close()
            return a, b

        idle, busy = asyncio.run(go())
    assert any(isinstance(m, dict) and m["type"] == "ping" for m in idle)
    assert not any(isinstance(m, dict) and m["type"] == "ping" for m in busy)


def test_ping_command_gets_pong(data: Path) -> None:
    with running(create_app(data)) as srv:

        async def go() -> dict:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            await v.send(action="ping")
            m = await v.until("pong")
            await v.close()
            return m

        assert isinstance(asyncio.run(go())["t"], float)


def test_app_mounted_in_another_app_under_another_server(data: Path) -> None:
    clock = StepClock()
    outer = FastAPI()

    @outer.get("/")
    def home() -> dict:
        return {"host": "outer"}

    outer.mount("/rc", create_app(data, clock=clock))
    with running(outer, ws=PLAIN) as srv:
        with srv.http() as c:
            assert c.get("/").json() == {"host": "outer"}
            assert [r["id"] for r in c.get("/rc/api/replays").json()] == ["race", "wide"]

        async def go() -> list[int]:
            v = await ViewerClient.open(f"ws://127.0.0.1:{srv.port}/rc/ws/replay/race?encoding=msgpack")
            await v.ready()
            f0 = (await v.command(action="play", speed=2))["frame"]
            got = await v.step(clock, 5)
            await v.close()
            return [f0] + got

        got = asyncio.run(go())
    assert got == list(range(got[0], got[0] + 11, 2))


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_viewers_vanishing_mid_playback_are_dropped_cleanly(data: Path, ws: str) -> None:
    with running(create_app(data), ws=ws) as srv:
        for _ in range(5):
            c = StalledClient(srv.port, "/ws/replay/race?encoding=msgpack")
            c.send_text('{"action":"play","speed":4}')
            wait_until(lambda: srv.metric("racecast_viewers_playing") >= 1, what="the client playing")
            c.close()  # no closing handshake: the TCP connection just goes away

        async def go() -> None:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            await v.command(action="play", speed=1)
            await v.next_frame()
            await v.close()

        asyncio.run(go())
        wait_until(lambda: srv.metric("racecast_connections_open") == 0, what="every connection gone")
        assert srv.metric("racecast_viewers_playing") == 0
        assert srv.metric('racecast_errors_total{kind="send_failed"}') == 0


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_app_shutdown_closes_viewers_with_1001_under_any_host(data: Path, ws: str) -> None:
    # What the app's lifespan shutdown does for hosts that do not close WebSockets themselves.
    from racecast.server.websocket import close_all

    app = create_app(data)
    state = app.state.racecast
    with running(app, ws=ws) as srv:

        async def go() -> int:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            await v.command(action="play", speed=1)
            assert state.engine._task is not None
            fut = asyncio.run_coroutine_threadsafe(close_all(state), state.engine._task.get_loop())
            code = await closed_with(v)
            fut.result(5)
            return code

        assert asyncio.run(go()) == 1001
        assert state.engine.playing_count == 0
