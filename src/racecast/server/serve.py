"""Run the app under uvicorn with the direct send path (what ``racecast serve`` and ``racecast demo`` do)."""

from __future__ import annotations

import copy
import inspect
import ipaddress
import json
import logging
import os
import resource
import signal
import threading
from dataclasses import dataclass
import socket
from pathlib import Path
from typing import Any, Callable

import uvicorn

from .app import create_app
from .hosts import LOCAL_HOSTS
from .http import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER_BYTES
from .http import configure as configure_http

__all__ = [
    "serve",
    "uvicorn_config",
    "log_config",
    "ConnectionLimits",
    "raise_file_limit",
    "default_allowed_hosts",
    "check_redis_url",
    "display_url",
    "WS_PROTOCOL",
    "HTTP_PROTOCOL",
    "WS_MAX_SIZE",
    "ROOMS_NEED_REDIS",
]

#: uvicorn's WebSocket protocol with the engine's direct send path.
WS_PROTOCOL = "racecast.server.transport:RacecastWSProtocol"
#: Hard cap on any incoming WebSocket message, enforced by the protocol (close 1009); the app's
#: own command limit (protocol.MAX_COMMAND_BYTES) is smaller and closes with 1009 too.
WS_MAX_SIZE = 64 * 1024


def default_allowed_hosts(bind: str) -> list[str]:
    """Host names accepted by default: the loopback names for a loopback bind, else any (``*``).

    A server on a public interface cannot guess its names: ``--allowed-host`` sets them
    (docs/security.md: DNS rebinding).
    """
    try:
        loopback = bind == "localhost" or ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = False
    return sorted(LOCAL_HOSTS) if loopback else ["*"]


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


#: HTTP/1.1 with a request-header deadline (racecast.server.http).
HTTP_PROTOCOL = "racecast.server.http:RacecastH11Protocol"


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts and sizes for hostile or broken clients (docs/security.md lists each with its default).

    ``header_timeout``: seconds to send a request's complete headers (silent sockets, slowloris);
    ``max_header_bytes``: largest request head (over it: 400); ``keep_alive``: idle seconds between
    HTTP requests; ``ping_interval`` / ``ping_timeout``: WebSocket keepalive: a client that does not
    answer a ping within ``ping_timeout`` (e.g. one that never reads) is disconnected, so a
    never-reading viewer goes within ``ping_interval + ping_timeout`` (+ 5 s to abort its close).
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    keep_alive: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    *,
    workers: int = 1,
    log_level: str = "warning",
    factory: bool = False,
    limits: ConnectionLimits | None = None,
) -> uvicorn.Config:
    lim = limits or ConnectionLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=workers,
        factory=factory,
        http=HTTP_PROTOCOL,
        h11_max_incomplete_event_size=lim.max_header_bytes,
        timeout_keep_alive=max(1, round(lim.keep_alive)),
        ws=WS_PROTOCOL,
        ws_max_size=WS_MAX_SIZE,
        ws_ping_interval=lim.ping_interval or None,
        ws_ping_timeout=lim.ping_timeout or None,
        # Compressing is per-viewer work; frames are pre-encoded and go out as they are.
        ws_per_message_deflate=False,
        lifespan="on",
        log_level=log_level,
        log_config=log_config(log_level),
        timeout_graceful_shutdown=5,
    )
    configure_http(config, header_timeout=lim.header_timeout, max_header_bytes=lim.max_header_bytes)
    return config


def log_config(log_level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus a stderr handler for racecast's loggers.

    racecast's loggers follow ``log_level``, except client-fault lines (``racecast.faults``):
    INFO whatever the level, as docs/security.md says, since they are already bounded (at most
    10 lines a minute per kind). Without a handler, Python's last-resort handler would print
    only WARNING and above: the per-minute summaries, never the faults themselves."""
    level = uvicorn.config.LOG_LEVELS.get(log_level.lower(), logging.WARNING)
    cfg = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # Propagating stays on: a host app's (or pytest's) root handlers still see the records.
    cfg["loggers"]["racecast"] = {"handlers": ["default"], "level": level}
    cfg["loggers"]["racecast.faults"] = {"level": min(level, logging.INFO)}
    return cfg


def raise_file_limit(want: int = 65536) -> tuple[int, int]:
    """Raise this process's open-file soft limit towards its hard limit (at most ``want``).

    Every connection is a file descriptor: with the usual soft limit of 1024, about a
    thousand idle sockets would lock every other client out. Returns (soft, hard) after.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ValueError, OSError):
        return (-1, -1)


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
    limits: ConnectionLimits | None = None,
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
    raise_file_limit()
    if app_options.get("allowed_hosts") is None:
        app_options["allowed_hosts"] = default_allowed_hosts(host)
    if workers > 1 and not app_options.get("redis"):
        app_options["rooms_unavailable"] = ROOMS_NEED_REDIS
    if workers == 1:
        config = uvicorn_config(create_app(data_dir, **app_options), host, port, log_level=log_level, limits=limits)
        server = uvicorn.Server(config)
        sock = _listening(config)
        if on_ready:
            on_ready(host, sock.getsockname()[1])
        # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal to the handler it found:
        # with this one the process exits 0 after a clean shutdown (what service managers expect)
        # instead of dying of the signal (143).
        previous = signal.signal(signal.SIGTERM, lambda *_: None) if threading.current_thread() is threading.main_thread() else None
        try:
            server.run(sockets=[sock])
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return
    from uvicorn.supervisors import Multiprocess

    if data_dir is not None:
        os.environ["RACECAST_DATA"] = str(Path(data_dir).absolute())
    os.environ["RACECAST_SERVER_OPTIONS"] = json.dumps(app_options)
    config = uvicorn_config("racecast.server.app:app_from_env", host, port, workers=workers, log_level=log_level, factory=True, limits=limits)
    sock = _listening(config)
    if on_ready:
        on_ready(host, sock.getsockname()[1])
    if "target" in inspect.signature(Multiprocess.__init__).parameters:  # uvicorn before 0.5x
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()
