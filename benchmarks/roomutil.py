"""Room members as real WebSocket clients, and the frame gap between members at the same instants.

Shared by benchmarks/rooms.py and the room tests. A :class:`Member` reads in the background
and records ``(receive time, frame index)`` for every frame it gets (msgpack or compact); the
gap between members is then read at the same instants: at each instant, each member's frame
is the last one it had received, and the gap is the spread of those frames.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgpack
import websockets

from racecast.bundle.compact import CompactFrame, decode_compact


@dataclass
class Member:
    """A room member: reads everything in a task; keeps texts and ``(t, frame)`` of frames."""

    ws: Any
    mode: str = "msgpack"
    texts: list[dict] = field(default_factory=list)
    frames: list[tuple[float, int]] = field(default_factory=list)
    closed: int | None = None
    _key: CompactFrame | None = None
    _task: asyncio.Task | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def join(cls, base_ws: str, replay: str, room: str, token: str | None = None, mode: str = "msgpack") -> "Member":
        q = f"?room={room}" + (f"&token={token}" if token else "")
        if mode == "compact":
            q += "&encoding=compact"
        elif mode == "chunks":
            q += "&mode=chunks&compression=identity"
        ws = await websockets.connect(f"{base_ws}/ws/replay/{replay}{q}", open_timeout=10, max_size=2**24)
        m = cls(ws, mode)
        m._task = asyncio.create_task(m._read())
        await m.wait(lambda: m.states(), what="the first state")
        return m

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                t = time.monotonic()
                if isinstance(msg, str):
                    self.texts.append(json.loads(msg))
                elif self.mode == "msgpack":
                    self.frames.append((t, msgpack.unpackb(msg)["frame_index"]))
                elif self.mode == "compact":
                    f = decode_compact(msg, self._key)
                    self._key = f.key
                    self.frames.append((t, f.frame_index))
                else:  # chunks: record the chunk's first frame
                    from racecast.bundle.chunks import decode_chunk

                    self.frames.append((t, decode_chunk(msg).first_frame))
                self._changed.set()
        except websockets.ConnectionClosed as e:
            self.closed = e.rcvd.code if e.rcvd is not None else -1
        finally:
            self._changed.set()

    def states(self) -> list[dict]:
        return [x for x in self.texts if x.get("type") == "state"]

    def of(self, type_: str) -> list[dict]:
        return [x for x in self.texts if x.get("type") == type_]

    async def wait(self, cond: Any, timeout: float = 10.0, what: str = "a condition") -> Any:
        end = time.monotonic() + timeout
        while not (r := cond()):
            if self._task is not None and self._task.done() and not cond():
                raise AssertionError(f"connection ended (code {self.closed}) waiting for {what}; texts: {self.texts[-3:]}")
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; texts: {self.texts[-3:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return r

    async def send(self, **cmd: Any) -> None:
        await self.ws.send(json.dumps(cmd))

    async def command(self, **cmd: Any) -> dict:
        """Send a command; wait for the state acknowledgement after it (a new seq)."""
        seen = len(self.states())
        await self.send(**cmd)
        return (await self.wait(lambda: self.states()[seen:], what=f"the ack of {cmd}"))[0]

    def frame_at(self, t: float) -> int | None:
        """The last frame received at or before ``t`` (None: none yet)."""
        lo, hi = 0, len(self.frames)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.frames[mid][0] <= t:
                lo = mid + 1
            else:
                hi = mid
        return self.frames[lo - 1][1] if lo else None

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def gaps(members: list[Member], t0: float, t1: float, step: float = 0.005) -> list[int]:
    """The spread (max - min) of members' frames at instants ``t0, t0 + step, ... < t1``."""
    out: list[int] = []
    t = t0
    while t < t1:
        fs = [m.frame_at(t) for m in members]
        if all(f is not None for f in fs):
            out.append(max(fs) - min(fs))  # type: ignore[type-var]
        t += step
    return out


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def create_room(base_http: str, replay: str, control: str = "host") -> dict:
    r = httpx.post(f"{base_http}/api/rooms", json={"replay": replay, "control": control}, trust_env=False, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()
