"""Server CPU per WebSocket message for each way of pushing frames (not a test: numbers for docs/architecture.md).

Every variant pushes one pre-built binary message (``--size`` bytes) to each of
``--clients`` connections 25 times a second from ONE timer loop; the clients run
in a separate process on 127.0.0.1 and only count bytes and frames. We measure
the server process's CPU time (user + system) over a window and divide by the
frames the clients received.

Variants:
  uvicorn-sansio      uvicorn ws=websockets-sansio, plain ASGI ``await send()``
  uvicorn-websockets  uvicorn ws=websockets (legacy implementation), plain ASGI send
  uvicorn-wsproto     uvicorn ws=wsproto, plain ASGI send (needs ``pip install wsproto``)
  direct              uvicorn + racecast's protocol: header + payload via transport.writelines()
  direct-write        the same with one pre-joined bytes object per message via transport.write()
  websockets-broadcast  the websockets library's own server with websockets.broadcast()
  racecast            the real server: ``racecast.server.create_app`` on a bundle of ~size-byte
                      frames, every client playing at 1x (engine, playback state, backpressure checks)

Usage: python benchmarks/transport_compare.py [--clients 2000] [--seconds 10] [--variants a,b,...]
The machine is shared and noisy: compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/transport_compare.py
    sys.path.insert(0, str(ROOT))

from benchmarks.common import checkout_env, free_port, wait_port  # noqa: E402

FPS = 25
VARIANTS = ["uvicorn-sansio", "uvicorn-websockets", "uvicorn-wsproto", "direct", "direct-write", "websockets-broadcast", "racecast"]


# --------------------------------------------------------------------------------------------
# servers (each runs in its own process: `--serve VARIANT`)


async def every_tick(on_tick: Any) -> None:
    """Call ``on_tick()`` (awaiting it if it returns an awaitable) at FPS on an absolute schedule, skipping missed ticks."""
    period = 1 / FPS
    start = time.monotonic()
    k = 0
    while True:
        k += 1
        delay = start + k * period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            k += int(-delay / period)
        r = on_tick()
        if r is not None:
            await r


def _ticker_loop(targets: list[Any], push: Any) -> "asyncio.Task[None]":
    """One timer loop for all connections: ``push(target)`` for each, awaited in turn when it is a coroutine."""

    async def push_all() -> None:
        for t in list(targets):
            r = push(t)
            if r is not None:
                await r

    return asyncio.get_event_loop().create_task(every_tick(push_all))


def serve_asgi(variant: str, port: int, size: int) -> None:
    import uvicorn

    from racecast.server.transport import EXTENSION, RacecastWSProtocol, binary_header

    payload = os.urandom(size)
    message = {"type": "websocket.send", "bytes": payload}
    framed = binary_header(size) + payload
    header = binary_header(size)
    targets: list[Any] = []
    state: dict[str, Any] = {}

    if variant == "direct":
        push = lambda proto: proto.transport.writelines((header, payload))  # noqa: E731
    elif variant == "direct-write":
        push = lambda proto: proto.transport.write(framed)  # noqa: E731
    else:
        push = lambda send: send(message)  # noqa: E731

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif m["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if "task" not in state:
            state["task"] = _ticker_loop(targets, push)
        target = scope["extensions"][EXTENSION] if variant.startswith("direct") else send
        targets.append(target)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            targets.remove(target)

    ws: Any = {"uvicorn-sansio": "websockets-sansio", "uvicorn-websockets": "websockets", "uvicorn-wsproto": "wsproto"}.get(variant, RacecastWSProtocol)
    uvicorn.run(app, host="127.0.0.1", port=port, ws=ws, log_level="error", ws_per_message_deflate=False, backlog=4096, ws_ping_interval=None)


def serve_websockets_broadcast(port: int, size: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    payload = os.urandom(size)
    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096):
            await every_tick(lambda: broadcast(conns, payload))

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def serve_racecast(port: int, data: str, options: dict[str, Any]) -> None:
    import uvicorn

    from racecast.server import create_app
    from racecast.server.serve import uvicorn_config

    app = create_app(data, **{"max_connections": 100_000, "allowed_origins": ["*"], **options})
    config = uvicorn_config(app, "127.0.0.1", port, log_level="error")
    config.backlog = 4096
    uvicorn.Server(config).run()


def make_racecast_data(size: int) -> tuple[str, int]:
    """A bundle whose frames are about ``size`` bytes (drivers chosen to fit); returns (dir, frame bytes)."""
    sys.path.insert(0, str(ROOT))
    from racecast.bundle import open_bundle, write_bundle
    from benchmarks.race import tiny_race

    root = tempfile.mkdtemp(prefix="racecast-bench-")
    per_driver = 195  # bytes of one driver's map in a msgpack frame
    drivers = max(1, round((size - 60) / per_driver))
    write_bundle(tiny_race(n_frames=FPS * 600, n_drivers=drivers, race_id="bench"), Path(root) / "bench", format_version=2)
    s = open_bundle(Path(root) / "bench").streams["msgpack"]
    return root, int(s.info["bytes"]) // s.count


# --------------------------------------------------------------------------------------------
# clients (one process: `--client`), counting frames with a minimal WebSocket frame parser


class CountingClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, path: str, play: bool, stats: dict[str, int]) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.play = play
        self.stats = stats
        self.open = False
        self.head = b""
        self.hdr = b""
        self.skip = 0
        self.binary = False
        self.ready: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.stats["bytes"] += len(data)
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.head[: self.head.find(b"\r\n")]:
                self.ready.set_exception(RuntimeError(self.head[:200].decode(errors="replace")))
                return
            self.open = True
            data = self.head[end + 4 :]
            self.head = b""
            if self.play:
                cmd = b'{"action":"play","speed":1}'
                mask = os.urandom(4)
                self.transport.write(bytes((0x81, 0x80 | len(cmd))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(cmd)))
            if not self.ready.done():
                self.ready.set_result(None)
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                if self.skip == 0 and self.binary:
                    self.stats["frames"] += 1
                continue
            h = self.hdr
            need = 2 if len(h) < 2 else 2 + {126: 2, 127: 8}.get(h[1] & 0x7F, 0)
            take = min(need - len(h), n - i)
            h = self.hdr = h + data[i : i + take]
            i += take
            if len(h) < 2 or len(h) < 2 + {126: 2, 127: 8}.get(h[1] & 0x7F, 0):
                continue
            ln = h[1] & 0x7F
            if ln == 126:
                ln = int.from_bytes(h[2:4], "big")
            elif ln == 127:
                ln = int.from_bytes(h[2:10], "big")
            self.hdr = b""
            self.binary = (h[0] & 0x0F) == 2
            self.skip = ln
            if ln == 0 and self.binary:
                self.stats["frames"] += 1


async def run_clients(port: int, n: int, path: str, play: bool, out: Any) -> None:
    loop = asyncio.get_running_loop()
    stats = {"bytes": 0, "frames": 0}
    protos = []
    for start in range(0, n, 100):
        batch = []
        for _ in range(min(100, n - start)):
            _, p = await loop.create_connection(lambda: CountingClient("127.0.0.1", port, path, play, stats), "127.0.0.1", port)
            batch.append(p)
        await asyncio.gather(*(p.ready for p in batch))
        protos += batch
    out.write(json.dumps({"connected": len(protos)}) + "\n")
    out.flush()
    # Report counters every 0.5 s until killed.
    while True:
        await asyncio.sleep(0.5)
        out.write(json.dumps({"t": time.monotonic(), **stats, "cpu": time.process_time()}) + "\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# the driver


def measure(variant: str, clients: int, seconds: float, size: int, data: str | None, racecast_options: str = "{}") -> dict[str, Any]:
    import psutil

    port = free_port()
    env = checkout_env()
    args = [sys.executable, __file__, "--serve", variant, "--port", str(port), "--size", str(size)]
    if data:
        args += ["--data", data, "--racecast-options", racecast_options]
    server = subprocess.Popen(args, env=env)
    client = None
    try:
        wait_port(port, timeout=30)
        time.sleep(0.5)
        rss_idle = psutil.Process(server.pid).memory_info().rss
        path = "/ws/replay/bench?encoding=msgpack" if variant == "racecast" else "/ws"
        cargs = [sys.executable, __file__, "--client", "--port", str(port), "--clients", str(clients), "--path", path]
        if variant == "racecast":
            cargs.append("--play")
        client = subprocess.Popen(cargs, env=env, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None
        first = json.loads(client.stdout.readline())
        assert first.get("connected") == clients, first
        sp = psutil.Process(server.pid)
        # Warm up, then measure over the window.
        warm_end = time.monotonic() + 2.0
        while time.monotonic() < warm_end:
            client.stdout.readline()
        a = json.loads(client.stdout.readline())
        ca = sp.cpu_times()
        rss_a = sp.memory_info().rss
        end = time.monotonic() + seconds
        b = a
        while time.monotonic() < end:
            b = json.loads(client.stdout.readline())
        cb = sp.cpu_times()
        server_cpu = (cb.user - ca.user) + (cb.system - ca.system)
        dt = b["t"] - a["t"]
        frames = b["frames"] - a["frames"]
        probe = asyncio.run(latency_probe(port)) if variant == "racecast" else {}
        return {
            "variant": variant,
            "clients": clients,
            "window_s": round(dt, 2),
            "frames_per_s": round(frames / dt),
            "delivered": round(frames / (dt * clients * FPS), 3),
            "server_cpu_share": round(server_cpu / dt, 3),
            "us_per_frame": round(server_cpu * 1e6 / max(1, frames), 2),
            "server_user_s": round(cb.user - ca.user, 2),
            "server_sys_s": round(cb.system - ca.system, 2),
            "client_cpu_share": round((b["cpu"] - a["cpu"]) / dt, 3),
            "server_rss_mb": round(rss_a / 1e6, 1),
            "rss_kb_per_client": round((rss_a - rss_idle) / 1e3 / clients, 1),
            **probe,
        }
    finally:
        for p in (client, server):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


async def latency_probe(port: int, connects: int = 20, seeks: int = 100) -> dict[str, Any]:
    """While the load runs: connect -> first frame, and seek -> first frame at the target (with stale-frame count)."""
    import msgpack
    import websockets

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 2)

    url = f"ws://127.0.0.1:{port}/ws/replay/bench?encoding=msgpack"
    first: list[float] = []
    for _ in range(connects):
        t0 = time.perf_counter()
        async with websockets.connect(url, max_size=None) as ws:
            while isinstance(await ws.recv(), str):
                pass
            first.append(time.perf_counter() - t0)
    lat: list[float] = []
    stale = 0
    async with websockets.connect(url, max_size=None) as ws:
        while isinstance(await ws.recv(), str):
            pass
        await ws.send('{"action":"play","speed":4}')
        for k in range(seeks):
            target = (k * 7919) % 14000
            t0 = time.perf_counter()
            await ws.send(json.dumps({"action": "seek", "frame": target}))
            acked = False
            while True:
                m = await ws.recv()
                if isinstance(m, str):
                    d = json.loads(m)
                    acked = acked or (d.get("type") == "state" and d.get("frame") == target)
                    continue
                i = msgpack.unpackb(m)["frame_index"]
                if acked:
                    stale += i != target
                    lat.append(time.perf_counter() - t0)
                    break
            await asyncio.sleep(0.06)  # stay under the default command rate (20/s): measure latency, not throttling
    return {
        "connect_first_frame_ms_p50": pct(first, 0.5),
        "connect_first_frame_ms_p99": pct(first, 0.99),
        "seek_first_frame_ms_p50": pct(lat, 0.5),
        "seek_first_frame_ms_p99": pct(lat, 0.99),
        "stale_frames_after_seek": stale,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=1500, help="message bytes")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeat", type=int, default=1, help="rounds over all variants (interleaved, to spread noise)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    # internal roles
    ap.add_argument("--serve")
    ap.add_argument("--client", action="store_true")
    ap.add_argument("--port", type=int)
    ap.add_argument("--path", default="/ws")
    ap.add_argument("--play", action="store_true")
    ap.add_argument("--data")
    ap.add_argument("--racecast-options", default="{}", help="JSON create_app() keyword arguments for the racecast variant")
    a = ap.parse_args()

    if a.serve:
        if a.serve == "websockets-broadcast":
            serve_websockets_broadcast(a.port, a.size)
        elif a.serve == "racecast":
            serve_racecast(a.port, a.data, json.loads(a.racecast_options))
        else:
            serve_asgi(a.serve, a.port, a.size)
        return
    if a.client:
        try:
            import uvloop

            uvloop.run(run_clients(a.port, a.clients, a.path, a.play, sys.stdout))
        except ImportError:
            asyncio.run(run_clients(a.port, a.clients, a.path, a.play, sys.stdout))
        return

    variants = [v for v in a.variants.split(",") if v]
    if "uvicorn-wsproto" in variants:
        try:
            import wsproto  # noqa: F401
        except ImportError:
            print("skipping uvicorn-wsproto: wsproto is not installed", file=sys.stderr)
            variants.remove("uvicorn-wsproto")
    data = None
    if "racecast" in variants:
        data, frame_bytes = make_racecast_data(a.size)
        print(f"racecast bundle: {frame_bytes} B/frame on average", file=sys.stderr)
    rows = []
    for _ in range(a.repeat):
        for v in variants:
            row = measure(v, a.clients, a.seconds, a.size, data, a.racecast_options)
            rows.append(row)
            print(json.dumps(row), flush=True)
    best: dict[str, float] = {}
    for r in rows:
        best[r["variant"]] = min(best.get(r["variant"], float("inf")), r["us_per_frame"])
    cheapest = min(best.values())
    print(f"\n{'variant':22} {'best us/frame':>13} {'x cheapest':>10}")
    for v, us in sorted(best.items(), key=lambda kv: kv[1]):
        print(f"{v:22} {us:13.2f} {us / cheapest:10.2f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
