"""Playback state with a fake clock: positions come from wall time x speed, never from tick counts."""

from __future__ import annotations

import json

import pytest

from racecast.playback import FakeClock, Playback
from racecast.protocol import Pause, Ping, Play, Pong, Seek, SetSpeed

FPS = 25
DT = 1 / FPS


def run(pb: Playback, clock: FakeClock, ticks: int, dt: float = DT) -> list[int]:
    """Advance ``ticks`` ticks of ``dt``; return the frames sent (every due frame is 'sent')."""
    out = []
    for _ in range(ticks):
        i = pb.due(clock.advance(dt))
        if i is not None:
            pb.sent(i)
            out.append(i)
    return out


def state(r) -> dict:
    return json.loads(r.message)


def playing(n: int = 1000, speed: float | None = 1.0, start: float = 1000.0) -> tuple[Playback, FakeClock]:
    clock = FakeClock(start)
    pb = Playback(n, FPS)
    pb.start()
    pb.apply(Play(speed), clock.monotonic())
    return pb, clock


def test_start_is_paused_on_frame_zero() -> None:
    pb = Playback(100, FPS)
    r = pb.start()
    assert r.frame == 0 and state(r) == {"type": "state", "playing": False, "speed": 1.0, "frame": 0, "seq": 0, "ended": False}
    assert pb.due(5000.0) is None


def test_1x_sends_every_frame_once_per_tick() -> None:
    pb, clock = playing()
    assert run(pb, clock, 50) == list(range(1, 51))


def test_4x_sends_every_4th_frame() -> None:
    pb, clock = playing(speed=4)
    assert run(pb, clock, 10) == list(range(4, 41, 4))


def test_half_speed_sends_each_frame_once() -> None:
    pb, clock = playing(speed=0.5)
    assert run(pb, clock, 20) == list(range(1, 11))


def test_tick_phase_does_not_matter() -> None:
    # A command lands between ticks: still one new frame per tick, consecutive.
    pb, clock = playing()
    clock.advance(0.013)
    sent = run(pb, clock, 40)
    assert sent == list(range(sent[0], sent[0] + 40)) and sent[0] in (1, 2)


def test_late_tick_never_slows_playback() -> None:
    pb, clock = playing()
    run(pb, clock, 10)  # at frame 10
    assert pb.due(clock.advance(0.5)) == 22  # 0.9 s after play, however few ticks ran
    pb.sent(22)
    assert run(pb, clock, 3) == [23, 24, 25]


def test_wall_time_decides_not_tick_count() -> None:
    pb, clock = playing(speed=2)
    # Irregular ticks: position only depends on elapsed time.
    for dt in (0.01, 0.07, 0.033, 0.2, 0.04):
        i = pb.due(clock.advance(dt))
        if i is not None:
            pb.sent(i)
    assert pb.last_sent == int((0.01 + 0.07 + 0.033 + 0.2 + 0.04) * FPS * 2 + 1e-6)


def test_tick_time_before_the_command_sends_nothing_stale() -> None:
    pb, clock = playing()
    clock.advance(1.0)
    pb.apply(Seek(500), clock.monotonic())
    # A tick scheduled just before the seek arrived (run late) must not go backwards.
    assert pb.due(clock.monotonic() - 0.02) is None
    assert pb.due(clock.advance(DT)) == 501


def test_pause_stops_and_play_resumes_where_shown() -> None:
    pb, clock = playing()
    run(pb, clock, 10)
    r = pb.apply(Pause(), clock.advance(0.01))
    assert r.frame is None and state(r)["playing"] is False and state(r)["frame"] == 10
    assert pb.due(clock.advance(5)) is None
    r = pb.apply(Play(None), clock.monotonic())
    assert r.frame is None and state(r)["playing"] is True and state(r)["frame"] == 10
    assert run(pb, clock, 3) == [11, 12, 13]


def test_pause_and_speed_while_paused_are_harmless() -> None:
    pb = Playback(100, FPS)
    pb.start()
    assert state(pb.apply(Pause(), 0.0))["playing"] is False
    assert state(pb.apply(SetSpeed(8), 0.0))["speed"] == 8.0
    assert pb.due(100.0) is None


