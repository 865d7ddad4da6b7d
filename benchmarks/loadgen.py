"""Load generator: thousands of lean WebSocket viewers in one process, logging every message.

Each client does the handshake with the ``websockets`` sans-I/O ``ClientProtocol``,
then parses frames itself: the header gives the length, and the frame index is read
from its fixed place in the msgpack payload (no decode), so the client stays cheap.
Per client it logs the arrival time, frame index and size of every binary message,
every JSON message, and every command it sent.

Arrival times are the kernel's receive timestamps (``SO_TIMESTAMPNS``, read with
``recvmsg``), not the moment this process got round to the socket: with thousands of
sockets ready at once, the client's own queueing would otherwise show up as server
jitter. The client also measures its own CPU over the window, so a saturated client
is never mistaken for a slow server. All times are on the wall clock (``time.time``),
the clock of the kernel's timestamps.

Run one point: ``python -m benchmarks.loadgen --url ws://127.0.0.1:P/ws/replay/ID -n 100
--speed 1 --frames 11375 --server-pid PID --out point.json``. The result (JSON) holds
the statistics of :mod:`benchmarks.stats` plus server and client CPU and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import struct
import sys
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

import numpy as np

from . import procstat, stats
from .streaming_report import HANDSHAKES_IN_FLIGHT
from .wsframes import FRAME_INDEX_KEY, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, OPCODE_TEXT, client_frame, peek_frame_index

clock = time.time  # the clock of SO_TIMESTAMPNS
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_ANC = socket.CMSG_SPACE(16)
_RECV = bytearray(1 << 18)  # one receive buffer for every client: the loop is single-threaded
_RECV_VIEW = memoryview(_RECV)
# Per read: kernel receive time and how long after it this process read the data (its own queueing).
_READ_AT = array("d")
_READ_LAG = array("d")


class SockWriter:
    """The little of a transport the client needs, over a non-blocking socket."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.pending = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.pending:
            self.pending += data
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.abort()
            return
        if n < len(data):
            self.pending = data[n:]
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            n = self.sock.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        self.pending = self.pending[n:]
        if not self.pending:
            self.loop.remove_writer(self.sock.fileno())

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            fd = self.sock.fileno()
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            self.sock.close()

    def abort(self) -> None:
        """Close at once with a reset (no lingering FIN handshake per client at teardown)."""
        if not self.closed:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close()


def admit(load: Any, client: "Client", err: str | None) -> None:
    """Keep an opened client in ``load.clients``, or count the failure (the first five errors kept)."""
    if err is None:
        load.clients.append(client)
        return
    load.failed += 1
    if len(load.errors) < 5:
        load.errors.append(err)


