"""The streaming benchmark: one race served three ways, loaded by the same clients.

Designs: racecast as shipped (``racecast serve``), the seed's design
(:mod:`benchmarks.seed_server`) and the floor (:mod:`benchmarks.floor_server`).
Each server runs pinned to one CPU; each point (design, speed, viewers) is one
load-generator process pinned to the other CPU. Viewers grow until the design
saturates. Results go to ``benchmarks/results/*.json`` and to the "Streaming
benchmark" section of ``docs/performance.md`` (table, headline ratios, plot).

Run: ``racecast bench [--quick]`` or ``python -m benchmarks.harness [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from . import profile
from . import streaming_report as report
from .common import ROOT, checkout_env, cpus, free_port, pinned
from .race import BENCH_ID, write_bench_bundle
from .report import cpu_model

RESULTS = ROOT / "benchmarks" / "results"
DESIGNS = ("racecast", "seed", "floor")
#: Extra designs for before/after comparisons of the bundle format (``--designs`` opts in):
#: ``racecast-v2`` is this racecast serving the same race as a format-2 bundle (every frame
#: stored pre-encoded); ``racecast-before`` is another racecast checkout (``RACECAST_BEFORE_SRC``,
#: its ``src`` directory) serving that format-2 bundle; ``racecast-warm`` is racecast serving the
#: format-3 bundle with its on-disk msgpack block cache filled before the server starts (what every
#: start after the first sees), while ``racecast`` starts with an empty one (cold: blocks built as used).
EXTRA_DESIGNS = ("racecast-v2", "racecast-before", "racecast-warm")


@dataclass
class Profile:
    """How much to measure. ``full`` is the reference run; ``quick`` a routine check (< 1 min)."""

    name: str
    laps: int
    viewers: dict[float, list[int]]  # speed -> viewer counts, tried in order until saturation
    paused: list[int]  # idle viewers (connected, never playing)
    warmup: float
    window: float
    seekers: int
    seeks: int
    caps: dict[str, int] = field(default_factory=dict)  # design -> largest N tried
    profile: bool = False  # sample racecast with py-spy at its busiest unsaturated point


FULL_N = [1, 10, 50, 100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000]
FULL_N_4X = [10, 100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000]
PROFILES = {
    "full": Profile("full", laps=8, viewers={1.0: FULL_N, 4.0: FULL_N_4X}, paused=[100, 500], warmup=1.0, window=3.0,
                    seekers=20, seeks=3, caps={"seed": 500}, profile=True),
    "quick": Profile("quick", laps=4, viewers={1.0: [10, 100, 1000], 4.0: [100]}, paused=[100], warmup=0.5, window=1.5,
                     seekers=10, seeks=2, caps={"seed": 100}),
}

# Saturation: stop adding viewers to a design at a speed once any of these holds.
MAX_SERVER_CPU = report.MAX_SERVER_CPU  # % of one core
MAX_LOADGEN_CPU = report.MAX_LOADGEN_CPU  # % of one core: beyond this the client, not the server, is measured
MIN_FPS_SHARE = 0.9  # median delivered rate vs the design's first point
MAX_FAILED_SHARE = 0.01  # connections that failed
ON_TIME_TARGET = report.ON_TIME_TARGET  # % of frame slots on time
BUSY_WAIT_PCT = report.BUSY_WAIT_PCT  # server runnable but waiting for its CPU: a busy machine, retry the point once


def server_command(design: str, data: Path, port: int) -> list[str]:
    py = sys.executable
    if design in ("racecast", "racecast-warm"):
        return [py, "-m", "racecast.cli", "serve", "--data", str(data), "--host", "127.0.0.1", "--port", str(port)]
    if design in EXTRA_DESIGNS:
        return [py, "-m", "racecast.cli", "serve", "--data", str(v2_dir(data)), "--host", "127.0.0.1", "--port", str(port)]
    if design == "seed":
        return [py, "-m", "benchmarks.seed_server", "--data", str(data), "--port", str(port)]
    if design == "floor":
        return [py, "-m", "benchmarks.floor_server", "--data", str(data), "--port", str(port)]
    raise ValueError(f"unknown design {design!r}")


def v2_dir(data: Path) -> Path:
    """Where the format-2 copy of the benchmark race lives (for the extra designs)."""
    return data.parent / "data-v2"


def _env(design: str = "", tmp: Path | None = None) -> dict[str, str]:
    """A design's environment: the checkout first on PYTHONPATH (``racecast-before``: the tree in
    ``RACECAST_BEFORE_SRC`` before it) and its own disk block cache under ``tmp``."""
    env = checkout_env((os.environ["RACECAST_BEFORE_SRC"],) if design == "racecast-before" else ())
    if tmp is not None:
        env["RACECAST_DISK_CACHE_DIR"] = str(disk_cache_dir(tmp, design))
    return env


def disk_cache_dir(tmp: Path, design: str) -> Path:
    """Each design's disk block cache: empty for all but ``racecast-warm`` (filled by :func:`warm_disk_cache`)."""
    return tmp / "disk-cache" / design


