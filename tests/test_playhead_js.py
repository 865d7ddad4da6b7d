"""Chunk mode's playhead and chunk buffer (src/racecast/viewer/playhead.js), tested in Node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent / "js" / "playhead.test.mjs"


def test_playhead_and_chunk_buffer_in_node() -> None:
    exe = shutil.which("node")
    assert exe, "Node.js (>= 18) is needed for the JS tests: apt-get install nodejs"
    out = subprocess.run([exe, "--test", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout and "# pass 8" in out.stdout, out.stdout
