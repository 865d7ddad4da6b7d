"""The seed-compatible REST routes: sessions (a replay opened, or ingested on demand), the cache
"refresh", lap telemetry and sector times; and racecast's own lap comparison, which shares their
lap traces. The WebSocket side of a session is :mod:`racecast.server.websocket`.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any, Callable

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator

from ..analysis.compare import compare_laps, lap_trace, parse_lap_ref, resolve_laps, seed_lap_telemetry, seed_sector_times
from ..bundle import BundleError
from ..errors import BadRequest, NotFound
from .ingest import IngestBusy, IngestRequest, IngestUnavailable, check_session, session_code
from .replays import InvalidId, Replay, UnknownReplay
from .state import ServerState

__all__ = ["add_session_routes", "add_lap_routes", "SessionRequest", "LapTelemetryRequest", "MAX_TELEMETRY_PAIRS"]

_SESSION_TYPE = re.compile(r"^[A-Za-z0-9]{1,8}$")


class SessionRequest(BaseModel):
    """The seed clients' session request; the id ``{year}_{round_num}_{session_type}`` names a bundle."""

    year: int = Field(ge=1950, le=2100)
    round_num: int = Field(ge=0, le=99)
    session_type: str = Field(min_length=1, max_length=8)
    refresh: bool = False


#: Most (driver, lap) pairs one telemetry request may ask for.
MAX_TELEMETRY_PAIRS = 20


class LapTelemetryRequest(BaseModel):
    """The seed's telemetry request: ``driver_codes[i]``'s lap ``lap_numbers[i]`` for each i."""

    year: int = Field(ge=1950, le=2100)
    round_num: int = Field(ge=0, le=99)
    session_type: str = Field("R", min_length=1, max_length=8)
    driver_codes: list[Annotated[str, Field(min_length=1, max_length=8)]] = Field(min_length=1, max_length=MAX_TELEMETRY_PAIRS)
    lap_numbers: list[Annotated[int, Field(ge=1, le=999)]] = Field(min_length=1, max_length=MAX_TELEMETRY_PAIRS)

    @model_validator(mode="after")
    def _pairs(self) -> "LapTelemetryRequest":
        if len(self.driver_codes) != len(self.lap_numbers):
            raise ValueError(f"driver_codes ({len(self.driver_codes)}) and lap_numbers ({len(self.lap_numbers)}) must pair up one to one")
        return self


def _lap_ref(v: str) -> tuple[str, int | str]:
    code, sep, lap = v.partition(":")
    try:
        if not sep or not code:
            raise ValueError
        return code, parse_lap_ref(lap)
    except ValueError:
        raise BadRequest(f"a lap is CODE:LAP with LAP a number, fastest or same (e.g. VER:12), got {v[:40]!r}", http_status=422) from None


async def session_replay(state: ServerState, year: int, round_num: int, session_type: str) -> Replay:
    """The replay of a seed-style session id; 404 (not ingested here) or 422 (not a valid id)."""
    st = session_code(session_type) or session_type
    sid = f"{year}_{round_num}_{st}"
    try:
        return await state.replays.aget(sid)
    except UnknownReplay:
        raise NotFound(f"no session {sid!r} on this server (POST /api/sessions loads it)") from None
    except InvalidId as e:
        raise BadRequest(str(e), http_status=422) from None

async def traces(r: Replay, pairs: list[tuple[str, int | str]], render: Any) -> list[Any]:
    """``render(lap_trace(...))`` of each (driver code, lap) pair, off the event loop; 404 for a lap not in the replay."""
    codes = [d["code"] for d in r.bundle.manifest["drivers"]]

    def work() -> list[Any]:  # milliseconds of numpy and list building per lap: off the event loop
        return [render(lap_trace(r.bundle, codes, code, lap)) for code, lap in resolve_laps(r.bundle, codes, pairs)]

    return await asyncio.to_thread(work)  # CompareError is a NotFound: 404 with its message


