"""Per-viewer feeds without sockets: compact keyframes when needed, chunks pushed ahead of the playhead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from racecast.bundle import open_bundle, write_bundle
from racecast.bundle.chunks import decode_chunk
from racecast.bundle.compact import decode_compact
from racecast.bundle.quantize import quantize
from racecast.feeds import ChunkFeed, CompactFeed, FeedError, FrameFeed, make_feed
from racecast.playback import FakeClock, Playback
from racecast.protocol import Pause, Play, Seek, SetSpeed
from racecast.server.engine import Engine, Viewer
from tests.factories import tiny_race

DT = 0.04
N = 600  # 24 s, 24 chunks


class BytesSink:
    """Keeps every binary payload and JSON message; can refuse offers (backpressure)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.refuse = False
        self.writes = 0

    alive = True
    framed = False

    def offer(self, payload) -> bool:
        if self.refuse:
            return False
        self.push(payload)
        return True

    def push(self, payload) -> None:
        """One write: a payload, or a tuple of payloads (several messages written together)."""
        self.writes += 1
        for p in payload if type(payload) is tuple else (payload,):
            self.log.append(("bin", bytes(p)))

    def post(self, text: str) -> None:
        self.log.append(("text", json.loads(text)))

    def buffered(self) -> int:
        return 0

    def binaries(self) -> list[bytes]:
        return [p for kind, p in self.log if kind == "bin"]  # type: ignore[misc]


@pytest.fixture(scope="module")
def race():
    return tiny_race(n_frames=N, n_drivers=3, race_id="feeds")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, race):
    b = open_bundle(write_bundle(race, tmp_path_factory.mktemp("f") / "feeds"))
    yield b
    b.close()


def viewer_for(bundle, params: dict[str, str]) -> tuple[Viewer, BytesSink, Engine, FakeClock]:
    clock = FakeClock()
    engine = Engine(clock=clock)
    pb = Playback(bundle.n_frames, bundle.fps)
    feed = make_feed(bundle, pb, params)
    sink = BytesSink()
    v = Viewer("feeds", pb, feed.stream, sink, feed)
    engine.viewers.add(v)
    r = pb.start()
    sink.post(r.message)
    engine._push(v, r.frame, -1)
    return v, sink, engine, clock


def play(engine: Engine, v: Viewer, clock: FakeClock, seconds: float, speed: float = 1.0) -> None:
    engine.command(v, Play(speed=speed), clock.t)
    for _ in range(round(seconds / DT)):
        engine.tick(clock.advance(DT))


def test_make_feed_picks_the_stream_and_refuses_unknown_options(bundle):
    pb = Playback(bundle.n_frames, bundle.fps)
    assert isinstance(make_feed(bundle, pb, {}), FrameFeed)
    assert make_feed(bundle, pb, {}).stream is bundle.streams["msgpack"]
    assert isinstance(make_feed(bundle, pb, {"encoding": "compact"}), CompactFeed)
    f = make_feed(bundle, pb, {"mode": "chunks"})
    assert isinstance(f, ChunkFeed) and f.stream is bundle.streams["chunks.gz"]
    assert make_feed(bundle, pb, {"mode": "chunks", "compression": "identity"}).stream is bundle.streams["chunks"]
    for bad, msg in [
        ({"encoding": "zip"}, "unknown frame encoding"),
        ({"encoding": "chunks"}, "unknown frame encoding"),
        ({"mode": "bulk"}, "unknown mode"),
        ({"mode": "chunks", "compression": "lzma"}, "unknown chunk compression"),
        ({"mode": "chunks", "lookahead": "x"}, "lookahead"),
        ({"mode": "chunks", "lookahead": "100"}, "lookahead"),
    ]:
        with pytest.raises(FeedError, match=msg):
            make_feed(bundle, pb, bad)


def test_compact_feed_sends_the_keyframe_only_when_the_viewer_lacks_it(bundle):
    s = bundle.streams["compact"]
    f = CompactFeed(s, 25)
    assert bytes(f.message(25, 24)) == bytes(s[25])  # a keyframe goes alone
    assert bytes(f.message(30, 26)) == bytes(s[30])  # same second: the viewer holds keyframe 25
    assert bytes(f.message(30, 24)) == bytes(s[25]) + bytes(s[30])  # crossed a boundary without 25
    assert bytes(f.message(30, -1)) == bytes(s[25]) + bytes(s[30])  # after a seek: unknown


