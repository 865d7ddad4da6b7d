"""The engine without sockets: fake sinks, fake clock, one pass per tick."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from racecast.playback import FakeClock, Playback
from racecast.protocol import Pause, Ping, Play, Seek, SetSpeed
from racecast.server.engine import Engine, TickSchedule, Viewer
from racecast.server.metrics import Metrics
from racecast.bundle import open_bundle, write_bundle
from racecast.bundle.wsframe import binary_header, frame_header
from racecast.server.sink import SinkClosed

from tests.factories import tiny_race
from tests.serverutil import async_wait_until

DT = 0.04


class FakeStream:
    """Frame i's payload is the text of i."""

    def __init__(self, n: int) -> None:
        self.count = n

    def __getitem__(self, i: int) -> memoryview:
        assert 0 <= i < self.count
        return memoryview(str(i).encode())

    def message(self, i: int) -> bytes:
        return frame_header(len(self[i])) + self[i]

    def cursor(self) -> "FakeStream":
        return self  # a viewer's cursor only remembers blocks; this stream has none


class FakeSink:
    framed = False

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.refuse = False
        self.closed = False
        self.explode = False
        self.offers = 0

    @property
    def alive(self) -> bool:
        return not self.closed

    def offer(self, payload: memoryview) -> bool:
        self.offers += 1
        if self.explode:
            raise OSError("transport broke")
        if self.closed:
            raise SinkClosed
        if self.refuse:
            return False
        self.log.append(("frame", int(bytes(payload))))
        return True

    def push(self, payload: memoryview) -> None:
        self.log.append(("frame", int(bytes(payload))))

    def post(self, text: str) -> None:
        self.log.append(("text", json.loads(text)))

    def buffered(self) -> int:
        return 0

    async def drain(self) -> None:
        pass

    def frames(self) -> list[int]:
        return [x for k, x in self.log if k == "frame"]  # type: ignore[misc]

    def texts(self) -> list[dict]:
        return [x for k, x in self.log if k == "text"]  # type: ignore[misc]


def make(n: int = 1000, viewers: int = 1, metrics: Metrics | None = None) -> tuple[Engine, FakeClock, list[Viewer]]:
    clock = FakeClock()
    eng = Engine(clock=clock, metrics=metrics)
    vs = []
    for _ in range(viewers):
        v = Viewer("r", Playback(n, 25), FakeStream(n), FakeSink())  # type: ignore[arg-type]
        eng.viewers.add(v)
        v.playback.start()
        vs.append(v)
    return eng, clock, vs


def ticks(eng: Engine, clock: FakeClock, n: int) -> None:
    for _ in range(n):
        eng.tick(clock.advance(DT))


def test_add_sends_state_then_first_frame() -> None:
    async def go() -> list:
        eng = Engine(clock=FakeClock())
        v = Viewer("r", Playback(10, 25), FakeStream(10), FakeSink())  # type: ignore[arg-type]
        eng.add(v)
        await eng.stop()
        return v.sink.log  # type: ignore[attr-defined]

    log = asyncio.run(go())
    assert log[0][0] == "text" and log[0][1]["type"] == "state" and log[1] == ("frame", 0)


def test_only_playing_viewers_are_touched() -> None:
    eng, clock, (a, b) = make(viewers=2)
    eng.command(a, Play(1.0), clock.monotonic())
    ticks(eng, clock, 10)
    assert a.sink.frames() == list(range(1, 11))  # type: ignore[attr-defined]
    assert b.sink.offers == 0 and b.sink.log == []  # type: ignore[attr-defined]
    assert eng.playing_count == 1
    eng.command(a, Pause(), clock.monotonic())
    before = a.sink.offers  # type: ignore[attr-defined]
    ticks(eng, clock, 10)
    assert a.sink.offers == before and eng.playing_count == 0  # type: ignore[attr-defined]


