"""The playback engine: one clock per process serving every playing viewer in one pass.

The ticker runs at ``fps`` (25 Hz) on an absolute schedule ``start + k / fps``;
when the loop is late by a whole period it skips the missed ticks instead of
bursting. Each tick asks every *playing* viewer's :class:`~racecast.playback.Playback`
which frame is due at the tick's scheduled time and offers that frame's
pre-encoded bytes (a zero-copy slice of the mapped bundle; on the direct path
the slice is a complete WebSocket frame, framed at ingest) to the viewer's sink. A sink
that is backed up refuses (the frame is skipped: latest wins); nothing in the
tick ever awaits a viewer. Paused and finished viewers are not in the playing
set, so they cost nothing per tick. The pass yields to the event loop between
slices of viewers so commands never wait for a whole pass.

Viewers whose feed has something due only now and then (chunk mode: a pair of
one-second chunks every two seconds of race, :data:`~racecast.feeds.CHUNK_BATCH`) are
not visited every tick. After each visit the engine asks the feed
from which frame it next has work (:meth:`~racecast.feeds.ChunkFeed.wake_frame`),
turns that into the tick at which the viewer's playhead gets there, and files the
viewer in that tick's bucket (a timing wheel keyed by absolute tick slot). A tick
serves the every-tick viewers, then the buckets that came due. A refused chunk
(backpressure) and a feed with more to push are retried at the next tick;
commands re-file their viewer at once; the end of the replay is a wake-up too.

Commands are applied synchronously (:meth:`Engine.command`): the state
acknowledgement and the frame at the new position are written back to back,
so no frame from before a seek can follow its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from ..bundle import BundleError, Stream
from ..feeds import UNKNOWN, Feed, FrameFeed
from ..playback import Clock, Playback, SystemClock
from ..protocol import Command, error_message, ping_message, pong_message, state_message
from .sink import Sink, SinkClosed

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["Engine", "TickSchedule", "Viewer"]

log = logging.getLogger("racecast.engine")
_LOGGED: set[tuple[str, str]] = set()  # bundle errors already logged (one line each, bounded)

#: :attr:`Viewer.wake` of a viewer not filed in the timing wheel.
NOT_FILED: Final = -1
#: :attr:`Viewer.wake` of a viewer taken from the wheel by the current tick (a duplicate entry in a
#: later slot is then stale and skipped); it is re-filed after its visit.
TAKEN: Final = -2


class Viewer:
    """One connected viewer: its playback state, what it is sent (its feed) and where its bytes go."""

    __slots__ = ("replay_id", "playback", "stream", "feed", "sink", "framed", "preframed", "last_activity", "frames_skipped", "closed",
                 "every_tick", "wake", "acks", "room")  # fmt: skip

    def __init__(self, replay_id: str, playback: Playback, stream: Stream, sink: Sink, feed: Feed | None = None) -> None:
        self.replay_id = replay_id
        self.playback = playback
        self.stream = stream
        self.feed: Feed = feed if feed is not None else FrameFeed(stream)
        self.sink = sink
        self.framed = sink.framed  # the sink takes whole WebSocket frames
        # ...and the feed's frames are stored as such: the tick writes slices of this stream directly.
        self.preframed = self.feed.preframed if self.framed else None
        self.last_activity = 0.0  # last time a message (not a tick frame) was written
        self.frames_skipped = 0
        self.closed = False
        # Frame feeds have a frame due every tick; others say when (see the module docstring).
        self.every_tick = self.feed.every_tick
        self.wake = NOT_FILED  # the timing-wheel slot this viewer is filed under
        # racecast's own JSON messages (state acknowledgements, idle pings) go to this viewer.
        # False for clients of the seed protocol, which know only loading_* and frames.
        self.acks = True
        self.room: object | None = None  # its room membership (server/rooms.py), None when watching alone

    def __repr__(self) -> str:
        pb = self.playback
        return f"<Viewer {self.replay_id} frame={pb.frame} playing={pb.playing} speed={pb.speed}>"


class TickSchedule:
    """Absolute tick times ``start + k * period``: no drift, and missed ticks are skipped, not burst."""

    __slots__ = ("period", "start", "k")

    def __init__(self, period: float, start: float) -> None:
        self.period = period
        self.start = start
        self.k = 1

    @property
    def next_target(self) -> float:
        return self.start + self.k * self.period

    def advance(self, now: float) -> tuple[float, int]:
        """The tick to run at ``now``: its scheduled time and how many ticks were skipped to reach it."""
        missed = max(0, int((now - self.next_target) / self.period + 1e-6))  # float error must not lose a tick
        self.k += missed
        target = self.next_target
        self.k += 1
        return target, missed


class Engine:
    """Serves every viewer of a process: the playing set, the timing wheel, commands, and the ticks.

    Sans I/O at its core (:meth:`tick_steps`, :meth:`command`, :meth:`ping_idle` write to each
    viewer's :class:`~racecast.server.sink.Sink` and never wait); :meth:`ensure_running` starts the
    thin asyncio drivers (the ticker and the idle pinger). Create it inside the event loop's
    lifetime; all calls from that loop.

    Args:
        fps: ticks per second (the frame rate viewers are served at).
        clock: monotonic time (a :class:`~racecast.playback.FakeClock` in tests).
        metrics: the app's Prometheus metrics, updated every tick (None: plain counters only).
        ping_interval: seconds of silence after which an idle viewer gets a JSON ping.
        slice_size: viewers served between two yields to the event loop within one tick.

    Raises:
        Nothing from a tick: a viewer whose bundle is damaged is paused and told
        (:class:`~racecast.bundle.BundleError` is caught), a viewer whose transport fails is
        dropped, and an unexpected error is logged and the next tick runs.
    """

    def __init__(
        self,
        *,
        fps: float = 25.0,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        ping_interval: float = 20.0,
        slice_size: int = 256,
    ) -> None:
        self.fps = float(fps)
        self.slice_size = max(1, slice_size)
        self.period = 1.0 / self.fps
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.ping_interval = ping_interval
        self.viewers: set[Viewer] = set()
        self._playing: dict[Viewer, None] = {}  # insertion-ordered set: every-tick viewers
        self._scheduled: dict[Viewer, None] = {}  # playing viewers served when due (the wheel's)
        self._wheel: dict[int, list[Viewer]] = {}  # tick slot -> viewers filed under it (stale entries skipped)
        self._slot_done: int | None = None  # last slot served
        self._snapshot: tuple[Viewer, ...] = ()
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._idle_until: float | None = None  # when the first viewer started playing after an idle spell
        # Plain counters (also flushed into metrics each tick).
        self.frames_sent = 0
        self.frames_skipped = 0
        self.bytes_sent = 0
        self.ticks = 0
        self.ticks_missed = 0
        self.visits = 0  # viewer visits made by ticks (every-tick and due)

    # -- membership -------------------------------------------------------------------------
    @property
    def playing_count(self) -> int:
        return len(self._playing) + len(self._scheduled)

    def add(self, viewer: Viewer) -> None:
        """Register a viewer and send it its initial state and first frame."""
        self.viewers.add(viewer)
        r = viewer.playback.start()
        if r.message is not None and viewer.acks:
            viewer.sink.post(r.message)
        if r.frame is not None:
            self._push(viewer, r.frame, UNKNOWN)
        now = viewer.last_activity = self.clock.monotonic()
        if viewer.playback.playing:  # joined a playing room: it plays from the first tick
            self._set_playing(viewer, True)
            if not viewer.every_tick:
                self._file(viewer, now)
        self.ensure_running()

    def remove(self, viewer: Viewer) -> None:
        viewer.closed = True
        self.viewers.discard(viewer)
        self._set_playing(viewer, False)

    def _set_playing(self, viewer: Viewer, playing: bool) -> None:
        if playing and not self._playing and not self._scheduled:
            self._idle_until = self.clock.monotonic()  # the ticker's grid starts here, not when it wakes up
        if not viewer.every_tick:
            if playing:
                if viewer not in self._scheduled:
                    self._scheduled[viewer] = None
                    if self._wake is not None:
                        self._wake.set()
            else:
                self._scheduled.pop(viewer, None)
                viewer.wake = NOT_FILED  # its wheel entries go stale
            return
        if playing:
            if viewer not in self._playing:
                self._playing[viewer] = None
                self._dirty = True
                if self._wake is not None:
                    self._wake.set()
        elif viewer in self._playing:
            del self._playing[viewer]
            self._dirty = True

    # -- commands ---------------------------------------------------------------------------
    def command(self, viewer: Viewer, cmd: Command, now: float | None = None, merged: int = 0) -> None:
        """Apply ``cmd``: write its acknowledgement, then at once the frame at the new position.

        ``merged``: commands the caller coalesced into this one (superseded seeks). Each still
        gets its own acknowledgement (one ``state`` per command, seq counting them all), all
        written before the frame, so none can be followed by a frame from before the seek."""
        if viewer.closed:
            return
        now = self.clock.monotonic() if now is None else now
        pb = viewer.playback
        if not viewer.every_tick:
            pb.catch_up(now)  # visited now and then: bring its playhead to now before the command reads it
        pb.seq += merged
        r = pb.apply(cmd, now)
        sink = viewer.sink
        if r.pong:
            sink.post(pong_message(now))
        if r.message is not None and viewer.acks:
            for k in range(merged, 0, -1):
                sink.post(state_message(playing=pb.playing, speed=pb.speed, frame=pb.frame, seq=pb.seq - k, ended=pb.ended))
            sink.post(r.message)
        if r.frame is not None:
            self._push(viewer, r.frame, UNKNOWN)  # a jump: the viewer may lack what the frame builds on
        viewer.last_activity = now
        self._set_playing(viewer, pb.playing)
        if pb.playing and not viewer.every_tick:
            self._file(viewer, now)  # re-file at once: the command moved its next due time

    def update(self, viewer: Viewer, message: str | None, frame: int | None, now: float | None = None) -> None:
        """The viewer's playback was moved from outside (its room, :meth:`Playback.follow`): write
        ``message``, then at once ``frame`` (a jump), and serve it from the next tick like a command."""
        if viewer.closed:
            return
        now = self.clock.monotonic() if now is None else now
        if message is not None and viewer.acks:
            viewer.sink.post(message)
        if frame is not None:
            self._push(viewer, frame, UNKNOWN)
        viewer.last_activity = now
        self._set_playing(viewer, viewer.playback.playing)
        if viewer.playback.playing and not viewer.every_tick:
            self._file(viewer, now)

    @staticmethod
    def _push(viewer: Viewer, i: int, have: int) -> None:
        """Write what shows frame ``i`` whatever the buffer (commands and the end: bounded)."""
        try:
            payload = viewer.feed.message(i, have)
        except BundleError as e:
            Engine._damaged(viewer, e)
            return
        if payload is not None:
            viewer.sink.push(payload)
            viewer.feed.delivered()

    # -- the tick ---------------------------------------------------------------------------
    def tick_steps(self, now: float) -> Iterator[None]:
        """The tick scheduled at ``now``, sans I/O: serve every playing viewer that has something due.

        The one tick sequence: :meth:`tick` runs it at once (tests, benchmarks), the asyncio
        ticker (:meth:`_run`) yields to the event loop at each ``yield`` (between slices of
        :attr:`slice_size` viewers), so commands and new connections wait for a slice (a few ms),
        not for a whole tick of thousands of viewers. A command handled between slices is safe:
        a seek's viewer then has nothing due."""
        snap = self._take_snapshot()
        due = self._due(now) if self._wheel else ()
        step = self.slice_size
        first = True
        for group in (snap, due):
            for k in range(0, len(group), step):
                if not first:
                    yield
                first = False
                self._serve(group[k : k + step], now)
        if due:
            self._refile(due, now)
        self.ticks += 1

    def tick(self, now: float) -> int:
        """Run the tick scheduled at ``now`` to the end without yielding; return the frames written."""
        before = self.frames_sent
        for _ in self.tick_steps(now):
            pass
        return self.frames_sent - before

    # -- the timing wheel -------------------------------------------------------------------
    # Slot s is the tick time s x period (the ticker runs on that grid); a tick at ``t`` serves
    # the slots up to floor(t / period), a viewer due at ``t`` is filed under ceil(t / period).
    def _slot(self, t: float) -> int:
        return math.floor(t * self.fps + 1e-6)

    def _file(self, v: Viewer, now: float) -> None:
        """File a playing viewer under the first tick at which its feed next has work (never the current one)."""
        pb = v.playback
        f = min(v.feed.wake_frame(), pb.last_frame)
        t = pb.time_at(f)
        slot = math.ceil(t * self.fps - 1e-6) if t < math.inf else self._slot(now) + 1
        floor = self._slot(now) + 1
        if slot < floor:  # due now, already past, or a retry: the next tick
            slot = floor
        if self._slot_done is not None and slot <= self._slot_done:
            slot = self._slot_done + 1
        v.wake = slot
        b = self._wheel.get(slot)
        if b is None:
            self._wheel[slot] = [v]
        else:
            b.append(v)

    def _due(self, now: float) -> tuple[Viewer, ...]:
        """Take the viewers filed under every slot up to ``now``'s (each once; stale entries dropped)."""
        cur = self._slot(now)
        done = self._slot_done
        wheel = self._wheel
        if done is None or cur - done > len(wheel):
            slots = sorted(s for s in wheel if s <= cur)
        else:
            slots = [s for s in range(done + 1, cur + 1) if s in wheel]
        if done is None or cur > done:
            self._slot_done = cur
        out: list[Viewer] = []
        for s in slots:
            for v in wheel.pop(s):
                if v.wake == s and not v.closed:
                    v.wake = TAKEN
                    out.append(v)
        return tuple(out)

    def _refile(self, viewers: tuple[Viewer, ...], now: float) -> None:
        for v in viewers:
            if v.playback.playing and not v.closed and v.wake == TAKEN:
                self._file(v, now)

    def _take_snapshot(self) -> tuple[Viewer, ...]:
        if self._dirty:
            self._snapshot = tuple(self._playing)
            self._dirty = False
        return self._snapshot

    def _serve(self, viewers: tuple[Viewer, ...], now: float) -> int:
        """Offer each viewer its due frame; never waits for a viewer."""
        sent = skipped = nbytes = 0
        stopped: list[Viewer] | None = None
        self.visits += len(viewers)
        for v in viewers:
            if v.closed:  # left during this tick
                continue
            pb = v.playback
            i = pb.due(now)
            try:
                if i is None:
                    data = None
                elif v.preframed is not None:
                    data = v.preframed.message(i)  # pre-framed: a zero-copy slice of a shared, checked block
                elif v.framed:
                    data = v.feed.framed_message(i, pb.last_sent)
                else:
                    data = v.feed.message(i, pb.last_sent)
            except BundleError as e:  # the bundle was damaged or replaced on disk: this viewer stops, not the tick
                self._damaged(v, e)
                if self.metrics:
                    self.metrics.error("bundle_damaged")
                i = data = None
            if data is None:
                if i is not None:  # nothing due at this position (chunk mode between chunks)
                    pb.last_sent = i
            else:
                try:
                    ok = v.sink.offer(data)
                except SinkClosed:
                    ok = False
                    pb.playing = False
                except Exception:  # a transport that failed under us: drop the viewer, serve the rest
                    log.debug("send to %r failed", v, exc_info=True)
                    if self.metrics:
                        self.metrics.error("send_failed")
                    ok = False
                    pb.playing = False
                if ok:
                    v.feed.delivered()
                    pb.last_sent = i
                    sent += 1
                    nbytes += sum(map(len, data)) if type(data) is tuple else len(data)
                else:
                    skipped += 1
                    v.frames_skipped += 1
            if not pb.playing:
                if stopped is None:
                    stopped = []
                stopped.append(v)
        if stopped:
            for v in stopped:
                self._finish(v, now)
        self.frames_sent += sent
        self.frames_skipped += skipped
        self.bytes_sent += nbytes
        m = self.metrics
        if m is not None:
            if sent:
                m.frames_sent.inc(sent)
                m.bytes_sent.inc(nbytes)
            if skipped:
                m.frames_skipped.inc(skipped)
        return sent

    @staticmethod
    def _damaged(v: Viewer, e: BundleError) -> None:
        """A block of ``v``'s replay could not be read or decoded: pause it and tell it why (logged once per error)."""
        v.playback.playing = False
        key = (v.replay_id, str(e))
        if key not in _LOGGED:
            if len(_LOGGED) < 1000:
                _LOGGED.add(key)
            log.error("replay %s: %s", v.replay_id, e)
        try:
            v.sink.post(error_message(f"this replay cannot be played from here: {e}"))
        except Exception:
            log.debug("error message to %r failed", v, exc_info=True)

    def _finish(self, v: Viewer, now: float) -> None:
        """A viewer left the playing set during a tick: it reached the end or its connection died."""
        self._set_playing(v, False)
        pb = v.playback
        if not pb.ended or v.closed or not v.sink.alive:
            return
        if not v.acks:  # seed protocol: no end-of-replay state, but the last frame must still arrive
            try:
                if pb.last_sent != pb.last_frame:
                    self._push(v, pb.last_frame, pb.last_sent)
                    pb.sent(pb.last_frame)
            except Exception:
                log.debug("last frame to %r failed", v, exc_info=True)
            v.last_activity = now
            return
        try:
            if pb.last_sent != pb.last_frame:  # the last frame was skipped by backpressure: it must arrive
                self._push(v, pb.last_frame, pb.last_sent)
                pb.sent(pb.last_frame)
            v.sink.post(pb.state())
        except Exception:
            log.debug("end-of-replay message to %r failed", v, exc_info=True)
        v.last_activity = now

    # -- the clock --------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the ticker and the idle pinger (lazily, so a mounted app without lifespan works)."""
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="racecast-ticker")
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping_loop(), name="racecast-pinger")

    def _on_grid(self, t: float) -> float:
        """The next tick time on the wheel's grid (multiples of the period) from ``t``."""
        return math.ceil(t * self.fps - 1e-6) / self.fps  # a time a float error past a grid point is on it

    async def _run(self) -> None:
        assert self._wake is not None
        mono = self.clock.monotonic
        m = self.metrics
        sched = TickSchedule(self.period, self._on_grid(mono() if self._idle_until is None else self._idle_until))
        while True:
            if not self._playing and not self._scheduled:
                self._wake.clear()
                await self._wake.wait()
                sched = TickSchedule(self.period, self._on_grid(mono() if self._idle_until is None else self._idle_until))
            delay = sched.next_target - mono()
            if delay > 0:
                await asyncio.sleep(delay)
                if mono() + 1e-6 < sched.next_target:  # never serve a tick before its time (a fake clock not moved yet)
                    continue
            t0 = mono()
            target, missed = sched.advance(t0)
            if missed:
                self.ticks_missed += missed
                if m is not None:
                    m.ticks_missed.inc(missed)
            try:
                for _ in self.tick_steps(target):
                    await asyncio.sleep(0)
            except Exception:  # never let one bad tick stop playback for everyone
                log.exception("engine tick failed")
            if m is not None:
                t1 = mono()
                m.ticks.inc()
                m.tick_lateness.observe(max(0.0, t0 - target))
                m.tick_duration.observe(t1 - t0)
                m.send_latency.observe(max(0.0, t1 - target))

    def ping_idle(self, now: float) -> None:
        """Send a JSON ping to every viewer that is not playing and has heard nothing for ``ping_interval`` s
        (so proxies keep idle connections open)."""
        interval = self.ping_interval
        for v in list(self.viewers):
            if v.acks and not v.playback.playing and now - v.last_activity >= interval:
                try:
                    v.sink.post(ping_message(now))
                except Exception:
                    log.debug("ping to %r failed", v, exc_info=True)
                v.last_activity = now

    async def _ping_loop(self) -> None:
        """The idle pinger's driver: :meth:`ping_idle` a few times per ``ping_interval``."""
        step = min(1.0, self.ping_interval / 4)
        while True:
            await asyncio.sleep(step)
            self.ping_idle(self.clock.monotonic())

    async def stop(self) -> None:
        for t in (self._task, self._pinger):
            if t is not None:
                t.cancel()
        for t in (self._task, self._pinger):
            if t is not None:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._pinger = None
