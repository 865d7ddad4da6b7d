"""Every figure in a generated document comes from the run that wrote it.

A benchmark's Markdown is rendered twice: from its results, and from the same results with
every number scaled. A line that holds a figure but reads the same both times did not take
that figure from the results: it was written into the generator (a past run's profile, a
target labelled with an issue number, a reference measured once by hand).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from benchmarks import bandwidth, before_after, chunk_viewers, rooms, seed_viewers
from benchmarks import streaming_report

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"\d")


def scaled(doc: Any, k: float = 3.0) -> Any:
    """``doc`` with every number multiplied by ``k`` (ints stay ints; flags and strings stay)."""
    if isinstance(doc, bool) or isinstance(doc, str) or doc is None:
        return doc
    if isinstance(doc, int):
        return doc * int(k)
    if isinstance(doc, float):
        return doc * k
    if isinstance(doc, dict):
        return {key: scaled(v, k) for key, v in doc.items()}
    if isinstance(doc, list):
        return [scaled(v, k) for v in doc]
    return doc


def fixed_lines(render: Callable[[Any], str], doc: Any, allowed: tuple[str, ...], constants: Any = None) -> list[str]:
    """Lines with a figure that do not change when the results do (``allowed``: prefixes of lines
    that name a command or a constant definition, not a result). ``constants``: (module, names) of
    named constants the text may quote (the method, not a result): scaled too for the second render."""
    a = render(doc).splitlines()
    saved = {}
    if constants is not None:
        module, names = constants
        saved = {n: getattr(module, n) for n in names}
        for n, v in saved.items():
            setattr(module, n, scaled(v))
    try:
        b = set(render(scaled(doc)).splitlines())
    finally:
        for n, v in saved.items():
            setattr(constants[0], n, v)
    headers = {line for line, below in zip(a, a[1:]) if below.startswith("|---")}  # table column names
    return [line for line in a if FIGURE.search(line) and line in b and line not in headers and not line.startswith(allowed)]


def test_chunk_viewers_section_has_no_figure_the_run_did_not_measure() -> None:
    docs = sorted((ROOT / "benchmarks" / "results").glob("*-chunk-viewers.json"))
    assert docs, "no chunk-viewers results in benchmarks/results"
    doc = json.loads(docs[-1].read_text())
    assert fixed_lines(chunk_viewers.markdown, doc, ("Command:",)) == []


def test_the_check_catches_a_hard_coded_figure() -> None:
    def render(doc: dict) -> str:
        return f"measured {doc['n']} viewers\nabout 45% in the socket write"

    assert fixed_lines(render, {"n": 4}, ()) == ["about 45% in the socket write"]


def test_bandwidth_section_has_no_figure_the_run_did_not_measure() -> None:
    r = bandwidth.run(1, 0, 50)
    render = lambda doc: bandwidth.markdown(doc, "python -m benchmarks.bandwidth --laps 1")  # noqa: E731
    allowed = (
        "Command:",
        "Target:",  # the goals, named constants (TARGET_KB_PER_S)
        "Every fast channel costs about one byte",  # prose: a varint's minimum is one byte
        "Decode time per frame (best of 3)",  # how it measures, not what
    )
    assert fixed_lines(render, r, allowed) == []


def test_rooms_section_has_no_figure_the_run_did_not_measure() -> None:
    r = json.loads((ROOT / "benchmarks" / "results" / "rooms.json").read_text())
    constants = (rooms, ("FPS", "GAP_STEP_S", "COMMAND_INTERVAL_S"))
    assert fixed_lines(rooms.render, r, ("`python -m benchmarks.rooms`", "127.0.0.1"), constants) == []


def test_seed_viewers_section_has_no_figure_the_run_did_not_measure() -> None:
    docs = sorted((ROOT / "benchmarks" / "results").glob("*-seed-viewers.json"))
    assert docs, "no seed-viewers results in benchmarks/results"
    doc = json.loads(docs[-1].read_text())
    assert fixed_lines(seed_viewers.render, doc, ("Command:",), (seed_viewers, ("FPS", "RAF_HZ", "SPEEDS"))) == []


def test_streaming_section_has_no_figure_the_run_did_not_measure() -> None:
    docs = sorted((ROOT / "benchmarks" / "results").glob("*-full.json"))
    assert docs, "no full streaming results in benchmarks/results"
    doc = json.loads(docs[-1].read_text())
    constants = (streaming_report, ("FPS", "TOLERANCE_PERIODS", "HANDSHAKES_IN_FLIGHT", "MAX_LOADGEN_CPU", "LOADGEN_CAUTION", "BUSY_WAIT_PCT"))
    render = lambda d: streaming_report.markdown(d, png_name="p.png", json_name="r.json")  # noqa: E731
    assert fixed_lines(render, doc, ("Command:", "| viewers per core at 1x"), constants) == []


def test_before_after_section_has_no_figure_the_run_did_not_measure() -> None:
    docs = sorted((ROOT / "benchmarks" / "results").glob("*-before-after.json"))
    assert docs, "no before-after results in benchmarks/results"
    doc = json.loads(docs[-1].read_text())
    render = lambda d: before_after.render(d, "r.json")  # noqa: E731
    allowed = ("Command:", "## Streaming before/after format 3", "*cold*:",  # format numbers and the revision compared
               "Server CPU µs per delivered msgpack frame (median of")  # the run's own round count
    assert fixed_lines(render, doc, allowed, (before_after, ("TARGET",))) == []