def test_seek_ack_then_target_frame_then_no_stale() -> None:
    eng, clock, (v,) = make()
    eng.command(v, Play(1.0), clock.monotonic())
    ticks(eng, clock, 5)
    v.sink.log.clear()  # type: ignore[attr-defined]
    eng.command(v, Seek(600), clock.advance(0.013))
    ticks(eng, clock, 3)
    log = v.sink.log  # type: ignore[attr-defined]
    assert log[0] == ("text", {"type": "state", "playing": True, "speed": 1.0, "frame": 600, "seq": 2, "ended": False})
    assert log[1] == ("frame", 600)
    assert [x for _, x in log[2:]] == [601, 602, 603]


def test_speed_ack_has_no_frame() -> None:
    eng, clock, (v,) = make()
    eng.command(v, SetSpeed(4), clock.monotonic())
    assert v.sink.log == [("text", {"type": "state", "playing": False, "speed": 4.0, "frame": 0, "seq": 1, "ended": False})]  # type: ignore[attr-defined]


def test_ping_gets_pong() -> None:
    eng, clock, (v,) = make()
    eng.command(v, Ping(), clock.monotonic())
    assert [t["type"] for t in v.sink.texts()] == ["pong"]  # type: ignore[attr-defined]


def test_backpressure_skips_and_latest_wins() -> None:
    m = Metrics()
    eng, clock, (slow, fast) = make(viewers=2, metrics=m)
    for v in (slow, fast):
        eng.command(v, Play(1.0), clock.monotonic())
    slow.sink.refuse = True  # type: ignore[attr-defined]
    ticks(eng, clock, 10)
    assert fast.sink.frames() == list(range(1, 11))  # type: ignore[attr-defined]
    assert slow.sink.frames() == [] and slow.frames_skipped == 10  # type: ignore[attr-defined]
    slow.sink.refuse = False  # type: ignore[attr-defined]
    ticks(eng, clock, 2)
    assert slow.sink.frames() == [11, 12]  # type: ignore[attr-defined]  # the backlog is gone: newest frame only
    assert eng.frames_skipped == 10 and eng.frames_sent == 14
    assert m.frames_skipped._value.get() == 10 and m.frames_sent._value.get() == 14


def test_end_of_replay_sends_last_frame_and_ended_state() -> None:
    eng, clock, (v,) = make(n=30)
    eng.command(v, Play(4.0), clock.monotonic())
    ticks(eng, clock, 12)
    assert v.sink.frames()[-2:] == [28, 29]  # type: ignore[attr-defined]
    last = v.sink.log[-1]  # type: ignore[attr-defined]
    assert last == ("text", {"type": "state", "playing": False, "speed": 4.0, "frame": 29, "seq": 1, "ended": True})
    assert eng.playing_count == 0
    n = len(v.sink.log)  # type: ignore[attr-defined]
    ticks(eng, clock, 5)
    assert len(v.sink.log) == n  # type: ignore[attr-defined]


def test_last_frame_is_delivered_even_when_backed_up() -> None:
    eng, clock, (v,) = make(n=30)
    eng.command(v, Play(64.0), clock.monotonic())
    v.sink.refuse = True  # type: ignore[attr-defined]
    ticks(eng, clock, 2)
    assert v.sink.frames() == [29] and v.sink.texts()[-1]["ended"] is True  # type: ignore[attr-defined]


def test_a_dead_or_broken_viewer_does_not_stop_the_others() -> None:
    m = Metrics()
    eng, clock, (dead, broken, ok) = make(viewers=3, metrics=m)
    for v in (dead, broken, ok):
        eng.command(v, Play(1.0), clock.monotonic())
    dead.sink.closed = True  # type: ignore[attr-defined]
    broken.sink.explode = True  # type: ignore[attr-defined]
    ticks(eng, clock, 5)
    assert ok.sink.frames() == [1, 2, 3, 4, 5]  # type: ignore[attr-defined]
    assert eng.playing_count == 1
    assert m.errors.labels("send_failed")._value.get() == 1


def test_removed_viewer_is_not_served() -> None:
    eng, clock, (v,) = make()
    eng.command(v, Play(1.0), clock.monotonic())
    eng.remove(v)
    ticks(eng, clock, 3)
    assert v.sink.offers == 0 and eng.playing_count == 0  # type: ignore[attr-defined]
    eng.command(v, Play(1.0), clock.monotonic())  # commands to a removed viewer are ignored
    assert eng.playing_count == 0