def warm_disk_cache(path: Path, root: Path) -> int:
    """``racecast warm`` for the bundle at ``path`` into the disk cache at ``root``; returns the blocks built."""
    from racecast.bundle import diskcache, open_bundle, warming

    saved = diskcache._DISK
    diskcache._DISK = diskcache.DiskBlockCache(root, diskcache.default_max_bytes() or diskcache.DEFAULT_MAX_BYTES)
    try:
        b = open_bundle(path)
        try:
            return warming.warm(b).built
        finally:
            b.close()
    finally:
        diskcache._DISK = saved


class Server:
    """A design's server process: started pinned, waited for, stopped."""

    def __init__(self, design: str, data: Path, cpu: int | None, log_dir: Path) -> None:
        self.design = design
        self.port = free_port()
        self.log_path = log_dir / f"{design}-server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            server_command(design, data, self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
            env=_env(design, log_dir),
            cwd=ROOT,
        )
        self.start_s: float | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/replay/{BENCH_ID}?encoding=msgpack"  # racecast protocol (others ignore it)

    def warm_metrics(self) -> dict[str, float] | str:
        """What the server's background warm of msgpack blocks did (``racecast_warm_*`` in /metrics)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError as e:
            return f"metrics unavailable: {e}"
        names = {"racecast_warm_blocks_built": "blocks", "racecast_warm_cpu_seconds": "cpu_s", "racecast_warm_seconds": "wall_s"}
        return {names[k]: float(v) for k, _, v in (ln.partition(" ") for ln in text.splitlines()) if k in names}

    def wait_ready(self, timeout: float = 120.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.design} server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    self.start_s = round(time.monotonic() - t0, 2)
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.design} server not listening after {timeout:.0f} s: {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 1500) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def run_point(server: Server, n: int, speed: float, frames: int, prof: Profile, cpu: int | None, out: Path,
              paused: bool = False, window: float | None = None, during: Callable[[], Any] | None = None) -> dict[str, Any]:
    """One load-generator process against ``server``; returns its result (or an error record).

    ``during`` runs (here) once the load generator's measured window has started."""
    cmd = [
        sys.executable, "-m", "benchmarks.loadgen", "--url", server.url, "-n", str(n), "--speed", str(speed),
        "--frames", str(frames), "--warmup", str(prof.warmup),
        "--window", str(window or (prof.window if not paused else 1.0)),
        "--seekers", str(prof.seekers), "--seeks", str(prof.seeks), "--server-pid", str(server.proc.pid), "--out", str(out),
    ]  # fmt: skip
    if paused:
        cmd.append("--paused")
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    mark = out.with_suffix(".window")
    if during is not None:
        cmd += ["--mark", str(mark)]
    budget = 60 + n / 50 + prof.warmup + (window or prof.window)
    errors = out.with_suffix(".stderr")
    with open(errors, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env(), cwd=ROOT)
        t0 = time.monotonic()
        try:
            if during is not None:
                while not mark.exists() and proc.poll() is None and time.monotonic() - t0 < budget:
                    time.sleep(0.05)
                if mark.exists():
                    during()
            rc = proc.wait(max(1.0, budget - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"n": n, "speed": speed, "paused": paused, "error": f"load generator timed out after {budget:.0f} s"}
    if rc != 0 or not out.exists():
        return {"n": n, "speed": speed, "paused": paused, "error": f"load generator failed ({rc}): {errors.read_text()[-800:]}"}
    return json.loads(out.read_text())


def saturation(point: dict[str, Any], first: dict[str, Any] | None, passed_before: bool, failed_last: bool = False) -> str | None:
    """Why adding viewers beyond this point is pointless (None: keep going).

    Missing the on-time target stops the sweep only on the second point in a row
    (after the design once met it): one noisy point on a shared machine should not end it.
    A saturated CPU stops it only once frames are late too (the on-time limit is the measure)."""
    if "error" in point:
        return "error: " + point["error"].splitlines()[0][:120]
    if point["failed"] > MAX_FAILED_SHARE * point["n"]:
        return f"{point['failed']} connections failed"
    if (point.get("loadgen_cpu_pct") or 0) >= MAX_LOADGEN_CPU:
        return "load generator saturated (client-bound)"
    on_time = (point.get("on_time_pct") or 0) >= ON_TIME_TARGET
    if (point.get("server_cpu_pct") or 0) >= MAX_SERVER_CPU and not on_time:  # still on time: try more viewers
        return "server CPU saturated"
    if first is not None and first is not point and first.get("fps_per_viewer_median"):
        if (point.get("fps_per_viewer_median") or 0) < MIN_FPS_SHARE * first["fps_per_viewer_median"]:
            return "delivered frame rate fell"
    if passed_before and failed_last and (point.get("on_time_pct") or 0) < ON_TIME_TARGET:
        return f"on time below {ON_TIME_TARGET:g}% twice in a row"
    return None


def machine() -> dict[str, Any]:
    """The machine and the versions of what is measured, recorded with every run."""
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (0.0, 0.0, 0.0)
    import uvicorn  # noqa: PLC0415 - versions of what is measured
    import websockets

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "event_loop": loop,
        "uvicorn": uvicorn.__version__,
        "websockets": websockets.__version__,
        "load_avg_start": [round(x, 2) for x in load],
    }


