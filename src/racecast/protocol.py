"""The viewer wire protocol, sans I/O: parse client commands, build server messages.

Clients send JSON text commands (``{"action": "play", "speed": 2}``...). Parsing
validates everything (size, JSON, types, finite numbers, ranges, positions inside
the replay) and returns a typed command or raises :class:`ProtocolError` with a
message meant for the client. Server messages are built here too, so the
adapter only moves bytes. docs/protocol.md is the reference for all of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Union

from .errors import BadRequest

__all__ = [
    "Command",
    "Play",
    "Pause",
    "Seek",
    "SetSpeed",
    "Ping",
    "Pong",
    "Bounds",
    "Timeline",
    "ProtocolError",
    "CommandTooLarge",
    "parse_command",
    "decode_text",
    "is_extension",
    "RateLimiter",
    "SeekPacer",
    "state_message",
    "error_message",
    "loading_progress",
    "loading_error",
    "loading_complete",
    "ping_message",
    "pong_message",
    "dumps",
    "MAX_COMMAND_BYTES",
    "MIN_SPEED",
    "MAX_SPEED",
    "ACTIONS",
]

#: Largest accepted control message (bytes of UTF-8). Bigger ones close the socket with 1009.
MAX_COMMAND_BYTES = 4096
MIN_SPEED = 0.1
MAX_SPEED = 64.0

ACTIONS = ("play", "pause", "seek", "speed", "ping", "pong")


class ProtocolError(BadRequest, ValueError):
    """A command the server refuses; ``str(e)`` is sent to the client as is."""

    kind = "bad_command"


class CommandTooLarge(ProtocolError):
    """A control message over :data:`MAX_COMMAND_BYTES` (the socket closes with 1009)."""


class Timeline(Protocol):
    """What command validation needs to know about a replay (a :class:`~racecast.bundle.Bundle` fits)."""

    n_frames: int

    def frame_at(self, seconds: float) -> int: ...

    def frame_of_lap(self, lap: int) -> int: ...


@dataclass(frozen=True)
class Bounds:
    """A replay's seekable range: frames ``0..n_frames-1``, times ``t_start..t_end``, laps ``1..max_lap``."""

    n_frames: int
    t_start: float
    t_end: float
    max_lap: int


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    action: ClassVar[str] = "play"
    speed: float | None = None  # None: keep the current speed


@dataclass(frozen=True)
class Pause:
    action: ClassVar[str] = "pause"


@dataclass(frozen=True)
class Seek:
    action: ClassVar[str] = "seek"
    frame: int  # resolved target frame
    by: str = "frame"  # what the client gave: "frame", "t" or "lap"


@dataclass(frozen=True)
class SetSpeed:
    action: ClassVar[str] = "speed"
    speed: float


@dataclass(frozen=True)
class Ping:
    """Client asks for a ``pong`` (RTT measurement); changes nothing."""

    action: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Pong:
    """Client's answer to a server ping; ignored."""

    action: ClassVar[str] = "pong"


Command = Union[Play, Pause, Seek, SetSpeed, Ping, Pong]


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"malformed JSON: {name} is not a number JSON allows")


def _number(msg: dict[str, Any], key: str) -> float:
    v = msg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"{key} must be a number, got {type(v).__name__}")
    f = float(v)
    if not math.isfinite(f):
        raise ProtocolError(f"{key} must be finite, got {v!r}")
    return f


def _integer(msg: dict[str, Any], key: str) -> int:
    v = msg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"{key} must be an integer, got {type(v).__name__}")
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            raise ProtocolError(f"{key} must be an integer, got {v!r}")
        v = int(v)
    return v


def _speed(msg: dict[str, Any], key: str = "speed") -> float:
    s = _number(msg, key)
    if not MIN_SPEED <= s <= MAX_SPEED:
        raise ProtocolError(f"{key} must be between {MIN_SPEED} and {MAX_SPEED:g}, got {s:g}")
    return s


