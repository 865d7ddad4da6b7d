"""Race sources: everything that turns outside data into a :class:`~racecast.race.Race`.

Every source raises :class:`IngestError` (with a message fit to show a user) when its
input cannot be turned into a race: a missing optional dependency, an unreachable data
server, an unknown event, a malformed file.
"""

from __future__ import annotations

from typing import Callable

from ..errors import RacecastError

#: ``progress(stage, fraction)``: called by long-running sources as they work; ``fraction``
#: goes from 0 to 1 within each stage. Sources may call it from a worker thread.
ProgressFn = Callable[[str, float], None]


class IngestError(RacecastError):
    """Input that cannot become a race; the message names the problem for the user."""

    http_status = 422
    close_code = 4500
    kind = "ingest_failed"


__all__ = ["IngestError", "ProgressFn"]
