"""The floor: the cheapest WebSocket sender Python can be on this machine.

A plain asyncio server (no framework). The handshake and incoming commands go
through the ``websockets`` sans-I/O ``ServerProtocol`` (not the hot path). Every
frame of the bundle is pre-framed at startup (WebSocket header + pre-encoded
payload in one buffer), and ONE drift-free 25 Hz timer writes the current
frame's buffer straight to each playing viewer's transport: one ``write`` per
viewer per tick, nothing else. A viewer whose socket buffer is full is skipped
(latest wins) so memory stays bounded.

Same protocol as racecast: ``loading_complete``, JSON commands, a ``state`` reply
to each, binary frames; after a seek the target frame follows the reply at once.

Run: ``python -m benchmarks.floor_server --data DIR --port P``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from racecast.bundle import DataDir

from .common import reference_server_args
from .wsframes import OPCODE_BINARY, server_frame

FPS = 25
MAX_BUFFERED = 256 * 1024  # bytes queued in a viewer's transport before frames are skipped
PATH_PREFIX = "/ws/replay/"


class Replay:
    """A bundle's frames, each pre-framed as one complete WebSocket binary message."""

    def __init__(self, bundle: Any) -> None:
        stream = bundle.streams["msgpack"]
        self.framed: list[bytes] = [server_frame(OPCODE_BINARY, stream[i]) for i in range(stream.count)]
        self.n_frames = len(self.framed)


class FloorViewer(asyncio.Protocol):
    """One connection: handshake via ServerProtocol, then commands in, frames out."""

    def __init__(self, hub: "Hub") -> None:
        self.hub = hub
        self.ws = ServerProtocol()
        self.transport: asyncio.Transport | None = None
        self.replay: Replay | None = None
        self.open = False
        self.playing = False
        self.speed = 1.0
        self.anchor_frame = 0.0  # replay position at anchor_time
        self.anchor_time = 0.0
        self.last_sent = -1
        self.seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._command(event.data)
        self._flush()
        if self.ws.close_expected() and self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        out = self.ws.data_to_send()
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _handshake(self, request: Request) -> None:
        path = request.path.split("?", 1)[0]  # a query (racecast clients send ?encoding=) is ignored
        rid = path[len(PATH_PREFIX) :] if path.startswith(PATH_PREFIX) else None
        replay = self.hub.replays.get(rid) if rid else None
        if replay is None:
            self.ws.send_response(self.ws.reject(404, "no such replay\n"))
            return
        self.ws.send_response(self.ws.accept(request))
        self._flush()
        self.replay = replay
        self.open = True
        self.ws.send_text(json.dumps({"type": "loading_complete", "frames": replay.n_frames}).encode())
        self._flush()
        self._send(0)
        self.hub.viewers.add(self)

    def position(self, now: float) -> int:
        assert self.replay is not None
        f = self.anchor_frame + max(now - self.anchor_time, 0.0) * FPS * self.speed if self.playing else self.anchor_frame
        # The epsilon: command and tick times share the loop clock's millisecond grid, so
        # exact integers are common and float noise would alternate a skip and a repeat.
        return min(max(int(f + 1e-6), 0), self.replay.n_frames - 1)

    def _command(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        pos = self.position(now)
        try:
            cmd = json.loads(data)
            action = cmd.get("action")
            if action == "play":
                self.speed = float(cmd.get("speed", self.speed))
                self.anchor_frame, self.anchor_time, self.playing = pos, now, True
            elif action == "pause":
                self.anchor_frame, self.anchor_time, self.playing = pos, now, False
            elif action == "seek":
                assert self.replay is not None
                pos = min(max(int(cmd["frame"]), 0), self.replay.n_frames - 1)
                self.anchor_frame, self.anchor_time = pos, now
        except (ValueError, KeyError, TypeError, AttributeError):
            action = None
        self.seq += 1
        state = {"type": "state", "playing": self.playing, "speed": self.speed, "frame": pos, "seq": self.seq}
        self.ws.send_text(json.dumps(state).encode())
        self._flush()
        if action == "seek":
            self._send(pos)

    def _send(self, i: int) -> None:
        assert self.transport is not None and self.replay is not None
        self.transport.write(self.replay.framed[i])
        self.last_sent = i

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.viewers.discard(self)
        self.open = False


class Hub:
    """Every viewer of the process, served from one drift-free 25 Hz timer."""

    def __init__(self, replays: dict[str, Replay]) -> None:
        self.replays = replays
        self.viewers: set[FloorViewer] = set()
        self._k = 0
        self._t0 = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._k = 1
        loop.call_at(self._t0 + 1 / FPS, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        # Positions at the tick's grid time, not "now": a late tick must not skip or repeat a frame.
        t_tick = self._t0 + self._k / FPS
        for v in self.viewers:
            if not v.playing:
                continue
            i = v.position(t_tick)
            if i != v.last_sent and v.transport.get_write_buffer_size() < MAX_BUFFERED:  # type: ignore[union-attr]
                v.transport.write(v.replay.framed[i])  # type: ignore[union-attr]
                v.last_sent = i
        # Next tick on the fixed grid; if we fell behind, skip the missed ticks (latest wins).
        self._k = max(self._k + 1, int((loop.time() - self._t0) * FPS))
        loop.call_at(self._t0 + self._k / FPS, self._tick)


async def serve(data_dir: str, host: str, port: int) -> None:
    store = DataDir(data_dir)
    hub = Hub({rid: Replay(store.open(rid)) for rid in store.ids()})
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FloorViewer(hub), host, port, backlog=4096)
    hub.start()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    a = reference_server_args(argv, __doc__.splitlines()[0], 8767)
    try:
        import uvloop  # same event loop uvicorn picks for the other two designs
    except ImportError:  # pragma: no cover
        asyncio.run(serve(a.data, a.host, a.port))
    else:
        uvloop.run(serve(a.data, a.host, a.port))


if __name__ == "__main__":
    main()
