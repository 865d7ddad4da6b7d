"""HTTP/1.1 for ``racecast serve``: uvicorn's h11 protocol plus a deadline for request headers.

uvicorn has a keep-alive timeout between requests but none for a request's
headers: a socket that connects and sends nothing, or sends a header a byte at
a time (slowloris), holds its connection (and a file descriptor) for ever. Here
every request's headers must be complete within ``header_timeout`` seconds of
the connection opening (or of the previous response ending), else the
connection is dropped; and a request head (request line + headers) over
``max_header_bytes`` gets ``431`` with a JSON error and the connection closes
(httptools, uvicorn's default parser, has no limit at all; h11's own only
bounds a head still incomplete).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import TooLarge
from .errors import FaultLog

#: Seconds a client has to send a request's complete headers.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Largest request head (request line + headers), bytes.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
#: Seconds an HTTP client may leave a response unread (its send buffer full) before it is dropped.
SEND_TIMEOUT = 60.0

__all__ = ["RacecastH11Protocol", "DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_HEADER_BYTES", "FAULTS"]

#: Protocol-level client faults (bad HTTP, bad UTF-8...): one line each, rate-limited per kind.
FAULTS = FaultLog(logging.getLogger("racecast.faults"))


class _OnceAMinute(logging.Filter):
    """uvicorn logs a warning per malformed request; a client can send thousands: keep 10 a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.log = FaultLog(logging.getLogger("racecast.faults"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(("Invalid HTTP request", "Invalid UTF-8")):
            self.log.note("bad_http", record.getMessage())
            return False
        return True


_FILTER = _OnceAMinute()
logging.getLogger("uvicorn.error").addFilter(_FILTER)


class RacecastH11Protocol(H11Protocol):
    """h11 with a request-header deadline (``config.racecast_header_timeout``; None or 0: none)."""

    _header_timer: asyncio.TimerHandle | None = None
    _in_head = True  # reading a request's head (not its body, not a response)
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end
            limit = getattr(self.config, "racecast_max_header_bytes", DEFAULT_MAX_HEADER_BYTES)
            if self._head_bytes > limit:
                self._refuse_head(limit)
                return
            if end >= 0:
                self._in_head = False
        super().data_received(data)

    def _refuse_head(self, limit: int) -> None:
        self._in_head = False
        self._cancel_header_timer()
        e = TooLarge(f"request headers over {limit} bytes", http_status=431)  # before the app: written here, raw
        body = json.dumps(e.to_dict()).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()
        self.loop.call_later(5.0, self.transport.abort)  # a client that does not read the answer either
        FAULTS.note("too_large", f"request head over {limit} bytes from {self.client}")

    def _arm_header_timer(self) -> None:
        timeout = getattr(self.config, "racecast_header_timeout", DEFAULT_HEADER_TIMEOUT)
        if timeout:
            self._header_timer = self.loop.call_later(timeout, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._upgraded():
            return
        if self.cycle is None or self.cycle.response_complete:  # still waiting for a request's headers
            self.transport.abort()

    def _upgraded(self) -> bool:
        get = getattr(self.transport, "get_protocol", None)
        return get is not None and get() is not self

    def handle_events(self) -> None:
        super().handle_events()
        if self._header_timer is not None and (self._upgraded() or (self.cycle is not None and not self.cycle.response_complete)):
            self._cancel_header_timer()  # a request's headers arrived (or the socket became a WebSocket)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._in_head, self._head_bytes = True, 0
        if not self.transport.is_closing():
            self._cancel_header_timer()
            self._arm_header_timer()  # the next request's headers are due within the timeout too

    _stall_timer: asyncio.TimerHandle | None = None

    def pause_writing(self) -> None:
        # The client stopped reading a response (its buffer is over the high-water mark): it has
        # SEND_TIMEOUT seconds to take some of it, else the connection goes (slot, buffer and task).
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(SEND_TIMEOUT, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        FAULTS.note("stalled_reader", f"HTTP client {self.client} read nothing for {SEND_TIMEOUT:g} s; connection aborted")
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)


def configure(config: Any, *, header_timeout: float | None, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
    """Give ``config`` (a uvicorn Config using :class:`RacecastH11Protocol`) its header deadline and size."""
    config.racecast_header_timeout = header_timeout
    config.racecast_max_header_bytes = max_header_bytes
