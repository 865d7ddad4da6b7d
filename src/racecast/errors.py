"""One error model: every failure a client can see is a :class:`RacecastError`.

Each error type carries what it becomes at the edge: its HTTP status (REST
answers ``{"detail": message, "error": kind}`` with that status) and its
WebSocket close code (a ``loading_error`` message, then a close frame with that
code), plus ``kind``, the label it is counted and logged under. The server has
one handler per transport (:func:`racecast.server.errors.install`,
:func:`racecast.server.websocket.refuse`) instead of a mapping per endpoint;
modules raise the specific type and never think about statuses.

Close codes (documented in docs/protocol.md and docs/security.md)::

    1001 going away (shutdown)          4400 bad request (id, encoding, options)
    1007 invalid UTF-8 in a text frame  4404 unknown replay
    1008 policy (Origin/Host, flood)    4403 room token refused
                                        4500 server-side ingest failed
                                        4501 rooms off on this server
    1009 message too big                1011 replay damaged / internal error
    1013 try again later (server full)
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = [
    "RacecastError",
    "BadRequest",
    "NotFound",
    "Forbidden",
    "TooLarge",
    "Busy",
    "Unavailable",
    "Damaged",
    "CLOSE_GOING_AWAY",
    "CLOSE_INVALID_DATA",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_INTERNAL",
    "CLOSE_TRY_LATER",
    "CLOSE_BAD_REQUEST",
    "CLOSE_NOT_FOUND",
    "CLOSE_INGEST_FAILED",
    "CLOSE_FORBIDDEN",
    "CLOSE_UNAVAILABLE",
]

CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007  # a text message that is not UTF-8
CLOSE_POLICY = 1008  # Origin/Host not allowed, command flood
CLOSE_TOO_BIG = 1009  # message over the size limit
CLOSE_INTERNAL = 1011  # the replay could not be opened (damaged), or an unexpected error
CLOSE_TRY_LATER = 1013  # connection limit reached, server busy
CLOSE_BAD_REQUEST = 4400  # invalid replay id, encoding or option
CLOSE_FORBIDDEN = 4403  # a room's host token that does not match
CLOSE_NOT_FOUND = 4404  # no such replay
CLOSE_INGEST_FAILED = 4500  # the replay's server-side ingest failed
CLOSE_UNAVAILABLE = 4501  # rooms are off on this server (several workers without Redis)


class RacecastError(Exception):
    """Root of every error racecast reports to a client or an operator.

    Subclasses set ``http_status``, ``close_code`` and ``kind``; an instance may
    override the status or add HTTP ``headers`` (e.g. ``Retry-After``).
    """

    http_status: int = 500
    close_code: int = CLOSE_INTERNAL
    kind: str = "internal"

    def __init__(self, message: str = "", *, http_status: int | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__

    @property
    def message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"detail": message, "error": kind}``."""
        return {"detail": self.message, "error": self.kind}


class BadRequest(RacecastError):
    """The request itself is wrong (a parameter, an id, an option)."""

    http_status = 400
    close_code = CLOSE_BAD_REQUEST
    kind = "bad_request"


class NotFound(RacecastError):
    http_status = 404
    close_code = CLOSE_NOT_FOUND
    kind = "not_found"


class Forbidden(RacecastError):
    """Refused by policy: a Host or Origin not allowed, a command flood."""

    http_status = 403
    close_code = CLOSE_POLICY
    kind = "forbidden"


class TooLarge(RacecastError):
    http_status = 413
    close_code = CLOSE_TOO_BIG
    kind = "too_large"


class Busy(RacecastError):
    """A limit of the server was reached; try again later."""

    http_status = 503
    close_code = CLOSE_TRY_LATER
    kind = "busy"


class Unavailable(RacecastError):
    """A feature this server does not offer (e.g. ingest without FastF1)."""

    http_status = 501
    close_code = CLOSE_INGEST_FAILED
    kind = "unavailable"


class Damaged(RacecastError):
    """Data on disk that cannot be used; the operator's problem, not the client's."""

    http_status = 500
    close_code = CLOSE_INTERNAL
    kind = "damaged_replay"
