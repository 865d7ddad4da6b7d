"""The ingest report: warnings a source found in its input, kept with the race.

A source that can still make a truthful replay of imperfect input (a results table
that disagrees with the laps, a cache missing the weather...) does not fail; it says
what it noticed. The warnings travel in ``Race.event["warnings"]`` (a list of
strings, so they are stored in the bundle's manifest and shown by
``GET /api/replays/{id}``), and ``racecast ingest`` prints them.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from racecast.race import Race


def warnings_of(race: Race) -> list[str]:
    """The race's ingest warnings (empty when there are none)."""
    return [str(w) for w in race.event.get("warnings", ())]


def with_warnings(race: Race, messages: Iterable[str]) -> Race:
    """``race`` with ``messages`` appended to its ingest warnings (each once, order kept)."""
    old = warnings_of(race)
    new = [m for m in dict.fromkeys(str(m) for m in messages) if m not in old]
    if not new:
        return race
    return with_event(race, warnings=old + new)


def with_event(race: Race, **fields: object) -> Race:
    """``race`` with extra ``event`` fields (the arrays are shared, not copied)."""
    return dataclasses.replace(race, event={**race.event, **fields}, validate=False)


__all__ = ["warnings_of", "with_event", "with_warnings"]
