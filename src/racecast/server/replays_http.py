"""``GET /api/replays``, a replay's metadata and its pre-encoded frames (prefetch), with ETags.

Metadata and frames never change for a bundle's content, so both carry a strong ETag and
answer a matching ``If-None-Match`` with 304 (chunks over HTTP: :mod:`racecast.server.chunks_http`).
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from ..errors import BadRequest
from .http_cache import etag_matches
from .replays import Replay
from .state import ServerState

__all__ = ["add_replay_routes", "MAX_FRAMES_PER_REQUEST", "CACHE_CONTROL"]

#: Most frames one ``/frames`` request returns (60 s at 25 fps).
MAX_FRAMES_PER_REQUEST = 1500
CACHE_CONTROL = "public, max-age=300"


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def add_replay_routes(app: FastAPI, state: ServerState, replay_or_error: Callable[[str], Replay]) -> None:
    """``GET /api/replays``, ``/api/replays/{id}`` and ``/api/replays/{id}/frames``."""

    def metadata_response(request: Request, r: Replay) -> Response:
        gz = "gzip" in request.headers.get("accept-encoding", "")
        etag = r.etag[:-1] + '-gz"' if gz else r.etag
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if etag_matches(request.headers.get("if-none-match"), r.etag, r.etag[:-1] + '-gz"'):
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
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        body = b"".join((_msgpack_array_header(stop - start), stream.span(start, stop)))
        return Response(body, media_type="application/msgpack", headers=headers)
