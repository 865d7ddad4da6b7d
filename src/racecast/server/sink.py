"""Where the engine writes a viewer's messages: the interface only, sans I/O.

The engine (:mod:`racecast.server.engine`) depends on this protocol, never on a
transport, so it imports without uvicorn; :mod:`racecast.server.transport` holds the
two implementations (the direct uvicorn path and the plain-ASGI fallback), tests a fake.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Sink", "SinkClosed"]


class SinkClosed(Exception):
    """The viewer's connection is gone; drop the viewer."""


class Sink(Protocol):
    """Where one viewer's messages go. ``offer`` may skip; ``push``/``post`` never do, and all keep order.

    A sink whose ``framed`` attribute is true is offered whole WebSocket frames
    (header + payload: for frame streams a zero-copy slice of the bundle, which
    stores them pre-framed); other sinks are offered the payload.
    """

    framed: bool

    def offer(self, data: bytes | memoryview | tuple[memoryview, ...]) -> bool:
        """Write a binary frame (or a tuple of payloads: several, together) unless the viewer is backed up;
        never blocks. Raises :class:`SinkClosed`."""
        ...

    def push(self, payload: memoryview | tuple[memoryview, ...]) -> None:
        """Write a binary frame (or several, a tuple) whatever the buffer (once per command, so bounded)."""
        ...

    def post(self, text: str) -> None:
        """Write a JSON text message, in order with frames."""
        ...

    def buffered(self) -> int:
        """Bytes waiting to be sent to this viewer."""
        ...

    @property
    def alive(self) -> bool: ...

    async def drain(self) -> None:
        """Wait until the viewer has taken most of what was written (bounds control-message memory)."""
        ...