class Client:
    """One viewer. Hot path: :meth:`feed` (header, frame index, three appends)."""

    def __init__(self, gen: "LoadGen", index: int) -> None:
        self.gen = gen
        self.index = index
        self.ws = ClientProtocol(parse_uri(gen.url))
        self.sock: socket.socket | None = None
        self.transport: SockWriter | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.head = b""  # handshake bytes so far
        self.buf = b""  # an incomplete frame carried to the next read
        self.frag: list[bytes] = []  # fragments of a text message
        self.times = array("d")
        self.frames = array("q")
        self.sizes = array("q")
        self.texts: list[tuple[float, dict[str, Any]]] = []
        self.commands: list[tuple[float, dict[str, Any]]] = []
        self.t_connect: float | None = None
        self.bad_frames = 0
        self.kernel_times = True

    # -- connection ------------------------------------------------------------------
    async def connect(self, host: str, port: int) -> None:
        """TCP connect, then send the handshake; :attr:`opened` resolves when it is accepted."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:  # pragma: no cover - not Linux
            self.kernel_times = False
        try:
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.transport = SockWriter(sock, loop)
        loop.add_reader(sock.fileno(), self._readable)
        self.ws.send_request(self.ws.connect())
        self.transport.write(b"".join(self.ws.data_to_send()))

    async def open(self, host: str, port: int, timeout: float) -> str | None:
        """Connect and complete the handshake within ``timeout`` each; on failure abort and say why."""
        self.t_connect = clock()
        try:
            await asyncio.wait_for(self.connect(host, port), timeout)
            await asyncio.wait_for(self.opened, timeout)
        except Exception as e:  # noqa: BLE001 - every failure is counted by the caller
            if self.transport is not None:
                self.transport.abort()
            return f"{type(e).__name__}: {e}"
        return None

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            n, anc, _flags, _addr = self.sock.recvmsg_into([_RECV_VIEW], _ANC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if n == 0:
            self._lost(None)
            return
        now = None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, ns = struct.unpack_from("qq", data)
                now = sec + ns * 1e-9
        if now is None:
            now = clock()
            self.kernel_times = False
        else:
            _READ_AT.append(now)
            _READ_LAG.append(clock() - now)
        self.feed(_RECV_VIEW[:n], now)  # parsed in place; only an incomplete tail is copied

    def _lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if self.transport is not None:
            self.transport.close()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))

    def send(self, cmd: dict[str, Any]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.commands.append((clock(), cmd))
        self.transport.write(client_frame(OPCODE_TEXT, json.dumps(cmd).encode()))

    # -- receiving ---------------------------------------------------------------------
    def feed(self, data: bytes | memoryview, now: float) -> None:
        """Parse received bytes that arrived at ``now``; log every message.

        ``data`` may be a view of a shared buffer: nothing keeps a reference to it.
        """
        if not self.is_open:
            data = self._handshake(bytes(data))
            if not data:
                return
        buf = self.buf + bytes(data) if self.buf else data
        n = len(buf)
        pos = 0
        times, frames, sizes = self.times, self.frames, self.sizes
        while n - pos >= 2:
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                p = pos + 4
            elif ln < 126:
                p = pos + 2
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                p = pos + 10
            end = p + ln
            if end > n:
                break
            b0 = buf[pos]
            if b0 == 0x82:  # final binary frame: the hot path
                if buf[p + 1 : p + 13] == FRAME_INDEX_KEY:
                    t = buf[p + 13]
                    if t < 0x80:
                        fi = t
                    elif t == 0xD1 or t == 0xCD:
                        fi = (buf[p + 14] << 8) | buf[p + 15]
                    else:
                        fi = self._index(buf, p, end)
                else:
                    fi = self._index(buf, p, end)
                times.append(now)
                frames.append(fi)
                sizes.append(end - pos)
            else:
                self._control(b0, bytes(buf[p:end]), now)
            pos = end
        self.buf = bytes(buf[pos:]) if pos < n else b""

    def _index(self, buf: bytes | memoryview, p: int, end: int) -> int:
        try:
            return peek_frame_index(buf, p, end)
        except ValueError:
            self.bad_frames += 1
            return -1

    def _handshake(self, data: bytes) -> bytes:
        self.head += data
        k = self.head.find(b"\r\n\r\n")
        if k < 0:
            return b""
        rest = self.head[k + 4 :]
        self.ws.receive_data(self.head[: k + 4])
        self.ws.events_received()
        self.head = b""
        if self.ws.state is not State.OPEN:
            err = self.ws.handshake_exc or ConnectionError("handshake failed")
            if not self.opened.done():
                self.opened.set_exception(err)
            if self.transport is not None:
                self.transport.abort()
            return b""
        self.is_open = True
        if not self.opened.done():
            self.opened.set_result(None)
        return rest

    def _control(self, b0: int, payload: bytes, now: float) -> None:
        op = b0 & 0x0F
        fin = b0 & 0x80
        if op == 0 or (op == OPCODE_TEXT and not fin):  # fragmented message
            self.frag.append(payload)
            if not fin:
                return
            payload, self.frag = b"".join(self.frag), []
            op = OPCODE_TEXT
        if op == OPCODE_TEXT:
            try:
                msg = json.loads(payload)
            except ValueError:
                return
            if isinstance(msg, dict):
                self.texts.append((now, msg))
                if msg.get("type") == "loading_complete":
                    self.gen.on_ready(self)
        elif op == OPCODE_BINARY:  # a non-final binary frame: not something the designs send
            self.bad_frames += 1
        elif op == OPCODE_PING:
            if self.transport is not None:
                self.transport.write(client_frame(OPCODE_PONG, payload))
        elif op == OPCODE_CLOSE:
            if self.transport is not None:
                self.transport.write(client_frame(OPCODE_CLOSE, payload[:2]))
                self.transport.close()

    def log(self) -> stats.ClientLog:
        return stats.ClientLog(
            times=np.frombuffer(self.times, dtype=np.float64).copy() if self.times else np.zeros(0),
            frames=np.frombuffer(self.frames, dtype=np.int64).copy() if self.frames else np.zeros(0, dtype=np.int64),
            sizes=np.frombuffer(self.sizes, dtype=np.int64).copy() if self.sizes else np.zeros(0, dtype=np.int64),
            commands=list(self.commands),
            states=[(t, m) for t, m in self.texts if m.get("type") == "state"],
            t_connect=self.t_connect,
        )


class LoadGen:
    def __init__(self, a: argparse.Namespace) -> None:
        self.url = a.url
        u = urlsplit(a.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.a = a
        self.clients: list[Client] = []
        self.errors: list[str] = []
        self.failed = 0
        # Positions stay clear of the race's end for the whole run.
        margin = int((a.warmup + a.window + 20) * a.fps * a.speed) + 50
        self.hi = max(1, a.frames - margin)
        self.jump = max(1, min(30 * a.fps, self.hi // 3))

    def start_frame(self, i: int) -> int:
        return random.Random(f"{self.a.seed}-start-{i}").randrange(0, max(1, self.hi // 2)) if self.a.spread else 0

    def on_ready(self, c: Client) -> None:
        if self.a.spread:
            c.send({"action": "seek", "frame": self.start_frame(c.index)})
        if not self.a.paused:
            c.send({"action": "play", "speed": self.a.speed})

    def seek(self, c: Client, j: int) -> None:
        cur = c.frames[-1] if c.frames else 0
        rng = random.Random(f"{self.a.seed}-seek-{c.index}-{j}")
        target = rng.randrange(0, self.hi)
        for _ in range(100):
            if abs(target - cur) >= self.jump:
                break
            target = rng.randrange(0, self.hi)
        c.send({"action": "seek", "frame": target})

    async def _connect(self, i: int, sem: asyncio.Semaphore) -> None:
        c = Client(self, i)
        async with sem:
            err = await c.open(self.host, self.port, self.a.connect_timeout)
        admit(self, c, err)

    async def run(self) -> dict[str, Any]:
        a = self.a
        t_start = clock()
        sem = asyncio.Semaphore(a.concurrency)
        await asyncio.gather(*(self._connect(i, sem) for i in range(a.n)))
        t_connected = clock()
        # Every client has its first frame (or we give up waiting).
        deadline = clock() + a.connect_timeout
        while clock() < deadline and any(not c.times for c in self.clients):
            await asyncio.sleep(0.05)
        waiting = sum(1 for c in self.clients if not c.times)
        await asyncio.sleep(a.warmup)

        seekers = [] if a.paused else self.clients[: a.seekers]
        loop = asyncio.get_running_loop()
        handles = []
        for k, c in enumerate(seekers):
            for j in range(a.seeks):
                delay = (j + 0.5) * a.window / a.seeks + (k % 10) * 0.011
                handles.append(loop.call_later(delay, self.seek, c, j))
        t0 = clock()
        if a.mark:  # tell a watcher (the harness's profiler) that the measured window starts now
            with open(a.mark, "w") as f:
                f.write(str(t0))
        s0 = procstat.cpu_seconds(a.server_pid) if a.server_pid else None
        w0 = procstat.wait_seconds(a.server_pid) if a.server_pid else None
        lw0 = procstat.wait_seconds(os.getpid())
        c0 = time.process_time()
        await asyncio.sleep(a.window)
        t1 = clock()
        self.window_bounds = (t0, t1)
        s1 = procstat.cpu_seconds(a.server_pid) if a.server_pid else None
        w1 = procstat.wait_seconds(a.server_pid) if a.server_pid else None
        lw1 = procstat.wait_seconds(os.getpid())
        c1 = time.process_time()
        rss = procstat.rss_bytes(a.server_pid) if a.server_pid else None
        for h in handles:
            h.cancel()
        for c in self.clients:
            if c.transport is not None:
                c.transport.abort()

        logs = [c.log() for c in self.clients]
        summary = stats.summarise(logs, t0, t1, a.fps, a.speed) if not a.paused else {
            "viewers": len(logs),
            "window_s": round(t1 - t0, 3),
            "frames_delivered": sum(int(np.count_nonzero((l.times >= t0) & (l.times < t1))) for l in logs),
        }
        window = t1 - t0
        server_cpu = None if s0 is None else s1 - s0  # type: ignore[operator]
        delivered = summary["frames_delivered"]
        return {
            "n": a.n,
            "speed": a.speed,
            "paused": a.paused,
            "connected": len(self.clients),
            "failed": self.failed,
            "errors": self.errors,
            "no_first_frame": waiting,
            "bad_frames": sum(c.bad_frames for c in self.clients),
            "kernel_timestamps": all(c.kernel_times for c in self.clients),
            "connect_s": round(t_connected - t_start, 3),
            "server_cpu_pct": None if server_cpu is None else round(100 * server_cpu / window, 2),
            "server_cpu_us_per_frame": None if server_cpu is None or not delivered else round(1e6 * server_cpu / delivered, 2),
            "server_rss_mb": None if rss is None else round(rss / 1e6, 1),
            "server_wait_pct": None if w0 is None else round(100 * (w1 - w0) / window, 2),  # type: ignore[operator]
            "loadgen_cpu_pct": round(100 * (c1 - c0) / window, 2),
            "loadgen_wait_pct": round(100 * (lw1 - lw0) / window, 2),
            **_read_lag(t0, t1),
            **summary,
        }


def _read_lag(t0: float, t1: float) -> dict[str, float | None]:
    """How long after the kernel received data this process read it (p50 / p99, ms, in the window)."""
    at = np.frombuffer(_READ_AT, dtype=np.float64) if _READ_AT else np.zeros(0)
    lag = np.frombuffer(_READ_LAG, dtype=np.float64) if _READ_LAG else np.zeros(0)
    sel = lag[(at >= t0) & (at < t1)]
    p = lambda q: None if sel.size == 0 else round(float(np.percentile(sel, q)) * 1000, 2)  # noqa: E731
    return {"loadgen_read_lag_p50_ms": p(50), "loadgen_read_lag_p99_ms": p(99)}


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="racecast benchmark load generator (one point)")
    p.add_argument("--url", required=True)
    p.add_argument("-n", type=int, required=True, help="viewers")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--frames", type=int, required=True, help="frames in the replay (keeps seeks inside it)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--seekers", type=int, default=10, help="clients that seek during the window")
    p.add_argument("--seeks", type=int, default=2, help="seeks per seeking client")
    p.add_argument("--no-spread", dest="spread", action="store_false", help="start every viewer at frame 0")
    p.add_argument("--paused", action="store_true", help="connect but never play (idle / polling cost)")
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to this CPU")
    p.add_argument("--concurrency", type=int, default=HANDSHAKES_IN_FLIGHT, help="handshakes in flight")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="-")
    p.add_argument("--mark", default=None, help="write this file when the measured window starts")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.n < 1 or a.window <= 0 or a.frames < 1:
        print("loadgen: -n, --window and --frames must be positive", file=sys.stderr)
        return 2
    if a.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {a.cpu})
    raise_nofile(a.n + 256)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(LoadGen(a).run())
    else:
        result = uvloop.run(_main(a))
    text = json.dumps(result, indent=1)
    if a.out == "-":
        print(text)
    else:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


async def _main(a: argparse.Namespace) -> dict[str, Any]:
    return await LoadGen(a).run()


if __name__ == "__main__":
    sys.exit(main())
