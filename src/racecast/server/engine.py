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

Commands are applied synchronously (:meth:`Engine.command`): the state
acknowledgement and the frame at the new position are written back to back,
so no frame from before a seek can follow its acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging

from ..bundle import Stream
from ..feeds import Feed, FrameFeed
from ..playback import Clock, Playback, SystemClock
from ..protocol import Command, ping_message, pong_message
from .metrics import Metrics
from .transport import Sink, SinkClosed, binary_header

log = logging.getLogger("racecast.engine")


class Viewer:
    """One connected viewer: its playback state, what it is sent (its feed) and where its bytes go."""

    __slots__ = ("replay_id", "playback", "stream", "feed", "sink", "framed", "last_activity", "frames_skipped", "closed")

    def __init__(self, replay_id: str, playback: Playback, stream: Stream, sink: Sink, feed: Feed | None = None) -> None:
        self.replay_id = replay_id
        self.playback = playback
        self.stream = stream
        self.feed: Feed = feed if feed is not None else FrameFeed(stream)
        self.sink = sink
        self.framed = bool(getattr(sink, "framed", False))  # the sink takes whole WebSocket frames
        self.last_activity = 0.0  # last time a message (not a tick frame) was written
        self.frames_skipped = 0
        self.closed = False

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
        missed = max(0, int((now - self.next_target) / self.period))
        self.k += missed
        target = self.next_target
        self.k += 1
        return target, missed


class Engine:
    """Serves every viewer of a process. Create it inside the event loop's lifetime; all calls from that loop."""

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
        self._playing: dict[Viewer, None] = {}  # insertion-ordered set
        self._snapshot: tuple[Viewer, ...] = ()
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # Plain counters (also flushed into metrics each tick).
        self.frames_sent = 0
        self.frames_skipped = 0
        self.bytes_sent = 0
        self.ticks = 0
        self.ticks_missed = 0

    # -- membership -------------------------------------------------------------------------
    @property
    def playing_count(self) -> int:
        return len(self._playing)

    def add(self, viewer: Viewer) -> None:
        """Register a viewer and send it its initial state and first frame."""
        self.viewers.add(viewer)
        r = viewer.playback.start()
        if r.message is not None:
            viewer.sink.post(r.message)
        if r.frame is not None:
            self._push(viewer, r.frame, -1)
        viewer.last_activity = self.clock.monotonic()
        self.ensure_running()

    def remove(self, viewer: Viewer) -> None:
        viewer.closed = True
        self.viewers.discard(viewer)
        self._set_playing(viewer, False)

    def _set_playing(self, viewer: Viewer, playing: bool) -> None:
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
    def command(self, viewer: Viewer, cmd: Command, now: float | None = None) -> None:
        """Apply ``cmd``: write its acknowledgement, then at once the frame at the new position."""
        if viewer.closed:
            return
        now = self.clock.monotonic() if now is None else now
        pb = viewer.playback
        r = pb.apply(cmd, now)
        sink = viewer.sink
        if r.pong:
            sink.post(pong_message(now))
        if r.message is not None:
            sink.post(r.message)
        if r.frame is not None:
            self._push(viewer, r.frame, -1)  # a jump: the viewer may lack what the frame builds on
        viewer.last_activity = now
        self._set_playing(viewer, pb.playing)

    @staticmethod
    def _push(viewer: Viewer, i: int, have: int) -> None:
        """Write what shows frame ``i`` whatever the buffer (commands and the end: bounded)."""
        payload = viewer.feed.message(i, have)
        if payload is not None:
            viewer.sink.push(payload)
            viewer.feed.delivered()

    # -- the tick ---------------------------------------------------------------------------
    def tick(self, now: float) -> int:
        """Serve every playing viewer once for the tick scheduled at ``now``; return frames written."""
        sent = self._serve(self._take_snapshot(), now)
        self.ticks += 1
        return sent

    def _take_snapshot(self) -> tuple[Viewer, ...]:
        if self._dirty:
            self._snapshot = tuple(self._playing)
            self._dirty = False
        return self._snapshot

    def _serve(self, viewers: tuple[Viewer, ...], now: float) -> int:
        """Offer each viewer its due frame; never waits for a viewer."""
        sent = skipped = nbytes = 0
        stopped: list[Viewer] | None = None
        for v in viewers:
            if v.closed:  # left during this tick
                continue
            pb = v.playback
            i = pb.due(now)
            feed = v.feed
            if i is None:
                data = None
            elif v.framed and type(feed) is FrameFeed:
                data = v.stream.message(i)  # pre-framed at ingest: a zero-copy slice of the bundle
            else:
                data = feed.message(i, pb.last_sent)
                if data is not None and v.framed:
                    data = binary_header(len(data)) + data
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
                    nbytes += len(data)
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

    def _finish(self, v: Viewer, now: float) -> None:
        """A viewer left the playing set during a tick: it reached the end or its connection died."""
        self._set_playing(v, False)
        pb = v.playback
        if not pb.ended or v.closed or not v.sink.alive:
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

    async def _run(self) -> None:
        assert self._wake is not None
        mono = self.clock.monotonic
        m = self.metrics
        sched = TickSchedule(self.period, mono())
        while True:
            if not self._playing:
                self._wake.clear()
                await self._wake.wait()
                sched = TickSchedule(self.period, mono())
            delay = sched.next_target - mono()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = mono()
            target, missed = sched.advance(t0)
            if missed:
                self.ticks_missed += missed
                if m is not None:
                    m.ticks_missed.inc(missed)
            try:
                # Serve in slices, yielding to the event loop between them, so commands and new
                # connections wait for a slice (a few ms), not for a whole tick of thousands of viewers.
                # A command handled between slices is safe: a seek's viewer then has nothing due.
                snap = self._take_snapshot()
                step = self.slice_size
                for k in range(0, len(snap), step):
                    if k:
                        await asyncio.sleep(0)
                    self._serve(snap[k : k + step], target)
                self.ticks += 1
            except Exception:  # never let one bad tick stop playback for everyone
                log.exception("engine tick failed")
            if m is not None:
                t1 = mono()
                m.ticks.inc()
                m.tick_lateness.observe(max(0.0, t0 - target))
                m.tick_duration.observe(t1 - t0)
                m.send_latency.observe(max(0.0, t1 - target))

    async def _ping_loop(self) -> None:
        """Idle viewers (not playing) get a JSON ping every ``ping_interval`` s so proxies keep them open."""
        interval = self.ping_interval
        step = min(1.0, interval / 4)
        while True:
            await asyncio.sleep(step)
            now = self.clock.monotonic()
            for v in list(self.viewers):
                if not v.playback.playing and now - v.last_activity >= interval:
                    try:
                        v.sink.post(ping_message(now))
                    except Exception:
                        log.debug("ping to %r failed", v, exc_info=True)
                    v.last_activity = now

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
