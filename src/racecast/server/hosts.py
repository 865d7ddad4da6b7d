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

import json
from typing import Any, Sequence
from urllib.parse import urlsplit

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
        why = None
        if not host_allowed(host, self.allowed_hosts):
            why = ("host", f"host {host[:100]!r} is not a name of this server (racecast serve --allowed-host)")
        elif kind == "http" and scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get(b"origin")
            if origin is not None and not origin_allowed(origin.decode("latin-1"), host, self.allowed_origins):
                why = ("origin", f"origin {origin.decode('latin-1')[:100]!r} may not make this request")
        if why is None:
            await self.app(scope, receive, send)
            return
        if self.on_refused is not None:
            self.on_refused(*why)
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[0]})  # before accept: HTTP 403
            return
        status = 400 if why[0] == "host" else 403
        body = json.dumps({"detail": why[1], "error": why[0]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
