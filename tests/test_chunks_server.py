"""Chunks over HTTP (caching, negotiation) and compact / chunk WebSocket modes, against a real uvicorn server."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Iterator

import brotli
import httpx
import pytest
import websockets
import zstandard

from racecast.bundle import open_bundle
from racecast.bundle.chunks import decode_chunk, decode_chunks
from racecast.bundle.compact import decode_compact
from racecast.server import create_app
from racecast.server.chunks_http import IMMUTABLE, MAX_CHUNKS_PER_REQUEST, choose_coding
from tests.serverutil import DIRECT, PLAIN, Running, StepClock, T, read_until_closed, run_ticks, running, write_race

N = 1000  # 40 chunks


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", N, n_drivers=4)
    return root


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[Running]:
    with running(create_app(data, clock=StepClock())) as r:
        yield r


@pytest.fixture(scope="module")
def bundle(data: Path):
    b = open_bundle(data / "race")
    yield b
    b.close()


def get(srv: Running, path: str, accept: str | None = "identity", **headers: str) -> httpx.Response:
    h = dict(headers)
    if accept is not None:
        h["Accept-Encoding"] = accept
    # httpx would decode Content-Encoding itself; read the raw bytes to check what was sent.
    with srv.http() as c:
        with c.stream("GET", path, headers=h) as r:
            r.raw = b"".join(r.iter_raw())  # type: ignore[attr-defined]
            return r


# -- negotiation (no server) ---------------------------------------------------------------

ALL = ["zstd", "br", "gzip", "identity"]


@pytest.mark.parametrize(
    "header, available, want",
    [
        (None, ALL, "identity"),
        ("", ALL, "identity"),
        ("gzip", ALL, "gzip"),
        ("gzip, deflate, br", ALL, "br"),
        ("gzip, deflate, br, zstd", ALL, "zstd"),
        ("zstd;q=0.5, gzip", ALL, "gzip"),
        ("br;q=0.9, gzip;q=0.9", ALL, "br"),
        ("GZIP;Q=1", ALL, "gzip"),
        ("x-gzip", ALL, "gzip"),
        ("*", ALL, "zstd"),
        ("*;q=0.5, gzip;q=0", ALL, "zstd"),
        ("br", ["gzip", "identity"], "identity"),
        ("identity;q=0, gzip", ALL, "gzip"),
        ("identity;q=0", ALL, None),
        ("*;q=0", ALL, None),
        ("*;q=0, identity", ALL, "identity"),
        ("gzip;q=bogus", ALL, "identity"),
        ("deflate", ALL, "identity"),
    ],
)
def test_choose_coding(header, available, want):
    assert choose_coding(header, available) == want


# -- HTTP --------------------------------------------------------------------------------------


def test_chunk_identity_is_the_raw_chunk_with_immutable_caching(srv, bundle):
    r = get(srv, "/api/replays/race/chunks/3")
    assert r.status_code == 200
    assert r.raw == bytes(bundle.streams["chunks"][3])
    assert r.headers["cache-control"] == IMMUTABLE
    assert r.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in r.headers
    assert r.headers["content-type"] == "application/x-racecast-chunk"
    assert r.headers["x-racecast-total-chunks"] == "40" and r.headers["x-racecast-chunk-frames"] == "25"
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert decode_chunk(r.raw).first_frame == 75


@pytest.mark.parametrize(
    "accept, coding, decompress",
    [
        ("gzip", "gzip", gzip.decompress),
        ("gzip, br", "br", brotli.decompress),
        ("gzip, br, zstd", "zstd", lambda b: zstandard.ZstdDecompressor().decompress(b)),
    ],
)
def test_pre_compressed_variant_by_accept_encoding(srv, bundle, accept, coding, decompress):
    r = get(srv, "/api/replays/race/chunks/5", accept)
    assert r.status_code == 200 and r.headers["content-encoding"] == coding
    assert r.headers["vary"] == "Accept-Encoding"
    assert decompress(r.raw) == bytes(bundle.streams["chunks"][5])
    assert len(r.raw) < len(bundle.streams["chunks"][5])


def test_etags_differ_per_coding_and_chunk_and_304_on_if_none_match(srv):
    tags = {get(srv, "/api/replays/race/chunks/5", a).headers["etag"] for a in ("identity", "gzip", "br", "zstd")}
    tags.add(get(srv, "/api/replays/race/chunks/6", "gzip").headers["etag"])
    assert len(tags) == 5
    r = get(srv, "/api/replays/race/chunks/5", "gzip")
    again = get(srv, "/api/replays/race/chunks/5", "gzip", **{"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.raw == b""
    assert again.headers["etag"] == r.headers["etag"] and again.headers["cache-control"] == IMMUTABLE
    weak = get(srv, "/api/replays/race/chunks/5", "gzip", **{"If-None-Match": f'"x", W/{r.headers["etag"]}'})
    assert weak.status_code == 304
    other = get(srv, "/api/replays/race/chunks/5", "br", **{"If-None-Match": r.headers["etag"]})
    assert other.status_code == 200  # the br variant is another representation


def test_several_chunks_back_to_back(srv, bundle):
    r = get(srv, "/api/replays/race/chunks?from=10&count=5")
    assert r.status_code == 200 and r.headers["x-racecast-chunk-count"] == "5"
    assert [c.first_frame for c in decode_chunks(r.raw)] == [250, 275, 300, 325, 350]
    z = get(srv, "/api/replays/race/chunks?from=10&count=5", "gzip, br")  # never br for several
    assert z.headers["content-encoding"] == "gzip"
    assert gzip.decompress(z.raw) == r.raw
    zs = get(srv, "/api/replays/race/chunks?from=10&count=5", "zstd")
    assert zs.headers["content-encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zs.raw) == bytes(bundle.streams["chunks"][10])
    end = get(srv, "/api/replays/race/chunks?from=38&count=10")  # clamped at the end
    assert end.headers["x-racecast-chunk-count"] == "2" and len(decode_chunks(end.raw)) == 2
    with srv.http() as c:  # httpx decodes gzip itself: the body is still back-to-back chunks
        assert len(decode_chunks(c.get("/api/replays/race/chunks?from=0&count=3").content)) == 3


@pytest.mark.parametrize(
    "path, status, fragment",
    [
        ("/api/replays/race/chunks/40", 404, "outside"),
        ("/api/replays/race/chunks/-1", 422, ""),
        ("/api/replays/race/chunks/x", 422, ""),
        ("/api/replays/nope/chunks/0", 404, "no replay"),
        ("/api/replays/race/chunks?from=40", 400, "outside"),
        (f"/api/replays/race/chunks?from=0&count={MAX_CHUNKS_PER_REQUEST + 1}", 422, ""),
        ("/api/replays/race/chunks?from=0&count=0", 422, ""),
    ],
)
def test_chunk_bad_requests(srv, path, status, fragment):
    with srv.http() as c:
        r = c.get(path)
    assert r.status_code == status
    assert fragment in r.text


def test_refused_identity_with_nothing_else_is_406(srv):
    assert get(srv, "/api/replays/race/chunks/0", "identity;q=0, deflate").status_code == 406


# -- WebSocket ---------------------------------------------------------------------------------


async def _read_until_state(ws, state: dict) -> None:
    while True:
        m = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(m, str) and '"state"' in m:
            state.update(__import__("json").loads(m))
            return


@pytest.mark.parametrize("ws_impl", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_ws_compact_frames_decode_at_4x_and_after_seeks(data, ws_impl):
    async def go(port: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/replay/race?encoding=compact", max_size=2**22) as ws:
            await _read_until_state(ws, {})
            key = None
            got = []

            async def read_until(reply: str) -> None:
                nonlocal key
                while not isinstance(m := await asyncio.wait_for(ws.recv(), T(5)), str) or f'"{reply}"' not in m:
                    if isinstance(m, bytes):
                        f = decode_compact(m, key)
                        key = f.key
                        got.append(f.frame_index)

            async def take(command: str, ticks: int) -> None:
                """Send ``command`` and read its reply, run the server's clock ``ticks`` ticks, read what they sent."""
                await ws.send(command)
                await read_until("state")
                await run_ticks(engine, clock, ticks)
                await ws.send('{"action": "ping"}')
                await read_until("pong")  # everything the ticks sent came before

            await ws.send('{"action": "ping"}')
            await read_until("pong")
            assert got == [0]
            await take('{"action": "play", "speed": 4}', 30)
            await take('{"action": "seek", "frame": 613}', 10)
            await take('{"action": "seek", "frame": 37}', 10)
            steps = [b - a for a, b in zip(got, got[1:])]
            assert sorted(steps)[len(steps) // 2] == 4  # 4x: every 4th frame, each decodable
            assert 613 in got and 37 in got

    clock = StepClock()
    app = create_app(data, clock=clock)
    engine = app.state.racecast.engine
    with running(app, ws=ws_impl) as r:
        asyncio.run(go(r.port))


@pytest.mark.parametrize("compression", ["gzip", "identity", "zstd"])
def test_ws_chunk_mode_pushes_chunks_ahead_and_the_client_paces(srv, bundle, compression):
    unpack = {"gzip": gzip.decompress, "identity": lambda b: b,
              "zstd": lambda b: zstandard.ZstdDecompressor().decompress(b)}[compression]  # fmt: skip

    async def go() -> None:
        url = f"ws://127.0.0.1:{srv.port}/ws/replay/race?mode=chunks&compression={compression}&lookahead=2"
        async with websockets.connect(url, max_size=2**22) as ws:
            state: dict = {}
            await _read_until_state(ws, state)
            first = await asyncio.wait_for(ws.recv(), 5)
            assert decode_chunk(unpack(first)).first_frame == 0
            await ws.send('{"action": "play", "speed": 1}')
            chunks = []
            while not isinstance(m := await asyncio.wait_for(ws.recv(), T(5)), str) or '"state"' not in m:
                if isinstance(m, bytes):
                    chunks.append(decode_chunk(unpack(m)).first_frame // 25)
            engine = srv.app.state.racecast.engine
            await run_ticks(engine, engine.clock, 75)  # 3 s of the server's clock, a tick at a time
            await ws.send('{"action": "ping"}')  # answered after everything those ticks sent
            while not isinstance(m := await asyncio.wait_for(ws.recv(), T(5)), str) or '"pong"' not in m:
                if isinstance(m, bytes):
                    chunks.append(decode_chunk(unpack(m)).first_frame // 25)
            assert chunks == list(range(1, len(chunks) + 1))  # in order, none twice, none missing
            assert 3 <= len(chunks) <= 7, chunks  # ~1 per second plus a 2 s lookahead, not 25 per second
            await ws.send('{"action": "seek", "frame": 777}')
            await _read_until_state(ws, state)
            m = await asyncio.wait_for(ws.recv(), 5)
            assert decode_chunk(unpack(m)).first_frame == 775  # the target's chunk right after the ack

    asyncio.run(go())


def test_ws_chunk_mode_bad_options_close_4400(srv):
    async def go() -> None:
        for q in ("mode=chunks&compression=lzma", "mode=stream", "encoding=chunks"):
            code, msgs = await read_until_closed(f"ws://127.0.0.1:{srv.port}/ws/replay/race?{q}")
            assert code == 4400
            assert any("loading_error" in m for m in msgs if isinstance(m, str))

    asyncio.run(go())
