"""The command line, end to end: real bundles on disk, real exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from racecast.bundle import write_bundle
from racecast.cli import app
from tests.factories import tiny_race

runner = CliRunner()


@pytest.fixture()
def data(tmp_path):
    d = tmp_path / "data"
    write_bundle(tiny_race(n_frames=200, race_id="tiny"), d / "tiny")
    return d


def run(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def test_inspect_json_by_id_and_by_path(data):
    r = run("inspect", "tiny", "--json", "--data", str(data))
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["id"] == "tiny" and info["frames"] == 200 and info["fps"] == 25
    assert info["driver_codes"] == ["D00", "D01", "D02"]
    assert info["bytes_per_frame"] > 100 and info["size_bytes"] > 0
    r2 = run("inspect", str(data / "tiny"), "--json")
    assert json.loads(r2.stdout)["content_hash"] == info["content_hash"]


def test_inspect_table(data):
    r = run("inspect", "tiny", "--data", str(data))
    assert r.exit_code == 0 and "bytes_per_frame" in r.stdout and "D00 D01 D02" in r.stdout


def test_verify_ok_and_corrupt(data):
    r = run("verify", "tiny", "--data", str(data))
    assert r.exit_code == 0 and "ok: tiny" in r.stdout
    f = data / "tiny" / "streams" / "chunks.gz.bin"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0x55
    f.write_bytes(bytes(raw))
    r = run("verify", "tiny", "--data", str(data))
    assert r.exit_code == 1 and "content hash mismatch" in r.output


def test_truncated_bundle_gives_clear_error_not_traceback(data):
    with open(data / "tiny" / "streams" / "chunks.gz.bin", "r+b") as f:
        f.truncate(10)
    r = run("inspect", "tiny", "--data", str(data))
    assert r.exit_code == 1 and "truncated or damaged" in r.output
    assert "Traceback" not in r.output


def test_missing_and_bad_ids(data):
    r = run("inspect", "nope", "--data", str(data))
    assert r.exit_code == 1 and "no bundle here" in r.output
    r = run("inspect", "../etc", "--data", str(data))
    assert r.exit_code == 1


def test_list_uses_flag_then_env(data, tmp_path):
    r = run("list", "--json", "--data", str(data))
    assert [x["id"] for x in json.loads(r.stdout)] == ["tiny"]
    r = run("list", "--json", env={"RACECAST_DATA": str(data)})
    assert [x["id"] for x in json.loads(r.stdout)] == ["tiny"]
    r = run("list", "--data", str(tmp_path / "empty"))
    assert r.exit_code == 0 and "no replays" in r.stdout


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "racecast"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("racecast ")


def test_ingest_table_and_missing_fastf1(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    t = np.arange(0, 200, 0.2)
    rows = [
        {"time": float(s), "driver": code, "x": 300 * np.cos(s / 20 + k), "y": 300 * np.sin(s / 20 + k)}
        for k, code in enumerate(["AAA", "BBB"])
        for s in t
    ]
    f = tmp_path / "karts.csv"
    pd.DataFrame(rows).to_csv(f, index=False)
    r = run("ingest", "table", str(f), "--id", "karts", "--data", str(tmp_path / "d"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "karts" / "manifest.json").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text("time,driver\n0,AAA\n")
    r = run("ingest", "table", str(bad), "--data", str(tmp_path / "d"))
    assert r.exit_code == 1 and "error:" in r.output and not (tmp_path / "d" / "bad").exists()
    monkeypatch.setitem(sys.modules, "fastf1", None)  # import fastf1 -> ImportError
    r = run("ingest", "fastf1", "2023", "5", "--data", str(tmp_path / "d"))
    assert r.exit_code == 1 and "racecast[fastf1]" in r.output


def test_help_names_the_fastf1_extra_literally():
    # Rich markup would swallow "[fastf1]" and leave users with "pip install 'racecast'".
    r = CliRunner().invoke(app, ["ingest", "fastf1", "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "racecast[fastf1]" in r.output
