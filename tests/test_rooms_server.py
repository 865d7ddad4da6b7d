"""Rooms on one real server: REST, joining in every mode, control, late joiners, stalls, bad input.

Frame gaps are compared between members at the same instants (never against wall-clock
bands): members of a room on one server get the same frame at the same tick, so the
spread is 0 but for the moments between two members' reads of one tick.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from racecast.server import create_app
from benchmarks.roomutil import Member, create_room, gaps, percentile
from tests.serverutil import Running, StalledClient, read_until_closed, running, write_race

N = 3000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    write_race(root, "race", N, n_drivers=3)
    write_race(root, "other", 200, n_drivers=3)
    return root


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[Running]:
    with running(create_app(data, max_room_members=6, max_rooms=50, room_grace=2.0)) as r:
        yield r


def ws_base(srv: Running) -> str:
    return f"ws://127.0.0.1:{srv.port}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_create_and_read_a_room(srv: Running) -> None:
    with srv.http() as c:
        r = c.post("/api/rooms", json={"replay": "race", "control": "everyone"})
        assert r.status_code == 201
        body = r.json()
        assert body["replay"] == "race" and body["control"] == "everyone" and len(body["host_token"]) >= 20
        info = c.get(f"/api/rooms/{body['room']}").json()
        assert info == {"room": body["room"], "replay": "race", "control": "everyone", "playing": False, "speed": 1.0,
                        "frame": 0, "ended": False, "seq": 0, "members": 0}  # fmt: skip
        assert c.post("/api/rooms", json={"replay": "race"}).json()["control"] == "host"  # the default


@pytest.mark.parametrize(
    "body, status",
    [
        ({"replay": "nope"}, 404),
        ({"replay": "../etc"}, 400),
        ({"replay": "race", "control": "anyone"}, 422),
        ({"replay": 5}, 422),
        ({}, 422),
        ([1, 2], 422),
        ({"replay": "r" * 100}, 422),
    ],
)
def test_create_refuses_bad_requests(srv: Running, body: Any, status: int) -> None:
    with srv.http() as c:
        r = c.post("/api/rooms", json=body)
        assert r.status_code == status, r.text
        assert r.json()["detail"]


def test_get_refuses_bad_and_unknown_rooms(srv: Running) -> None:
    with srv.http() as c:
        assert c.get("/api/rooms/abc").status_code == 400
        assert c.get("/api/rooms/ABCDEFGHIJ").status_code == 400
        r = c.get("/api/rooms/aaaaaaaaaa")
        assert r.status_code == 404 and "no room" in r.json()["detail"]


def test_members_in_every_mode_follow_the_room(srv: Running) -> None:
    room = create_room(srv.base, "race", "host")

    async def go() -> None:
        base = ws_base(srv)
        host = await Member.join(base, "race", room["room"], room["host_token"])
        guest = await Member.join(base, "race", room["room"], mode="compact")
        chunky = await Member.join(base, "race", room["room"], mode="chunks")
        members = [host, guest]
        assert host.of("room")[0]["you_control"] is True and guest.of("room")[0]["you_control"] is False
        await host.command(action="play", speed=1)
        t0 = time.monotonic()
        await asyncio.sleep(1.5)
        ack = await host.command(action="seek", frame=1000)
        await host.command(action="speed", speed=4)
        t1 = time.monotonic()
        await asyncio.sleep(1.5)
        await host.command(action="pause")
        t2 = time.monotonic()
        await asyncio.sleep(0.3)
        for m in (guest, chunky):  # every member gets every acknowledgement, with the room's seq
            await m.wait(lambda m=m: len(m.states()) >= 5, what="4 acks")
            assert [s["seq"] for s in m.states()] == [s["seq"] for s in host.states()] == [0, 1, 2, 3, 4]
        assert ack["frame"] == 1000 and 1000 in [f for _, f in guest.frames]
        # Same frames at the same ticks: nearly every frame the host got, the guest got too.
        hf, gf = {f for _, f in host.frames}, {f for _, f in guest.frames}
        assert len(hf & gf) >= 0.9 * len(hf) and len(hf) > 40
        g1, g4 = gaps(members, t0 + 0.2, t1 - 0.2), gaps(members, t1 + 0.3, t2 - 0.2)
        assert percentile(g1, 50) <= 1 and percentile(g4, 50) <= 4  # within one tick (one frame at 1x)
        assert host.frames[-1][1] == guest.frames[-1][1] == host.states()[-1]["frame"]  # paused on the same frame
        # The chunk member got the chunk holding the seek target at once, and chunks ahead while playing.
        firsts = [f for _, f in chunky.frames]
        assert 1000 in firsts and max(firsts) > 1000 + 4 * 25
        for m in (host, guest, chunky):
            await m.close()

    run(go())


def test_a_joiner_starts_at_the_rooms_position(srv: Running) -> None:
    room = create_room(srv.base, "race", "host")

    async def go() -> None:
        host = await Member.join(ws_base(srv), "race", room["room"], room["host_token"])
        await host.command(action="seek", frame=2000)
        await host.command(action="play", speed=2)
        await asyncio.sleep(1.0)
        late = await Member.join(ws_base(srv), "race", room["room"])
        st = late.states()[0]
        assert st["playing"] is True and st["speed"] == 2.0 and st["seq"] == 2
        await late.wait(lambda: late.frames, what="a frame")
        assert late.frames[0][1] == st["frame"] and st["frame"] >= 2000 + 25  # on the room's frame, not 0
        t = time.monotonic()
        await asyncio.sleep(0.8)
        assert percentile(gaps([host, late], t, t + 0.7), 50) <= 2
        await host.close()
        await late.close()

    run(go())


def test_members_without_control_get_an_error_and_keep_watching(srv: Running) -> None:
    room = create_room(srv.base, "race", "host")

    async def go() -> None:
        host = await Member.join(ws_base(srv), "race", room["room"], room["host_token"])
        guest = await Member.join(ws_base(srv), "race", room["room"])
        await host.command(action="play")
        await guest.send(action="seek", frame=2500)
        err = await guest.wait(lambda: guest.of("error"), what="an error")
        assert "only the host" in err[0]["message"]
        n = len(guest.frames)
        await guest.wait(lambda: len(guest.frames) > n + 10, what="frames after the refusal")
        assert max(f for _, f in guest.frames) < 2500 and guest.closed is None
        assert not host.of("error") and len(host.states()) == 2  # nothing reached the room
        with httpx.Client(base_url=srv.base, trust_env=False) as c:
            info = c.get(f"/api/rooms/{room['room']}").json()
        assert info["seq"] == 1 and info["playing"] is True
        for m in (host, guest):
            await m.close()

    run(go())


def test_a_stalled_member_never_pauses_the_room(srv: Running) -> None:
    room = create_room(srv.base, "race", "everyone")

    async def go() -> None:
        a = await Member.join(ws_base(srv), "race", room["room"])
        b = await Member.join(ws_base(srv), "race", room["room"])
        stalled = StalledClient(srv.port, f"/ws/replay/race?room={room['room']}")  # never reads
        try:
            await a.command(action="play", speed=8)  # fills the stalled member's buffers within a second
            t0 = time.monotonic()
            await asyncio.sleep(2.5)
            t1 = time.monotonic()
        finally:
            stalled.close()
        fs = [f for t, f in a.frames if t >= t0]
        assert fs[-1] - fs[0] > 8 * 25  # the room kept playing (over a second of race at 8x)
        assert percentile(gaps([a, b], t0 + 0.2, t1), 50) <= 8  # and its other members stayed together
        await a.close()
        await b.close()

    run(go())


@pytest.mark.parametrize(
    "query, code, says",
    [
        ("room=short", 4400, "invalid room id"),
        ("room=aaaaaaaaaa", 4404, "no room"),
        ("room={room}&token=wrong", 4403, "host token"),
    ],
)
def test_bad_joins_get_a_loading_error_and_a_close_code(srv: Running, query: str, code: int, says: str) -> None:
    room = create_room(srv.base, "race", "host")

    async def go() -> None:
        url = f"{ws_base(srv)}/ws/replay/race?{query.format(room=room['room'])}"
        await _refused(url, code, says)

    run(go())


async def _refused(url: str, code: int, says: str) -> None:
    got, msgs = await read_until_closed(url)
    texts = [m for m in msgs if isinstance(m, str)]
    assert got == code
    assert any("loading_error" in t and says in t for t in texts), texts


def test_a_room_plays_one_replay_and_has_a_member_limit(srv: Running) -> None:
    room = create_room(srv.base, "race", "everyone")

    async def go() -> None:
        await _refused(f"{ws_base(srv)}/ws/replay/other?room={room['room']}", 4400, "plays replay")
        ms = [await Member.join(ws_base(srv), "race", room["room"]) for _ in range(6)]
        await _refused(f"{ws_base(srv)}/ws/replay/race?room={room['room']}", 1013, "full (6 members)")
        await ms[0].wait(lambda: ms[0].of("room")[-1]["members"] == 6, what="the member count")
        with httpx.Client(base_url=srv.base, trust_env=False) as c:
            assert c.get(f"/api/rooms/{room['room']}").json()["members"] == 6
        for m in ms:
            await m.close()

    run(go())


def test_rooms_per_process_limit(data: Path) -> None:
    with running(create_app(data, max_rooms=2)) as r, r.http() as c:
        assert [c.post("/api/rooms", json={"replay": "race"}).status_code for _ in range(2)] == [201, 201]
        full = c.post("/api/rooms", json={"replay": "race"})
        assert full.status_code == 503 and "2 rooms" in full.json()["detail"] and full.headers["retry-after"] == "60"


def test_a_room_ends_after_its_grace_period(srv: Running) -> None:
    room = create_room(srv.base, "race", "host")

    async def go() -> None:
        m = await Member.join(ws_base(srv), "race", room["room"])
        await m.close()
        with httpx.Client(base_url=srv.base, trust_env=False) as c:
            assert c.get(f"/api/rooms/{room['room']}").status_code == 200  # in its grace period (2 s here)
            end = time.monotonic() + 15
            while c.get(f"/api/rooms/{room['room']}").status_code != 404:
                assert time.monotonic() < end, "the room outlived its grace period"
                await asyncio.sleep(0.2)

    run(go())