def decode_text(data: str | bytes) -> dict[str, Any]:
    """Size-check and parse one control message into a JSON object."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandTooLarge(f"control message of {len(raw)} bytes is over the {MAX_COMMAND_BYTES}-byte limit")
    try:
        msg = json.loads(raw, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"malformed JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"a command must be a JSON object, got {type(msg).__name__}")
    return msg


def parse_command(data: str | bytes, bounds: Bounds, timeline: Timeline) -> Command:
    """Parse and validate one client command against a replay; raise :class:`ProtocolError`."""
    msg = decode_text(data)
    action = msg.get("action")
    if action is None:
        raise ProtocolError('a command needs an "action" field (one of: ' + ", ".join(ACTIONS) + ")")
    if not isinstance(action, str):
        raise ProtocolError(f"action must be a string, got {type(action).__name__}")
    if action == "play":
        return Play(_speed(msg) if msg.get("speed") is not None else None)
    if action == "pause":
        return Pause()
    if action == "speed":
        if "speed" not in msg:
            raise ProtocolError('"speed" command needs a "speed" field')
        return SetSpeed(_speed(msg))
    if action == "seek":
        return _seek(msg, bounds, timeline)
    if action == "ping":
        return Ping()
    if action == "pong":
        return Pong()
    raise ProtocolError(f"unknown action {action[:40]!r}; expected one of: " + ", ".join(ACTIONS))


def _seek(msg: dict[str, Any], b: Bounds, timeline: Timeline) -> Seek:
    given = [k for k in ("frame", "t", "lap") if msg.get(k) is not None]
    if len(given) != 1:
        raise ProtocolError('seek needs exactly one of "frame", "t" (seconds) or "lap"')
    key = given[0]
    if key == "frame":
        f = _integer(msg, "frame")
        if not 0 <= f < b.n_frames:
            raise ProtocolError(f"frame {f} is outside the replay (0..{b.n_frames - 1})")
        return Seek(f, "frame")
    if key == "t":
        t = _number(msg, "t")
        if not b.t_start <= t <= b.t_end:
            raise ProtocolError(f"t {t:g} s is outside the replay ({b.t_start:g}..{b.t_end:g} s)")
        return Seek(timeline.frame_at(t), "t")
    lap = _integer(msg, "lap")
    if not 1 <= lap <= b.max_lap:
        raise ProtocolError(f"lap {lap} is outside the replay (the leader runs laps 1..{b.max_lap})")
    return Seek(timeline.frame_of_lap(lap), "lap")


def is_extension(cmd: Command) -> bool:
    """A command only racecast's clients send (the seed's send play, pause and seek by frame)."""
    return isinstance(cmd, (SetSpeed, Ping, Pong)) or (isinstance(cmd, Seek) and cmd.by != "frame")


# -- rate limiting and coalescing -----------------------------------------------------------


class RateLimiter:
    """Token bucket: ``burst`` commands at once, then ``rate`` per second.

    :meth:`delay` says how far over the budget a command is (0 when within it). The
    adapter reads every message as it comes (so the WebSocket keepalive is always
    answered) and closes a connection whose commands go over the budget: a flood
    costs a bounded amount of work and ends with its connection.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def delay(self, now: float) -> float:
        """Take one token; return the seconds to wait first (0 when within the budget)."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate


class SeekPacer:
    """Latest seek wins: real seeks (ones that move the viewer) are applied at most once per
    ``interval``; one arriving sooner is held, and a later seek replaces the held one.

    Sans I/O: :meth:`offer` says whether to apply a seek now; the adapter applies what
    :meth:`take` returns when :attr:`due` comes (or before any other command, which must
    not overtake it). ``merged`` counts the superseded seeks (each is still acknowledged).
    """

    __slots__ = ("interval", "last", "pending", "merged")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf  # when the last real seek was applied
        self.pending: Seek | None = None
        self.merged = 0

    @property
    def due(self) -> float | None:
        """When the held seek may be applied (None: nothing held)."""
        return None if self.pending is None else self.last + self.interval

    def offer(self, seek: Seek, now: float, moves: bool) -> bool:
        """True: apply ``seek`` now (and :meth:`applied` if it ``moves`` the viewer); False: held."""
        if self.pending is None and (not moves or now - self.last >= self.interval):
            return True
        if self.pending is not None:
            self.merged += 1
        self.pending = seek
        return False

    def applied(self, now: float) -> None:
        self.last = now

    def take(self) -> tuple[Seek, int] | None:
        """The held seek and how many seeks it superseded; clears the slot."""
        if self.pending is None:
            return None
        out = (self.pending, self.merged)
        self.pending = None
        self.merged = 0
        return out


# -- server messages ----------------------------------------------------------------------


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def state_message(*, playing: bool, speed: float, frame: int, seq: int, ended: bool) -> str:
    return dumps({"type": "state", "playing": playing, "speed": speed, "frame": frame, "seq": seq, "ended": ended})


def error_message(message: str) -> str:
    return dumps({"type": "error", "message": message})


def loading_progress(progress: float, message: str, *, percent: bool = False) -> str:
    """``progress`` is 0-1; ``percent``: send it as 0-100 (what the seed's client shows)."""
    return dumps({"type": "loading_progress", "progress": round(progress * 100, 1) if percent else progress, "message": message})


def loading_error(message: str) -> str:
    return dumps({"type": "loading_error", "message": message})


def loading_complete(frames: int, load_time: float, elapsed: float, metadata_json: str) -> str:
    """``metadata_json`` is already serialized (once per replay), so it is spliced in, not re-encoded."""
    head = dumps({"type": "loading_complete", "frames": frames, "load_time_seconds": round(load_time, 6), "elapsed_seconds": round(elapsed, 6)})
    return head[:-1] + ',"metadata":' + metadata_json + "}"


def ping_message(t: float) -> str:
    return dumps({"type": "ping", "t": round(t, 3)})


def pong_message(t: float) -> str:
    return dumps({"type": "pong", "t": round(t, 3)})
