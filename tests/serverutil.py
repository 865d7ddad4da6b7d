"""Helpers for server tests: a real uvicorn on a free port in a thread, a real WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import msgpack
import websockets
from websockets.asyncio.client import ClientConnection

from benchmarks.common import Running  # noqa: F401 - re-exported: tests take it from here
from benchmarks.common import running as _running
from benchmarks.race import write_race  # noqa: F401 - re-exported

#: Multiplier for every real-time bound in the tests (``RACECAST_TEST_TIME_SCALE=4`` on a slow or busy
#: machine). What can be driven by a fake clock is; what must be real time waits for an event with a
#: generous deadline scaled by this, never for a fixed sleep.
TIME_SCALE = float(os.environ.get("RACECAST_TEST_TIME_SCALE", "1") or 1)


def T(seconds: float) -> float:
    """A real-time bound in seconds, scaled by ``RACECAST_TEST_TIME_SCALE``."""
    return seconds * TIME_SCALE


class StepClock:
    """A fake clock shared by a test and a server running in another thread: time moves only by :meth:`advance`.

    Given to ``create_app(clock=...)``, the engine serves a tick only once this clock has reached it,
    so each :meth:`advance` of one frame period makes exactly one tick's frames due.
    """

    def __init__(self, t: float = 1000.0) -> None:
        self._us = round(t * 1e6)  # whole microseconds: no float error accumulates over thousands of steps
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._us / 1e6

    def advance(self, dt: float) -> float:
        with self._lock:
            self._us += round(dt * 1e6)
            return self._us / 1e6


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it is truthy (returns it); fail after ``T(timeout)`` real seconds."""
    end = time.monotonic() + T(timeout)
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {T(timeout):.1f} s")
        time.sleep(0.02)


async def async_wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """:func:`wait_until` for async tests (``cond`` runs in a thread, it may do blocking I/O)."""
    end = time.monotonic() + T(timeout)
    while True:
        got = await asyncio.to_thread(cond)
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {T(timeout):.1f} s")
        await asyncio.sleep(0.02)


DIRECT = "racecast.server.transport:RacecastWSProtocol"  # the fast path
PLAIN = "websockets-sansio"  # stock uvicorn protocol: the app falls back to ASGI sends


@contextmanager
def running(app: Any, ws: str = DIRECT, limits: Any = None) -> Iterator[Running]:
    """Serve ``app`` on 127.0.0.1:<free port> until the block ends (``limits``: a ConnectionLimits)."""
    with _running(app, ws=ws, limits=limits, start_timeout=T(15)) as r:
        yield r


async def read_until_closed(url: str, timeout: float = 5.0) -> tuple[int | None, list[str | bytes]]:
    """Open ``url`` and read every message until the server closes the connection: its close code
    (None without a close frame) and the messages (``timeout``: per message, scaled)."""
    msgs: list[str | bytes] = []
    async with websockets.connect(url) as ws:
        try:
            while True:
                msgs.append(await asyncio.wait_for(ws.recv(), T(timeout)))
        except websockets.ConnectionClosed as e:
            return (e.rcvd.code if e.rcvd is not None else None), msgs


def frame_index(payload: bytes) -> int:
    return msgpack.unpackb(payload, raw=False)["frame_index"]


@dataclass
class ViewerClient:
    """A test client: keeps JSON messages and (time, frame index) of binary ones."""

    ws: ClientConnection
    texts: list[dict] = field(default_factory=list)
    frames: list[tuple[float, int]] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, **kw: Any) -> "ViewerClient":
        ws = await websockets.connect(url, open_timeout=T(10), max_size=2**24, **kw)
        return cls(ws)

    async def next(self, timeout: float = 5.0) -> dict | int:
        """The next message; ``timeout`` is scaled by :func:`T` (a bound, not a window)."""
        m = await asyncio.wait_for(self.ws.recv(), T(timeout))
        if isinstance(m, str):
            d = json.loads(m)
            self.texts.append(d)
            return d
        i = frame_index(m)
        self.frames.append((time.monotonic(), i))
        return i

    async def until(self, type_: str, timeout: float = 5.0) -> dict:
        """Read until a JSON message of ``type_``; returns it."""
        end = time.monotonic() + T(timeout)
        while True:
            m = await self.next(max(0.01, end - time.monotonic()) / TIME_SCALE)
            if isinstance(m, dict) and m.get("type") == type_:
                return m

    async def ready(self) -> dict:
        """Read the opening sequence (loading..., state, frame 0); return loading_complete."""
        lc = await self.until("loading_complete")
        st = await self.until("state")
        assert st["playing"] is False
        first = await self.next()
        assert first == st["frame"]
        return lc

    async def send(self, **cmd: Any) -> None:
        await self.ws.send(json.dumps(cmd))

    async def command(self, **cmd: Any) -> dict:
        """Send a command and read up to its state acknowledgement."""
        await self.send(**cmd)
        return await self.until("state")

    async def collect(self, seconds: float) -> list[dict | int]:
        """Everything received during ``seconds``."""
        out: list[dict | int] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                out.append(await self.next(left / TIME_SCALE))
            except asyncio.TimeoutError:
                break
        return out

    async def next_frame(self, timeout: float = 5.0) -> int:
        """Read up to the next binary frame; its index."""
        while True:
            m = await self.next(timeout)
            if isinstance(m, int):
                return m

    async def step(self, clock: StepClock, n: int, dt: float = 0.04) -> list[int]:
        """Move ``clock`` one tick (``dt``) at a time, ``n`` times, reading the frame each tick sends.

        For a playing viewer at speed >= 1 on a server built with ``clock``: every tick sends one frame.
        """
        got = []
        for _ in range(n):
            clock.advance(dt)
            got.append(await self.next_frame())
        return got

    async def close(self) -> None:
        await self.ws.close()


async def run_ticks(engine: Any, clock: StepClock, n: int, dt: float = 0.04) -> None:
    """Move ``clock`` ``n`` ticks, each time waiting until ``engine`` (in the server's thread) has served it.

    Whatever each tick sends (a frame, a chunk, nothing) is then in the socket before the next
    one; a command sent afterwards is answered after all of it.
    """
    for _ in range(n):
        before = engine.ticks
        clock.advance(dt)
        await async_wait_until(lambda: engine.ticks > before, what="the server's tick")


def frames_only(msgs: list[dict | int]) -> list[int]:
    return [m for m in msgs if isinstance(m, int)]


class StalledClient:
    """A raw WebSocket client that plays and then never reads (tiny receive buffer)."""

    def __init__(self, port: int, path: str) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(T(5))
        s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.sock = s

    def send_text(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        assert len(data) < 126
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes((0x81, 0x80 | len(data))) + mask + body)

    def close(self) -> None:
        self.sock.close()
