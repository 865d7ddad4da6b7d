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
from pathlib import Path
from typing import Any, Iterator

import httpx
import msgpack
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from racecast.server.serve import uvicorn_config

DIRECT = "racecast.server.transport:RacecastWSProtocol"  # the fast path
PLAIN = "websockets-sansio"  # stock uvicorn protocol: the app falls back to ASGI sends


@dataclass
class Running:
    port: int
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, replay_id: str, query: str = "?encoding=msgpack") -> str:
        """A racecast-protocol URL by default (asking for an encoding is racecast's);
        ``query=""`` is what the seed's client opens (the seed protocol: no ``state`` messages)."""
        return f"ws://127.0.0.1:{self.port}/ws/replay/{replay_id}{query}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, trust_env=False, timeout=10)

    def metric(self, name: str) -> float:
        """Value of one sample in /metrics (``name`` includes labels if any)."""
        with self.http() as c:
            text = c.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)


@contextmanager
def running(app: Any, ws: str = DIRECT) -> Iterator[Running]:
    """Serve ``app`` on 127.0.0.1:<free port> until the block ends."""
    config = uvicorn_config(app, "127.0.0.1", 0, log_level="error")
    config.ws = ws
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    port = sock.getsockname()[1]
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Running(port, app, server, t)
    finally:
        server.should_exit = True
        t.join(15)
        sock.close()


def frame_index(payload: bytes) -> int:
    return msgpack.unpackb(payload, raw=False)["frame_index"]


@dataclass
class Viewer:
    """A test client: keeps JSON messages and (time, frame index) of binary ones."""

    ws: ClientConnection
    texts: list[dict] = field(default_factory=list)
    frames: list[tuple[float, int]] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, **kw: Any) -> "Viewer":
        ws = await websockets.connect(url, open_timeout=10, max_size=2**24, **kw)
        return cls(ws)

    async def next(self, timeout: float = 5.0) -> dict | int:
        m = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(m, str):
            d = json.loads(m)
            self.texts.append(d)
            return d
        i = frame_index(m)
        self.frames.append((time.monotonic(), i))
        return i

    async def until(self, type_: str, timeout: float = 5.0) -> dict:
        """Read until a JSON message of ``type_``; returns it."""
        end = time.monotonic() + timeout
        while True:
            m = await self.next(max(0.01, end - time.monotonic()))
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
                out.append(await self.next(left))
            except asyncio.TimeoutError:
                break
        return out

    async def close(self) -> None:
        await self.ws.close()


def frames_only(msgs: list[dict | int]) -> list[int]:
    return [m for m in msgs if isinstance(m, int)]


class StalledClient:
    """A raw WebSocket client that plays and then never reads (tiny receive buffer)."""

    def __init__(self, port: int, path: str) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
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


def write_race(root: Path, race_id: str, n_frames: int, n_drivers: int = 3) -> None:
    from racecast.bundle import write_bundle
    from tests.factories import tiny_race

    write_bundle(tiny_race(n_frames=n_frames, n_drivers=n_drivers, race_id=race_id), root / race_id)
