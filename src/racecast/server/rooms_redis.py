"""Rooms shared through Redis (``racecast serve --redis redis://HOST:PORT/DB``): only commands cross.

Per room, Redis holds one key, ``racecast:room:<id>``, with the room's state as JSON
(:meth:`RoomState.to_json`: anchor frame and time, speed, playing, seq...), expiring
``grace`` seconds after the last process with members stopped refreshing it, and a hash
``racecast:room:<id>:members`` of each process's member count. One pub/sub channel,
``racecast:rooms:<db>``, carries every new state. Frames never go through Redis: each
server plays the room from its own bundle and the shared clock.

**A command** is committed with one Lua script (one round trip): the new state is stored
and published only if its version ``(seq, changed_at, origin)`` is higher than the stored
one; otherwise the stored (newer) state comes back, the process adopts it and applies the
command again on top. So concurrent commands on two servers serialize, and every process
ends on the same state.

**The clock.** Every process reads the room clock as its monotonic clock plus an offset
estimated against Redis's ``TIME`` (five round trips, the fastest one used; the error is at
most half its round trip, well under a millisecond on a LAN), re-estimated every
:data:`OFFSET_INTERVAL` seconds. So the hosts' own wall clocks do not matter: a skewed host
clock cancels out, and the one-frame target holds across machines as long as half a round
trip to Redis plus the two servers' tick phases stay under 40 ms (see docs/protocol.md).

**Redis goes away**: the connection loop logs one warning and retries; meanwhile rooms
play on from the last state each process has (the clock keeps its last offset), and commands
apply locally. When Redis is back, every process writes its rooms' states through the same
compare-and-set (:meth:`RedisRooms.sync`, also run every :data:`SYNC_INTERVAL` seconds to
make up for pub/sub messages lost in flight), so the highest version wins everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..rooms import RoomState

if TYPE_CHECKING:
    from .rooms import RoomHub

log = logging.getLogger("racecast.rooms")

#: Seconds between reconciliations (TTL refresh, member counts, versions read back).
SYNC_INTERVAL = 1.0
#: Seconds between clock-offset estimates.
OFFSET_INTERVAL = 30.0
#: Longest wait on one Redis call before it counts as unreachable (a command then applies locally).
CALL_TIMEOUT = 0.5
#: Longest wait between two connection attempts while Redis is away (s).
RETRY_MAX = 1.0
#: Samples per clock-offset estimate.
OFFSET_SAMPLES = 5

# KEYS[1] state key; ARGV[1] new state JSON, ARGV[2] ttl ms, ARGV[3] channel.
# Stores + publishes when the new version is higher; returns the stored state when it is not.
_COMMIT = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = cjson.decode(cur)
  local n = cjson.decode(ARGV[1])
  if c.seq > n.seq or (c.seq == n.seq and (c.changed_at > n.changed_at or
     (c.changed_at == n.changed_at and c.origin >= n.origin))) then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return false
"""


def state_key(room_id: str) -> str:
    return f"racecast:room:{room_id}"


def members_key(room_id: str) -> str:
    return f"racecast:room:{room_id}:members"


