"""The ASGI app: REST API, health, metrics, the viewer's static files and the replay WebSocket.

:func:`create_app` builds a self-contained FastAPI app (its own engine, replay
cache and metrics registry), so it can be mounted in another app or built many
times in tests. Under ``racecast serve`` uvicorn runs it with
:class:`~racecast.server.transport.RacecastWSProtocol`, which gives the engine its
direct send path; under any other ASGI server it falls back to plain ASGI sends.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .. import __version__
from ..playback import Clock
from ..rooms import MAX_ROOM_MEMBERS, MAX_ROOMS, ROOM_GRACE_S
from .analysis_http import add_analysis_routes
from .chunks_http import add_chunk_routes
from .engine import Engine
from .ingest import DEFAULT_LOADER, INGEST_TIMEOUT, MAX_QUEUED_INGESTS, IngestManager
from .metrics import Metrics
from ..errors import TooLarge
from .errors import error_response
from .hosts import LOCAL_HOSTS, HostCheck
from .errors import install as install_error_handlers
from .replays import Replay, Replays
from .rooms import RoomHub
from .replays_http import MAX_FRAMES_PER_REQUEST, add_replay_routes
from .rooms_http import add_room_routes
from .sessions_http import add_lap_routes, add_session_routes
from .transport import DEFAULT_BUFFER_LIMIT
from .state import ServerState
from .websocket import close_all, replay_socket

#: Where the web viewer's static files live (built by the viewer package).
VIEWER_DIR = Path(__file__).resolve().parent.parent / "viewer"
#: Largest request body accepted (bytes); only ``POST /api/sessions`` takes one, and it is tiny.
MAX_BODY_BYTES = 4096


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
    """Build the racecast app serving the bundles in ``data_dir``: a self-contained FastAPI app with
    its own engine, replay cache, rooms and metrics registry (mount it, or build many in tests).

    Args:
        data_dir: the bundle directory (None: ``RACECAST_DATA`` or the default data directory).
        max_connections: WebSocket viewers at once; more are refused (close 1013).
        allowed_origins: browser origins allowed on the WebSocket besides the page's own
            (None: any localhost origin; ``["*"]``: any).
        allowed_hosts: Host header names this server answers to (DNS rebinding protection;
            None: the loopback names; ``["*"]``: any).
        command_rate, command_burst: per-connection command budget (a connection over it is
            closed with 1008; the seed's client sends up to ~60 a second).
        buffer_limit: bytes a viewer may have waiting in user space before its frames are skipped.
        socket_send_buffer: SO_SNDBUF of each viewer's socket on the direct path (None: the
            kernel's autotuning).
        fps: the engine's tick rate.
        ping_interval: seconds between JSON pings to idle viewers (keeps proxies from closing them).
        viewer_dir: the web viewer's static files (default: the installed viewer).
        clock: the engine's clock (tests pass a fake one).
        ingest: ``POST /api/sessions`` for a session not on disk ingests it in a child process
            (False: 404 instead).
        ingest_loader: ``"module:function"`` turning ``(year, round, session, progress,
            **ingest_options)`` into a Race in that child (default: FastF1).
        max_queued_ingests, ingest_timeout: the ingest queue's bound and each ingest's time limit (s).
        ingest_options: keyword arguments for the loader, e.g. ``{"offline": True, "cache_dir": "..."}``.
        redis: a ``redis://`` URL sharing rooms with every process using it (None: rooms live in
            this process).
        rooms_unavailable: turn rooms off with this reason (several workers without Redis).
        max_rooms, max_room_members, room_grace: room limits (grace: seconds an empty room lives).

    Returns:
        The ASGI app. Nothing is opened or started until it serves: bundles open on first use,
        the ticker starts with the first viewer.

    Raises:
        Nothing for a missing or empty ``data_dir`` (it serves no replays). Errors while serving
        reach clients as :class:`~racecast.errors.RacecastError` JSON bodies or close codes.
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

    add_replay_routes(app, state, replay_or_error)
    add_chunk_routes(app, replay_or_error)
    add_analysis_routes(app, replay_or_error)
    add_room_routes(app, state.rooms, replay_or_error)
    add_session_routes(app, state)
    add_lap_routes(app, state, replay_or_error)

    _add_ops_routes(app, state)
    async def ws_endpoint(websocket: WebSocket) -> None:
        await replay_socket(websocket, state)

    app.add_api_websocket_route("/ws/replay/{replay_id}", ws_endpoint)

    _mount_viewer(app, Path(viewer_dir) if viewer_dir is not None else VIEWER_DIR)
    return app


def _add_ops_routes(app: FastAPI, state: ServerState) -> None:
    """``GET /healthz`` and ``GET /metrics`` (Prometheus)."""

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "connections": len(state.connections),
            "playing": state.engine.playing_count,
            "replays_open": len(state.replays),
        }

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _mount_viewer(app: FastAPI, static: Path) -> None:
    """The web viewer's static files at ``/``, or a page that says it is not installed here."""
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
