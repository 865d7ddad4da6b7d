"""Chunks behind a caching proxy: Debian's nginx, started unprivileged on free ports with the exact
configuration `racecast deploy nginx` prints, in front of a real racecast server.

N chunk clients ask for the same chunks at the same time; the origin must see one request per
chunk (nginx's cache lock collapses the misses), every client must get the right bytes, and
the replay WebSocket must work through the proxy.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from racecast.bundle import open_bundle
from racecast.deploy import nginx_config
from racecast.server import create_app
from tests.serverutil import ViewerClient, frames_only, running, write_race
from benchmarks.common import CountingApp, nginx_proxy
from benchmarks.common import RacecastProcess as Proc
from tests.services import NGINX, require

CLIENTS = 40
CHUNKS = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", 1000, n_drivers=5)
    return root


@pytest.fixture(scope="module")
def stack(data: Path) -> Iterator[tuple[CountingApp, int]]:
    nginx = require(NGINX, "nginx")
    app = CountingApp(create_app(data))
    with running(app) as srv, nginx_proxy(f"127.0.0.1:{srv.port}", nginx) as port:
        yield app, port


def test_n_clients_one_origin_request_per_chunk(stack: tuple[CountingApp, int], data: Path) -> None:
    app, port = stack
    bundle = open_bundle(data / "race")
    raw = bundle.streams["chunks"]

    async def client(c: httpx.AsyncClient, k: int) -> tuple[int, bytes, str]:
        r = await c.get(f"/api/replays/race/chunks/{k}", headers={"Accept-Encoding": "gzip, deflate, br" if k % 2 else "gzip"})
        return r.status_code, r.content, r.headers.get("x-cache-status", "")

    async def go() -> list[tuple[int, bytes, str]]:
        limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS * 2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, trust_env=False, timeout=30) as c:
            # Every client asks for every chunk, all at once (the cache is cold).
            return await asyncio.gather(*(client(c, k) for k in range(CHUNKS) for _ in range(CLIENTS)))

    before = {k: app.paths[f"/api/replays/race/chunks/{k}"] for k in range(CHUNKS)}
    results = asyncio.run(go())
    assert all(status == 200 for status, _, _ in results)
    for i, (_, body, _) in enumerate(results):  # httpx inflates gzip: every client got the exact chunk
        assert body == bytes(raw[i // CLIENTS])
    per_chunk = {k: app.paths[f"/api/replays/race/chunks/{k}"] - before[k] for k in range(CHUNKS)}
    assert per_chunk == {k: 1 for k in range(CHUNKS)}, per_chunk
    statuses = collections.Counter(s for _, _, s in results)
    assert statuses["MISS"] == CHUNKS and statuses["MISS"] + statuses["HIT"] + statuses["UPDATING"] == len(results), statuses


def test_codings_are_cached_apart_and_identity_clients_get_identity(stack: tuple[CountingApp, int], data: Path) -> None:
    app, port = stack
    raw = bytes(open_bundle(data / "race").streams["chunks"][30])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
        for _ in range(3):
            plain = c.get("/api/replays/race/chunks/30", headers={"Accept-Encoding": "identity"})
            assert plain.headers.get("content-encoding") is None and plain.content == raw
            gz = c.get("/api/replays/race/chunks/30", headers={"Accept-Encoding": "gzip"})
            assert gz.headers["content-encoding"] == "gzip" and gz.content == raw
    assert app.paths["/api/replays/race/chunks/30"] == 2  # one per coding, then hits
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
        stream = c.build_request("GET", "/api/replays/race/chunks/30", headers={"Accept-Encoding": "gzip"})
        r = c.send(stream, stream=True)
        assert gzip.decompress(b"".join(r.iter_raw())) == raw
        r.close()


def test_the_websocket_goes_through_the_proxy(stack: tuple[CountingApp, int]) -> None:
    _, port = stack

    async def go() -> None:
        v = await ViewerClient.open(f"ws://127.0.0.1:{port}/ws/replay/race?encoding=msgpack", origin=f"http://127.0.0.1:{port}")
        await v.ready()
        await v.command(action="play", speed=2)
        got = frames_only(await v.collect(1.0))
        assert len(got) >= 10 and all(b > a for a, b in zip(got, got[1:]))
        await v.close()

    asyncio.run(go())


def test_racecast_deploy_nginx_prints_the_tested_config() -> None:
    p = Proc("deploy", "nginx", "--upstream", "127.0.0.1:9000", "--listen", "8081")
    assert p.p.wait(60) == 0
    out = "".join(p.output)
    assert out.strip() == nginx_config("127.0.0.1:9000", "8081").strip()
    assert "proxy_cache_lock on;" in out and "server 127.0.0.1:9000;" in out
    if os.path.exists(NGINX):  # the snippet is valid nginx inside an http block
        with tempfile.TemporaryDirectory(prefix="racecast-nginx-") as d:
            Path(d).chmod(0o755)
            conf = Path(d) / "nginx.conf"
            conf.write_text(nginx_config("127.0.0.1:9000", "127.0.0.1:1", standalone=True, prefix=d))
            r = subprocess.run([NGINX, "-t", "-p", d, "-c", str(conf), "-e", f"{d}/error.log"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
