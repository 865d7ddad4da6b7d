"""The HTTP side of the error model: one handler turns every failure into a JSON error.

:class:`~racecast.errors.RacecastError` carries its status; request validation
errors become 422 with the problems listed (never echoing the input, which may
hold NaN or megabytes); anything unexpected becomes a JSON 500 and one log line
with its traceback. The WebSocket side is :func:`racecast.server.websocket.refuse`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import RacecastError

__all__ = ["install", "error_response", "FaultLog"]


def error_response(e: RacecastError) -> JSONResponse:
    return JSONResponse(e.to_dict(), status_code=e.http_status, headers=e.headers or None)


def _plain(v: Any) -> Any:
    """JSON-safe rendition of a validation error's location/context (NaN, bytes, objects)."""
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    return str(v)[:200]


def install(app: FastAPI) -> None:
    """Register the one error handler family on ``app``."""

    async def racecast_error(_request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RacecastError)
        return error_response(e)

    async def http_error(_request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        return JSONResponse({"detail": e.detail, "error": f"http_{e.status_code}"}, status_code=e.status_code, headers=e.headers)

    async def invalid_request(_request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        problems = [
            {"loc": [_plain(x) for x in err.get("loc", ())], "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))}
            for err in e.errors()[:20]
        ]
        return JSONResponse({"detail": problems, "error": "invalid_request"}, status_code=422)

    async def unexpected(_request: Request, e: Exception) -> JSONResponse:
        # Starlette re-raises after this response, and the ASGI server logs it once, with its traceback.
        return JSONResponse({"detail": "internal server error", "error": "internal"}, status_code=500)

    app.add_exception_handler(RacecastError, racecast_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


class FaultLog:
    """Client faults logged as one line each, at most ``per_minute`` lines per kind.

    A hostile client can produce faults as fast as it can send; past the budget
    they are only counted (metrics count every one), and one line per minute says
    how many were not logged. Never a traceback: a client fault is not a bug.
    """

    def __init__(self, logger: logging.Logger, per_minute: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, lines logged, suppressed]

    def note(self, kind: str, message: str, level: int = logging.INFO) -> None:
        now = self.clock()
        w = self._windows.get(kind)
        if w is None or now - w[0] >= 60.0:
            if w is not None and w[2]:
                self.log.warning("%d more client faults of kind %s in the last minute were not logged", int(w[2]), kind)
            w = self._windows[kind] = [now, 0, 0]
        if w[1] < self.per_minute:
            w[1] += 1
            self.log.log(level, "client fault (%s): %s", kind, " ".join(str(message).split())[:300])
        else:
            w[2] += 1
