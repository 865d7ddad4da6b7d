"""One viewer's playback state, sans I/O: where it is, how fast it goes, what to send now.

A playing viewer's position is derived from the clock: ``anchor_frame +
(now - anchor_time) x fps x speed``. So a late tick never slows playback (the
next one simply lands further on), 4x sends every 4th frame, 0.5x sends each
frame once, and a paused viewer is a few numbers that nothing touches.

:meth:`Playback.apply` handles a command and returns the state message plus the
frame to send at once (a seek's target goes out right after its acknowledgement,
not at the next tick). :meth:`Playback.due` is what the engine calls on each tick.
Time comes from outside (``now`` arguments), so tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .protocol import Command, Pause, Ping, Play, Pong, Seek, SetSpeed, state_message

__all__ = [
    "Playback",
    "Reaction",
    "Clock",
    "SystemClock",
    "FakeClock",
    "NEAR_SEEK_WALL_S",
    "NEAR_SEEK_RACE_S",
]

# A position within this of the next whole frame counts as that frame: float
# arithmetic on tick times must not make a frame arrive one tick late.
_EPS = 1e-6

#: A seek this close to a *playing* viewer's position is a no-op ("already there"): a tenth of a
#: second of wall time at the viewer's speed, kept between 0.1 s and 0.4 s of race time. Clients
#: that drive playback from their own clock (the seed's sends a seek on every frame it draws)
#: then cost nothing while they agree with the server, and a real jump still re-anchors at once.
NEAR_SEEK_WALL_S = 0.1
NEAR_SEEK_RACE_S = (0.1, 0.4)


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock (``time.monotonic``)."""

    monotonic: Callable[[], float] = staticmethod(time.monotonic)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


@dataclass(frozen=True)
class Reaction:
    """What to do after a command: send ``message`` (JSON text, may be None), then frame ``frame`` (may be None)."""

    message: str | None
    frame: int | None = None
    pong: bool = False


