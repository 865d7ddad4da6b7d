"""Run the app under uvicorn with the direct send path (what ``racecast serve`` and ``racecast demo`` do)."""

from __future__ import annotations

import inspect
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable

import uvicorn

from .app import create_app

#: uvicorn's WebSocket protocol with the engine's direct send path.
WS_PROTOCOL = "racecast.server.transport:RacecastWSProtocol"
#: Hard cap on any incoming WebSocket message, enforced by the protocol (close 1009); the app's
#: own command limit (protocol.MAX_COMMAND_BYTES) is smaller and closes with 1009 too.
WS_MAX_SIZE = 64 * 1024


#: Why rooms are off with several workers and no Redis (each worker has its own rooms and clock, and the
#: kernel spreads a room's members over them: they would not be one room).
ROOMS_NEED_REDIS = (
    "rooms are off on this server: it runs several worker processes without a shared room store "
    "(restart it with --redis redis://HOST:PORT/DB, or with --workers 1)"
)


def check_redis_url(url: str) -> str | None:
    """Why ``url`` cannot be a room store (None when it can)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return f"--redis takes a redis://HOST:PORT/DB URL (or rediss://, unix://), got {url[:80]!r}"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "--redis needs redis-py: pip install redis"
    try:
        from redis.connection import parse_url

        parse_url(url)
    except ValueError as e:
        return f"--redis URL {url[:80]!r} is not valid: {e}"
    return None


def display_url(host: str, port: int, path: str = "/") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{path}"


def uvicorn_config(app: Any, host: str, port: int, *, workers: int = 1, log_level: str = "warning", factory: bool = False) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=workers,
        factory=factory,
        ws=WS_PROTOCOL,
        ws_max_size=WS_MAX_SIZE,
        # Compressing is per-viewer work; frames are pre-encoded and go out as they are.
        ws_per_message_deflate=False,
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )


def _listening(config: uvicorn.Config) -> socket.socket:
    """Bind and listen at once, so a client that reads the printed URL is queued, not refused.

    uvicorn's ``bind_socket`` only binds; ``listen`` would otherwise wait for the app's start-up.
    """
    sock = config.bind_socket()
    sock.listen(config.backlog)
    return sock


def serve(
    data_dir: str | os.PathLike[str] | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int = 1,
    log_level: str = "warning",
    on_ready: Callable[[str, int], None] | None = None,
    **app_options: Any,
) -> None:
    """Serve until interrupted. ``port=0`` picks a free port; ``on_ready(host, port)`` runs once bound.

    With ``workers > 1`` each worker process builds its own app from the
    environment (:func:`~racecast.server.app.app_from_env`) on one shared
    listening socket; bundles are memory-mapped, so the page cache holds one
    copy of each whatever the number of workers.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if workers > 1 and not app_options.get("redis"):
        app_options["rooms_unavailable"] = ROOMS_NEED_REDIS
    if workers == 1:
        config = uvicorn_config(create_app(data_dir, **app_options), host, port, log_level=log_level)
        server = uvicorn.Server(config)
        sock = _listening(config)
        if on_ready:
            on_ready(host, sock.getsockname()[1])
        server.run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    if data_dir is not None:
        os.environ["RACECAST_DATA"] = str(Path(data_dir).absolute())
    os.environ["RACECAST_SERVER_OPTIONS"] = json.dumps(app_options)
    config = uvicorn_config("racecast.server.app:app_from_env", host, port, workers=workers, log_level=log_level, factory=True)
    sock = _listening(config)
    if on_ready:
        on_ready(host, sock.getsockname()[1])
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn before 0.5x
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()
