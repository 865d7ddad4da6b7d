"""The viewer's plain modules tested in Node (tests/js/*.test.mjs: the msgpack converter, commands
and acks, keys, the lap comparison's picker and readout), and the msgpack gap round trip:
Python encoder -> the viewer's converter (viewer/model.js) and the Python one (model_car)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from racecast.bundle.msgpack_frames import decode_msgpack_frame, iter_msgpack_frames, model_car
from tests.factories import tiny_race

JS = Path(__file__).parent / "js"


def node(*args: str) -> str:
    exe = shutil.which("node")
    assert exe, "Node.js (>= 18) is needed for the JS tests: apt-get install nodejs"
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout, out.stdout
    return out.stdout


@pytest.mark.parametrize("script, n", [("model.test.mjs", 3), ("commands.test.mjs", 7), ("compare.test.mjs", 4)])
def test_viewer_modules_in_node(script: str, n: int) -> None:
    out = node("--test", str(JS / script))
    assert f"# pass {n}" in out, out


def test_a_gap_of_exactly_zero_survives_the_msgpack_frames(tmp_path: Path) -> None:
    """A car behind the leader with a gap of exactly 0 (crossing the line together) reads 0, not
    "unknown", in both converters; an unknown gap (NaN) still reads None; the leader reads 0."""
    base = tiny_race(n_frames=30, n_drivers=4)
    pos = base.channels["position"]
    behind = [int(np.flatnonzero(pos[5] == p)[0]) for p in (2, 3, 4)]
    ch = {k: np.array(v) for k, v in base.channels.items()}
    ch["gap"][5, behind[0]] = ch["interval"][5, behind[0]] = 0.0
    ch["gap"][5, behind[1]] = ch["interval"][5, behind[1]] = np.nan
    ch["interval"][5, behind[2]] = 0.25
    race = dataclasses.replace(base, channels=ch)
    payloads = [bytes(p) for p in iter_msgpack_frames(race, 5, 6)]
    codes = race.codes
    leader = codes[int(np.flatnonzero(pos[5] == 1)[0])]
    want = {
        leader: [0.0, 0.0],
        codes[behind[0]]: [0.0, 0.0],
        codes[behind[1]]: [None, None],
        codes[behind[2]]: [0.5, 0.25],
    }
    # the seed's clients still read a plain 0 (the sign bit is all that marks a known 0)
    raw = decode_msgpack_frame(payloads[0])["drivers"][codes[behind[0]]]
    assert raw["gap_to_leader"] == 0 and math.copysign(1.0, raw["gap_to_leader"]) < 0
    py = {c: [car["gap"], car["interval"]] for c, car in ((c, model_car(car, race.geometry.length)) for c, car in decode_msgpack_frame(payloads[0])["drivers"].items())}
    assert py == want
    f = tmp_path / "frames.bin"
    f.write_bytes(b"".join(len(p).to_bytes(4, "big") + p for p in payloads))
    out = node(str(JS / "model.test.mjs"), str(f))
    (line,) = [ln for ln in out.splitlines() if ln.startswith("GAPS ")]
    (js,) = json.loads(line[5:])
    assert {c: [None if v is None else pytest.approx(v) for v in g] for c, g in js.items()} == want
