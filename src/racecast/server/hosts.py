"""Who may talk to the server: the Host header against the allowed host names, Origin against origins.

DNS rebinding: a page on ``attacker.example`` whose name is re-pointed at
127.0.0.1 talks to a local racecast as *same-origin* (Origin and Host both
``attacker.example``), so an Origin check alone lets it in. The Host header is
what tells: :class:`HostCheck` refuses any request whose Host is not one of the
server's names (``racecast serve --allowed-host``; the loopback names by
default for a loopback bind) before the app sees it: HTTP ``400`` with a JSON
error, a WebSocket handshake ``403``. State-changing requests (``POST``) from a
browser must also come from an allowed Origin (:func:`origin_allowed`).
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import urlsplit

from ..errors import CLOSE_POLICY, BadRequest, Forbidden, RacecastError
from .errors import error_response

__all__ = ["LOCAL_HOSTS", "HostCheck", "host_allowed", "origin_allowed"]

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _hostname(host: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    h = host.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def host_allowed(host: str | None, allowed: Sequence[str] | None) -> bool:
    """Whether a request's Host header names this server (``allowed`` None or containing ``*``: any)."""
    if allowed is None or "*" in allowed:
        return True
    if not host:
        return False  # HTTP/1.1 requires Host; a browser always sends it
    name = _hostname(host).rstrip(".")
    return any(name == a.strip().lower().rstrip(".") or (a.startswith(".") and name.endswith(a.lower())) for a in allowed)


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str] | None) -> bool:
    """Browsers send Origin; accept the page's own origin, then ``allowed`` (None: any localhost origin).

    Clients that send no Origin (not browsers) are accepted: Origin is a browser
    protection against other sites' pages, not authentication.
    """
    if origin is None:
        return True
    o = origin.strip().lower().rstrip("/")
    try:
        parts = urlsplit(o)
        hostname = parts.hostname
    except ValueError:
        return False
    if host and parts.netloc == host.strip().lower():
        return True
    if allowed is None:
        return hostname in LOCAL_HOSTS
    return "*" in allowed or o in {a.strip().lower().rstrip("/") for a in allowed}


class HostRefused(BadRequest):
    """A request for a Host name that is not this server's (DNS rebinding): HTTP 400; a WebSocket
    handshake is refused with 1008 before it is accepted (which the client sees as HTTP 403)."""

    kind = "host"
    close_code = CLOSE_POLICY


class OriginRefused(Forbidden):
    """A browser origin that may not open the replay WebSocket or make a state-changing request."""

    kind = "origin"


class HostCheck:
    """ASGI middleware: requests for a Host not allowed are refused; so are POSTs from a foreign Origin."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str] | None, allowed_origins: Sequence[str] | None, on_refused: Any = None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else [h for h in allowed_hosts if h]
        self.allowed_origins = allowed_origins
        self.on_refused = on_refused  # (kind, message) -> None: metrics and the fault log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        host = headers.get(b"host", b"").decode("latin-1")
        refused: RacecastError | None = None
        if not host_allowed(host, self.allowed_hosts):
            refused = HostRefused(f"host {host[:100]!r} is not a name of this server (racecast serve --allowed-host)")
        elif kind == "http" and scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get(b"origin")
            if origin is not None and not origin_allowed(origin.decode("latin-1"), host, self.allowed_origins):
                refused = OriginRefused(f"origin {origin.decode('latin-1')[:100]!r} may not make this request")
        if refused is None:
            await self.app(scope, receive, send)
            return
        if self.on_refused is not None:
            self.on_refused(refused.kind, refused.message)
        if kind == "websocket":
            await send({"type": "websocket.close", "code": refused.close_code, "reason": refused.kind})  # before accept: HTTP 403
            return
        await error_response(refused)(scope, receive, send)
