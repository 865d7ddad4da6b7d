"""``GET /api/replays/{id}/events`` and ``/laps``: the race's event index and lap-by-lap chart data.

Both come from the bundle's stored analysis (computed once at ingest); a bundle written
before analysis existed gets it derived from its arrays once per process, off the event
loop, and kept. Filters are validated: an unknown kind or driver is a 400 naming the
valid ones, so a typo never looks like "no events".
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Callable

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from ..analysis.events import KINDS, filter_events
from ..analysis.store import AnalysisError, analysis_of_bundle
from ..errors import BadRequest

if TYPE_CHECKING:
    from .replays import Replay

CACHE_CONTROL = "public, max-age=300"
#: Analyses kept per process (each ~100-300 KB of Python objects for a full race).
MAX_CACHED = 32


class AnalysisCache:
    """One analysis per opened replay (keyed by the replay object: a replaced bundle is a new one)."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self._docs: dict[int, tuple[Any, dict[str, Any], bool]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, replay: "Replay") -> tuple[dict[str, Any], bool]:
        key = id(replay)
        hit = self._docs.get(key)
        if hit is not None and hit[0] is replay:
            return hit[1], hit[2]
        doc, derived = analysis_of_bundle(replay.bundle)
        with self._lock:
            if len(self._docs) >= self._limit:
                self._docs.pop(next(iter(self._docs)))
            self._docs[key] = (replay, doc, derived)
        return doc, derived

    async def aget(self, replay: "Replay") -> tuple[dict[str, Any], bool]:
        hit = self._docs.get(id(replay))
        if hit is not None and hit[0] is replay:
            return hit[1], hit[2]
        return await asyncio.to_thread(self.get, replay)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def add_analysis_routes(app: FastAPI, replay_or_error: Callable[[str], "Replay"]) -> AnalysisCache:
    cache = AnalysisCache()

    async def analysis(replay_id: str) -> tuple["Replay", dict[str, Any], bool]:
        r = replay_or_error(replay_id)
        try:
            doc, derived = await cache.aget(r)
        except AnalysisError as e:
            raise AnalysisError(f"replay {replay_id!r}: analysis unreadable: {e}") from None
        return r, doc, derived

    @app.get("/api/replays/{replay_id}/events", summary="The race's events (overtakes, pit stops, SC, ...), filterable")
    async def replay_events(
        replay_id: str,
        kind: str | None = Query(None, max_length=300, description="comma-separated kinds"),
        driver: str | None = Query(None, max_length=300, description="comma-separated driver codes"),
    ) -> JSONResponse:
        r, doc, derived = await analysis(replay_id)
        kinds, drivers = _split(kind), _split(driver)
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise BadRequest(f"unknown event kind(s) {bad}; kinds are {list(KINDS)}")
        codes = {d["code"] for d in r.bundle.drivers}
        bad = [d for d in drivers if d not in codes]
        if bad:
            raise BadRequest(f"unknown driver(s) {bad} in replay {replay_id!r}; drivers are {sorted(codes)}")
        events = filter_events(doc["events"], kinds, drivers)
        body = {"events": events, "count": len(events), "kinds": list(KINDS), "derived": derived}
        return JSONResponse(body, headers={"Cache-Control": CACHE_CONTROL})

    @app.get("/api/replays/{replay_id}/laps", summary="Lap-by-lap data for charts (lap chart, race trace, lap times, stints)")
    async def replay_laps(replay_id: str) -> JSONResponse:
        _r, doc, derived = await analysis(replay_id)
        return JSONResponse({**doc["laps"], "derived": derived}, headers={"Cache-Control": CACHE_CONTROL})

    return cache
