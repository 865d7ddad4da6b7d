"""What one app instance shares between its endpoints (``app.state.racecast``).

Its own module so that the app (which builds it) and the WebSocket endpoint (which
reads it) both import it, and neither imports the other.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from .engine import Engine
from .errors import FaultLog
from .ingest import IngestManager
from .metrics import Metrics
from .replays import Replays
from .rooms import RoomHub

if TYPE_CHECKING:
    from .websocket import Connection

__all__ = ["ServerState", "BoundedDict"]


@dataclass(eq=False)
class ServerState:
    """Everything one app instance shares between its endpoints (``app.state.racecast``)."""

    replays: Replays
    engine: Engine
    metrics: Metrics
    max_connections: int
    allowed_origins: Sequence[str] | None
    command_rate: float
    command_burst: float
    buffer_limit: int
    socket_send_buffer: int | None
    ingest: IngestManager | None = None  # None: server-side ingest disabled
    rooms: RoomHub | None = None
    connections: set[Connection] = field(default_factory=set)
    #: Why ``POST /api/sessions`` could not provide a session (id -> message), so the seed's
    #: client, which ignores the POST's answer, hears it as ``loading_error`` on the WebSocket.
    session_errors: "BoundedDict" = field(default_factory=lambda: BoundedDict(64))
    faults: FaultLog = field(default_factory=lambda: FaultLog(logging.getLogger("racecast.faults")))


class BoundedDict(OrderedDict):  # type: ignore[type-arg]
    """A dict that keeps only its ``size`` most recently set keys."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