def run(prof: Profile, designs: Sequence[str], command: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark for ``designs``; returns the results document."""
    started = time.monotonic()
    server_cpu, client_cpu = cpus()
    doc: dict[str, Any] = {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": asdict(prof),
        "machine": machine(),
        "pinning": {"server_cpu": server_cpu, "loadgen_cpu": client_cpu},
        "limits": {"on_time_target_pct": ON_TIME_TARGET, "max_server_cpu_pct": MAX_SERVER_CPU,
                   "max_loadgen_cpu_pct": MAX_LOADGEN_CPU},
        "designs": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="racecast-bench-") as tmp:
        tmpd = Path(tmp)
        data = tmpd / "data"
        log(f"writing the benchmark race ({prof.laps} laps)...")
        from racecast.bundle import open_bundle

        path, source = write_bench_bundle(data, prof.laps)
        if any(d in ("racecast-v2", "racecast-before") for d in designs):
            write_bench_bundle(v2_dir(data), prof.laps, format_version=2)
        if "racecast-warm" in designs:
            log(f"filling racecast-warm's disk block cache: {warm_disk_cache(path, disk_cache_dir(tmpd, 'racecast-warm'))} blocks")
        from racecast.bundle import diskcache

        diskcache._DISK = diskcache.DiskBlockCache(disk_cache_dir(tmpd, "harness"))  # not the user's cache
        b = open_bundle(path)
        frames = b.n_frames
        ms = b.streams["msgpack"]
        blk = ms.block(0)
        doc["race"] = {"source": source, "laps": prof.laps, "frames": frames, "drivers": len(b.drivers),
                       "duration_s": round(b.duration, 1), "bundle_bytes": b.size_bytes,
                       "payload_bytes_per_frame": round((len(blk.data) - 4 * len(blk)) / len(blk), 1)}  # fmt: skip
        b.close()
        doc["designs"] = run_designs(designs, prof, data, frames, server_cpu, client_cpu, tmpd, log)
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    doc["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["summary"] = report.summarise(doc)
    return doc


@dataclass
class Sweep:
    """One design's progress through the viewer counts at one speed."""

    first: dict[str, Any] | None = None
    passed: bool = False
    failed_last: bool = False
    stopped: str | None = None


def run_designs(designs: Sequence[str], prof: Profile, data: Path, frames: int, server_cpu: int | None,
                client_cpu: int | None, tmpd: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every design's points. All servers run at once (idle ones cost nothing) and each viewer count
    is measured for every design back to back, so a change in the shared machine's load hits all
    designs alike instead of skewing the ratios."""
    out: dict[str, dict[str, Any]] = {d: {"points": [], "paused": [], "stopped": {}} for d in designs}
    servers: dict[str, Server] = {}
    try:
        for d in designs:
            log(f"[{d}] starting server...")
            try:
                servers[d] = Server(d, data, server_cpu, tmpd)
            except OSError as e:
                out[d]["error"] = f"could not start: {e}"
        for d in list(servers):
            try:
                servers[d].wait_ready()
                out[d]["startup_s"] = servers[d].start_s
            except RuntimeError as e:
                log(f"[{d}] unavailable: {e}")
                out[d]["error"] = str(e)
                servers.pop(d).stop()
        k = 0
        for n in prof.paused:
            for d, server in servers.items():
                k += 1
                p = run_point(server, n, 1.0, frames, prof, client_cpu, tmpd / f"{d}-{k}.json", paused=True)
                log(f"[{d}] {n} paused viewers: server CPU {p.get('server_cpu_pct')}%")
                out[d]["paused"].append(p)
                time.sleep(0.3)
        for speed, ns in prof.viewers.items():
            sweeps = {d: Sweep() for d in servers}
            for j, n in enumerate(ns):
                live = [d for d in servers if sweeps[d].stopped is None]
                if not live:
                    break
                for d in live[j % len(live):] + live[: j % len(live)]:  # rotate who goes first
                    cap = prof.caps.get(d)
                    sw = sweeps[d]
                    if cap is not None and n > cap:
                        sw.stopped = out[d]["stopped"][str(speed)] = f"capped at {cap} viewers"
                        continue
                    if not servers[d].alive():
                        sw.stopped = out[d]["stopped"][str(speed)] = f"server died: {servers[d].log_tail(300)}"
                        continue
                    k += 1
                    p = run_point(servers[d], n, speed, frames, prof, client_cpu, tmpd / f"{d}-{k}.json")
                    if (p.get("server_wait_pct") or 0) >= BUSY_WAIT_PCT:  # the machine was busy: measure once more
                        log(f"[{d}] {speed:g}x {n:>5} viewers: server waited {p['server_wait_pct']}% for its CPU, retrying")
                        time.sleep(2.0)
                        k += 1
                        q = run_point(servers[d], n, speed, frames, prof, client_cpu, tmpd / f"{d}-{k}.json")
                        if "error" not in q and (q.get("server_wait_pct") or 0) < p["server_wait_pct"]:
                            q["retried_after_wait_pct"] = p["server_wait_pct"]
                            p = q
                    out[d]["points"].append(p)
                    log(f"[{d}] {speed:g}x {n:>5} viewers: " + report.point_line(p))
                    sw.first = sw.first or (p if "error" not in p else None)
                    why = saturation(p, sw.first, sw.passed, sw.failed_last)
                    met = (p.get("on_time_pct") or 0) >= ON_TIME_TARGET
                    sw.failed_last = sw.passed and not met
                    sw.passed = sw.passed or met
                    if not servers[d].alive():
                        why = f"server died: {servers[d].log_tail(300)}"
                    if why:
                        p["saturated"] = why
                        sw.stopped = out[d]["stopped"][str(speed)] = why
                        log(f"[{d}] {speed:g}x stops at {n} viewers: {why}")
                    time.sleep(0.5)  # let the server finish tearing down the last point's connections
        if "racecast" in servers and prof.profile and servers["racecast"].alive():
            out["racecast"]["profile"] = profile_racecast(servers["racecast"], out["racecast"]["points"], prof, frames,
                                                          client_cpu, tmpd, log)  # fmt: skip
    finally:
        for d, server in servers.items():
            if d in ("racecast", "racecast-warm") and server.alive():
                out[d]["warm"] = server.warm_metrics()
            server.stop()
    return out


def profile_racecast(server: Server, points: list[dict[str, Any]], prof: Profile, frames: int, client_cpu: int | None,
                     tmpd: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Sample racecast with py-spy under its busiest unsaturated 1x load (a separate point: sampling costs CPU)."""
    ok = [p for p in points if "error" not in p and float(p["speed"]) == 1.0 and (p.get("server_cpu_pct") or 0) < MAX_SERVER_CPU]
    if not ok:
        return {"error": "no unsaturated 1x point to profile at"}
    n = max(p["n"] for p in ok)
    if profile.find_py_spy() is None:
        return {"n": n, "error": "py-spy not installed (pip install py-spy)"}
    raw = tmpd / "racecast.pyspy"
    result: dict[str, Any] = {"n": n, "speed": 1.0}

    def sample() -> None:
        result["error"] = profile.record(server.proc.pid, min(prof.window + 2, 5), raw)

    log(f"[racecast] profiling with py-spy at {n} viewers, 1x...")
    point = run_point(server, n, 1.0, frames, prof, client_cpu, tmpd / "racecast-profile.json", window=prof.window + 4, during=sample)
    if result.get("error") is None:
        result.pop("error", None)
        result.update(profile.top(raw.read_text(), 15, inclusive_filter="racecast/"))
    result["point"] = {k: point.get(k) for k in ("server_cpu_pct", "server_cpu_us_per_frame", "on_time_pct", "error") if k in point}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="racecast bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few viewer counts, short windows (< 1 minute)")
    p.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="Markdown file whose benchmark section is replaced")
    p.add_argument("--designs", default=",".join(DESIGNS), help="comma-separated subset of racecast,seed,floor")
    p.add_argument("--no-docs", action="store_true", help="write the JSON only, leave the Markdown and plot alone")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of racecast (full runs take one)")
    p.add_argument("--from-json", default=None, help="re-render the report from a results file instead of running")
    a = p.parse_args(argv)
    designs = [d.strip() for d in a.designs.split(",") if d.strip()]
    bad = [d for d in designs if d not in DESIGNS + EXTRA_DESIGNS]
    if bad or not designs:
        p.error(f"unknown design(s) {bad}; choose from {', '.join(DESIGNS + EXTRA_DESIGNS)}")
    if "racecast-before" in designs and not os.environ.get("RACECAST_BEFORE_SRC"):
        p.error("racecast-before needs RACECAST_BEFORE_SRC: the src directory of the racecast to compare with")
    if a.from_json:
        json_path = Path(a.from_json).resolve()
        doc = json.loads(json_path.read_text())
        doc["summary"] = report.summarise(doc)
        write_report(doc, Path(a.out), json_path)
        print(report.headline_text(doc))
        return 0
    prof = PROFILES["quick" if a.quick else "full"]
    if a.no_profile:
        prof = Profile(**{**asdict(prof), "profile": False})
    command = "racecast bench" + (" --quick" if a.quick else "") + (f" --designs {a.designs}" if a.designs != ",".join(DESIGNS) else "")
    doc = run(prof, designs, command, log=lambda s: print(s, flush=True))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    json_path = RESULTS / f"{stamp}-{prof.name}.json"
    json_path.write_text(json.dumps(doc, indent=1))
    (RESULTS / f"latest-{prof.name}.json").write_text(json.dumps(doc, indent=1))
    print(f"results: {json_path}")
    if not a.no_docs:
        write_report(doc, Path(a.out), json_path)
    print(report.headline_text(doc))
    return 0


def write_report(doc: dict[str, Any], md: Path, json_path: Path) -> None:
    """The plot beside ``md`` and the benchmark section inside it."""
    png = md.parent / "performance-streaming.png"
    report.plot(doc, png)
    report.write_section(md, report.markdown(doc, png_name=png.name, json_name=os.path.relpath(json_path, md.resolve().parent)))
    print(f"report: {md} (plot {png})")


if __name__ == "__main__":
    sys.exit(main())
