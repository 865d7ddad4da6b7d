"""The benchmark harness's parts: frame parsing, the reference servers, statistics, reporting.

Behaviour only: no timing thresholds (numbers belong in docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import websockets.sync.client

from benchmarks import harness, loadgen, procstat
from benchmarks import streaming_report as report
from benchmarks.stats import ClientLog, on_time_slots, percentile, segments, summarise
from benchmarks.wsframes import OPCODE_BINARY, OPCODE_TEXT, client_frame, parse_header, peek_frame_index, server_frame
from racecast.bundle import write_bundle
from racecast.bundle.msgpack_frames import iter_msgpack_frames
from tests.factories import tiny_race

ROOT = Path(__file__).resolve().parent.parent
FPS = 25


# -- frame parsing --------------------------------------------------------------------------


def test_peek_frame_index_reads_real_frames_of_every_integer_width():
    race = tiny_race(n_frames=70_000, n_drivers=2)
    picks = [0, 1, 127, 128, 255, 256, 32_767, 32_768, 65_535, 65_536, 69_999]
    for i in picks:
        payload = next(iter_msgpack_frames(race, i, i + 1))
        assert peek_frame_index(payload) == i == msgpack.unpackb(payload)["frame_index"]


def test_peek_frame_index_reads_seed_design_frames_and_falls_back_for_other_layouts():
    # The seed design packs with msgpack defaults (unsigned ints, doubles).
    for i in (5, 300, 70_000):
        assert peek_frame_index(msgpack.packb({"frame_index": i, "t": 1.5, "lap": 1, "drivers": {}})) == i
    # Key not first: the slow path still finds it.
    assert peek_frame_index(msgpack.packb({"t": 0.0, "frame_index": 42})) == 42
    with pytest.raises(ValueError):
        peek_frame_index(msgpack.packb({"t": 0.0}))
    with pytest.raises(ValueError):
        peek_frame_index(b"\xc1garbage")


def test_frame_headers_round_trip_for_all_length_forms():
    for n in (0, 5, 125, 126, 4000, 65_535, 65_536):
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
        framed = server_frame(OPCODE_BINARY, payload)
        op, start, end = parse_header(framed, 0)
        assert (op, framed[start:end]) == (OPCODE_BINARY, payload)
        assert parse_header(framed[:-1], 0) is None if n else True
    masked = client_frame(OPCODE_TEXT, b'{"action":"pause"}')
    op, start, end = parse_header(masked, 0)
    key = masked[start - 4 : start]
    assert op == OPCODE_TEXT
    assert bytes(b ^ key[k % 4] for k, b in enumerate(masked[start:end])) == b'{"action":"pause"}'


def test_client_parses_frames_split_across_reads_and_answers_pings():
    race = tiny_race(n_frames=400, n_drivers=3)
    payloads = list(iter_msgpack_frames(race, 120, 140))
    framed = [server_frame(OPCODE_BINARY, p) for p in payloads]
    text = server_frame(OPCODE_TEXT, json.dumps({"type": "state", "playing": True, "frame": 120, "seq": 1}).encode())
    ping = server_frame(0x9, b"hi")
    stream = b"".join(framed[:3]) + text + ping + b"".join(framed[3:])

    class Transport:
        def __init__(self):
            self.out = []

        def write(self, b):
            self.out.append(b)

        def is_closing(self):
            return False

    async def feed():
        gen = loadgen.LoadGen(loadgen.parse_args(["--url", "ws://127.0.0.1:1/ws/replay/x", "-n", "1", "--frames", "400"]))
        c = loadgen.Client(gen, 0)
        c.is_open = True
        c.transport = Transport()
        shared = bytearray(997)  # like the load generator's one receive buffer, reused for every read
        for k in range(0, len(stream), 997):  # chunks that cut headers and payloads anywhere
            chunk = stream[k : k + 997]
            shared[: len(chunk)] = chunk
            c.feed(memoryview(shared)[: len(chunk)], 100.0 + k)
            shared[:] = bytes(997)  # the next read overwrites it: nothing may still point into it
        return c

    c = asyncio.run(feed())
    assert list(c.frames) == list(range(120, 140))
    assert c.times[0] == 100.0 and c.times[-1] > c.times[0]  # arrival = when the read completing the frame happened
    assert list(c.sizes) == [len(b) for b in framed]
    assert c.bad_frames == 0 and c.buf == b""
    assert [m["frame"] for _, m in c.texts] == [120]
    (pong,) = c.transport.out
    op, start, end = parse_header(pong, 0)
    key = pong[start - 4 : start]
    assert op == 0xA and bytes(b ^ key[k % 4] for k, b in enumerate(pong[start:end])) == b"hi"


# -- the reference servers, really served ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-data")
    write_bundle(tiny_race(n_frames=3000, n_drivers=4, race_id="bench"), d / "bench")
    return d


def _serve(module: str, data: Path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", module, "--data", str(data), "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{module} did not start listening")


@pytest.fixture(params=["benchmarks.seed_server", "benchmarks.floor_server"], ids=["seed", "floor"])
def server(request, data_dir):
    proc, port = _serve(request.param, data_dir)
    yield proc, port
    proc.terminate()
    proc.wait(10)


def test_reference_server_streams_to_load_generator_clients_and_honours_seeks(server):
    proc, port = server
    args = loadgen.parse_args([
        "--url", f"ws://127.0.0.1:{port}/ws/replay/bench?encoding=msgpack", "-n", "2", "--frames", "3000", "--warmup", "0.2",
        "--window", "1.0", "--seekers", "1", "--seeks", "2", "--server-pid", str(proc.pid),
    ])  # fmt: skip
    r = asyncio.run(loadgen.LoadGen(args).run())
    assert r["connected"] == 2 and r["failed"] == 0 and r["bad_frames"] == 0
    assert r["kernel_timestamps"] is True
    assert r["frames_delivered"] > 2  # both viewers received frames inside the window
    assert r["fps_per_viewer_min"] > 0
    assert r["bytes_per_frame"] > 100
    assert r["seeks"] == 2 and r["seeks_without_frame"] == 0 and r["seek_p50_ms"] is not None
    assert r["stale_frames"] == 0
    assert r["server_cpu_pct"] is not None and r["server_rss_mb"] > 0


def test_reference_server_speaks_standard_websocket_to_a_standard_client(server):
    _proc, port = server
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws/replay/bench?encoding=msgpack") as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "loading_complete"
        ws.send(json.dumps({"action": "seek", "frame": 1000}))
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = ws.recv(timeout=10)
            if isinstance(m, str):
                seen.append(json.loads(m))
                if seen[-1].get("type") == "state":
                    break
        assert seen[-1] == {"type": "state", "playing": False, "speed": 1.0, "frame": 1000, "seq": 1}
        frame = ws.recv(timeout=10)
        assert isinstance(frame, bytes)
        decoded = msgpack.unpackb(frame)
        assert decoded["frame_index"] == 1000 and set(decoded["drivers"]) == {"D00", "D01", "D02", "D03"}


def test_unknown_replay_is_refused(data_dir):
    proc, port = _serve("benchmarks.floor_server", data_dir)
    try:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws/replay/nope", open_timeout=10)
    finally:
        proc.terminate()
        proc.wait(10)


# -- statistics ------------------------------------------------------------------------------


def stream(t_start: float, f_start: int, n: int, step: int = 1, period: float = 1 / FPS, delays=None):
    t = t_start + np.arange(n) * period
    if delays is not None:
        t = t + np.asarray(delays)
    return t, f_start + np.arange(n) * step


def log_of(t, f, commands, states=(), size=100, t_connect=None) -> ClientLog:
    return ClientLog(np.asarray(t, float), np.asarray(f, np.int64), np.full(len(t), size), list(commands), list(states), t_connect)


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(np.arange(101), 99) == 99


def test_steady_stream_is_all_on_time_and_a_skipped_frame_or_stall_is_not():
    t, f = stream(10.0, 0, 250)
    assert on_time_slots(t, f.astype(float), 25.0, 10.0, 19.0, FPS) == (225, 225)
    # One frame never arrives: exactly one slot missed.
    keep = np.ones(250, bool)
    keep[100] = False
    assert on_time_slots(t[keep], f[keep].astype(float), 25.0, 10.0, 19.0, FPS) == (224, 225)
    # A 200 ms stall then catch-up: frames due in the stall arrive > 2 periods late.
    d = np.zeros(250)
    d[100:105] = [0.2, 0.16, 0.12, 0.08, 0.04]
    t2, _ = stream(10.0, 0, 250, delays=d)
    on, total = on_time_slots(t2, f.astype(float), 25.0, 10.0, 19.0, FPS)
    assert total == 225 and on == 225 - 3  # 200, 160, 120 ms late miss; 80 and 40 ms are within 2 periods


def test_window_cut_does_not_change_the_slot_count():
    t, f = stream(10.013, 0, 300)
    for start in (10.5, 10.51, 10.53, 10.549):
        on, total = on_time_slots(t, f.astype(float), 25.0, start, start + 4.0, FPS)
        assert on == total == 100


def test_drifting_replay_clock_is_late():
    # The seed's loop: ~15.6 frames a second of wall time at "1x".
    t, f = stream(0.0, 0, 100, period=1 / 15.6)
    on, total = on_time_slots(t, f.astype(float), 25.0, 0.0, 6.0, FPS)
    assert total > 0 and on / total < 0.2


def test_fast_forward_any_phase_is_on_time():
    # At 4x one message per period carries every 4th frame, whatever the phase.
    for phase in range(4):
        t, f = stream(0.0, 1000 + phase, 100, step=4)
        assert on_time_slots(t, f.astype(float), 100.0, 0.5, 3.5, FPS) == (75, 75)


def test_seek_latency_stale_frames_and_segments():
    # Playing from 500; seek to 2000 sent at t=2.0; ack at 2.010; one old frame after the ack (stale);
    # the target frame arrives at 2.015, then the stream continues from there.
    t1, f1 = stream(0.0, 500, 50)  # up to t=1.96
    t_old = [2.005, 2.012]  # in flight (before ack) and stale (after ack)
    f_old = [550, 551]
    t2, f2 = stream(2.015, 2000, 50)
    t = np.concatenate([t1, t_old, t2])
    f = np.concatenate([f1, f_old, f2])
    cmds = [(0.0, {"action": "seek", "frame": 500}), (0.0, {"action": "play", "speed": 1}), (2.0, {"action": "seek", "frame": 2000})]
    states = [(0.001, {"type": "state", "frame": 500}), (2.010, {"type": "state", "frame": 2000})]
    log = log_of(t, f, cmds, states, t_connect=-0.1)
    segs = segments(log, FPS, 1.0)
    assert [s.kind for s in segs] == ["play", "seek"]
    assert segs[1].t_ack == 2.010 and segs[1].stale == 1 and segs[0].stale == 0
    s = summarise([log], 0.5, 3.5, FPS, 1.0)
    assert s["seeks"] == 1 and s["stale_frames"] == 1
    assert s["seek_p50_ms"] == pytest.approx(15.0)
    assert s["connect_first_p50_ms"] == pytest.approx(100.0)
    assert s["bytes_per_frame"] == 100.0
    assert s["on_time_pct"] == 100.0  # the seek gap is the seek's latency, not lateness


def test_backward_seek_old_frames_are_stale():
    t1, f1 = stream(0.0, 3000, 25)
    t2, f2 = stream(1.02, 100, 25)
    t = np.concatenate([t1, [1.01], t2])
    f = np.concatenate([f1, [3025], f2])
    cmds = [(0.0, {"action": "play", "speed": 1}), (0.99, {"action": "seek", "frame": 100})]
    states = [(0.0005, {"type": "state", "frame": 3000}), (1.005, {"type": "state", "frame": 100})]
    log = log_of(t, f, [(-0.01, {"action": "seek", "frame": 3000})] + cmds, states)
    segs = segments(log, FPS, 1.0)
    assert segs[-1].stale == 1 and segs[-1].target == 100


def test_summary_rates_and_jitter():
    logs = []
    for k in range(3):
        d = np.zeros(100)
        d[50] = 0.01 * k  # one late frame for two of the three viewers
        t, f = stream(0.0, 0, 100, delays=d)
        logs.append(log_of(t, f, [(-0.01, {"action": "play", "speed": 1})], [(-0.005, {"type": "state", "frame": 0})]))
    s = summarise(logs, 1.0, 3.0, FPS, 1.0)
    assert s["viewers"] == 3 and s["frames_delivered"] == 150
    assert s["fps_per_viewer_min"] == s["fps_per_viewer_median"] == 25.0
    assert s["bytes_per_viewer_s"] == 2500.0
    assert s["jitter_p50_ms"] == pytest.approx(0.0, abs=1e-6)
    assert s["jitter_p99_ms"] > 5  # the 20 ms late frame shows up in the tail


# -- report and harness ------------------------------------------------------------------------


def point(n, speed=1.0, cpu=10.0, us=20.0, on_time=100.0, **kw):
    return {"n": n, "speed": speed, "paused": False, "failed": 0, "server_cpu_pct": cpu, "server_cpu_us_per_frame": us,
            "on_time_pct": on_time, "fps_per_viewer_min": 25.0, "fps_per_viewer_median": 25.0, "stale_frames": 0,
            "seeks": 4, "seek_p50_ms": 1.0, "seek_p99_ms": 2.0, "bytes_per_frame": 4000.0, "bytes_per_viewer_s": 100000.0,
            "server_rss_mb": 50.0, "loadgen_cpu_pct": 5.0, "server_wait_pct": 0.1, **kw}  # fmt: skip


def doc_with(designs):
    return {
        "command": "racecast bench --quick", "date": "2026-01-01 00:00 UTC", "elapsed_s": 42.0,
        "profile": {"name": "quick", "warmup": 0.5, "window": 1.5, "seekers": 10, "seeks": 2},
        "machine": {"cpus": 2, "cpu_model": "Test CPU", "kernel": "6.1", "python": "3.11", "event_loop": "uvloop",
                    "uvicorn": "0", "websockets": "0", "load_avg_start": [0.5, 0, 0], "load_avg_end": [0.7, 0, 0]},
        "pinning": {"server_cpu": 0, "loadgen_cpu": 1},
        "race": {"source": "synthetic", "laps": 4, "frames": 9000, "drivers": 20, "payload_bytes_per_frame": 4400.0},
        "designs": designs,
    }  # fmt: skip


def test_summary_ratios_targets_and_largest_on_time_n():
    doc = doc_with({
        "racecast": {"points": [point(100, us=20), point(1000, us=18), point(3000, on_time=97.0, cpu=95, us=17)], "paused": [],
                     "stopped": {"1.0": "server CPU saturated"}},
        "seed": {"points": [point(100, cpu=60, us=300, on_time=2.0)], "paused": [{**point(100), "server_cpu_pct": 25.0}], "stopped": {}},
        "floor": {"points": [point(100, us=15), point(1000, us=12), point(3000, us=11, cpu=80)], "paused": [], "stopped": {}},
    })  # fmt: skip
    s = report.summarise(doc)
    assert s["designs"]["racecast"]["max_on_time_1x"] == 1000
    assert s["designs"]["seed"]["max_on_time_1x"] == 0
    assert s["designs"]["floor"]["max_on_time_1x"] == 3000
    assert s["ratios"]["racecast_vs_seed"]["at_viewers"] == 100
    assert s["ratios"]["racecast_vs_seed"]["cpu_us_per_frame"] == pytest.approx(20 / 300, abs=1e-3)
    assert s["ratios"]["racecast_vs_floor"]["at_viewers"] == 1000  # 3000 is CPU-bound for racecast
    # CPU per frame: the median of the per-N ratios (20/15 at 100, 18/12 at 1000).
    assert s["ratios"]["racecast_vs_floor"]["cpu_us_per_frame"] == pytest.approx((20 / 15 + 18 / 12) / 2, abs=1e-3)
    assert s["ratios"]["racecast_vs_floor"]["cpu_us_per_frame_range"] == [1.333, 1.5]
    assert s["targets"]["viewers_1x_on_time"]["met"] is False  # it fell below 99% at 3,000
    quick = report.summarise(doc_with({**doc["designs"], "racecast": {"points": [point(100), point(1000)], "paused": [], "stopped": {}}}))
    assert quick["targets"]["viewers_1x_on_time"]["met"] is None  # never tried 2,500: cannot tell
    bound = {"points": [point(100), point(1000)], "paused": [], "stopped": {"1.0": "load generator saturated (client-bound)"}}
    assert report.summarise(doc_with({**doc["designs"], "racecast": bound}))["targets"]["viewers_1x_on_time"]["met"] is None
    cpu = {"points": [point(100), point(1000, cpu=95.0)], "paused": [], "stopped": {"1.0": "server CPU saturated"}}
    assert report.summarise(doc_with({**doc["designs"], "racecast": cpu}))["targets"]["viewers_1x_on_time"]["met"] is False
    assert s["targets"]["cpu_per_frame_vs_floor"]["met"] is True
    md = report.markdown({**doc, "summary": s}, png_name="p.png", json_name="r.json")
    assert "it delivers 25.0 frames/s per viewer at 1x" in md and "100 paused viewers 25.0% of a core" in md
    assert s["targets"]["stale_frames"]["met"] is True
    assert s["designs"]["seed"]["paused_cpu_pct"] == {"100": 25.0}


def test_markdown_json_and_section_writer(tmp_path):
    doc = doc_with({
        "racecast": {"points": [point(100), point(1000, on_time=98.0, saturated="on time fell below 99%")], "paused": [], "stopped": {"1.0": "on time fell below 99%"}},
        "seed": {"error": "seed server exited with 1: boom", "points": [], "paused": [], "stopped": {}},
        "floor": {"points": [point(100, us=10), point(1000, us=9)], "paused": [], "stopped": {}},
    })  # fmt: skip
    doc["summary"] = report.summarise(doc)
    json.loads(json.dumps(doc))  # the results document is plain JSON
    md = report.markdown(doc, png_name="perf.png", json_name="results/x.json")
    assert "## Streaming benchmark" in md and "`racecast bench --quick`" in md and "Test CPU" in md
    assert "![Server CPU vs viewers](perf.png)" in md
    assert "not run — seed server exited with 1: boom" in md
    assert "1,000 ⚑" in md  # the saturated point is marked
    assert "**missed**" in md  # 100 viewers on time < 2,500
    perf = tmp_path / "performance.md"
    perf.write_text("# Performance\n\n<!-- ingest:start -->\ningest numbers\n<!-- ingest:end -->\n")
    report.write_section(perf, md)
    report.write_section(perf, md.replace("Test CPU", "Other CPU"))
    text = perf.read_text()
    assert "ingest numbers" in text and text.count("## Streaming benchmark") == 1
    assert "Other CPU" in text and "Test CPU" not in text
    png = tmp_path / "perf.png"
    report.plot(doc, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saturation_rules():
    first = point(1)
    assert harness.saturation(point(10), first, False) is None
    assert "client-bound" in harness.saturation(point(10, loadgen_cpu_pct=95.0), first, False)
    assert "CPU" in harness.saturation(point(10, cpu=92.0, on_time=50.0), first, False)
    assert harness.saturation(point(10, cpu=92.0), first, True) is None  # CPU-bound but still on time: go on
    assert "frame rate" in harness.saturation(point(10, fps_per_viewer_median=20.0), first, False)
    assert harness.saturation(point(10, on_time=95.0), first, True) is None  # one noisy point does not stop it
    assert "on time" in harness.saturation(point(10, on_time=95.0), first, True, failed_last=True)
    assert harness.saturation(point(10, on_time=5.0), first, False) is None  # never passed: keep measuring CPU
    assert "failed" in harness.saturation({**point(100), "failed": 5}, first, False)
    assert harness.saturation({"n": 10, "error": "boom"}, first, False).startswith("error")


def test_procstat_reads_this_process():
    t0 = procstat.cpu_seconds(os.getpid())
    x = 0
    for i in range(300_000):
        x += i
    assert procstat.cpu_seconds(os.getpid()) > t0
    assert procstat.rss_bytes(os.getpid()) > 1_000_000
    assert procstat.wait_seconds(os.getpid()) >= 0


def test_profile_top_and_its_markdown():
    from benchmarks import profile

    raw = "main (a.py:1);serve (racecast/engine.py:5);write (racecast/transport.py:9) 6\nmain (a.py:1);idle (b.py:2) 2\n\n"
    top = profile.top(raw, 5, inclusive_filter="racecast/")
    assert top["samples"] == 8
    assert top["self"] == [[75.0, "write (racecast/transport.py:9)"], [25.0, "idle (b.py:2)"]]
    assert sorted(top["inclusive"]) == [[75.0, "serve (racecast/engine.py:5)"], [75.0, "write (racecast/transport.py:9)"]]
    md = "\n".join(report.profile_markdown({"n": 1500, "speed": 1.0, "point": {"server_cpu_pct": 70.0}, **top}))
    assert "1,500 viewers" in md and " 75.0%  write (racecast/transport.py:9)" in md
    assert "No profile: py-spy not installed" in "\n".join(report.profile_markdown({"error": "py-spy not installed"}))


def test_racecast_bench_command_finds_the_harness_and_refuses_unknown_designs():
    from typer.testing import CliRunner

    from racecast.cli import app

    r = CliRunner().invoke(app, ["bench", "--designs", "racecast,nope"])
    assert r.exit_code == 2
    assert "unknown design" in (r.output + str(r.stderr_bytes or b""))


def test_viewers_per_core_is_estimated_from_the_largest_point() -> None:
    from benchmarks.streaming_report import viewers_per_core

    pts = [
        {"n": 100, "server_cpu_pct": 8.0},
        {"n": 2000, "server_cpu_pct": 80.0},
        {"n": 3000, "error": "connect failed"},
        {"n": 500, "server_cpu_pct": 20.0},
    ]
    assert viewers_per_core(pts) == {"viewers": 2500, "at_n": 2000, "cpu_pct": 80.0}
    assert viewers_per_core([{"n": 10, "error": "x"}]) is None


def test_racecast_bench_from_an_installed_package_says_it_needs_a_checkout(tmp_path, monkeypatch):
    """Installed (no benchmarks/ beside the package), `racecast bench` refuses with a clear reason."""
    from typer.testing import CliRunner

    from racecast import cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "racecast" / "cli.py"))
    r = CliRunner().invoke(cli.app, ["bench", "--quick"])
    assert r.exit_code != 0
    assert "source checkout" in (r.output + str(r.stderr_bytes or b""))