def add_session_routes(app: FastAPI, state: ServerState) -> None:
    """``POST /api/sessions``, ``DELETE /api/sessions/cache``, ``GET /api/sessions/{id}``."""

    def session_failed(sid: str, message: str, headers: dict[str, str] | None = None) -> Response:
        """The seed's answer shape even for a failure: 200 with the id; the reason goes out again as
        ``loading_error`` when its client opens the WebSocket (it ignores this answer)."""
        state.session_errors[sid] = message
        return JSONResponse({"session_id": sid, "loading": False, "error": message}, headers=headers)

    @app.post("/api/sessions", summary="Seed-compatible: open a session's replay, ingesting it if needed")
    async def create_session(req: SessionRequest) -> Response:
        st = session_code(req.session_type) or req.session_type
        if not _SESSION_TYPE.fullmatch(st):
            raise BadRequest(f"session_type must be 1-8 letters or digits, got {req.session_type[:40]!r}", http_status=422)
        sid = f"{req.year}_{req.round_num}_{st}"
        mgr = state.ingest
        job = mgr.job(sid) if mgr is not None else None
        if job is not None and job.active:  # join the running ingest
            return JSONResponse(job.status())
        if not (req.refresh and mgr is not None):
            try:
                await state.replays.aget(sid)
                state.session_errors.pop(sid, None)
                return JSONResponse({"session_id": sid, "loading": False})
            except UnknownReplay:
                pass
            except (InvalidId, BundleError) as e:
                return session_failed(sid, f"replay {sid!r} cannot be opened: {e}")
        if mgr is None:
            return session_failed(
                sid,
                f"no replay bundle {sid!r} on this server, and server-side ingest is disabled here "
                "(racecast serve --no-ingest): only bundles already in the data directory can be played "
                "(see GET /api/replays)",
            )
        if problem := check_session(req.year, req.round_num, st):
            return session_failed(sid, problem)
        try:
            job = mgr.submit(IngestRequest(sid, req.year, req.round_num, st, refresh=req.refresh))
        except IngestUnavailable as e:
            return session_failed(sid, str(e))
        except IngestBusy as e:
            return session_failed(sid, str(e), headers={"Retry-After": "60"})
        state.session_errors.pop(sid, None)
        return JSONResponse(job.status())

    @app.delete("/api/sessions/cache", summary="Seed-compatible: drop this process's caches (bundles stay)")
    async def clear_cache() -> dict[str, str]:
        """The seed's "Refresh Data" calls this before re-requesting its session with ``refresh``.

        racecast's bundles are its computed data and are never deleted over HTTP: this only
        forgets the opened replays (re-opened from disk on next use) and remembered failures."""
        n = len(state.replays)
        for rid in [r for r in list(state.replays.open_ids())]:
            state.replays.forget(rid)
        state.session_errors.clear()
        return {"status": "success", "message": f"cleared this server's caches ({n} open replays); bundles on disk are kept"}

    @app.get("/api/sessions/{session_id}", summary="Seed-compatible: session status (ingest progress or error) and metadata")
    async def get_session(session_id: str) -> Response:
        job = state.ingest.job(session_id) if state.ingest is not None else None
        if job is not None and job.active:
            return JSONResponse(job.status())
        try:
            r = await state.replays.aget(session_id)
        except UnknownReplay:
            if job is not None:  # a remembered failure
                return JSONResponse(job.status())
            if (why := state.session_errors.get(session_id)) is not None:
                return JSONResponse({"session_id": session_id, "loading": False, "status": "failed", "error": why})
            raise NotFound(f"no session {session_id!r} on this server") from None
        body = '{"session_id":' + json.dumps(session_id) + ',"loading":false,"metadata":' + r.metadata_json + "}"
        return Response(body.encode(), media_type="application/json")


def add_lap_routes(app: FastAPI, state: ServerState, replay_or_error: Callable[[str], Replay]) -> None:
    """``POST /api/telemetry/laps`` and ``/sectors`` (seed-compatible), ``GET /api/replays/{id}/compare``."""

    @app.post("/api/telemetry/laps", summary="Seed-compatible: telemetry of drivers' laps (distance, speed, throttle, brake, gear, x, y)")
    async def telemetry_laps(req: LapTelemetryRequest) -> dict[str, Any]:
        r = await session_replay(state, req.year, req.round_num, req.session_type)
        return {"laps": await traces(r, list(zip(req.driver_codes, req.lap_numbers)), seed_lap_telemetry)}

    @app.post("/api/telemetry/sectors", summary="Seed-compatible: sector and lap times of drivers' laps")
    async def telemetry_sectors(req: LapTelemetryRequest) -> dict[str, Any]:
        r = await session_replay(state, req.year, req.round_num, req.session_type)
        return {"sectors": await traces(r, list(zip(req.driver_codes, req.lap_numbers)), seed_sector_times)}

    @app.get("/api/replays/{replay_id}/compare", summary="Two laps aligned by distance (speed, throttle, brake, gear, time delta)")
    async def replay_compare(
        replay_id: str,
        a: str = Query(..., max_length=20, description="CODE:LAP, e.g. VER:12 or VER:fastest"),
        b: str = Query(..., max_length=20, description="CODE:LAP; LAP may also be same (a's lap number)"),
        step: float = Query(5.0, ge=1.0, le=100.0, description="distance step (m)"),
    ) -> dict[str, Any]:
        r = replay_or_error(replay_id)
        ra = _lap_ref(a)
        if ra[1] == "same":
            raise BadRequest("'same' is b's lap only (a's lap number); a names its lap", http_status=422)
        ta, tb = await traces(r, [ra, _lap_ref(b)], lambda tr: tr)
        return await asyncio.to_thread(compare_laps, ta, tb, step)