def test_viewers_at_different_positions_and_speeds() -> None:
    eng, clock, (a, b) = make(viewers=2)
    eng.command(b, Seek(500), clock.monotonic())
    eng.command(a, Play(1.0), clock.monotonic())
    eng.command(b, Play(4.0), clock.monotonic())
    ticks(eng, clock, 5)
    assert a.sink.frames()[-5:] == [1, 2, 3, 4, 5]  # type: ignore[attr-defined]
    assert b.sink.frames()[-5:] == [504, 508, 512, 516, 520]  # type: ignore[attr-defined]


def test_schedule_has_no_drift_and_skips_missed_ticks() -> None:
    s = TickSchedule(0.04, 100.0)
    assert s.advance(100.041) == (pytest.approx(100.04), 0)
    assert s.advance(100.0805) == (pytest.approx(100.08), 0)
    # Early wake-ups still run the scheduled tick, not an extra one.
    assert s.advance(100.119) == (pytest.approx(100.12), 0)
    # 0.1 s late: two ticks skipped, no burst.
    target, missed = s.advance(100.26)
    assert missed == 2 and target == pytest.approx(100.24)
    assert s.next_target == pytest.approx(100.28)
    for k in range(1000):
        s.advance(s.next_target + 0.001)
    assert s.next_target == pytest.approx(100.28 + 1000 * 0.04)


def test_ticker_runs_on_the_real_clock() -> None:
    async def go() -> list[int]:
        eng = Engine()
        v = Viewer("r", Playback(1000, 25), FakeStream(1000), FakeSink())  # type: ignore[arg-type]
        eng.add(v)
        eng.command(v, Play(1.0))
        await async_wait_until(lambda: len(v.sink.frames()) >= 6, what="6 frames")  # type: ignore[attr-defined]
        await eng.stop()
        return v.sink.frames()  # type: ignore[attr-defined]

    frames = asyncio.run(go())
    assert frames[0] == 0 and len(frames) >= 6
    # In order, none twice; a tick the loaded machine ran late skips frames, it does not repeat them.
    assert all(b > a for a, b in zip(frames, frames[1:])), frames


def test_idle_viewers_get_pings_playing_ones_do_not() -> None:
    async def go() -> tuple[list, list]:
        eng = Engine(ping_interval=0.2)
        idle = Viewer("r", Playback(100000, 25), FakeStream(100000), FakeSink())  # type: ignore[arg-type]
        busy = Viewer("r", Playback(100000, 25), FakeStream(100000), FakeSink())  # type: ignore[arg-type]
        eng.add(idle)
        eng.add(busy)
        eng.command(busy, Play(1.0))
        await async_wait_until(lambda: any(t["type"] == "ping" for t in idle.sink.texts()), what="a ping")  # type: ignore[attr-defined]
        await async_wait_until(lambda: len(busy.sink.frames()) >= 10, what="10 frames")  # type: ignore[attr-defined]
        await eng.stop()
        return idle.sink.texts(), busy.sink.texts()  # type: ignore[attr-defined]

    idle, busy = asyncio.run(go())
    assert sum(t["type"] == "ping" for t in idle) >= 1
    assert not any(t["type"] == "ping" for t in busy)