class Playback:
    """Playback state of one viewer of a replay of ``n_frames`` frames at ``fps``."""

    __slots__ = ("n_frames", "fps", "last_frame", "playing", "speed", "ended", "seq", "anchor_frame", "anchor_time", "last_sent", "_rate")

    def __init__(self, n_frames: int, fps: float, *, speed: float = 1.0, start_frame: int = 0) -> None:
        if n_frames < 1 or fps <= 0:
            raise ValueError("a replay needs at least one frame and a positive fps")
        self.n_frames = n_frames
        self.fps = float(fps)
        self.last_frame = n_frames - 1
        self.playing = False
        self.speed = float(speed)
        self.ended = False
        self.seq = 0
        self.anchor_frame = float(start_frame)  # position at anchor_time
        self.anchor_time = 0.0
        self.last_sent = -1  # last frame written to the client (-1: none yet)
        self._rate = self.fps * self.speed  # frames per second of wall time

    # -- reading ----------------------------------------------------------------------------
    def position(self, now: float) -> float:
        """Fractional frame position at ``now`` (not clamped)."""
        if not self.playing:
            return self.anchor_frame
        return self.anchor_frame + max(0.0, now - self.anchor_time) * self._rate

    @property
    def frame(self) -> int:
        """The frame the client shows (or is about to be sent)."""
        return self.last_sent if self.last_sent >= 0 else int(self.anchor_frame)

    def near_frames(self) -> float:
        """How far (frames) a seek may land from a playing viewer's position and still be a no-op."""
        lo, hi = NEAR_SEEK_RACE_S
        return self.fps * min(hi, max(lo, NEAR_SEEK_WALL_S * self.speed))

    def already_at(self, frame: int, now: float) -> bool:
        """True when a seek to ``frame`` would not change what the viewer sees.

        Paused (or ended): ``frame`` is the frame it shows. Playing: ``frame`` is within
        :meth:`near_frames` of its position at ``now``."""
        if not self.playing:
            return frame == self.frame
        return abs(frame - self.position(now)) <= self.near_frames()

    def state(self) -> str:
        return state_message(playing=self.playing, speed=self.speed, frame=self.frame, seq=self.seq, ended=self.ended)

    # -- the tick ---------------------------------------------------------------------------
    def due(self, now: float) -> int | None:
        """Frame to send on the tick at ``now``, or None. Reaching the last frame ends playback:
        the caller sees ``playing`` turn False and sends :meth:`state`."""
        if not self.playing:
            return None
        i = int(self.anchor_frame + max(0.0, now - self.anchor_time) * self._rate + _EPS)
        if i >= self.last_frame:
            self.playing = False
            self.ended = True
            self.anchor_frame = float(self.last_frame)
            return None if self.last_sent == self.last_frame else self.last_frame
        return None if i == self.last_sent else i

    def time_at(self, frame: float) -> float:
        """When the playhead reaches ``frame`` (within :data:`_EPS`, as :meth:`due` counts); inf if never."""
        if not self.playing or self._rate <= 0:
            return float("inf")
        return self.anchor_time + (frame - _EPS - self.anchor_frame) / self._rate

    def catch_up(self, now: float) -> None:
        """Record the playhead at ``now`` as sent: for viewers the engine visits only now and then
        (chunk mode), whose client plays on its own, so a command reads where the client is."""
        if self.playing:
            i = min(int(self.position(now) + _EPS), self.last_frame)
            if i > self.last_sent:
                self.last_sent = i

    def sent(self, i: int) -> None:
        """Record that frame ``i`` was written (a skipped frame is simply not recorded)."""
        self.last_sent = i

    # -- commands ---------------------------------------------------------------------------
    def start(self) -> Reaction:
        """The state and first frame a new viewer gets: the start frame, or the frame a room put it on."""
        f = self.frame
        self.last_sent = f
        return Reaction(self.state(), f)

    def apply(self, cmd: Command, now: float) -> Reaction:
        """Apply a validated command at ``now``; return the state to send and the frame to send at once."""
        if isinstance(cmd, Ping):
            return Reaction(None, pong=True)
        if isinstance(cmd, Pong):
            return Reaction(None)
        frame: int | None = None
        if isinstance(cmd, Play):
            if cmd.speed is not None:
                self._set_speed(cmd.speed, now)
            if self.ended or self.frame >= self.last_frame:
                # Play on the last frame restarts the replay.
                frame = 0
                self.anchor_frame = 0.0
                self.ended = False
            elif not self.playing:
                self.anchor_frame = float(self.frame)
            if not self.playing:
                self.anchor_time = now
                self.playing = True
        elif isinstance(cmd, Pause):
            if self.playing:
                self.playing = False
                self.anchor_frame = float(self.frame)
        elif isinstance(cmd, SetSpeed):
            self._set_speed(cmd.speed, now)
        elif isinstance(cmd, Seek):
            if not self.already_at(cmd.frame, now):  # else: costs nothing, only its reply
                frame = cmd.frame
                self.anchor_frame = float(frame)
                self.anchor_time = now
                self.ended = False
        else:  # pragma: no cover - the parser only builds the types above
            raise TypeError(f"not a command: {cmd!r}")
        if frame is not None:
            self.last_sent = frame
        self.seq += 1
        return Reaction(self.state(), frame)

    def follow(self, *, playing: bool, speed: float, anchor_frame: float, anchor_time: float, seq: int, jump: int | None) -> None:
        """Take a position and speed decided elsewhere (a room: every member gets the same anchor, so
        every member's ``due`` returns the same frame at the same tick). ``jump``: the frame the
        viewer is sent at once (a seek, a pause), recorded as sent."""
        self.speed = float(speed)
        self._rate = self.fps * self.speed
        self.anchor_frame = min(float(anchor_frame), float(self.last_frame))
        self.anchor_time = anchor_time
        self.seq = seq
        self.playing = playing
        self.ended = False
        if playing and self.anchor_frame >= self.last_frame:
            self.playing, self.ended = False, True
        if jump is not None:
            self.last_sent = jump

    def _set_speed(self, speed: float, now: float) -> None:
        if self.playing:
            self.anchor_frame = self.position(now)
            self.anchor_time = now
        self.speed = float(speed)
        self._rate = self.fps * self.speed
