"""What the benchmarks and the tests both start, in one place: free ports, `racecast` processes,
an in-process uvicorn, a caching nginx in front of a server, a Redis.

Benchmarks import this module; tests import it too (tests/services.py, tests/serverutil.py
re-export what they use), never the other way round: nothing under benchmarks/ imports tests.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

__all__ = [
    "ROOT",
    "NGINX",
    "checkout_env",
    "free_port",
    "wait_port",
    "RacecastProcess",
    "ServeProcess",
    "Running",
    "running",
    "nginx_proxy",
    "CountingApp",
    "RedisServer",
    "cpus",
    "pinned",
    "reference_server_args",
]

ROOT = Path(__file__).resolve().parent.parent
NGINX = "/usr/sbin/nginx"


def checkout_env(first: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """This process's environment with the checkout (root, ``src``) first on ``PYTHONPATH``, after
    ``first`` (another source tree to test instead); ``extra``: more variables."""
    paths = [*first, str(ROOT), str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **extra}


def cpus() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU): two different CPUs when this process may use two."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def pinned(cpu: int | None) -> Callable[[], None]:
    """A ``preexec_fn`` for a benchmark child: its open-file limit raised to the hard limit, and
    pinned to ``cpu`` (None: not pinned)."""

    def setup() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return setup


def reference_server_args(argv: list[str] | None, description: str, port: int) -> argparse.Namespace:
    """The command line every reference server of the benchmark takes: ``--data DIR --host H --port P``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    return p.parse_args(argv)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a server started later binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; RuntimeError after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class RacecastProcess:
    """``racecast ARGS...`` from this checkout in a child process; its output (stdout and stderr)
    is read by a thread, kept in :attr:`output` and searchable with :meth:`wait_for`."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "racecast.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=checkout_env(PYTHONUNBUFFERED="1", COLUMNS="200"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; AssertionError (with the output) after ``timeout`` s."""
        rx = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in output: {''.join(self.output)}") from None
            if m := rx.search(line):
                return m

    def log_count(self, text: str) -> int:
        """Lines of output so far that contain ``text``."""
        return sum(text in line for line in self.output)

    def stop(self) -> int:
        """SIGINT (what Ctrl+C sends), then the exit status; killed if it has not exited after 20 s."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class ServeProcess(RacecastProcess):
    """``racecast serve --data DATA --port 0 EXTRA...``: returns once the app answers ``/healthz``."""

    def __init__(self, data: Path, *extra: str, timeout: float = 30.0) -> None:
        super().__init__("serve", "--data", str(data), "--port", "0", *extra)
        self.port = int(self.wait_for(r"http://127\.0\.0\.1:(\d+)/", timeout=timeout).group(1))
        end = time.monotonic() + timeout
        while True:  # the URL is printed when the socket is bound; wait until the app answers
            try:
                if httpx.get(f"{self.http}/healthz", trust_env=False, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > end or self.p.poll() is not None:
                raise RuntimeError(f"racecast serve did not start: {''.join(self.output)[-2000:]}")
            time.sleep(0.05)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class Running:
    """An app served by :func:`running`."""

    port: int
    app: Any
    server: Any  # uvicorn.Server
    thread: threading.Thread

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, replay_id: str, query: str = "?encoding=msgpack") -> str:
        """A racecast-protocol URL by default (asking for an encoding is racecast's);
        ``query=""`` is what the seed's client opens (the seed protocol: no ``state`` messages)."""
        return f"ws://127.0.0.1:{self.port}/ws/replay/{replay_id}{query}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, trust_env=False, timeout=10)

    def metric(self, name: str) -> float:
        """Value of one sample in /metrics (``name`` includes labels if any)."""
        with self.http() as c:
            text = c.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)


@contextmanager
def running(app: Any, ws: str | None = None, limits: Any = None, start_timeout: float = 15.0) -> Iterator[Running]:
    """Serve ``app`` with uvicorn in a thread of this process on 127.0.0.1:<free port> until the block ends.

    ``ws``: uvicorn's WebSocket protocol (default: racecast's direct path); ``limits``: a ConnectionLimits."""
    import uvicorn

    from racecast.server.serve import WS_PROTOCOL, uvicorn_config

    config = uvicorn_config(app, "127.0.0.1", 0, log_level="error", limits=limits)
    config.ws = ws or WS_PROTOCOL
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    port = sock.getsockname()[1]
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not t.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Running(port, app, server, t)
    finally:
        server.should_exit = True
        t.join(15)
        sock.close()


@contextmanager
def nginx_proxy(upstream: str, nginx: str = NGINX) -> Iterator[int]:
    """Debian's nginx, unprivileged, with the exact configuration `racecast deploy nginx` prints, in front
    of ``upstream`` (host:port); yields the port it listens on (127.0.0.1). Its cache is empty (cold)."""
    from racecast.deploy import nginx_config

    # nginx's workers run as an unprivileged user when started as root: the prefix must be reachable.
    prefix = Path(tempfile.mkdtemp(prefix="racecast-nginx-"))
    prefix.chmod(0o755)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(upstream, f"127.0.0.1:{port}", standalone=True, prefix=prefix))
    args = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    try:
        check = subprocess.run([nginx, "-t", *args[1:]], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the configuration: {check.stderr}")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


class CountingApp:
    """ASGI wrapper counting the HTTP requests that reach racecast, by path (what a proxy let through)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>, no persistence (a restart forgets everything)."""

    def __init__(self, workdir: Path, binary: str = "redis-server") -> None:
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
