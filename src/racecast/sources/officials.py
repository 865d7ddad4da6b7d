"""What the officials say, added to a race a source built: the results and, in qualifying, the knockout order.

One call for every source (:func:`attach_officials`), after the race model is built:

* qualifying-like sessions (Q, sprint qualifying / shootout) get the knockout running
  order and their segments (:mod:`.qualifying`);
* every session gets ``event["results"]`` (:mod:`.results`): the official
  classification when the source has one (FastF1 results of a race, sprint or
  qualifying), else the order the replay ends with, marked unofficial (practice has no
  classification: its order is the best-lap order);
* anything the results and the data disagree on becomes an ingest warning
  (``event["warnings"]``, :mod:`.ingest_report`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from racecast.race import Race
from racecast.sources.ingest_report import with_event, with_warnings
from racecast.sources.qualifying import knockout
from racecast.sources.results import line_results, official_results

#: Session codes run as a knockout (segments). SQ/SS are race-like sprints before 2024 (callers pass race_like).
KNOCKOUT_SESSIONS = ("Q", "SQ", "SS")


def attach_officials(
    race: Race, *, results: Any = None, session: str = "R", race_like: bool = True,
    laps: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Race:
    """``race`` with its results document (and knockout order in qualifying); never raises on bad results.

    ``laps``: per driver (in race order), the valid timed laps as (end in replay seconds,
    lap time) when the source knows which laps count (FastF1: not deleted); else they
    are read off the race's ``lap_time`` channel.
    """
    warnings: list[str] = []
    quali = not race_like and session.upper() in KNOCKOUT_SESSIONS
    if quali:
        race, w = knockout(race, results=results, segment_prefix="SQ" if session.upper() != "Q" else "Q", laps=laps)
        warnings += w
    if results is not None and len(results) and (race_like or quali):
        doc, w = official_results(race, results)
        warnings += w
    elif quali:
        doc = line_results(race, why="no official classification in the source: this is the knockout order from the data, unofficial")
    elif race_like:
        doc = line_results(race)
    else:
        doc = line_results(race, why="no official classification in the source: this is the best-lap order from the data, unofficial")
    return with_warnings(with_event(race, results=doc), warnings)


__all__ = ["KNOCKOUT_SESSIONS", "attach_officials"]
