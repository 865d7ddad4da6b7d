"""The ASGI app: REST API, health, metrics, the viewer's static files and the replay WebSocket.

:func:`create_app` builds a self-contained FastAPI app (its own engine, replay
cache and metrics registry), so it can be mounted in another app or built many
times in tests. Under ``racecast serve`` uvicorn runs it with
:class:`~racecast.server.transport.RacecastWSProtocol`, which gives the engine its
direct send path; under any other ASGI server it falls back to plain ASGI sends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, model_validator
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .. import __version__
from ..analysis.compare import CompareError, compare_laps, lap_trace, parse_lap_ref, resolve_laps, seed_lap_telemetry, seed_sector_times
from ..bundle import BundleError
from ..playback import Clock
from ..rooms import MAX_ROOM_MEMBERS, MAX_ROOMS, ROOM_GRACE_S
from .analysis_http import add_analysis_routes
from .chunks_http import add_chunk_routes
from .engine import Engine
from .ingest import (
    DEFAULT_LOADER,
    INGEST_TIMEOUT,
    MAX_QUEUED_INGESTS,
    IngestBusy,
    IngestManager,
    IngestRequest,
    IngestUnavailable,
    check_session,
    session_code,
)
from .metrics import Metrics
from ..errors import BadRequest, NotFound, TooLarge
from .errors import error_response
from .hosts import LOCAL_HOSTS, HostCheck
from .errors import install as install_error_handlers
from .replays import InvalidId, Replay, Replays, UnknownReplay
from .rooms import RoomHub
from .rooms_http import add_room_routes
from .transport import DEFAULT_BUFFER_LIMIT
from .state import ServerState
from .websocket import close_all, replay_socket

#: Most frames one ``/frames`` request returns (60 s at 25 fps).
MAX_FRAMES_PER_REQUEST = 1500
#: Where the web viewer's static files live (built by the viewer package).
VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"
CACHE_CONTROL = "public, max-age=300"
_SESSION_TYPE = re.compile(r"^[A-Za-z0-9]{1,8}$")
#: Largest request body accepted (bytes); only ``POST /api/sessions`` takes one, and it is tiny.
MAX_BODY_BYTES = 4096


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


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _etag_matches(header: str | None, *etags: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = {e.strip().removeprefix("W/") for e in header.split(",")}
    return any(e in wanted for e in etags)


def create_app(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    max_connections: int = 10_000,
    allowed_origins: Sequence[str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
    command_rate: float = 120.0,
    command_burst: float = 600.0,
    buffer_limit: int = DEFAULT_BUFFER_LIMIT,
    socket_send_buffer: int | None = 64 * 1024,
    fps: float = 25.0,
    ping_interval: float = 20.0,
    viewer_dir: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    ingest: bool = True,
    ingest_loader: str = DEFAULT_LOADER,
    max_queued_ingests: int = MAX_QUEUED_INGESTS,
    ingest_timeout: float = INGEST_TIMEOUT,
    ingest_options: dict[str, Any] | None = None,
    redis: str | None = None,
    rooms_unavailable: str | None = None,
    max_rooms: int = MAX_ROOMS,
    max_room_members: int = MAX_ROOM_MEMBERS,
    room_grace: float = ROOM_GRACE_S,
) -> FastAPI:
    """Build the racecast app serving the bundles in ``data_dir``.

    ``allowed_hosts``: Host header names this server answers to (DNS rebinding
    protection; None: the loopback names; ``["*"]``: any).
    ``allowed_origins``: browser origins allowed on the WebSocket besides the
    page's own (None: any localhost origin; ``["*"]``: any). ``command_rate`` /
    ``command_burst``: per-connection command budget (a connection over it is closed
    with 1008; the seed's client sends up to ~60 a second). ``buffer_limit``: bytes a
    viewer may have waiting in user space before its frames are skipped;
    ``socket_send_buffer``: SO_SNDBUF of each viewer's socket (direct path; None
    leaves the kernel's autotuning). ``fps``: the engine's tick rate.
    ``ingest``: ``POST /api/sessions`` for a session not on disk ingests it in a
    child process (False: 404 instead); ``ingest_loader`` (``"module:function"``)
    turns ``(year, round, session, progress, **ingest_options)`` into a Race there
    (default FastF1; ``ingest_options`` e.g. ``{"offline": True, "cache_dir": "..."}``).
    ``redis``: a ``redis://`` URL sharing rooms with every process using it (None: rooms live
    in this process); ``rooms_unavailable``: turn rooms off with this reason (several workers
    without Redis); ``max_rooms`` / ``max_room_members`` / ``room_grace``: room limits.
    """
    metrics = Metrics()
    engine = Engine(fps=fps, clock=clock, metrics=metrics, ping_interval=ping_interval)
    state = ServerState(
        replays=Replays(data_dir),
        engine=engine,
        metrics=metrics,
        max_connections=max_connections,
        allowed_origins=None if allowed_origins is None else list(allowed_origins),
        command_rate=command_rate,
        command_burst=command_burst,
        buffer_limit=buffer_limit,
        socket_send_buffer=socket_send_buffer,
    )
    replays = state.replays
    backend = None
    if redis is not None and rooms_unavailable is None:
        from .rooms_redis import RedisRooms

        backend = RedisRooms(redis)
    state.rooms = RoomHub(engine, max_rooms=max_rooms, max_members=max_room_members, grace=room_grace, backend=backend,
                          metrics=metrics, unavailable=rooms_unavailable)  # fmt: skip
    if ingest:
        state.ingest = IngestManager(
            replays.data,
            ingest_loader,
            max_queued=max_queued_ingests,
            timeout=ingest_timeout,
            on_done=replays.forget,
            on_outcome=lambda outcome: metrics.ingests.labels(outcome).inc(),
            loader_options=ingest_options,
        )
    metrics.bind(
        connections=lambda: len(state.connections),
        playing=lambda: engine.playing_count,
        replays=lambda: len(state.replays),
        buffers=lambda: [v.sink.buffered() for v in list(engine.viewers)],
        ingests=lambda: state.ingest.active_count if state.ingest is not None else 0,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if backend is not None:  # connect now: a join for a room made by another process needs it
            state.rooms.ensure_running()
        yield
        await state.rooms.stop()
        await close_all(state)  # waiting viewers too: 1001 like everyone, before their ingest is stopped
        if state.ingest is not None:
            await state.ingest.shutdown()
        await engine.stop()

    app = FastAPI(title="racecast", version=__version__, lifespan=lifespan, docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.racecast = state
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    def host_refused(kind: str, message: str) -> None:
        metrics.error(kind)
        state.faults.note(kind, message)

    hosts = sorted(LOCAL_HOSTS) if allowed_hosts is None else list(allowed_hosts)
    app.add_middleware(HostCheck, allowed_hosts=hosts, allowed_origins=state.allowed_origins, on_refused=host_refused)
    install_error_handlers(app)

    def replay_or_error(replay_id: str) -> Replay:
        """The replay; raises the :class:`RacecastError` the error handler turns into its JSON answer."""
        return state.replays.get(replay_id)

    def metadata_response(request: Request, r: Replay) -> Response:
        gz = "gzip" in request.headers.get("accept-encoding", "")
        etag = r.etag[:-1] + '-gz"' if gz else r.etag
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if _etag_matches(request.headers.get("if-none-match"), r.etag, r.etag[:-1] + '-gz"'):
            return Response(status_code=304, headers=headers)
        if gz:
            headers["Content-Encoding"] = "gzip"
            return Response(r.metadata_gzip, media_type="application/json", headers=headers)
        return Response(r.metadata_bytes, media_type="application/json", headers=headers)

    @app.get("/api/replays", summary="List replays")
    def list_replays() -> list[dict[str, Any]]:
        return state.replays.summaries()

    @app.get("/api/replays/{replay_id}", summary="Replay metadata (ETag, 304 on If-None-Match)")
    def replay_metadata(replay_id: str, request: Request) -> Response:
        return metadata_response(request, replay_or_error(replay_id))

    @app.get("/api/replays/{replay_id}/frames", summary="Pre-encoded frames for prefetch (msgpack array)")
    def replay_frames(
        replay_id: str,
        request: Request,
        start: int = Query(0),  # range-checked below: 400 like any start outside the replay
        count: int = Query(250, ge=1, le=MAX_FRAMES_PER_REQUEST),
        encoding: str = Query("msgpack", max_length=40),
    ) -> Response:
        r = replay_or_error(replay_id)
        stream = r.bundle.streams.get(encoding)
        if stream is None or stream.frames_per_item != 1:
            raise BadRequest(f"unknown frame encoding {encoding!r}")
        n = r.bundle.n_frames
        if not 0 <= start < n:
            raise BadRequest(f"start {start} is outside the replay (0..{n - 1})")
        stop = min(n, start + count)
        etag = f'{r.etag[:-1]}-{encoding}-{start}-{stop}"'
        headers = {
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "X-Racecast-Start": str(start),
            "X-Racecast-Count": str(stop - start),
            "X-Racecast-Total-Frames": str(n),
        }
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        body = b"".join((_msgpack_array_header(stop - start), stream.span(start, stop)))
        return Response(body, media_type="application/msgpack", headers=headers)

    add_chunk_routes(app, replay_or_error)
    add_analysis_routes(app, replay_or_error)
    add_room_routes(app, state.rooms, replay_or_error)

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

    async def session_replay(year: int, round_num: int, session_type: str) -> Replay:
        st = session_code(session_type) or session_type
        sid = f"{year}_{round_num}_{st}"
        try:
            return await state.replays.aget(sid)
        except UnknownReplay:
            raise NotFound(f"no session {sid!r} on this server (POST /api/sessions loads it)") from None
        except InvalidId as e:
            raise BadRequest(str(e), http_status=422) from None

    async def traces(r: Replay, pairs: list[tuple[str, int | str]], render: Any) -> list[Any]:
        codes = [d["code"] for d in r.bundle.manifest["drivers"]]

        def work() -> list[Any]:  # milliseconds of numpy and list building per lap: off the event loop
            return [render(lap_trace(r.bundle, codes, code, lap)) for code, lap in resolve_laps(r.bundle, codes, pairs)]

        try:
            return await asyncio.to_thread(work)
        except CompareError as e:
            raise NotFound(str(e)) from None

    @app.post("/api/telemetry/laps", summary="Seed-compatible: telemetry of drivers' laps (distance, speed, throttle, brake, gear, x, y)")
    async def telemetry_laps(req: LapTelemetryRequest) -> dict[str, Any]:
        r = await session_replay(req.year, req.round_num, req.session_type)
        return {"laps": await traces(r, list(zip(req.driver_codes, req.lap_numbers)), seed_lap_telemetry)}

    @app.post("/api/telemetry/sectors", summary="Seed-compatible: sector and lap times of drivers' laps")
    async def telemetry_sectors(req: LapTelemetryRequest) -> dict[str, Any]:
        r = await session_replay(req.year, req.round_num, req.session_type)
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

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "connections": len(state.connections),
            "playing": engine.playing_count,
            "replays_open": len(state.replays),
        }

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def ws_endpoint(websocket: WebSocket) -> None:
        await replay_socket(websocket, state)

    app.add_api_websocket_route("/ws/replay/{replay_id}", ws_endpoint)

    static = Path(viewer_dir) if viewer_dir is not None else VIEWER_DIR
    if (static / "index.html").is_file():
        app.mount("/", StaticFiles(directory=static, html=True), name="viewer")
    else:

        @app.get("/", include_in_schema=False)
        def no_viewer() -> HTMLResponse:
            return HTMLResponse(
                "<!doctype html><title>racecast</title><h1>racecast server</h1>"
                "<p>The web viewer is not installed here. API: <a href='/api/replays'>/api/replays</a>, "
                "<a href='/api/docs'>/api/docs</a>, <a href='/metrics'>/metrics</a>.</p>"
            )

    return app


class BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes get 413 before the app reads them."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = error_response(TooLarge(f"request body over {self.limit} bytes"))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:  # read the (small) body here, counting, then hand it on
            msg = await receive()
            if msg["type"] != "http.request":  # the client left
                return
            size += len(msg.get("body", b""))
            if size > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings come from the environment.

    ``RACECAST_DATA`` is the data directory; ``RACECAST_SERVER_OPTIONS`` a JSON
    object of :func:`create_app` keyword arguments.
    """
    opts = json.loads(os.environ.get("RACECAST_SERVER_OPTIONS", "{}"))
    return create_app(os.environ.get("RACECAST_DATA") or None, **opts)


__all__ = ["create_app", "app_from_env", "ServerState", "MAX_FRAMES_PER_REQUEST"]
