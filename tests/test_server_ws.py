"""WebSocket playback against a real uvicorn server with a real client.

Rates are checked on a server whose clock the test moves (:class:`StepClock`):
each tick of the clock sends exactly the frames it should, whatever the load of
the (shared) machine. Real time only bounds how long a test waits for an event.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import websockets

from racecast.server import create_app
from tests.serverutil import DIRECT, PLAIN, Running, StalledClient, StepClock, ViewerClient, frames_only, running, wait_until, write_race

N = 3000  # frames of the main test race (2 minutes at 25 fps)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", N, n_drivers=3)
    write_race(root, "short", 100, n_drivers=3)
    write_race(root, "wide", N, n_drivers=20)  # ~4 KB frames
    return root


@pytest.fixture(scope="module", params=[DIRECT, PLAIN], ids=["direct", "asgi"])
def srv(request: pytest.FixtureRequest, data: Path) -> Iterator[Running]:
    with running(create_app(data), ws=request.param) as r:
        yield r


@pytest.fixture(scope="module", params=[DIRECT, PLAIN], ids=["direct", "asgi"])
def fsrv(request: pytest.FixtureRequest, data: Path) -> Iterator[tuple[Running, StepClock]]:
    """A server whose clock the test moves: playback rates are exact, whatever the machine's load."""
    clock = StepClock()
    with running(create_app(data, clock=clock), ws=request.param) as r:
        yield r, clock


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_connect_loading_then_state_then_first_frame(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        first = await v.next()
        assert isinstance(first, dict) and first["type"] in ("loading_progress", "loading_complete")
        lc = first if first["type"] == "loading_complete" else await v.until("loading_complete")
        assert lc["frames"] == N and lc["load_time_seconds"] >= 0 and lc["elapsed_seconds"] >= 0
        md = lc["metadata"]
        assert md["total_frames"] == N and md["fps"] == 25 and set(md["driver_colors"]) == {"D00", "D01", "D02"}
        st = await v.next()
        assert st == {"type": "state", "playing": False, "speed": 1.0, "frame": 0, "seq": 0, "ended": False}
        assert await v.next() == 0
        await v.close()

    run(go())


def test_1x_delivers_one_frame_per_tick_consecutive(fsrv: tuple[Running, StepClock]) -> None:
    srv, clock = fsrv

    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        ack = await v.command(action="play", speed=1)
        assert ack["playing"] is True and ack["speed"] == 1.0 and ack["seq"] == 1
        got = await v.step(clock, 50)  # 2 s of the server's clock, one tick at a time
        assert got == list(range(ack["frame"] + 1, ack["frame"] + 51))  # 25 frames per second of clock
        await v.close()

    run(go())


def test_4x_advances_4_frames_per_message(fsrv: tuple[Running, StepClock]) -> None:
    srv, clock = fsrv

    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        ack = await v.command(action="play", speed=4)
        got = await v.step(clock, 25)  # one second: one message per tick, 100 frames of race
        assert got == list(range(ack["frame"] + 4, ack["frame"] + 101, 4))
        await v.close()

    run(go())


def test_late_ticks_skip_frames_instead_of_bursting(fsrv: tuple[Running, StepClock]) -> None:
    """The server's clock jumps 10 ticks at once (a stalled process): one frame, the current one, goes out."""
    srv, clock = fsrv

    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        ack = await v.command(action="play", speed=1)
        f0 = ack["frame"]
        assert await v.step(clock, 1) == [f0 + 1]
        assert await v.step(clock, 1, dt=0.4) == [f0 + 11]
        assert await v.step(clock, 2) == [f0 + 12, f0 + 13]
        await v.close()

    run(go())


def test_pause_stops_frames_and_play_resumes(fsrv: tuple[Running, StepClock]) -> None:
    srv, clock = fsrv

    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.command(action="play", speed=2)
        await v.step(clock, 5)
        ack = await v.command(action="pause")
        assert ack["playing"] is False
        shown = v.frames[-1][1]
        assert ack["frame"] == shown  # paused on the frame the client has
        clock.advance(2.0)
        await v.send(action="ping")  # everything the server sent after the pause comes before its pong
        pong_and_before = []
        while not (isinstance(m := await v.next(), dict) and m["type"] == "pong"):
            pong_and_before.append(m)
        assert frames_only(pong_and_before) == []
        ack = await v.command(action="play")
        assert ack["playing"] is True and ack["speed"] == 2.0 and ack["frame"] == shown
        assert await v.step(clock, 3) == [shown + 2, shown + 4, shown + 6]
        await v.close()

    run(go())


def test_seek_ack_then_target_first_never_stale(fsrv: tuple[Running, StepClock]) -> None:
    srv, clock = fsrv

    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.command(action="play", speed=8)
        for target in (2000, 150, 2500, 10, 1999):
            await v.step(clock, 4)
            await v.send(action="seek", frame=target)
            # Everything before the ack may be old; the ack names the target; the next binary is the target.
            ack = await v.until("state")
            assert ack["frame"] == target and ack["playing"] is True
            assert await v.next_frame() == target
            assert await v.step(clock, 3) == [target + 8, target + 16, target + 24]
        await v.close()

    run(go())


def test_seek_by_time_and_lap(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        lc = await v.ready()
        ack = await v.command(action="seek", t=10.0)
        assert ack["frame"] == 250 and await v.next() == 250
        ack = await v.command(action="seek", lap=2)
        assert ack["frame"] > 0 and await v.next() == ack["frame"]
        assert lc["metadata"]["max_lap"] >= 2
        await v.close()

    run(go())


def test_two_viewers_do_not_disturb_each_other(fsrv: tuple[Running, StepClock]) -> None:
    srv, clock = fsrv

    async def go() -> None:
        a = await ViewerClient.open(srv.ws_url("race"))
        b = await ViewerClient.open(srv.ws_url("race"))
        await a.ready()
        await b.ready()
        fa0 = (await a.command(action="play", speed=1))["frame"]
        await b.command(action="seek", frame=1000)
        await b.next_frame()
        fb0 = (await b.command(action="play", speed=2))["frame"]
        assert fb0 == 1000
        for k in range(1, 26):
            clock.advance(0.04)
            fa, fb = await asyncio.gather(a.next_frame(), b.next_frame())
            assert (fa, fb) == (fa0 + k, fb0 + 2 * k)
        await asyncio.gather(a.close(), b.close())

    run(go())


def test_end_of_replay_stops_on_last_frame(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("short"))
        await v.ready()
        await v.command(action="seek", frame=80)
        await v.next()
        await v.command(action="play", speed=4)
        end = await v.until("state", timeout=5)
        assert end == {"type": "state", "playing": False, "speed": 4.0, "frame": 99, "seq": 2, "ended": True}
        got = [i for _, i in v.frames]
        assert got[-1] == 99 and got[-2] < 99
        assert frames_only(await v.collect(0.3)) == []
        # Play again restarts from the beginning.
        ack = await v.command(action="play", speed=1)
        assert ack["frame"] == 0 and ack["ended"] is False and await v.next() == 0
        await v.close()

    run(go())


@pytest.mark.parametrize(
    "cmd, fragment",
    [
        ("not json", "malformed JSON"),
        ('{"action": "play", "speed": NaN}', "not a number JSON allows"),
        ("[]", "JSON object"),
        ('{"nothing": 1}', '"action"'),
        ('{"action": "fly"}', "unknown action"),
        ('{"action": "seek"}', "exactly one of"),
        ('{"action": "seek", "frame": "12"}', "must be an integer"),
        ('{"action": "seek", "frame": 3000}', "outside the replay"),
        ('{"action": "seek", "frame": -5}', "outside the replay"),
        ('{"action": "seek", "t": 1e9}', "outside the replay"),
        ('{"action": "seek", "lap": 99}', "outside the replay"),
        ('{"action": "speed", "speed": 1e999}', "finite"),
        ('{"action": "speed", "speed": 0.05}', "between 0.1 and 64"),
        ('{"action": "play", "speed": 100}', "between 0.1 and 64"),
        ('{"action": "speed", "speed": "2"}', "must be a number"),
    ],
)
def test_bad_command_gets_error_and_connection_stays_open(srv: Running, cmd: str, fragment: str) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.ws.send(cmd)
        err = await v.until("error")
        assert fragment in err["message"]
        ack = await v.command(action="seek", frame=7)  # still served, state untouched by the bad command
        assert ack["frame"] == 7 and ack["seq"] == 1
        await v.close()

    run(go())


def test_binary_command_is_refused(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.ws.send(b'{"action":"pause"}')
        assert "JSON text" in (await v.until("error"))["message"]
        assert (await v.command(action="pause"))["seq"] == 1
        await v.close()

    run(go())


def _close_code(exc: BaseException) -> int:
    assert isinstance(exc, websockets.ConnectionClosed)
    assert exc.rcvd is not None
    return exc.rcvd.code


def test_unknown_replay_loading_error_4404(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("nope"))
        err = await v.until("loading_error")
        assert "nope" in err["message"]
        with pytest.raises(websockets.ConnectionClosed) as e:
            await v.next()
        assert _close_code(e.value) == 4404

    run(go())


@pytest.mark.parametrize("bad", ["..", ".hidden", "a..b", "x" * 80, "a%20b"])
def test_path_like_ids_are_rejected(srv: Running, bad: str) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url(bad))
        err = await v.until("loading_error")
        assert "invalid replay id" in err["message"]
        with pytest.raises(websockets.ConnectionClosed) as e:
            await v.next()
        assert _close_code(e.value) == 4400

    run(go())


def test_ids_with_slashes_never_reach_a_bundle(srv: Running) -> None:
    async def go() -> None:
        for path in ("..%2F..%2Fetc", "%2E%2E/%2E%2E/etc/passwd"):
            with pytest.raises(websockets.InvalidStatus):  # no route: the handshake is refused
                await ViewerClient.open(srv.ws_url(path))

    run(go())


def test_unknown_encoding_is_refused(srv: Running) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race", "?encoding=zip"))
        err = await v.until("loading_error")
        assert "zip" in err["message"] and "msgpack" in err["message"]
        with pytest.raises(websockets.ConnectionClosed) as e:
            await v.next()
        assert _close_code(e.value) == 4400

    run(go())


@pytest.mark.parametrize("size", [5000, 200_000])
def test_oversized_control_message_closes_1009(srv: Running, size: int) -> None:
    async def go() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.ws.send(json.dumps({"action": "pause", "pad": "x" * size}))
        with pytest.raises(websockets.ConnectionClosed) as e:
            while True:
                await v.next()
        assert _close_code(e.value) == 1009

    run(go())
    # The server keeps serving everyone else.
    async def again() -> None:
        v = await ViewerClient.open(srv.ws_url("race"))
        await v.ready()
        await v.close()

    run(again())


def test_metrics_count_what_happened(data: Path) -> None:
    with running(create_app(data)) as srv:

        async def go() -> None:
            v = await ViewerClient.open(srv.ws_url("race"))
            await v.ready()
            await v.command(action="seek", frame=10)
            await v.command(action="seek", frame=20)
            await v.command(action="play", speed=1)
            for _ in range(5):
                await v.next_frame()
            await v.send(action="bogus")
            await v.until("error")
            assert srv.metric("racecast_connections_open") == 1
            assert srv.metric("racecast_viewers_playing") == 1
            await v.command(action="pause")
            await v.close()
            bad = await ViewerClient.open(srv.ws_url("missing"))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await bad.next()

        run(go())
        wait_until(lambda: srv.metric("racecast_connections_open") == 0, what="both connections closed")
        assert srv.metric('racecast_commands_total{action="seek"}') == 2
        assert srv.metric('racecast_commands_total{action="play"}') == 1
        assert srv.metric('racecast_commands_total{action="pause"}') == 1
        assert srv.metric('racecast_errors_total{kind="bad_command"}') == 1
        assert srv.metric('racecast_errors_total{kind="unknown_replay"}') == 1
        assert srv.metric("racecast_connections_total") == 2
        assert srv.metric("racecast_connections_open") == 0
        assert srv.metric("racecast_viewers_playing") == 0
        assert srv.metric("racecast_frames_sent_total") >= 5
        assert srv.metric("racecast_bytes_sent_total") > 5 * 100
        assert srv.metric("racecast_tick_duration_seconds_count") >= 5
        assert srv.metric("racecast_command_latency_seconds_count") == 4
        assert srv.metric("racecast_replays_open") == 1
