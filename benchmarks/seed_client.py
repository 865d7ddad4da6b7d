"""A Python client that behaves like the seed system's browser client (joptimus/f1-race-replay).

Written from the seed's frontend source (not copied): ``useReplayWebSocket.ts`` opens
``/ws/replay/{session_id}`` with no query, sends ``{"action":"seek","frame":0}`` on open,
handles only ``loading_progress`` / ``loading_complete`` / ``loading_error`` text messages
(any other text is logged as "Unknown control message") and decodes every binary message
as a msgpack frame; its sender drops a command identical to the previous one.
``usePlaybackAnimation.ts`` advances the client's own frame index from its own clock on
every animation frame (``requestAnimationFrame``, 60 Hz here): ``floor(start_frame +
elapsed x speed x 25)``, pausing itself on the last frame; a change of that index sends
``{"action":"seek","frame":N}``, a change of playing/speed sends ``play`` (with ``speed``)
or ``pause``.

The client measures what the issue asks: whether it stays connected, how far each frame
it receives is behind its own position (race seconds, and wall seconds: race / speed), how long a seek waits for its
target frame, and how many "unknown control messages" it would log.

``python -m benchmarks.seed_client --url ws://127.0.0.1:8000/ws/replay/ID --speed 4 --seconds 60``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import websockets

FPS = 25  # the seed client's constant
RAF_HZ = 60.0


@dataclass
class SeedStats:
    frames: int = 0
    unknown_text: int = 0  # "[WS Client] Unknown control message" lines the seed would log
    commands: int = 0
    lags: list[float] = field(default_factory=list)  # race seconds a received frame is behind the client
    seek_waits: list[float] = field(default_factory=list)  # s from a scrub to its frame
    closed: str | None = None  # why the connection ended early (None: still open)
    stall_max: float = 0.0  # the client's own event loop: longest lateness of an animation frame (s)
    loading_error: str | None = None
    progress: list[float] = field(default_factory=list)

    def summary(self, speed: float = 1.0) -> dict[str, Any]:
        lags = sorted(self.lags)
        waits = sorted(self.seek_waits)

        def q(xs: list[float], p: float) -> float | None:
            return round(xs[min(len(xs) - 1, int(p * len(xs)))], 4) if xs else None

        return {
            "frames": self.frames,
            "commands": self.commands,
            "unknown_text": self.unknown_text,
            "lag_p50_s": q(lags, 0.5),
            "lag_p99_s": q(lags, 0.99),
            "lag_max_s": round(lags[-1], 4) if lags else None,
            # the same in wall time: how old the picture is (a 25 Hz stream's frames are speed x 0.04 s of race apart)
            "lag_wall_max_s": round(lags[-1] / speed, 4) if lags else None,
            "seek_wait_max_ms": round(waits[-1] * 1000, 1) if waits else None,
            "seeks_timed": len(waits),
            "client_stall_max_s": round(self.stall_max, 4),
            "closed": self.closed,
        }


class SeedClient:
    """One seed-style viewer. ``clock`` is the client's own ``performance.now()`` (seconds)."""

    def __init__(self, url: str, *, raf_hz: float = RAF_HZ, clock: Any = time.monotonic) -> None:
        self.url = url
        self.raf_hz = raf_hz
        self.clock = clock
        self.ws: Any = None
        self.stats = SeedStats()
        self.total_frames = 0
        self.loaded = asyncio.Event()
        # the seed's store: playback.isPlaying / speed / frameIndex
        self.playing = False
        self.speed = 1.0
        self.frame_index = 0
        self._start_time: float | None = None
        self._start_frame = 0
        self._last_sent: dict[str, Any] | None = None
        self._awaiting: dict[int, float] = {}  # scrub target -> when sent
        self._answered = asyncio.Event()  # set whenever an awaited scrub's frame arrives
        self._tasks: list[asyncio.Task[Any]] = []

    # -- the hook's sender: drops a command identical to the previous one --------------------------
    async def _send(self, msg: dict[str, Any]) -> None:
        if self._last_sent == msg or self.ws is None:
            return
        self._last_sent = msg
        self.stats.commands += 1
        await self.ws.send(json.dumps(msg))

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=10, max_size=2**24, ping_interval=None)
        await self._send({"action": "seek", "frame": 0})  # onopen: "request initial frame"
        self._tasks.append(asyncio.ensure_future(self._read()))

    async def _read(self) -> None:
        try:
            async for m in self.ws:
                if isinstance(m, str):
                    msg = json.loads(m)
                    kind = msg.get("type")
                    if kind == "loading_progress":
                        self.stats.progress.append(msg.get("progress") or 0)
                    elif kind == "loading_complete":
                        self.total_frames = int(msg.get("frames") or 0)
                        self.metadata = msg.get("metadata")
                        self.loaded.set()
                    elif kind == "loading_error":
                        self.stats.loading_error = msg.get("message") or "Unknown error"
                        self.loaded.set()
                    else:
                        self.stats.unknown_text += 1
                    continue
                frame = msgpack.unpackb(m, raw=False)
                now = self.clock()
                self.stats.frames += 1
                i = frame.get("frame_index", round(frame["t"] * FPS))
                if self.playing and self._start_time is not None:
                    own = self._position(now)
                    self.stats.lags.append(max(0.0, (own - i) / FPS))
                sent = self._awaiting.pop(i, None)
                if sent is not None:
                    self.stats.seek_waits.append(now - sent)
                    self._answered.set()
                self.last_frame = frame
        except websockets.ConnectionClosed as e:
            self.stats.closed = f"closed {e.rcvd.code if e.rcvd else 'abnormally'}"
        if self.stats.closed is None:
            self.stats.closed = "closed"

    # -- usePlaybackAnimation -------------------------------------------------------------------
    def _position(self, now: float) -> float:
        assert self._start_time is not None
        return min(self._start_frame + (now - self._start_time) * self.speed * FPS, max(0, self.total_frames - 1))

    async def play(self, speed: float) -> None:
        self.speed = speed
        self.playing = True
        self._start_time = self.clock()
        self._start_frame = self.frame_index
        await self._send({"action": "play", "speed": speed})
        self._tasks.append(asyncio.ensure_future(self._animate()))

    async def _animate(self) -> None:
        period = 1.0 / self.raf_hz
        nxt = self.clock()
        while self.playing and self.ws is not None:
            nxt += period
            await asyncio.sleep(max(0.0, nxt - self.clock()))
            late = self.clock() - nxt
            if late > self.stats.stall_max:
                self.stats.stall_max = late  # frames that arrived meanwhile are read late: not the server's doing
            if late > period:
                nxt = self.clock()  # requestAnimationFrame skips what it missed
            if not self.playing:
                break
            pos = self._start_frame + (self.clock() - self._start_time) * self.speed * FPS  # type: ignore[operator]
            if pos >= self.total_frames - 1:
                await self._set_frame(self.total_frames - 1)
                await self.pause()
                break
            await self._set_frame(math.floor(pos))

    async def _set_frame(self, i: int) -> None:
        if i != self.frame_index:
            self.frame_index = i
            await self._send({"action": "seek", "frame": i})

    async def pause(self) -> None:
        self.playing = False
        self._start_time = None
        await self._send({"action": "pause"})

    async def scrub(self, frame: int, timeout: float = 10.0) -> None:
        """The user drags the timeline (paused): a seek whose frame we wait for, up to ``timeout`` s.

        Waiting (rather than sleeping a fixed time) keeps a slow answer from being missed
        or coalesced with the next scrub; an answer that never comes stays untimed."""
        self._answered.clear()
        self._awaiting[frame] = self.clock()
        await self._set_frame(frame)
        try:
            await asyncio.wait_for(self._answered.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def close(self) -> None:
        self.playing = False
        for t in self._tasks:
            t.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        for r in results:  # a client that broke must not pass for one that behaved
            if isinstance(r, Exception):
                raise r


async def run_one(url: str, speed: float, seconds: float, *, warmup: float = 0.5) -> dict[str, Any]:
    """Connect, play at ``speed`` for ``seconds`` (lags counted after ``warmup``), pause, scrub a few times."""
    c = SeedClient(url)
    await c.open()
    await asyncio.wait_for(c.loaded.wait(), 30)
    if c.stats.loading_error:
        await c.close()
        return {"speed": speed, "loading_error": c.stats.loading_error}
    await c.play(speed)
    await asyncio.sleep(warmup)
    c.stats.lags.clear()
    c.stats.stall_max = 0.0
    await asyncio.sleep(seconds)
    await c.pause()
    still_open = c.stats.closed is None
    for k in range(5):  # paused scrubs, one after another: each must bring its frame
        await c.scrub((c.frame_index + 97 * (k + 1)) % max(1, c.total_frames - 1))
        await asyncio.sleep(0.2)
    out = {"speed": speed, "seconds": seconds, "connected_throughout": still_open and c.stats.closed is None, **c.stats.summary(speed)}
    await c.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run_one(a.url, a.speed, a.seconds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
