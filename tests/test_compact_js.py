"""The viewer's JS decoder (src/racecast/viewer/compact.js), run in Node, agrees with the Python decoder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from racecast.bundle import open_bundle, write_bundle
from racecast.bundle.chunks import decode_chunk
from racecast.bundle.compact import decode_compact
from tests.test_compact import varied_race

SCRIPT = Path(__file__).parent / "js" / "compact_node.mjs"


def node(mode: str, bundle: Path) -> dict:
    exe = shutil.which("node")
    assert exe, "Node.js (>= 18) is needed for the JS decoder tests: apt-get install nodejs"
    out = subprocess.run([exe, str(SCRIPT), mode, str(bundle)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory) -> Path:
    # Format 2: the Node driver reads every stream straight from its files (v3 derives them when served).
    return write_bundle(varied_race(), tmp_path_factory.mktemp("js") / "varied", format_version=2)


def test_js_decodes_every_frame_and_chunk_like_python(bundle_path):
    got = node("decode", bundle_path)
    b = open_bundle(bundle_path)
    s = b.streams["compact"]
    key = None
    assert len(got["compact"]) == s.count
    for i in range(s.count):
        f = decode_compact(s[i], key)
        key = f.key
        assert got["compact"][i] == f.to_dict(), f"frame {i}"
    chunks = b.streams["chunks"]
    assert len(got["chunks"]) == len(got["gz"]) == chunks.count
    for c in range(chunks.count):
        want = decode_chunk(chunks[c]).frames()
        assert got["chunks"][c] == want, f"chunk {c}"
        assert got["gz"][c] == want, f"gzip chunk {c}"
    assert got["multi"] == got["chunks"][1] + got["chunks"][2]
    assert got["combined_key"] == 25
    assert got["combined"] == decode_compact(bytes(s[25]) + bytes(s[30])).to_dict()
    b.close()


def test_js_refuses_bad_input_with_decode_errors_only(bundle_path):
    r = node("fuzz", bundle_path)  # exits non-zero on any error other than DecodeError
    assert r["truncated"] > 100 and r["errors"] > 0 and r["gzErrors"] == 2
