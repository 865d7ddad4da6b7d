"""Rooms without sockets: the room state and clock (sans I/O), then the hub driving a real engine
with fake sinks and a fake clock, so "every member gets the same frame at the same tick" is exact."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

import pytest

from racecast.playback import FakeClock, Playback
from racecast.protocol import Pause, Ping, Play, Seek, SetSpeed
from racecast.rooms import (
    InvalidRoomId,
    RoomError,
    RoomFull,
    RoomState,
    TooManyRooms,
    UnknownRoom,
    WrongToken,
    check_room_id,
    new_room,
    new_room_id,
    newer,
)
from racecast.server.engine import Engine, Viewer
from racecast.server.rooms import RoomHub
from tests.test_engine import DT, FakeSink, FakeStream

N = 1000
FPS = 25.0


def room(control: str = "host", now: float = 100.0) -> tuple[RoomState, str]:
    return new_room("race", N, FPS, control, now, "p1")


# -- the room state, sans I/O -------------------------------------------------------------


def test_room_clock_is_anchor_plus_elapsed_times_fps_times_speed() -> None:
    s, _ = room()
    s, jump = s.apply(Play(2.0), 100.0, "p1")
    assert jump is None and s.playing and s.seq == 1
    assert s.frame(100.0) == 0 and s.frame(101.0) == 50 and s.position(100.5) == pytest.approx(25.0)
    s, jump = s.apply(SetSpeed(4.0), 101.0, "p1")  # speed keeps the position
    assert jump is None and s.frame(101.0) == 50 and s.frame(102.0) == 150 and s.seq == 2
    s, jump = s.apply(Pause(), 102.0, "p1")
    assert jump == 150 and not s.playing and s.frame(500.0) == 150
    s, jump = s.apply(Seek(900), 103.0, "p1")
    assert jump == 900 and not s.playing and s.frame(200.0) == 900 and s.seq == 4
    s, _ = s.apply(Play(), 104.0, "p1")
    assert s.frame(104.0) == 900 and s.frame(104.5) == 900 + 50 and s.frame(105.0) == N - 1
    assert s.ended(200.0) and s.frame(200.0) == N - 1  # clamped at the end
    msg = json.loads(s.state_message(200.0))
    assert msg == {"type": "state", "playing": False, "speed": 4.0, "frame": N - 1, "seq": 5, "ended": True}
    s, jump = s.apply(Play(), 201.0, "p1")  # play on the last frame restarts
    assert jump == 0 and s.frame(201.0) == 0 and s.playing


def test_versions_order_states_the_same_everywhere() -> None:
    s, _ = room()
    a, _ = s.apply(Play(), 101.0, "a")
    b, _ = s.apply(Seek(10), 101.0, "b")  # same seq and time: the origin breaks the tie
    c, _ = a.apply(Pause(), 100.5, "a")  # a later seq wins even with an earlier clock
    assert newer(b, a) and not newer(a, b) and not newer(a, a)
    assert newer(c, b) and newer(a, s) and newer(s, None)
    assert max([a, b, c, s], key=lambda x: x.version) is c


def test_state_round_trips_and_malformed_states_are_refused() -> None:
    s, token = room("everyone")
    s, _ = s.apply(Play(3.0), 101.0, "p1")
    assert RoomState.from_json(s.to_json()) == s
    assert token not in s.to_json()  # only the hash is shared
    good = json.loads(s.to_json())
    bad = [b"", b"[]", b"{}", b"not json", json.dumps({**good, "room": "../etc"}), json.dumps({**good, "control": "anyone"}),
           json.dumps({**good, "n_frames": 0}), json.dumps({**good, "anchor_frame": N + 5}), json.dumps({**good, "speed": "fast"})]  # fmt: skip
    for raw in bad:
        with pytest.raises(ValueError):
            RoomState.from_json(raw)


def test_room_ids_and_tokens() -> None:
    ids = {new_room_id() for _ in range(200)}
    assert len(ids) == 200 and all(check_room_id(i) == i for i in ids)
    for bad in ["", "abc", "ABCDEFGHIJ", "abcdefghi1", "abcdefghijk", "../abcdefg", "abcdefgh j", "x" * 10_000]:
        with pytest.raises(InvalidRoomId):
            check_room_id(bad)
    with pytest.raises(RoomError):
        new_room("race", N, FPS, "anyone", 0.0, "p1")


# -- the hub with a real engine, fake sinks, fake clock ------------------------------------


class Rig:
    """One process: an engine and a room hub on a fake clock, viewers with fake sinks."""

    def __init__(self, **hub_kw: Any) -> None:
        self.clock = FakeClock()
        self.engine = Engine(clock=self.clock)
        self.hub = RoomHub(self.engine, **hub_kw)

    def viewer(self) -> Viewer:
        return Viewer("race", Playback(N, FPS), FakeStream(N), FakeSink())  # type: ignore[arg-type]

    async def join(self, room_id: str, token: str | None = None) -> Viewer:
        adm = await self.hub.admit(room_id, "race", token)
        v = self.viewer()
        self.hub.attach(adm, v)
        self.engine.add(v)
        return v

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.engine.tick(self.clock.advance(DT))

    async def close(self) -> None:
        await self.engine.stop()
        await self.hub.stop()


def arun(fn: Callable[[Rig], Awaitable[None]], **kw: Any) -> None:
    async def go() -> None:
        rig = Rig(**kw)
        try:
            await fn(rig)
        finally:
            await rig.close()

    asyncio.run(go())


def frames(v: Viewer) -> list[int]:
    return v.sink.frames()  # type: ignore[attr-defined]


def texts(v: Viewer, type_: str | None = None) -> list[dict]:
    return [t for t in v.sink.texts() if type_ is None or t["type"] == type_]  # type: ignore[attr-defined]


def test_members_get_the_same_frame_at_every_tick_whoever_commands() -> None:
    async def go(rig: Rig) -> None:
        s, token = await rig.hub.create("race", N, FPS, "everyone")
        a, b = await rig.join(s.room, token), await rig.join(s.room)
        for v in (a, b):
            assert texts(v, "room")[0]["you_control"] is True and texts(v, "state")[0]["frame"] == 0
        await rig.hub.command(b, Play(1.0))  # "everyone": b may
        rig.ticks(20)
        await rig.hub.command(a, SetSpeed(4.0))
        rig.clock.advance(0.013)
        rig.ticks(10)
        await rig.hub.command(b, Seek(500))
        rig.ticks(10)
        await rig.hub.command(a, Pause())
        rig.ticks(5)
        assert frames(a) == frames(b) and len(frames(a)) > 40
        assert frames(a)[-1] == texts(a, "state")[-1]["frame"]  # paused members show the room's frame
        sa, sb = texts(a, "state"), texts(b, "state")
        assert sa == sb and [x["seq"] for x in sa] == [0, 1, 2, 3, 4]  # the room's seq, to everyone

    arun(go)


def test_a_joiner_starts_at_the_rooms_position_at_once() -> None:
    async def go(rig: Rig) -> None:
        s, token = await rig.hub.create("race", N, FPS, "host")
        host = await rig.join(s.room, token)
        await rig.hub.command(host, Play(2.0))
        rig.ticks(50)  # 2 s at 2x: frame 100
        late = await rig.join(s.room)
        st = texts(late, "state")[0]
        assert st["playing"] is True and st["speed"] == 2.0 and st["seq"] == 1
        assert st["frame"] == frames(host)[-1] == frames(late)[0] == 100
        rig.ticks(7)
        assert frames(late)[1:] == frames(host)[-7:]

    arun(go)


def test_only_the_host_controls_a_host_room_and_others_keep_watching() -> None:
    async def go(rig: Rig) -> None:
        s, token = await rig.hub.create("race", N, FPS, "host")
        host, guest = await rig.join(s.room, token), await rig.join(s.room)
        assert texts(guest, "room")[0]["you_control"] is False and texts(host, "room")[0]["you_control"] is True
        await rig.hub.command(host, Play())
        rig.ticks(5)
        assert await rig.hub.command(guest, Seek(700)) is False
        assert await rig.hub.command(guest, Pause()) is False
        assert "only the host" in texts(guest, "error")[-1]["message"]
        assert texts(host, "error") == []
        rig.ticks(5)
        assert frames(guest) == frames(host) and frames(guest)[-1] == 10  # still playing, not moved
        assert await rig.hub.command(guest, Ping()) is True  # ping is not control
        assert rig.hub.rooms[s.room].state.seq == 1
        with pytest.raises(WrongToken):
            await rig.hub.admit(s.room, "race", "not-the-token")
        with pytest.raises(RoomError, match="plays replay 'race'"):
            await rig.hub.admit(s.room, "other", None)

    arun(go)


def test_a_stalled_member_skips_ahead_and_never_holds_the_room() -> None:
    async def go(rig: Rig) -> None:
        s, token = await rig.hub.create("race", N, FPS, "everyone")
        a, stalled = await rig.join(s.room, token), await rig.join(s.room)
        await rig.hub.command(a, Play())
        rig.ticks(10)
        stalled.sink.refuse = True  # type: ignore[attr-defined]
        rig.ticks(30)
        stalled.sink.refuse = False  # type: ignore[attr-defined]
        rig.ticks(3)
        assert frames(a) == list(range(0, 44))  # frame 0 at join, then every tick
        assert frames(stalled)[-3:] == [41, 42, 43]  # it resumes at the room's frame, not where it stopped
        assert 11 not in frames(stalled)

    arun(go)


def test_room_lives_while_it_has_members_then_for_the_grace_period() -> None:
    async def go(rig: Rig) -> None:
        s, _ = await rig.hub.create("race", N, FPS, "host")
        t0 = rig.clock.monotonic()
        rig.hub.sweep(t0 + 9.9)
        v = await rig.join(s.room)  # within the grace after creation
        rig.hub.sweep(t0 + 1000)  # a member: lives on
        assert s.room in rig.hub.rooms
        rig.clock.advance(2000)
        rig.hub.leave(v)
        rig.hub.sweep(rig.clock.monotonic() + 9.9)
        assert s.room in rig.hub.rooms
        rig.hub.sweep(rig.clock.monotonic() + 10.0)
        assert s.room not in rig.hub.rooms
        with pytest.raises(UnknownRoom):
            await rig.hub.admit(s.room, "race", None)

    arun(go, grace=10.0)


def test_member_count_reaches_members_within_a_sweep() -> None:
    async def go(rig: Rig) -> None:
        s, _ = await rig.hub.create("race", N, FPS, "host")
        a = await rig.join(s.room)
        b = await rig.join(s.room)
        assert texts(b, "room")[-1]["members"] == 2 and texts(a, "room")[-1]["members"] == 1
        rig.hub.sweep(rig.clock.monotonic())
        assert texts(a, "room")[-1]["members"] == 2
        rig.hub.leave(b)
        rig.hub.sweep(rig.clock.monotonic())
        assert texts(a, "room")[-1]["members"] == 1 and texts(a, "room")[-1]["control"] == "host"

    arun(go)


def test_limits_rooms_per_process_and_members_per_room() -> None:
    async def go(rig: Rig) -> None:
        rooms = [await rig.hub.create("race", N, FPS, "host") for _ in range(3)]
        with pytest.raises(TooManyRooms):
            await rig.hub.create("race", N, FPS, "host")
        rid = rooms[0][0].room
        await rig.join(rid)
        await rig.join(rid)
        with pytest.raises(RoomFull):
            await rig.hub.admit(rid, "race", None)
        with pytest.raises(InvalidRoomId):
            await rig.hub.admit("nope", "race", None)
        with pytest.raises(UnknownRoom):
            await rig.hub.admit("a" * 10, "race", None)

    arun(go, max_rooms=3, max_members=2)


def test_remote_states_move_members_like_local_commands() -> None:
    async def go(rig: Rig) -> None:
        s, token = await rig.hub.create("race", N, FPS, "host")
        v = await rig.join(s.room)
        state = rig.hub.rooms[s.room].state
        played, _ = state.apply(Play(), rig.hub.now() - 0.001, "elsewhere")
        rig.hub.adopt(played)
        rig.ticks(5)
        rig.clock.advance(0.013)  # between ticks, as commands come
        seeked, _ = played.apply(Seek(300), rig.hub.now(), "elsewhere")
        rig.hub.adopt(seeked)
        rig.hub.adopt(played)  # an old state arriving late changes nothing
        rig.ticks(3)
        assert frames(v) == [0, 1, 2, 3, 4, 5, 300, 301, 302]
        assert [t["seq"] for t in texts(v, "state")] == [0, 1, 2]

    arun(go)
