"""The real-data pack for tests: ``../shared/realdata`` beside the checkout (never committed).

``require_pack()`` skips a test with a clear reason when the pack is missing, except under
``CI=true`` where a missing pack is a failure (CI clones it beside the repository). Races
are built once per test session (``real_race``) and never written as bundles here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

from racecast.accuracy import realdata

RACES = ("2025_2_R", "2025_15_R")
QUALI = ("2025_1_Q",)


def pack() -> Path:
    return realdata.find_pack()


def require_pack(session: str | None = None) -> Path:
    """The session folder (or the pack); skip when missing, fail under CI=true."""
    p = pack()
    where = p / session if session else p
    ok = (where / "truth.json").is_file() if session else bool(realdata.sessions(p))
    if not ok:
        msg = f"real-data pack not found at {where} (expected ../shared/realdata beside the checkout, or $RACECAST_REALDATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}: CI=true requires it")
        pytest.skip(msg)
    return where


@functools.lru_cache(maxsize=1)
def real_race(session: str, path: str) -> Any:
    """The session ingested one way (the last one is cached: a real race holds ~0.5 GB, so
    group tests by (session, path), e.g. with a class-scoped parametrization)."""
    return realdata.load_race(require_pack(session), path)


@functools.lru_cache(maxsize=None)
def truth(session: str) -> dict[str, Any]:
    return realdata.load_truth(require_pack(session))


@functools.lru_cache(maxsize=None)
def scores(session: str, path: str) -> dict[str, Any]:
    """Metric key -> Result for the session ingested one way."""
    from racecast.accuracy import score

    t = truth(session)
    return {r.key: r for r in score(real_race(session, path), t, path, realdata.clock_shift(t, path))}
