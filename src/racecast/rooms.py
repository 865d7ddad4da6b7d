"""Watch-party rooms, sans I/O: one room's state, its clock, and what a command does to it.

A room is a handful of numbers every member (on any server) agrees on: ``playing``,
``speed``, ``anchor_frame`` and ``anchor_time``. The room's position at any instant
is ``anchor_frame + (now - anchor_time) x fps x speed`` — the same formula one
viewer's :class:`~racecast.playback.Playback` uses — where ``now`` is read on the
*room clock*, a time base shared by every process serving the room (a process's
monotonic clock plus an offset; with Redis, the offset is estimated against Redis's
``TIME``). So members never exchange frames or ticks: each server computes the same
frame from the same clock, and a command is just a new anchor.

A state carries a version ``(seq, changed_at, origin)``: ``seq`` counts the commands
applied to the room, ``changed_at`` is the room-clock time of the last one and
``origin`` the process that applied it. Every process keeps the highest version it
has seen, so states can arrive in any order, twice, or late (after a Redis outage)
and all processes still end on the same one.

Nothing here does I/O or reads a clock: times come in as arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_TRY_LATER, RacecastError
from .protocol import Command, Pause, Play, ProtocolError, Seek, SetSpeed, dumps

#: Room ids: 10 characters of lowercase base32 (a-z, 2-7); 50 bits, unguessable enough to share as a link.
ROOM_ID_LENGTH = 10
_ROOM_ID = re.compile(r"^[a-z2-7]{%d}$" % ROOM_ID_LENGTH)
#: Controls a room may have.
CONTROLS = ("host", "everyone")
#: Defaults for the per-process limits (``create_app(max_rooms=..., max_room_members=..., room_grace=...)``).
MAX_ROOMS = 1000
MAX_ROOM_MEMBERS = 500
ROOM_GRACE_S = 60.0

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_EPS = 1e-6


class RoomError(RacecastError, ValueError):
    """A room request that cannot be honoured; ``str(e)`` is meant for the client."""

    http_status = 422
    close_code = CLOSE_BAD_REQUEST
    kind = "room_refused"


class InvalidRoomId(RoomError):
    http_status = 400


class UnknownRoom(RoomError):
    http_status = 404
    close_code = CLOSE_NOT_FOUND


class RoomFull(RoomError):
    http_status = 503
    close_code = CLOSE_TRY_LATER


class TooManyRooms(RoomError):
    http_status = 503
    close_code = CLOSE_TRY_LATER

    def __init__(self, message: str = "") -> None:
        super().__init__(message, headers={"Retry-After": "60"})


class WrongToken(RoomError):
    http_status = 403
    close_code = CLOSE_FORBIDDEN


class NotInControl(ProtocolError):
    """A member without control sent play / pause / seek / speed (the member keeps watching)."""


def new_room_id() -> str:
    return "".join(secrets.choice(_B32) for _ in range(ROOM_ID_LENGTH))


def check_room_id(room_id: str) -> str:
    """``room_id`` if well formed, else :class:`InvalidRoomId` (shown to the client, so the input is cut short)."""
    if not isinstance(room_id, str) or not _ROOM_ID.match(room_id):
        raise InvalidRoomId(f"invalid room id {str(room_id)[:40]!r}: room ids are {ROOM_ID_LENGTH} characters of a-z and 2-7")
    return room_id


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """What a room stores of its host token (the token itself only goes to the room's creator)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, stored_hash: str) -> bool:
    return token is not None and hmac.compare_digest(token_hash(token), stored_hash)


@dataclass(frozen=True)
class RoomState:
    """Everything every server needs to play a room; immutable (a command makes a new one)."""

    room: str
    replay: str
    control: str  # "host" | "everyone"
    host_hash: str  # sha256 of the host token
    n_frames: int
    fps: float
    playing: bool = False
    speed: float = 1.0
    anchor_frame: float = 0.0
    anchor_time: float = 0.0  # room clock
    seq: int = 0
    changed_at: float = 0.0  # room clock time of the last command (version tiebreak)
    origin: str = ""  # process that applied the last command (version tiebreak)

    # -- reading ----------------------------------------------------------------------------
    @property
    def version(self) -> tuple[int, float, str]:
        return (self.seq, self.changed_at, self.origin)

    @property
    def last_frame(self) -> int:
        return self.n_frames - 1

    def position(self, now: float) -> float:
        """Fractional frame at room-clock time ``now``, clamped to the replay."""
        if not self.playing:
            return self.anchor_frame
        return min(self.anchor_frame + max(0.0, now - self.anchor_time) * self.fps * self.speed, float(self.last_frame))

    def frame(self, now: float) -> int:
        return min(int(self.position(now) + _EPS), self.last_frame)

    def ended(self, now: float) -> bool:
        return self.frame(now) >= self.last_frame

    def state_message(self, now: float) -> str:
        """The ``state`` message every member gets (the room's seq, the room's frame at ``now``)."""
        ended = self.ended(now)
        return dumps({"type": "state", "playing": self.playing and not ended, "speed": self.speed, "frame": self.frame(now), "seq": self.seq, "ended": ended})

    def public(self, now: float) -> dict[str, Any]:
        """``GET /api/rooms/{room}`` (without members, which the server adds)."""
        ended = self.ended(now)
        return {"room": self.room, "replay": self.replay, "control": self.control, "playing": self.playing and not ended,
                "speed": self.speed, "frame": self.frame(now), "ended": ended, "seq": self.seq}  # fmt: skip

    # -- the wire between servers -----------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> "RoomState":
        """Parse a stored or published state; :class:`ValueError` for anything malformed."""
        try:
            d = json.loads(data)
            s = cls(
                room=check_room_id(d["room"]), replay=str(d["replay"]), control=str(d["control"]), host_hash=str(d["host_hash"]),
                n_frames=int(d["n_frames"]), fps=float(d["fps"]), playing=bool(d["playing"]), speed=float(d["speed"]),
                anchor_frame=float(d["anchor_frame"]), anchor_time=float(d["anchor_time"]), seq=int(d["seq"]),
                changed_at=float(d["changed_at"]), origin=str(d["origin"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a room state: {e}") from None
        if s.control not in CONTROLS or s.n_frames < 1 or s.fps <= 0 or not 0 <= s.anchor_frame < s.n_frames:
            raise ValueError("not a room state: values out of range")
        return s

    # -- commands ---------------------------------------------------------------------------
    def apply(self, cmd: Command, now: float, origin: str) -> tuple["RoomState", int | None]:
        """The state after ``cmd`` at room-clock ``now``, and the frame every member jumps to (or None).

        Same rules as one viewer's playback: play on the last frame restarts the replay,
        pause stops on the room's current frame (members are all sent it), seek keeps
        playing or paused, speed keeps the position."""
        f = self.frame(now)
        jump: int | None = None
        s = self
        if isinstance(cmd, Play):
            speed = self.speed if cmd.speed is None else float(cmd.speed)
            if f >= self.last_frame:
                s, jump = replace(s, anchor_frame=0.0, anchor_time=now), 0
            elif not self.playing:
                s = replace(s, anchor_frame=float(f), anchor_time=now)
            else:
                s = replace(s, anchor_frame=self.position(now), anchor_time=now)
            s = replace(s, playing=True, speed=speed)
        elif isinstance(cmd, Pause):
            s, jump = replace(s, playing=False, anchor_frame=float(f), anchor_time=now), f
        elif isinstance(cmd, SetSpeed):
            s = replace(s, anchor_frame=self.position(now), anchor_time=now, speed=float(cmd.speed))
        elif isinstance(cmd, Seek):
            s, jump = replace(s, anchor_frame=float(cmd.frame), anchor_time=now), cmd.frame
        else:
            raise TypeError(f"not a room command: {cmd!r}")
        return replace(s, seq=self.seq + 1, changed_at=now, origin=origin), jump


def new_room(replay: str, n_frames: int, fps: float, control: str, now: float, origin: str) -> tuple[RoomState, str]:
    """A paused room on frame 0 and its host token (returned once, stored only as a hash)."""
    if control not in CONTROLS:
        raise RoomError(f"control must be one of {', '.join(CONTROLS)}, got {str(control)[:40]!r}")
    token = new_token()
    s = RoomState(room=new_room_id(), replay=replay, control=control, host_hash=token_hash(token), n_frames=n_frames, fps=fps,
                  anchor_time=now, changed_at=now, origin=origin)  # fmt: skip
    return s, token


def newer(a: RoomState, b: RoomState | None) -> bool:
    """Whether ``a`` supersedes ``b`` (total order on versions, the same in every process)."""
    return b is None or a.version > b.version


def room_message(state: RoomState, members: int, you_control: bool) -> str:
    """Who is in the room and who controls it (sent at join and when the member count changes)."""
    return dumps({"type": "room", "room": state.room, "replay": state.replay, "control": state.control, "you_control": you_control, "members": members})


__all__ = [
    "RoomState", "RoomError", "InvalidRoomId", "UnknownRoom", "RoomFull", "TooManyRooms", "WrongToken", "NotInControl",
    "new_room", "new_room_id", "check_room_id", "token_matches", "newer", "room_message",
    "MAX_ROOMS", "MAX_ROOM_MEMBERS", "ROOM_GRACE_S", "ROOM_ID_LENGTH", "CONTROLS",
]  # fmt: skip
