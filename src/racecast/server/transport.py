"""How frames reach a viewer's socket: the replaceable part under the engine.

Two sinks, one interface (:class:`~racecast.server.sink.Sink`, in its own module so that
the engine imports no I/O library):

* :class:`DirectSink` - the fast path under ``racecast serve``. uvicorn runs
  :class:`RacecastWSProtocol` (its websockets-sansio protocol plus one line:
  the connection puts itself in the ASGI scope's ``extensions``), and the engine
  writes complete, unmasked WebSocket frames straight into the asyncio transport:
  frames are stored pre-framed in the bundle, so each send is one zero-copy
  slice and one ``write()`` (docs/architecture.md has the measurements). Backpressure reads the transport's write buffer size;
  nothing is awaited, nothing is queued.
* :class:`AsgiSink` - the fallback when the app runs under any other ASGI server:
  plain ``websocket.send`` messages from one small writer task per viewer, with at
  most one frame queued (a frame offered while another is in flight is skipped).

Both keep per-viewer memory bounded: the direct sink refuses frames while more
than ``limit`` bytes wait in the transport; the ASGI sink holds one frame at most.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..bundle.wsframe import OP_TEXT, binary_header, frame_header
from .http import FAULTS
from .sink import SinkClosed

__all__ = [
    "DirectSink",
    "AsgiSink",
    "RacecastWSProtocol",
    "SinkClosed",
    "EXTENSION",
    "DEFAULT_BUFFER_LIMIT",
    "ABORT_AFTER",
]

#: The ASGI scope extension under which :class:`RacecastWSProtocol` exposes itself.
EXTENSION = "racecast.transport"
#: Default per-viewer limit of bytes waiting in the socket's user-space buffer.
DEFAULT_BUFFER_LIMIT = 32 * 1024

#: A closing connection whose peer has not taken the rest of its bytes after this many seconds is
#: aborted (RST): a client that never reads must not keep its socket and buffer for ever.
ABORT_AFTER = 5.0


class _CloseWithin:
    """An asyncio transport whose ``close()`` becomes ``abort()`` if the connection is not gone ``delay`` s later.

    ``transport.close()`` waits until the write buffer is flushed, which for a peer
    that never reads is never. The hot-path methods are bound once (no per-call indirection).
    """

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._t = transport
        self._loop = loop
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self.write = transport.write
        self.is_closing = transport.is_closing
        self.get_write_buffer_size = transport.get_write_buffer_size

    def close(self) -> None:
        self._t.close()
        if self._timer is None:
            self._timer = self._loop.call_later(self._delay, self._abort)

    def _abort(self) -> None:  # still not gone (connection_lost cancels this timer)
        self._t.abort()

    def abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class RacecastWSProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, exposing itself to the app, closing with 1001 on shutdown.

    Also: a close that cannot complete (the peer never reads) becomes an abort after
    :data:`ABORT_AFTER` s, and a keepalive ping left unanswered aborts at once.
    """

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport = _CloseWithin(transport, self.loop, ABORT_AFTER)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        t = self.transport
        if isinstance(t, _CloseWithin) and t._timer is not None:
            t._timer.cancel()
        super().connection_lost(exc)

    def send_receive_event_to_app(self) -> None:
        # uvicorn logs an ERROR with a traceback per text message that is not UTF-8: a client can
        # send thousands. Refuse it here (close 1007) with one rate-limited line.
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                bytes(data).decode()
            except UnicodeDecodeError:
                self.frames = []
                FAULTS.note("invalid_utf8", f"text message that is not UTF-8 from {self.client}; closed 1007")
                self.conn.send_close(1007, "invalid UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # fails the connection with 1011 and closes...
        self.transport.abort()  # ...which a peer that does not answer pings will not complete

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = self

    def shutdown(self) -> None:
        # uvicorn says 1012 (service restart); viewers of a server going away get 1001.
        if self.handshake_complete and not self.close_sent and not self.disconnected and self.initial_response is None:
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})
            self.conn.send_close(1001, "server shutting down")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            return
        super().shutdown()


class DirectSink:
    """Writes frames straight into the connection's asyncio transport."""

    __slots__ = ("_proto", "_transport", "limit")
    framed = True  # offer() takes a complete WebSocket frame: one write, no per-viewer framing

    def __init__(self, proto: RacecastWSProtocol, limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self._proto = proto
        self._transport = proto.transport
        self.limit = limit

    @property
    def alive(self) -> bool:
        p = self._proto
        return not (p.close_sent or p.disconnected or self._transport.is_closing())

    def offer(self, data: bytes | memoryview) -> bool:
        t = self._transport
        if self._proto.close_sent or t.is_closing():  # closing handshake started, or the peer is gone
            raise SinkClosed
        if t.get_write_buffer_size() > self.limit:
            return False
        t.write(data)
        return True

    def push(self, payload: memoryview | tuple[memoryview, ...]) -> None:
        if self.alive:
            parts = payload if type(payload) is tuple else (payload,)
            self._transport.write(b"".join([binary_header(len(p)) + p for p in parts]))

    def post(self, text: str) -> None:
        if self.alive:
            data = text.encode()
            self._transport.write(frame_header(len(data), OP_TEXT) + data)

    def buffered(self) -> int:
        try:
            return self._transport.get_write_buffer_size()
        except Exception:  # a closed uvloop handle refuses even this
            return 0

    async def drain(self) -> None:
        # uvicorn clears this event when the transport passes its high-water mark.
        await self._proto.writable.wait()


class AsgiSink:
    """Plain ASGI ``websocket.send`` from one writer task; at most one frame waits (latest wins)."""

    framed = False

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self._queue: deque[dict[str, Any]] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._alive = True
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def alive(self) -> bool:
        return self._alive

    def _put(self, msg: dict[str, Any], size: int) -> None:
        if not self._alive:
            return
        self._queue.append(msg)
        self._queued_bytes += size
        self._idle.clear()
        self._wake.set()

    def offer(self, payload: memoryview | tuple[memoryview, ...]) -> bool:
        if not self._alive:
            raise SinkClosed
        if self._queue:  # a send is in flight or waiting: skip this frame
            return False
        for p in payload if type(payload) is tuple else (payload,):  # several messages offered together
            self._put({"type": "websocket.send", "bytes": bytes(p)}, len(p))
        return True

    def push(self, payload: memoryview | tuple[memoryview, ...]) -> None:
        for p in payload if type(payload) is tuple else (payload,):
            self._put({"type": "websocket.send", "bytes": bytes(p)}, len(p))

    def post(self, text: str) -> None:
        self._put({"type": "websocket.send", "text": text}, len(text))

    def buffered(self) -> int:
        return self._queued_bytes

    async def drain(self) -> None:
        await self._idle.wait()

    async def _run(self) -> None:
        q = self._queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while q:
                    msg = q[0]
                    await self._send(msg)
                    q.popleft()
                    self._queued_bytes -= len(msg.get("bytes") or msg.get("text") or "")
                self._idle.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the connection went away under us
            pass
        finally:
            self._alive = False
            q.clear()
            self._queued_bytes = 0
            self._idle.set()

    def close(self) -> None:
        self._alive = False
        self._task.cancel()
