"""`racecast serve` and `racecast demo` as real processes: bind, print the URL, serve, stop cleanly."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import websockets

from benchmarks.common import RacecastProcess
from tests.serverutil import ViewerClient, frames_only, read_until_closed, write_race

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", 1000)
    write_race(root, "demo", 500)  # present, so `racecast demo` does not simulate
    return root


Proc = RacecastProcess  # `racecast ARGS` in a child process, its output searchable


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.p.poll() is None:
            p.p.kill()
            p.p.wait()


def get(port: int, path: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as c:
        return c.get(f"http://127.0.0.1:{port}{path}")


def test_serve_prints_url_serves_and_shuts_down_viewers_with_1001(data: Path, procs: list[Proc]) -> None:
    p = Proc("serve", "--data", str(data), "--port", "0")
    procs.append(p)
    m = p.wait_for(r"serving 2 replays from .* at: http://127\.0\.0\.1:(\d+)/")
    port = int(m.group(1))
    assert get(port, "/healthz").json()["status"] == "ok"
    assert {r["id"] for r in get(port, "/api/replays").json()} == {"race", "demo"}

    async def go() -> int:
        v = await ViewerClient.open(f"ws://127.0.0.1:{port}/ws/replay/race?encoding=msgpack")
        await v.ready()
        await v.command(action="play", speed=1)
        assert frames_only(await v.collect(0.5))
        p.p.send_signal(signal.SIGINT)
        with pytest.raises(websockets.ConnectionClosed) as e:
            while True:
                await v.next(10)
        assert e.value.rcvd is not None
        return e.value.rcvd.code

    assert asyncio.run(go()) == 1001
    assert p.stop() == 0


def test_client_faults_are_logged_at_the_default_log_level(data: Path, procs: list[Proc]) -> None:
    """docs/security.md: each client fault is one ``racecast.faults`` line, shown at the default level."""
    p = Proc("serve", "--data", str(data), "--port", "0")  # --log-level warning, the default
    procs.append(p)
    port = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/").group(1))

    code, _ = asyncio.run(read_until_closed(f"ws://127.0.0.1:{port}/ws/replay/no-such-replay?encoding=msgpack", 10))
    assert code == 4404
    p.wait_for(r"client fault \(unknown_replay\): .*no-such-replay", timeout=20)
    assert p.stop() == 0


def test_demo_serves_the_demo_replay_and_prints_the_viewer_url(data: Path, procs: list[Proc]) -> None:
    p = Proc("demo", "--data", str(data), "--port", "0")
    procs.append(p)
    p.wait_for(r"demo replay ready: demo")
    m = p.wait_for(r"http://127\.0\.0\.1:(\d+)/\?replay=demo")
    port = int(m.group(1))
    assert get(port, "/api/replays/demo").json()["total_frames"] == 500
    assert p.stop() == 0


def test_serve_with_two_workers(data: Path, procs: list[Proc]) -> None:
    p = Proc("serve", "--data", str(data), "--port", "0", "--workers", "2")
    procs.append(p)
    port = int(p.wait_for(r"http://127\.0\.0\.1:(\d+)/").group(1))
    deadline = 60.0
    for _ in range(int(deadline / 0.2)):
        try:
            if get(port, "/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("workers never answered")

    async def go() -> list[int]:
        v = await ViewerClient.open(f"ws://127.0.0.1:{port}/ws/replay/race?encoding=msgpack")
        await v.ready()
        await v.command(action="play", speed=2)
        got = frames_only(await v.collect(0.5))
        await v.close()
        return got

    assert len(asyncio.run(go())) >= 3
    assert p.stop() == 0


def test_serve_refuses_a_busy_port(data: Path, procs: list[Proc]) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        p = Proc("serve", "--data", str(data), "--port", str(s.getsockname()[1]))
        procs.append(p)
        assert p.p.wait(60) != 0
        assert "cannot listen" in "".join(p.output) or "address already in use" in "".join(p.output).lower()
    finally:
        s.close()


def test_serve_no_ingest_refuses_sessions_not_on_disk(data: Path, procs: list[Proc]) -> None:
    p = Proc("serve", "--data", str(data), "--port", "0", "--no-ingest")
    procs.append(p)
    port = int(p.wait_for(r"\(ingest disabled\) at: http://127\.0\.0\.1:(\d+)/").group(1))
    with httpx.Client(trust_env=False, timeout=10) as c:
        r = c.post(f"http://127.0.0.1:{port}/api/sessions", json={"year": 2023, "round_num": 5, "session_type": "R"})
    # the seed's contract: 200 with the id, the reason in "error" (and as loading_error on the socket)
    assert r.status_code == 200 and "server-side ingest is disabled" in r.json()["error"]
    assert p.stop() == 0
    assert not (data / "2023_5_R").exists()


def test_shutdown_with_commanding_clients_is_prompt_and_quiet(data: Path, procs: list[Proc]) -> None:
    """Issue 13 item 6: commands pouring in (a seed-style client seeking every frame, a raw client that
    sent 500 seeks and never reads) must not hold the shutdown up or print CancelledError tracebacks."""
    from benchmarks.seed_client import SeedClient
    from tests.serverutil import StalledClient

    p = Proc("serve", "--data", str(data), "--port", "0")
    procs.append(p)
    port = int(p.wait_for(r"at: http://127\.0\.0\.1:(\d+)/").group(1))
    assert get(port, "/healthz").status_code == 200

    async def go() -> float:
        c = SeedClient(f"ws://127.0.0.1:{port}/ws/replay/race")
        await c.open()
        await asyncio.wait_for(c.loaded.wait(), 10)
        await c.play(4.0)
        raw = StalledClient(port, "/ws/replay/race")
        for k in range(500):
            raw.send_text('{"action":"seek","frame":%d}' % (k % 400))
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        p.p.send_signal(signal.SIGINT)
        while c.stats.closed is None and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        raw.close()
        c.playing = False
        for t in c._tasks:
            t.cancel()
        return took

    took = asyncio.run(go())
    code = p.p.wait(20)  # by itself: a second signal would force the exit
    out = "".join(p.output)
    assert code == 0 and took < 10, out
    assert "Traceback" not in out and "CancelledError" not in out, out
