"""Command parsing and validation, without sockets: every bad input gets a clear ProtocolError."""

from __future__ import annotations

import json

import pytest

from racecast.protocol import (
    MAX_COMMAND_BYTES,
    Bounds,
    CommandTooLarge,
    Pause,
    Ping,
    Play,
    Pong,
    ProtocolError,
    RateLimiter,
    Seek,
    SetSpeed,
    loading_complete,
    parse_command,
    state_message,
)


class Line:
    """A timeline of 1000 frames at 25 fps from t=10 s, 5 laps of 200 frames."""

    n_frames = 1000

    def frame_at(self, seconds: float) -> int:
        return min(max(int((seconds - 10.0) * 25), 0), 999)

    def frame_of_lap(self, lap: int) -> int:
        return (lap - 1) * 200


BOUNDS = Bounds(n_frames=1000, t_start=10.0, t_end=10.0 + 999 / 25, max_lap=5)


def parse(obj: object) -> object:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return parse_command(text, BOUNDS, Line())


@pytest.mark.parametrize(
    "msg, expected",
    [
        ({"action": "play", "speed": 2}, Play(2.0)),
        ({"action": "play"}, Play(None)),
        ({"action": "play", "speed": None}, Play(None)),
        ({"action": "pause"}, Pause()),
        ({"action": "speed", "speed": 0.5}, SetSpeed(0.5)),
        ({"action": "speed", "speed": 64}, SetSpeed(64.0)),
        ({"action": "speed", "speed": 0.1}, SetSpeed(0.1)),
        ({"action": "seek", "frame": 0}, Seek(0, "frame")),
        ({"action": "seek", "frame": 999}, Seek(999, "frame")),
        ({"action": "seek", "frame": 12.0}, Seek(12, "frame")),
        ({"action": "seek", "t": 14}, Seek(100, "t")),
        ({"action": "seek", "lap": 3}, Seek(400, "lap")),
        ({"action": "ping"}, Ping()),
        ({"action": "pong", "t": 1}, Pong()),
        ({"action": "pause", "extra": "ignored"}, Pause()),
    ],
)
def test_valid_commands(msg: dict, expected: object) -> None:
    assert parse(msg) == expected


@pytest.mark.parametrize(
    "msg, fragment",
    [
        ("not json", "malformed JSON"),
        ("{", "malformed JSON"),
        ('{"action": "play", "speed": NaN}', "not a number JSON allows"),
        ('{"action": "play", "speed": Infinity}', "not a number JSON allows"),
        ('{"action": "play", "speed": 1e999}', "must be finite"),
        ("[1, 2]", "must be a JSON object"),
        ('"play"', "must be a JSON object"),
        ({}, 'needs an "action"'),
        ({"action": 5}, "action must be a string"),
        ({"action": "jump"}, "unknown action 'jump'"),
        ({"action": "play", "speed": "fast"}, "speed must be a number"),
        ({"action": "play", "speed": True}, "speed must be a number"),
        ({"action": "play", "speed": 0}, "between 0.1 and 64"),
        ({"action": "play", "speed": -1}, "between 0.1 and 64"),
        ({"action": "play", "speed": 65}, "between 0.1 and 64"),
        ({"action": "speed"}, 'needs a "speed"'),
        ({"action": "speed", "speed": 0.09}, "between 0.1 and 64"),
        ({"action": "speed", "speed": [1]}, "speed must be a number"),
        ({"action": "seek"}, "exactly one of"),
        ({"action": "seek", "frame": 1, "t": 2}, "exactly one of"),
        ({"action": "seek", "frame": "10"}, "frame must be an integer"),
        ({"action": "seek", "frame": 1.5}, "frame must be an integer"),
        ({"action": "seek", "frame": False}, "frame must be an integer"),
        ({"action": "seek", "frame": -1}, "outside the replay (0..999)"),
        ({"action": "seek", "frame": 1000}, "outside the replay (0..999)"),
        ({"action": "seek", "frame": 10**30}, "outside the replay"),
        ({"action": "seek", "t": 9.99}, "outside the replay"),
        ({"action": "seek", "t": 60}, "outside the replay"),
        ({"action": "seek", "t": "5"}, "t must be a number"),
        ({"action": "seek", "lap": 0}, "lap 0 is outside the replay"),
        ({"action": "seek", "lap": 6}, "laps 1..5"),
        ({"action": "seek", "lap": 2.5}, "lap must be an integer"),
    ],
)
def test_bad_commands(msg: object, fragment: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse(msg)
    assert fragment in str(e.value)


def test_oversized_command_is_its_own_error() -> None:
    msg = json.dumps({"action": "pause", "pad": "x" * MAX_COMMAND_BYTES})
    with pytest.raises(CommandTooLarge, match="over the 4096-byte limit"):
        parse(msg)
    # Exactly at the limit is fine.
    base = json.dumps({"action": "pause", "pad": ""})
    ok = json.dumps({"action": "pause", "pad": "x" * (MAX_COMMAND_BYTES - len(base))})
    assert len(ok) == MAX_COMMAND_BYTES and parse(ok) == Pause()


def test_deeply_nested_json_is_a_clean_error() -> None:
    with pytest.raises(ProtocolError):
        parse("[" * 2000 + "]" * 2000)


def test_unknown_action_message_is_truncated() -> None:
    with pytest.raises(ProtocolError) as e:
        parse({"action": "x" * 1000})
    assert len(str(e.value)) < 200


def test_rate_limiter_allows_burst_then_rate() -> None:
    rl = RateLimiter(rate=10, burst=5, now=0.0)
    assert [rl.delay(0.0) for _ in range(5)] == [0.0] * 5
    assert rl.delay(0.0) == pytest.approx(0.1)
    assert rl.delay(0.0) == pytest.approx(0.2)
    # Waiting refills the bucket, up to the burst.
    rl2 = RateLimiter(rate=10, burst=5, now=0.0)
    for _ in range(5):
        rl2.delay(0.0)
    assert rl2.delay(0.5) == 0.0
    rl3 = RateLimiter(rate=10, burst=2, now=0.0)
    assert rl3.delay(100.0) == 0.0 and rl3.delay(100.0) == 0.0 and rl3.delay(100.0) > 0


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1, now=0)


def test_server_messages_are_compact_json() -> None:
    s = json.loads(state_message(playing=True, speed=2.0, frame=7, seq=3, ended=False))
    assert s == {"type": "state", "playing": True, "speed": 2.0, "frame": 7, "seq": 3, "ended": False}
    lc = json.loads(loading_complete(100, 0.01, 0.02, '{"id":"x","fps":25}'))
    assert lc["type"] == "loading_complete" and lc["frames"] == 100 and lc["metadata"] == {"id": "x", "fps": 25}
