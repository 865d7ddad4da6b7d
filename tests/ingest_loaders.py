"""Loaders for server-side ingest tests: FastF1-shaped data, no network (they run in the ingest child).

Each is ``fn(year, round, session, progress) -> Race``. They talk to the test through
the directory in ``$RACECAST_TEST_INGEST``: ``calls`` gets one line per ingest (so a test
counts how many ran), and a loader that waits for ``go`` holds there until the test
creates that file, so clients can connect while the job is known to be running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from racecast.race import Race
from racecast.sources import IngestError

Progress = Callable[[str, float], None]


def _dir() -> Path:
    return Path(os.environ["RACECAST_TEST_INGEST"])


def _record(year: int, round_num: int, session: str) -> None:
    with open(_dir() / "calls", "a") as f:
        f.write(f"{year} {round_num} {session} {os.getpid()}\n")


def _wait_for_go(progress: Progress, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    k = 0
    while not (_dir() / "go").exists():
        if time.monotonic() > end:
            raise IngestError("test loader: no 'go' within 30 s")
        progress("load", min(0.5, 0.01 * k))  # the child throttles these
        k += 1
        time.sleep(0.02)


def _tiny(progress: Progress) -> Race:
    from racecast.sources.fastf1 import race_from_fastf1_frames
    from tests.fastf1_shapes import race_frames

    frames, _ = race_frames(total_laps=2)
    return race_from_fastf1_frames(frames, fps=5, progress=progress)


def tiny_race(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """A 2-lap, 7-car FastF1-shaped race at 5 fps, after the test says go."""
    _record(year, round_num, session)
    _wait_for_go(progress)
    progress("load", 1.0)
    return _tiny(progress)


def tiny_race_now(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """Like :func:`tiny_race` without waiting."""
    _record(year, round_num, session)
    progress("load", 1.0)
    return _tiny(progress)


def flood(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """Reports progress 20,000 times as fast as it can, then gives the tiny race."""
    _record(year, round_num, session)
    for k in range(20_000):
        progress("load", k / 20_000)
    return _tiny(progress)


def fails(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """Gets going, then fails the way FastF1 does offline."""
    _record(year, round_num, session)
    _wait_for_go(progress)
    raise IngestError(f"FastF1 cannot find {year} event {round_num} session {session}: test failure")


def hangs(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """Reports a little progress, then never finishes (the test kills or times it out)."""
    _record(year, round_num, session)
    progress("load", 0.2)
    time.sleep(600)
    raise AssertionError("unreachable")


def written_meanwhile(year: int, round_num: int, session: str, progress: Progress) -> Race:
    """Someone else (``racecast ingest``) writes the bundle while this loads: theirs stays."""
    from racecast.bundle import write_bundle
    from tests.factories import tiny_race

    _record(year, round_num, session)
    sid = f"{year}_{round_num}_{session}"
    write_bundle(tiny_race(n_frames=50, n_drivers=2, race_id=sid), Path((_dir() / "data_dir").read_text()) / sid)
    return _tiny(progress)