def test_seek_sends_target_at_once_and_continues_from_it() -> None:
    pb, clock = playing()
    run(pb, clock, 5)
    r = pb.apply(Seek(700), clock.advance(0.01))
    assert r.frame == 700 and state(r)["frame"] == 700 and state(r)["seq"] == 2
    assert run(pb, clock, 3) == [701, 702, 703]


def test_seek_while_paused_stays_paused() -> None:
    pb = Playback(1000, FPS)
    pb.start()
    r = pb.apply(Seek(300), 0.0)
    assert r.frame == 300 and state(r)["playing"] is False
    assert pb.due(10.0) is None


def test_speed_change_keeps_position() -> None:
    pb, clock = playing()
    run(pb, clock, 10)
    r = pb.apply(SetSpeed(4), clock.monotonic())
    assert r.frame is None and state(r)["speed"] == 4.0
    assert run(pb, clock, 3) == [14, 18, 22]
    pb.apply(Play(1.0), clock.monotonic())  # play with a speed while playing = speed change
    assert run(pb, clock, 2) == [23, 24]


def test_end_of_replay_stops_on_last_frame() -> None:
    pb, clock = playing(n=30, speed=4)
    sent = run(pb, clock, 20)
    assert sent[-1] == 29 and sent == [4, 8, 12, 16, 20, 24, 28, 29]
    assert pb.playing is False and pb.ended is True
    s = json.loads(pb.state())
    assert s["ended"] is True and s["frame"] == 29 and s["playing"] is False
    assert pb.due(clock.advance(1)) is None


def test_end_when_last_frame_already_sent() -> None:
    pb = Playback(10, FPS)
    pb.start()
    pb.apply(Seek(9), 0.0)
    pb.apply(Play(None), 0.0)
    # Play on the last frame restarts from the beginning.
    assert pb.last_sent == 0 and pb.playing


def test_seek_to_last_frame_while_playing_ends_without_resending() -> None:
    pb, clock = playing(n=100)
    pb.apply(Seek(99), clock.monotonic())
    assert pb.due(clock.advance(DT)) is None
    assert pb.ended and not pb.playing and pb.last_sent == 99


def test_play_after_end_restarts() -> None:
    pb, clock = playing(n=10, speed=64)
    run(pb, clock, 3)
    assert pb.ended
    r = pb.apply(Play(None), clock.monotonic())
    assert r.frame == 0 and state(r) == {"type": "state", "playing": True, "speed": 64.0, "frame": 0, "seq": 2, "ended": False}


def test_seek_after_end_clears_ended() -> None:
    pb, clock = playing(n=10, speed=64)
    run(pb, clock, 3)
    r = pb.apply(Seek(3), clock.monotonic())
    assert state(r)["ended"] is False and state(r)["playing"] is False


def test_ping_and_pong_change_nothing() -> None:
    pb = Playback(10, FPS)
    pb.start()
    r = pb.apply(Ping(), 0.0)
    assert r.pong and r.message is None and pb.seq == 0
    r = pb.apply(Pong(), 0.0)
    assert not r.pong and r.message is None and pb.seq == 0


def test_skipped_frames_latest_wins() -> None:
    pb, clock = playing()
    assert pb.due(clock.advance(DT)) == 1  # not recorded as sent: the sink refused it
    assert pb.due(clock.advance(DT)) == 2  # the next tick offers the newer frame, not the backlog
    pb.sent(2)
    assert pb.due(clock.advance(DT)) == 3


def test_other_fps_replays() -> None:
    clock = FakeClock()
    pb = Playback(1000, 10)
    pb.start()
    pb.apply(Play(1.0), clock.monotonic())
    sent = run(pb, clock, 25)  # 25 Hz ticks, 10 fps content: 10 frames a second, each once
    assert sent == list(range(1, 11))


@pytest.mark.parametrize("n, fps", [(0, 25), (10, 0)])
def test_invalid_playback(n: int, fps: float) -> None:
    with pytest.raises(ValueError):
        Playback(n, fps)