@pytest.mark.parametrize("n, size", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_frame_header_lengths(n: int, size: int) -> None:
    h = frame_header(n)
    assert len(h) == size and h[0] == 0x82 and (h[1] & 0x80) == 0  # FIN+binary, unmasked
    assert binary_header(n) == h


class FramedSink(FakeSink):
    framed = True

    def offer(self, payload: memoryview) -> bool:  # type: ignore[override]
        self.offers += 1
        self.log.append(("raw", payload))
        return True


def test_direct_path_gets_pre_framed_zero_copy_slices_of_the_bundle(tmp_path) -> None:
    bundle = open_bundle(write_bundle(tiny_race(n_frames=60, n_drivers=3), tmp_path / "r"))
    stream = bundle.streams["msgpack"]
    clock = FakeClock()
    eng = Engine(clock=clock)
    vs = []
    for _ in range(3):
        v = Viewer("r", Playback(stream.count, 25), stream, FramedSink())  # type: ignore[arg-type]
        eng.viewers.add(v)
        v.playback.start()
        eng.command(v, Play(1.0), clock.monotonic())
        vs.append(v)
    eng.tick(clock.advance(DT))
    sent = [v.sink.log[-1][1] for v in vs]  # type: ignore[attr-defined]
    payload = bytes(bundle.frame(1))
    for data in sent:
        assert isinstance(data, memoryview)  # a slice of the mapped file, not a per-send copy
        assert bytes(data) == frame_header(len(payload)) + payload  # header + payload, ready for the socket


def test_a_command_between_slices_of_a_tick_sends_nothing_stale() -> None:
    eng, clock, vs = make(viewers=4)
    eng.slice_size = 2
    for v in vs:
        eng.command(v, Play(1.0), clock.monotonic())
    ticks(eng, clock, 3)
    target = clock.advance(DT)
    steps = eng.tick_steps(target)  # the ticker's own sequence: it yields to the loop between slices
    next(steps)  # the first slice is served; the ticker now yields
    # A seek for a viewer of the second slice lands while the ticker yields (its time is after the tick's).
    late = vs[3]
    late.sink.log.clear()  # type: ignore[attr-defined]
    eng.command(late, Seek(800), target + 0.004)
    assert list(steps) == []  # the second slice: the last one, no more yields
    assert late.sink.log == [  # type: ignore[attr-defined]
        ("text", {"type": "state", "playing": True, "speed": 1.0, "frame": 800, "seq": 2, "ended": False}),
        ("frame", 800),
    ]
    assert vs[2].sink.frames()[-1] == 4  # type: ignore[attr-defined]
    ticks(eng, clock, 2)  # frame 801 is due one frame period after the seek
    assert late.sink.frames()[-2:] == [800, 801]  # type: ignore[attr-defined]


def test_tick_and_the_ticker_run_one_sequence() -> None:
    """``tick()`` (tests) is the asyncio ticker's sequence run without yielding: same frames, same counts."""
    runs = []
    for sliced in (False, True):
        eng, clock, vs = make(viewers=5)
        eng.slice_size = 2
        for v in vs:
            eng.command(v, Play(1.0), clock.monotonic())
        for _ in range(4):
            now = clock.advance(DT)
            if sliced:
                assert sum(1 for _ in eng.tick_steps(now)) == 2  # 5 viewers in slices of 2: two pauses
            else:
                eng.tick(now)
        runs.append(([v.sink.frames() for v in vs], eng.ticks, eng.frames_sent, eng.visits))  # type: ignore[attr-defined]
    assert runs[0] == runs[1] and runs[0][1] == 4 and runs[0][2] == 20


def test_the_engine_imports_without_the_web_stack() -> None:
    """Sans I/O: the engine, its sink interface and feeds import with uvicorn, Starlette and prometheus blocked."""
    code = (
        "import sys\n"
        "for m in ('uvicorn', 'starlette', 'fastapi', 'prometheus_client', 'websockets', 'uvloop'):\n"
        "    sys.modules[m] = None\n"
        "import racecast.server.engine, racecast.server.sink, racecast.feeds\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_sliced_ticker_serves_everyone() -> None:
    async def go() -> list[list[int]]:
        eng = Engine(slice_size=2)
        stream = FakeStream(1000)
        vs = [Viewer("r", Playback(1000, 25), stream, FakeSink()) for _ in range(5)]  # type: ignore[arg-type]
        for v in vs:
            eng.add(v)
            eng.command(v, Play(1.0))
        await async_wait_until(lambda: all(len(v.sink.frames()) >= 5 for v in vs), what="5 frames each")  # type: ignore[attr-defined]
        await eng.stop()
        return [v.sink.frames() for v in vs]  # type: ignore[attr-defined]

    for frames in asyncio.run(go()):
        assert len(frames) >= 5 and frames[0] == 0 and all(b > a for a, b in zip(frames, frames[1:])), frames
