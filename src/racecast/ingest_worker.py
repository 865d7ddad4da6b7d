"""The ingest child process: load one session, write its bundle, report progress as JSON lines.

The server (:mod:`racecast.server.ingest`) runs ``python -m racecast.ingest_worker JOB``
where ``JOB`` is a JSON object (``loader``, ``session_id``, ``year``, ``round``,
``session``, ``data_dir``, ``refresh``, ``options``: keyword arguments for the loader). Loading a session (FastF1, pandas, numpy) is
CPU-heavy and holds the GIL; in its own process it cannot stall the server's 25 Hz
playback clock. Progress goes to the parent on the original stdout, one JSON object a
line: ``{"stage": "load", "fraction": 0.4}`` (at most every :data:`PROGRESS_INTERVAL`
seconds per stage, plus every stage's start and end), then exactly one of
``{"done": n_frames}`` or ``{"error": "message"}``. Anything libraries print goes to
stderr. The bundle writer is atomic, so a child killed at any point leaves no bundle.

``loader`` is ``"module:function"``; the function is called as
``fn(year, round, session, progress)`` with ``progress(stage, fraction)`` and returns a
:class:`~racecast.race.Race`. Tests swap in loaders that build FastF1-shaped data
without the network.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, Callable

#: Seconds between two progress reports of one stage (stage boundaries always go out).
PROGRESS_INTERVAL = 0.2
#: Longest error message sent to the parent (characters).
MAX_ERROR_CHARS = 2000


def load_fastf1(
    year: int, round_num: int, session: str, progress: Callable[[str, float], None], *,
    offline: bool = False, cache_dir: str | None = None,
) -> Any:
    """The default loader: a FastF1 session as a Race (``cache_dir``: FastF1's cache, default its own;
    ``offline``: from that cache only, never the network -- ``racecast serve --offline``)."""
    from racecast.sources.fastf1 import load_fastf1_session

    return load_fastf1_session(year, round_num, session, cache_dir=cache_dir, progress=progress, offline=offline)


def resolve_loader(spec: str) -> Callable[..., Any]:
    """The function named by ``"package.module:function"``; ValueError when it is not one."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"loader {spec!r} is not of the form 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"loader {spec!r} cannot be imported: {e}") from None
    if not callable(fn):
        raise ValueError(f"loader {spec!r} is not callable")
    return fn


class Reporter:
    """Sends throttled progress lines to the parent; exits when the parent is gone."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.stage: str | None = None
        self.last = 0.0

    def send(self, obj: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
        except (BrokenPipeError, OSError):  # the server died: nobody wants this bundle now
            os._exit(3)

    def progress(self, stage: str, fraction: float) -> None:
        now = time.monotonic()
        edge = stage != self.stage or fraction <= 0.0 or fraction >= 1.0
        if not edge and now - self.last < PROGRESS_INTERVAL:
            return
        self.stage, self.last = stage, now
        self.send({"stage": str(stage)[:64], "fraction": float(min(max(fraction, 0.0), 1.0))})


def run(job: dict[str, Any], reporter: Reporter) -> None:
    """Load, write and report; every failure becomes one ``{"error": ...}`` line."""
    from racecast.bundle import write_bundle
    from racecast.sources import IngestError

    sid = str(job["session_id"])
    try:
        loader = resolve_loader(str(job["loader"]))
        options = dict(job.get("options") or {})  # only sent when set: test loaders take the four arguments
        race = loader(int(job["year"]), int(job["round"]), str(job["session"]), reporter.progress, **options)
        if race.id != sid:  # the bundle's id is the session id clients asked for
            race = dataclasses.replace(race, id=sid)
        reporter.progress("encode", 0.0)
        write_bundle(race, Path(job["data_dir"]) / sid, overwrite=bool(job.get("refresh")),
                     progress=lambda f: reporter.progress("encode", f))
        reporter.send({"done": int(race.n_frames)})
    except FileExistsError:  # written meanwhile by someone else (`racecast ingest`): that bundle serves
        reporter.send({"done": 0})
    except IngestError as e:
        reporter.send({"error": str(e)[:MAX_ERROR_CHARS]})
    except Exception as e:  # a bug or an unexpected library error: say what, keep the traceback in the log
        traceback.print_exc()
        reporter.send({"error": f"ingest of {sid} failed: {type(e).__name__}: {e}"[:MAX_ERROR_CHARS]})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m racecast.ingest_worker JOB_JSON", file=sys.stderr)
        return 2
    from racecast.ingest_memory import tune_for_ingest

    tune_for_ingest()  # before pandas/pyarrow load: freed memory goes back to the system
    # The protocol owns the real stdout; whatever libraries print goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    run(json.loads(argv[0]), Reporter(out))
    return 0


if __name__ == "__main__":  # pragma: no cover -- run as a child process
    sys.exit(main(sys.argv[1:]))