class RedisRooms:
    """The Redis backend of a :class:`~racecast.server.rooms.RoomHub`."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis  # optional at import time: only `--redis` needs it

        self._aioredis = aioredis
        self.url = url
        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=CALL_TIMEOUT * 4, socket_connect_timeout=1.0)
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"racecast:rooms:{db}"
        self.connected = False
        self.hub: RoomHub | None = None
        self._remote: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._script: Any = self.client.register_script(_COMMIT)
        # Counters (benchmarks and tests read them).
        self.calls = 0  # Redis commands sent for room commands (script calls)
        self.published = 0  # states published (commands and reconciliations that won)
        self.received = 0  # states received through pub/sub
        self.outages = 0
        self._down = False  # an outage was logged and has not ended
        self._tried = asyncio.Event()  # set after the first connection attempt, whatever its outcome

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, hub: "RoomHub") -> None:
        self.hub = hub
        if self._task is None:
            self._task = asyncio.current_task()
            await self._run()

    async def stop(self) -> None:
        t, self._task = self._task, None
        if t is not None and t is not asyncio.current_task():
            t.cancel()
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.client.aclose()
        except Exception:
            pass

    async def first_attempt(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the first connection attempt ended."""
        try:
            await asyncio.wait_for(self._tried.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def failed(self, e: BaseException) -> None:
        """Redis did not answer: mark it down (commands apply locally); one log line per outage."""
        self.connected = False
        if not self._down:
            self._down = True
            self.outages += 1
            log.warning("room backend %s unreachable (%s): rooms play on locally and re-converge when it is back", self.url, e or type(e).__name__)

    async def _run(self) -> None:
        """Connect, subscribe, reconcile; on any failure mark the backend down and retry (never raise)."""
        hub = self.hub
        assert hub is not None
        delay = 0.2
        first = True
        while True:
            pubsub = None
            tasks: list[asyncio.Task[Any]] = []
            try:
                offset = await self.estimate_offset()
                if first or abs(offset - hub.offset) > 0.001:
                    hub.set_offset(offset)
                first = False
                pubsub = self.client.pubsub()
                await asyncio.wait_for(pubsub.subscribe(self.channel), CALL_TIMEOUT * 4)
                await asyncio.wait_for(self.client.script_load(_COMMIT), CALL_TIMEOUT * 4)  # a restarted Redis forgot it
                self.connected = True
                self._tried.set()
                await self.sync()
                if self._down:
                    self._down = False
                    log.warning("room backend %s is back: rooms re-converged", self.url)
                delay = 0.2
                tasks = [asyncio.create_task(self._listen(pubsub)), asyncio.create_task(self._sync_loop())]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()  # raises what ended it
                raise ConnectionError("room backend loop ended")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failed(e)
            finally:
                self._tried.set()
                for t in tasks:
                    t.cancel()
                if pubsub is not None:
                    try:
                        await asyncio.wait_for(pubsub.aclose(), 1.0)
                    except BaseException:
                        pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _listen(self, pubsub: Any) -> None:
        hub = self.hub
        assert hub is not None
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if msg is None or msg.get("type") != "message":
                continue
            self.received += 1
            try:
                state = RoomState.from_json(msg["data"])
            except ValueError:
                log.debug("ignored a malformed room state on %s", self.channel)
                continue
            hub.adopt(state)

    async def _sync_loop(self) -> None:
        last_offset = time.monotonic()
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            await self.sync()
            if time.monotonic() - last_offset >= OFFSET_INTERVAL:
                last_offset = time.monotonic()
                offset = await self.estimate_offset()
                if self.hub is not None and abs(offset - self.hub.offset) > 0.001:
                    self.hub.set_offset(offset)

    # -- the clock --------------------------------------------------------------------------
    async def estimate_offset(self) -> float:
        """Redis ``TIME`` minus this process's monotonic clock, from the fastest of a few round trips."""
        mono = self.hub.engine.clock.monotonic if self.hub is not None else time.monotonic
        best: tuple[float, float] | None = None
        for _ in range(OFFSET_SAMPLES):
            t0 = mono()
            secs, usecs = await asyncio.wait_for(self.client.time(), CALL_TIMEOUT * 2)
            t1 = mono()
            rtt = t1 - t0
            offset = secs + usecs / 1e6 - (t0 + t1) / 2
            if best is None or rtt < best[0]:
                best = (rtt, offset)
        assert best is not None
        return best[1]

    # -- rooms ------------------------------------------------------------------------------
    def _ttl_ms(self) -> int:
        grace = self.hub.grace if self.hub is not None else 60.0
        return int((grace + 2 * SYNC_INTERVAL) * 1000)

    async def create(self, state: RoomState) -> bool:
        return bool(await asyncio.wait_for(self.client.set(state_key(state.room), state.to_json(), px=self._ttl_ms(), nx=True), CALL_TIMEOUT))

    async def load(self, room_id: str) -> RoomState | None:
        raw = await asyncio.wait_for(self.client.get(state_key(room_id)), CALL_TIMEOUT)
        if raw is None:
            return None
        try:
            return RoomState.from_json(raw)
        except ValueError:
            log.warning("room %s has a malformed state in Redis; ignored", room_id)
            return None

    async def commit(self, state: RoomState) -> RoomState | None:
        """Store and publish ``state`` if it is the newest; else return the stored, newer state."""
        self.calls += 1
        cur = await asyncio.wait_for(self._script(keys=[state_key(state.room)], args=[state.to_json(), self._ttl_ms(), self.channel]), CALL_TIMEOUT)
        if cur is None:
            self.published += 1
            return None
        try:
            return RoomState.from_json(cur)
        except ValueError:
            return None

    def remote_members(self, room_id: str) -> int:
        return self._remote.get(room_id, 0)

    async def sync(self) -> None:
        """Reconcile every room this process knows: versions (highest wins, both ways), TTLs of rooms
        with members here, and member counts (ours written, the other processes' read)."""
        hub = self.hub
        if hub is None or not hub.rooms:
            return
        rooms = list(hub.rooms.values())
        ttl = self._ttl_ms()
        now_ms = int(hub.now() * 1000)
        expire_ms = now_ms + int(3 * SYNC_INTERVAL * 1000)
        pipe = self.client.pipeline(transaction=False)
        where: list[tuple[int, int]] = []  # per room: index of its commit result and of its member counts
        for room in rooms:
            rid = room.state.room
            mk = members_key(rid)
            first = len(pipe)
            pipe.evalsha(self._script.sha, 1, state_key(rid), room.state.to_json(), ttl, self.channel)
            pipe.hset(mk, hub.origin, f"{len(room.members)} {expire_ms}")
            if room.members:
                pipe.pexpire(state_key(rid), ttl)
                pipe.pexpire(mk, ttl)
            where.append((first, len(pipe)))
            pipe.hgetall(mk)
        results = await asyncio.wait_for(pipe.execute(), CALL_TIMEOUT * 4)
        for room, (i, j) in zip(rooms, where):
            cur = results[i]
            if cur is None:
                self.published += 1
            else:
                try:
                    hub.adopt(RoomState.from_json(cur))
                except ValueError:
                    pass
            remote = 0
            for origin, val in (results[j] or {}).items():
                o = origin.decode() if isinstance(origin, bytes) else origin
                if o == hub.origin:
                    continue
                try:
                    n, exp = (int(x) for x in (val.decode() if isinstance(val, bytes) else val).split())
                except ValueError:
                    continue
                if exp >= now_ms:
                    remote += n
            self._remote[room.state.room] = remote


__all__ = ["RedisRooms", "SYNC_INTERVAL", "OFFSET_INTERVAL", "CALL_TIMEOUT", "state_key", "members_key"]