@pytest.mark.parametrize("speed", [1.0, 4.0, 0.5])
def test_compact_viewer_decodes_every_message_at_any_speed(bundle, race, speed):
    q = quantize(race)
    v, sink, engine, clock = viewer_for(bundle, {"encoding": "compact"})
    play(engine, v, clock, 6.0, speed)
    engine.command(v, Seek(frame=437), clock.t)
    play(engine, v, clock, 2.0, speed)
    key = None
    shown = []
    for msg in sink.binaries():
        f = decode_compact(msg, key)  # never MissingKeyframe
        key = f.key
        shown.append(f.frame_index)
        np.testing.assert_array_equal(f.q["x"], q["x"][f.frame_index])
    assert 437 in shown and len(shown) > 50


def test_compact_backpressure_skips_frames_and_still_decodes(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"encoding": "compact"})
    engine.command(v, Play(speed=1.0), clock.t)
    for k in range(300):
        sink.refuse = (k // 7) % 3 == 1  # bursts of refused offers: frames skipped across keyframes
        engine.tick(clock.advance(DT))
    key = None
    for msg in sink.binaries():
        key = decode_compact(msg, key).key
    assert v.frames_skipped > 0


def test_chunk_mode_pushes_ahead_one_message_per_chunk_one_write_per_two_seconds(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks", "compression": "identity", "lookahead": "2"})
    first = [decode_chunk(p).first_frame for p in sink.binaries()]
    assert first == [0, 25]  # paused at connect: the chunk to show and the next (a pair, one write)
    assert sink.writes == 1
    play(engine, v, clock, 10.0)
    chunks = [decode_chunk(p).first_frame // 25 for p in sink.binaries()]
    assert chunks == list(range(len(chunks)))  # each once, in order, one chunk per message
    pos = v.playback.frame // 25
    assert pos + 2 <= chunks[-1] <= pos + 4  # bounded lookahead: 2 s ahead at 1x, plus the pair's second
    assert 10 <= len(chunks) <= 15  # ~1 chunk per second (plus the lookahead), not 25 frames
    assert sink.writes <= len(chunks) // 2 + 2  # chunks go out in pairs: one write per two seconds
    engine.command(v, Pause(), clock.t)
    n = len(sink.binaries())
    for _ in range(50):
        engine.tick(clock.advance(DT))
    assert len(sink.binaries()) == n  # paused viewers get nothing


def test_chunk_mode_seek_sends_the_target_chunk_at_once_and_restarts_there(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks", "compression": "identity"})
    play(engine, v, clock, 3.0)
    engine.command(v, Seek(frame=401), clock.t)
    log = sink.log
    ack = max(k for k, (kind, m) in enumerate(log) if kind == "text" and m.get("type") == "state")
    assert log[ack + 1][0] == "bin" and decode_chunk(log[ack + 1][1]).first_frame == 400
    play(engine, v, clock, 3.0)
    after = [decode_chunk(p).first_frame // 25 for p in sink.binaries()[-4:]]
    assert after == sorted(after) and all(c >= 16 for c in after)
    engine.command(v, Seek(frame=30), clock.t)  # backwards: chunk 1 again (and 2 with it)
    assert [decode_chunk(p).first_frame for p in sink.binaries()[-2:]] == [25, 50]


def test_chunk_mode_retries_a_refused_chunk_and_skips_what_the_playhead_passed(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks", "compression": "identity"})
    engine.command(v, Play(speed=1.0), clock.t)
    sink.refuse = True
    for _ in range(round(5 / DT)):
        engine.tick(clock.advance(DT))
    sink.refuse = False
    engine.tick(clock.advance(DT))
    got = decode_chunk(sink.binaries()[-2]).first_frame // 25  # the pair's first
    assert got == v.playback.frame // 25  # the chunk under the playhead, not the stale ones
    assert v.frames_skipped > 0


def test_chunk_mode_reaches_the_end_and_stops(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks", "compression": "identity"})
    engine.command(v, Seek(frame=N - 60), clock.t)
    play(engine, v, clock, 4.0)
    assert not v.playback.playing and v.playback.ended
    chunks = [decode_chunk(p).first_frame // 25 for p in sink.binaries()]
    assert chunks[-1] == (N - 1) // 25 and len(set(chunks[1:])) == len(chunks[1:])
    states = [m for kind, m in sink.log if kind == "text" and m.get("type") == "state"]
    assert states[-1]["ended"] is True


def test_msgpack_viewers_are_unchanged(bundle):
    v, sink, engine, clock = viewer_for(bundle, {})
    play(engine, v, clock, 1.0)
    assert all(p[0] in (0x84, 0x85) for p in sink.binaries())  # msgpack maps, one per frame
    assert len(sink.binaries()) >= 20




def test_chunk_pacer_plays_what_the_server_pushes_with_every_chunk_on_time(bundle, race):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks"})  # gzip, as browsers get it
    pacer, shown = pacer_run(engine, v, sink, clock, {0: Play(speed=1.0)}, round(8 / DT))
    assert None not in shown, "stalled: the chunk under the playhead had not arrived"
    assert pacer.late == 0 and pacer.received <= 8 + 4
    assert shown == sorted(shown) and shown[-1] - shown[0] >= 190
    q = quantize(race)
    assert pacer.frame_at(clock.t)["drivers"][race.codes[0]]["x"] == q["x"][shown[-1], 0] / 100


# -- the engine visits chunk viewers only when something is due ------------------------------


def pacer_run(engine: Engine, v: Viewer, sink: BytesSink, clock: FakeClock, script: dict[int, object], n_ticks: int):
    """Tick ``n_ticks`` times, applying ``script[tick]`` commands, feeding a ChunkPacer; return it and
    the frame it showed at every tick (None: a stall, the chunk under its playhead had not arrived)."""
    from racecast.chunk_client import ChunkPacer

    pacer = ChunkPacer(fps=v.playback.fps, last_frame=v.playback.last_frame)
    seen = 0

    def deliver() -> None:
        nonlocal seen
        for kind, m in sink.log[seen:]:
            if kind == "text" and m.get("type") == "state":
                pacer.on_state(m, clock.t)
            elif kind == "bin":
                pacer.on_chunk(m, clock.t)
        seen = len(sink.log)

    deliver()
    shown = []
    for k in range(n_ticks):
        if k in script:
            engine.command(v, script[k], clock.t)
            deliver()
        engine.tick(clock.advance(DT))
        deliver()
        f = pacer.frame_at(clock.t)
        shown.append(None if f is None else f["frame_index"])
    return pacer, shown


def test_a_chunk_viewer_costs_one_visit_per_two_seconds_not_one_per_tick(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks"})
    pacer, shown = pacer_run(engine, v, sink, clock, {0: Play(speed=1.0)}, round(12 / DT))
    assert None not in shown and pacer.late == 0  # every chunk before the playhead got there
    assert shown[-1] - shown[0] >= 12 * 25 - 2
    # 300 ticks: a visit or two to fill the lookahead, then one per pair of chunks (every 2 s), nothing between.
    assert engine.visits <= 6 + 3, engine.visits
    assert engine.ticks == 300


@pytest.mark.parametrize("speed", [0.5, 1.0, 4.0, 8.0])
def test_chunks_stay_on_time_through_seeks_speed_changes_and_pauses(bundle, speed):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks"})
    script = {
        0: Play(speed=speed),
        40: Seek(frame=301),  # forwards, while playing
        60: SetSpeed(speed=2 * speed),
        90: Seek(frame=60),  # backwards
        120: Pause(),
        150: Play(),
        170: SetSpeed(speed=speed / 2),
    }
    pacer, shown = pacer_run(engine, v, sink, clock, script, 230)
    assert pacer.late == 0
    playing = [f for k, f in enumerate(shown) if not v.playback.ended]
    assert None not in playing
    # The visits stay well under one per tick.
    assert engine.visits < 230 * 0.5 if speed <= 4 else engine.visits < 230


def test_pause_reads_the_playhead_of_a_viewer_not_visited_for_a_while(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks"})
    engine.command(v, Play(speed=1.0), clock.t)
    for _ in range(37):  # 1.48 s: frame 37, between two visits
        engine.tick(clock.advance(DT))
    engine.command(v, Pause(), clock.t)
    states = [m for kind, m in sink.log if kind == "text" and m.get("type") == "state"]
    assert states[-1]["frame"] == 37 and states[-1]["playing"] is False


def test_a_refused_chunk_is_retried_at_the_next_tick(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks", "compression": "identity"})
    engine.command(v, Play(speed=1.0), clock.t)
    for _ in range(30):
        engine.tick(clock.advance(DT))
    n = len(sink.binaries())
    visits = engine.visits
    sink.refuse = True
    ticks_refused = 0
    while engine.visits == visits:  # up to the next visit: a chunk is due
        engine.tick(clock.advance(DT))
        ticks_refused += 1
    assert ticks_refused <= 25 and v.frames_skipped == 1
    engine.tick(clock.advance(DT))
    assert engine.visits == visits + 2 and v.frames_skipped == 2  # refused again: retried the very next tick
    sink.refuse = False
    engine.tick(clock.advance(DT))
    assert len(sink.binaries()) == n + 2 and engine.visits == visits + 3  # the refused pair, at once
    due = decode_chunk(sink.binaries()[-2]).first_frame // 25
    assert due * 25 <= v.playback.frame + 50  # the chunk the lookahead wanted, not a later one


def test_the_end_of_the_replay_reaches_a_chunk_viewer_on_its_tick(bundle):
    v, sink, engine, clock = viewer_for(bundle, {"mode": "chunks"})
    engine.command(v, Seek(frame=N - 100), clock.t)
    engine.command(v, Play(speed=1.0), clock.t)
    ended_at = None
    for k in range(1, 120):
        engine.tick(clock.advance(DT))
        states = [m for kind, m in sink.log if kind == "text" and m.get("type") == "state"]
        if states[-1]["ended"]:
            ended_at = k
            break
    assert ended_at == 99  # the tick at which the playhead reaches the last frame, not later
    assert states[-1]["frame"] == N - 1 and engine.playing_count == 0
    assert engine.visits < 20


def test_frame_viewers_are_still_visited_every_tick_beside_chunk_viewers(bundle):
    clock = FakeClock()
    engine = Engine(clock=clock)
    viewers = []
    for params in ({}, {"encoding": "compact"}, {"mode": "chunks"}, {"mode": "chunks"}):
        pb = Playback(bundle.n_frames, bundle.fps)
        feed = make_feed(bundle, pb, params)
        sink = BytesSink()
        v = Viewer("feeds", pb, feed.stream, sink, feed)
        engine.viewers.add(v)
        pb.start()
        engine.command(v, Play(speed=1.0), clock.t)
        viewers.append((v, sink))
    for _ in range(100):
        engine.tick(clock.advance(DT))
    assert engine.playing_count == 4
    for v, sink in viewers[:2]:
        assert len(sink.binaries()) == 100  # a frame per tick
    assert engine.visits <= 2 * 100 + 2 * (4 + 4)


def test_the_real_ticker_serves_chunk_viewers_from_the_wheel(bundle):
    import asyncio

    async def go():
        engine = Engine()
        pb = Playback(bundle.n_frames, bundle.fps)
        feed = make_feed(bundle, pb, {"mode": "chunks", "compression": "identity"})
        sink = BytesSink()
        v = Viewer("feeds", pb, feed.stream, sink, feed)
        engine.add(v)
        engine.command(v, Play(speed=4.0))
        await asyncio.sleep(1.5)
        await engine.stop()
        return engine, sink

    engine, sink = asyncio.run(go())
    chunks = [decode_chunk(p).first_frame // 25 for p in sink.binaries()]
    assert chunks == list(range(len(chunks))) and len(chunks) >= 4  # in order, each once, kept coming
    # Every visit had a chunk to send (none wasted), apart from the visit that found the end of what was pushed.
    assert engine.visits <= engine.frames_sent + 2 and engine.visits < engine.ticks
