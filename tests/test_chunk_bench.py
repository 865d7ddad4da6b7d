"""The chunk-mode viewers benchmark: its verdicts on synthetic logs, and the script end to end on a tiny case."""

from __future__ import annotations

import gzip
import json
import os
import sys
import subprocess
from pathlib import Path

from benchmarks.chunk_viewers import chunk_verdicts, first_frame_of
from racecast.bundle import open_bundle, write_bundle
from tests.factories import tiny_race

ROOT = Path(__file__).resolve().parents[1]


def play_state(t: float, frame: int, playing: bool = True, speed: float = 1.0) -> tuple[float, dict]:
    return t, {"type": "state", "playing": playing, "speed": speed, "frame": frame, "seq": 1, "ended": False}


def test_a_chunk_is_on_time_only_if_it_came_before_the_playhead_reached_it():
    # Playing from frame 100 at t=10 (1x): chunk 5 (frames 125..) is needed at t=11, chunk 6 at t=12, chunk 7 at t=13.
    states = [play_state(9.9, 100, playing=False), play_state(10.0, 100)]
    arrivals = [(9.95, 100), (10.01, 125), (11.5, 150), (13.2, 175)]
    v = chunk_verdicts(arrivals, states, t0=10.5, t1=14.5)
    assert (v["needed"], v["on_time"], v["late"], v["missing"]) == (4, 2, 1, 1)  # chunk 8 (t=14) never came
    assert sorted(round(x, 2) for x in v["leads"]) == [-0.2, 0.5, 0.99]


def test_the_chunk_a_seek_lands_in_is_needed_at_the_seek_target_not_its_first_frame():
    states = [play_state(10.0, 50), play_state(20.0, 310)]  # a seek while playing, into chunk 12 (300..324)
    v = chunk_verdicts([(20.01, 300)], states, t0=19.5, t1=20.5)
    assert v["needed"] == 1 and v["late"] == 1  # needed at 20.0 (frame 310): 10 ms late
    v = chunk_verdicts([(19.99, 300)], states, t0=19.5, t1=20.5)
    assert v["on_time"] == 1
    # Paused: nothing is needed.
    v = chunk_verdicts([], [play_state(10.0, 50, playing=False)], t0=10.0, t1=20.0)
    assert v["needed"] == 0


def test_first_frame_is_read_from_raw_and_gzip_chunks(tmp_path):
    b = open_bundle(write_bundle(tiny_race(n_frames=200, n_drivers=3, race_id="ff"), tmp_path / "ff"))
    for c in range(b.streams["chunks"].count):
        assert first_frame_of(b.streams["chunks"][c]) == 25 * c
        assert first_frame_of(b.streams["chunks.gz"][c]) == 25 * c
        assert first_frame_of(gzip.compress(bytes(b.streams["chunks"][c]))) == 25 * c
    b.close()


def test_the_benchmark_runs_on_a_tiny_case_and_writes_its_section(tmp_path):
    md = tmp_path / "perf.md"
    out = tmp_path / "doc.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.chunk_viewers", "--viewers", "4", "--window", "1.5", "--warmup", "0.5",
         "--laps", "2", "--out", str(md), "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    (p,) = doc["points"]
    assert "error" not in p, p
    assert p["connected"] == 4 and p["failed"] == 0 and p["bad_frames"] == 0 and p["no_chunk"] == 0
    assert p["needed"] == p["on_time"] + p["late"] + p["missing"] and p["needed"] >= 4  # each plays >= 1 chunk
    assert p["server_cpu_s"] > 0 and p["viewers_per_core"] > 0
    text = md.read_text()
    assert "<!-- chunk-viewers:start -->" in text and "## Chunk-mode viewers per core" in text
    assert "| 4 of 4 |" in text


def test_engine_micro_benchmark_counts_visits(capsys):
    from benchmarks import engine_micro

    assert engine_micro.main(["--viewers", "20", "--seconds", "10", "--reps", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames (msgpack)"]["visits_per_viewer_second"] == 25.0  # every tick
    assert out["chunks (gzip)"]["visits_per_viewer_second"] <= 1.5  # about one per chunk (one per second), not 25
    assert out["frames (msgpack)"]["frames_sent"] >= 20 * 240  # a frame per tick per viewer
