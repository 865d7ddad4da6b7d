"""``GET /api/replays/{id}/chunks/{k}`` and ``?from=K&count=M``: immutable one-second chunks over HTTP.

Every response body is a zero-copy slice of the bundle's pre-compressed chunk
stream chosen by Accept-Encoding (zstd, br, gzip or identity, by q-value, the
smallest first on ties), with a strong ETag per content and coding and
``Cache-Control: public, max-age=31536000, immutable``: a CDN or an nginx cache
can serve a replay to any number of viewers without asking the server again.
Several chunks back to back need no framing (each chunk carries its length), and
concatenated gzip members or zstd frames are themselves a valid gzip / zstd
body; brotli streams are not, so a multi-chunk response is never brotli.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from ..bundle import Bundle, Stream
from ..bundle.chunks import CHUNK_MEDIA_TYPE
from ..errors import BadRequest, NotFound
from ..feeds import CHUNK_COMPRESSIONS
from .http_cache import etag_matches

if TYPE_CHECKING:
    from .replays import Replay

IMMUTABLE = "public, max-age=31536000, immutable"
#: Most chunks one ``?from=K&count=M`` request returns (one minute of race).
MAX_CHUNKS_PER_REQUEST = 60
#: HTTP content coding -> bundle stream, smallest first (the tie-break order).
CODINGS: tuple[tuple[str, str], ...] = tuple((c, CHUNK_COMPRESSIONS[c]) for c in ("zstd", "br", "gzip", "identity"))
_ALIASES = {"x-gzip": "gzip"}


def parse_accept_encoding(header: str | None) -> dict[str, float]:
    """``{coding: q}`` from an Accept-Encoding header (RFC 9110 12.5.3); malformed q-values count as 0."""
    out: dict[str, float] = {}
    if not header:
        return out
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        coding = _ALIASES.get(bits[0].lower(), bits[0].lower())
        if not coding:
            continue
        q = 1.0
        for param in bits[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        out[coding] = max(q, out.get(coding, q))
    return out


def choose_coding(header: str | None, available: list[str]) -> str | None:
    """The coding to send: highest q among ``available`` (smallest first on ties); None if none is acceptable.

    No header means no preference: identity. ``identity`` is acceptable unless refused
    by ``identity;q=0`` (or ``*;q=0`` without an identity entry).
    """
    if header is None or not header.strip():
        return "identity" if "identity" in available else None
    prefs = parse_accept_encoding(header)
    star = prefs.get("*")
    best, best_q = None, 0.0
    for coding, _stream in CODINGS:
        if coding not in available:
            continue
        q = prefs.get(coding)
        if q is None:
            # Unlisted identity stays acceptable, below anything the client asked for.
            q = star if star is not None else (0.001 if coding == "identity" else 0.0)
        if q > best_q:
            best, best_q = coding, q
    return best


def _streams(bundle: Bundle) -> dict[str, Stream]:
    return {coding: bundle.streams[name] for coding, name in CODINGS if name in bundle.streams}


def _etag(replay: "Replay", first: int, count: int, coding: str) -> str:
    content = str(replay.bundle.manifest.get("content_hash", "")).removeprefix("sha256:")[:20] or replay.etag.strip('"')
    span = f"c{first}" if count == 1 else f"c{first}+{count}"
    return f'"{content}-{span}-{coding}"'


def chunk_response(request: Request, replay: "Replay", first: int, count: int) -> Response:
    streams = _streams(replay.bundle)
    raw = streams.get("identity")
    if raw is None:
        raise NotFound(f"replay {replay.id!r} has no chunks (written by an older racecast)")
    available = [c for c in streams if count == 1 or c != "br"]
    coding = choose_coding(request.headers.get("accept-encoding"), available)
    if coding is None:
        raise BadRequest(f"no acceptable content coding; this server has: {', '.join(available)}", http_status=406)
    etag = _etag(replay, first, count, coding)
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE,
        "Vary": "Accept-Encoding",
        "X-Racecast-First-Chunk": str(first),
        "X-Racecast-Chunk-Count": str(count),
        "X-Racecast-Total-Chunks": str(raw.count),
        "X-Racecast-Chunk-Frames": str(raw.frames_per_item),
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if coding != "identity":
        headers["Content-Encoding"] = coding
    body = streams[coding].span(first, first + count)  # zero-copy slice of the mapped bundle
    return Response(body, media_type=CHUNK_MEDIA_TYPE, headers=headers)


def add_chunk_routes(app: FastAPI, replay_or_error: Callable[[str], "Replay"]) -> None:
    """Register the chunk endpoints on ``app`` (``replay_or_error`` maps an id to a replay or an HTTP error)."""

    @app.get("/api/replays/{replay_id}/chunks/{k}", summary="One second of race: immutable, pre-compressed")
    def replay_chunk(replay_id: str, request: Request, k: int = Path(ge=0)) -> Response:
        r = replay_or_error(replay_id)
        total = _total(r)
        if k >= total:
            raise NotFound(f"chunk {k} is outside the replay (0..{total - 1})")
        return chunk_response(request, r, k, 1)

    @app.get("/api/replays/{replay_id}/chunks", summary="Several chunks back to back: ?from=K&count=M")
    def replay_chunks(
        replay_id: str,
        request: Request,
        start: int = Query(0, ge=0, alias="from"),
        count: int = Query(1, ge=1, le=MAX_CHUNKS_PER_REQUEST),
    ) -> Response:
        r = replay_or_error(replay_id)
        total = _total(r)
        if start >= total:
            raise BadRequest(f"from={start} is outside the replay (0..{total - 1})")
        return chunk_response(request, r, start, min(count, total - start))


def _total(r: "Replay") -> int:
    s = r.bundle.streams.get("chunks")
    if s is None:
        raise NotFound(f"replay {r.id!r} has no chunks (written by an older racecast)")
    return s.count
