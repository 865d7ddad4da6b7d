"""Rooms in a server process: members follow their room's clock; commands move the whole room.

:class:`RoomHub` keeps the rooms this process knows (:class:`~racecast.rooms.RoomState`,
sans-I/O) and, for each, the local members: ordinary engine viewers whose
:class:`~racecast.playback.Playback` is set from the room's anchor instead of from their
own commands (:meth:`Playback.follow`). Since every member's playback has the same anchor
and the engine computes every viewer's frame at the tick's scheduled time, all members of
a room on one server get the same frame at the same tick; a slow member has frames
skipped like any viewer and never holds the room back.

The room clock is this process's monotonic clock plus :attr:`RoomHub.offset`. Alone, the
offset is wall time at start-up (so room times read as Unix times); with a shared backend
(:mod:`racecast.server.rooms_redis`) it is estimated against Redis's ``TIME``, so every
process reads the same room clock and computes the same frame.

With a backend, a command is committed there first (compare-and-set on the room's
version, then published); when the backend is unreachable the command applies locally and
the room is reconciled when it comes back (the highest version wins everywhere).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..protocol import Command, Ping, Pong, error_message
from ..errors import CLOSE_UNAVAILABLE
from ..rooms import (
    MAX_ROOM_MEMBERS,
    MAX_ROOMS,
    ROOM_GRACE_S,
    RoomError,
    RoomFull,
    RoomState,
    TooManyRooms,
    UnknownRoom,
    WrongToken,
    check_room_id,
    new_room,
    newer,
    room_message,
    token_matches,
)

if TYPE_CHECKING:
    from .engine import Engine, Viewer
    from .metrics import Metrics

log = logging.getLogger("racecast.rooms")

#: How often the housekeeping task runs: member-count messages, grace expiry, backend sync (s).
HOUSEKEEPING_INTERVAL = 1.0


class RoomsUnavailable(RoomError):
    """Rooms are off in this process (several workers and no shared backend)."""

    http_status = 501
    close_code = CLOSE_UNAVAILABLE


class Backend(Protocol):
    """Where rooms are shared between processes (:class:`~racecast.server.rooms_redis.RedisRooms`)."""

    connected: bool

    async def start(self, hub: "RoomHub") -> None: ...

    async def stop(self) -> None: ...

    async def create(self, state: RoomState) -> bool: ...

    async def load(self, room_id: str) -> RoomState | None: ...

    async def commit(self, state: RoomState) -> RoomState | None: ...

    def remote_members(self, room_id: str) -> int: ...

    def failed(self, e: BaseException) -> None: ...

    async def first_attempt(self, timeout: float) -> None: ...


@dataclass(eq=False)
class Room:
    """A room this process serves: its state and its local members."""

    state: RoomState
    members: set["Viewer"] = field(default_factory=set)
    controllers: set["Viewer"] = field(default_factory=set)
    empty_since: float | None = None  # monotonic time the last local member left (None: has members)
    announced: int = -1  # member count last sent to members
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Admission:
    """A checked join: the room and whether the joiner controls it (attach it to the viewer next)."""

    room: Room
    control: bool


class RoomHub:
    """Every room of one process (``create_app``'s ``state.rooms``)."""

    def __init__(
        self,
        engine: "Engine",
        *,
        max_rooms: int = MAX_ROOMS,
        max_members: int = MAX_ROOM_MEMBERS,
        grace: float = ROOM_GRACE_S,
        backend: Backend | None = None,
        metrics: "Metrics | None" = None,
        unavailable: str | None = None,
    ) -> None:
        self.engine = engine
        self.max_rooms = max_rooms
        self.max_members = max_members
        self.grace = grace
        self.backend = backend
        self.metrics = metrics
        self.unavailable = unavailable  # why rooms are off here (None: on)
        self.origin = secrets.token_hex(6)  # this process, in room versions
        self.rooms: dict[str, Room] = {}
        mono = engine.clock.monotonic()
        self.offset = time.time() - mono  # room clock = monotonic + offset
        self._task: asyncio.Task[None] | None = None
        self.commands = 0  # room commands applied here (benchmarks read it)

    # -- the room clock ---------------------------------------------------------------------
    def now(self) -> float:
        return self.engine.clock.monotonic() + self.offset

    def set_offset(self, offset: float) -> None:
        """A better estimate of the shared clock: re-anchor every member (their frames do not jump
        unless the estimate moved by a frame or more)."""
        self.offset = offset
        for room in self.rooms.values():
            for v in room.members:
                self._follow(v, room.state, None)

    # -- lifecycle --------------------------------------------------------------------------
    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._housekeeping(), name="racecast-rooms")
            if self.backend is not None:
                asyncio.get_running_loop().create_task(self.backend.start(self), name="racecast-rooms-backend")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if self.backend is not None:
            await self.backend.stop()

    def _check_available(self) -> None:
        if self.unavailable is not None:
            raise RoomsUnavailable(self.unavailable)

    # -- create / find ----------------------------------------------------------------------
    async def create(self, replay: str, n_frames: int, fps: float, control: str) -> tuple[RoomState, str]:
        """A new paused room at frame 0; returns it and its host token."""
        self._check_available()
        self.ensure_running()
        if len(self.rooms) >= self.max_rooms:
            raise TooManyRooms(f"this server has {self.max_rooms} rooms already; try again later")
        state, token = new_room(replay, n_frames, fps, control, self.now(), self.origin)
        if self.backend is not None and self.backend.connected:
            try:
                await self.backend.create(state)
            except Exception as e:  # the room still works here; it is shared once the backend is back
                self.backend_failed(e)
        self.rooms[state.room] = Room(state, empty_since=self.engine.clock.monotonic())
        return state, token

    async def find(self, room_id: str) -> Room:
        """The room ``room_id``: known here, or loaded from the backend (another process made it)."""
        self._check_available()
        check_room_id(room_id)
        room = self.rooms.get(room_id)
        if room is not None:
            return room
        state = None
        if self.backend is not None and not self.backend.connected:
            self.ensure_running()
            await self.backend.first_attempt(2.0)  # just started: let it connect before saying "unknown"
        if self.backend is not None and self.backend.connected:
            try:
                state = await self.backend.load(room_id)
            except Exception as e:
                self.backend_failed(e)
        if state is None:
            raise UnknownRoom(f"no room {room_id!r} (it never existed, or it ended: rooms close {self.grace:g} s after their last member leaves)")
        room = self.rooms.get(room_id)  # loaded meanwhile by another join
        if room is None:
            if len(self.rooms) >= self.max_rooms:
                raise TooManyRooms(f"this server has {self.max_rooms} rooms already; try again later")
            self.ensure_running()
            room = self.rooms[room_id] = Room(state, empty_since=self.engine.clock.monotonic())
        return room

    def members(self, room: Room) -> int:
        """Members in every process (the others' counts as last reported through the backend)."""
        remote = self.backend.remote_members(room.state.room) if self.backend is not None else 0
        return len(room.members) + remote

    async def info(self, room_id: str) -> dict:
        room = await self.find(room_id)
        d = room.state.public(self.now())
        d["members"] = self.members(room)
        return d

    # -- members ----------------------------------------------------------------------------
    async def admit(self, room_id: str, replay_id: str, token: str | None) -> Admission:
        """Check a join before the viewer exists: the room, its replay, the token, the limit."""
        room = await self.find(room_id)
        s = room.state
        if s.replay != replay_id:
            raise RoomError(f"room {room_id} plays replay {s.replay!r}, not {replay_id[:64]!r}: open /ws/replay/{s.replay}?room={room_id}")
        if token is not None and not token_matches(token, s.host_hash):
            raise WrongToken(f"that is not room {room_id}'s host token (join without a token to watch)")
        if self.members(room) >= self.max_members:
            raise RoomFull(f"room {room_id} is full ({self.max_members} members)")
        return Admission(room, control=s.control == "everyone" or token is not None)

    def attach(self, adm: Admission, viewer: "Viewer") -> None:
        """Make ``viewer`` a member: its playback at the room's position now (the engine's ``add``
        then sends it the state and the frame at that position). Call right before ``engine.add``."""
        room = adm.room
        viewer.room = room
        room.members.add(viewer)
        if adm.control:
            room.controllers.add(viewer)
        room.empty_since = None
        viewer.sink.post(room_message(room.state, self.members(room), adm.control))
        self._follow(viewer, room.state, room.state.frame(self.now()))

    def leave(self, viewer: "Viewer") -> None:
        room = viewer.room
        if not isinstance(room, Room):
            return
        viewer.room = None
        room.members.discard(viewer)
        room.controllers.discard(viewer)
        if not room.members:
            room.empty_since = self.engine.clock.monotonic()

    def _follow(self, viewer: "Viewer", s: RoomState, jump: int | None) -> None:
        viewer.playback.follow(playing=s.playing, speed=s.speed, anchor_frame=s.anchor_frame,
                               anchor_time=s.anchor_time - self.offset, seq=s.seq, jump=jump)  # fmt: skip

    # -- commands ---------------------------------------------------------------------------
    async def command(self, viewer: "Viewer", cmd: Command) -> bool:
        """A member's command: applied to the whole room, or refused (error to that member only)."""
        room = viewer.room
        if not isinstance(room, Room):
            raise RuntimeError("not a room member")
        if isinstance(cmd, (Ping, Pong)):
            self.engine.command(viewer, cmd)
            return True
        if viewer not in room.controllers:
            if self.metrics is not None:
                self.metrics.error("not_in_control")
            viewer.sink.post(error_message(f"only the host controls room {room.state.room}; you are watching"))
            return False
        async with room.lock:  # one command at a time per room (the backend round trip awaits)
            for _ in range(5):
                new, jump = room.state.apply(cmd, self.now(), self.origin)
                b = self.backend
                if b is None or not b.connected:
                    break
                try:
                    won = await b.commit(new)
                except Exception as e:
                    self.backend_failed(e)
                    new, jump = room.state.apply(cmd, self.now(), self.origin)
                    break
                if won is None:
                    break
                self.adopt(won)  # someone else's command got there first: apply ours on top of it
            self.commands += 1
            self._set(room, new, jump)
        return True

    def adopt(self, state: RoomState) -> None:
        """A state from another process (published or read back): take it if newer."""
        room = self.rooms.get(state.room)
        if room is not None and newer(state, room.state):
            old = room.state
            # A state from elsewhere says nothing of the jump: seeks and pauses move the anchor frame
            # at the command's time; members are sent the frame if the room's frame moved discontinuously.
            now = self.now()
            jump = None
            if (old.playing and not state.playing) or abs(state.position(now) - old.position(now)) > 1.0 + 1e-9:
                jump = state.frame(now)
            self._set(room, state, jump)

    def _set(self, room: Room, state: RoomState, jump: int | None) -> None:
        if not newer(state, room.state):
            return
        room.state = state
        if not room.members:
            return
        now_room = self.now()
        msg = state.state_message(now_room)
        now = self.engine.clock.monotonic()
        update = self.engine.update
        for v in tuple(room.members):
            self._follow(v, state, jump)
            update(v, msg, jump, now)

    def backend_failed(self, e: BaseException) -> None:
        if self.backend is not None:
            self.backend.failed(e)

    # -- housekeeping -----------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        """Forget rooms empty for longer than the grace period; tell members about new member counts."""
        for rid, room in list(self.rooms.items()):
            if room.empty_since is not None:
                if now - room.empty_since >= self.grace:
                    del self.rooms[rid]
                continue
            n = self.members(room)
            if n != room.announced:
                room.announced = n
                for v in tuple(room.members):
                    try:
                        v.sink.post(room_message(room.state, n, v in room.controllers))
                    except Exception:
                        log.debug("room message to %r failed", v, exc_info=True)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                self.sweep(self.engine.clock.monotonic())
            except Exception:
                log.exception("rooms housekeeping failed")


__all__ = ["RoomHub", "Room", "Admission", "Backend", "RoomsUnavailable", "HOUSEKEEPING_INTERVAL"]
