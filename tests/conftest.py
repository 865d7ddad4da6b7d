"""Session-wide test setup: keep the suite out of the user's home directory.

The msgpack block cache on disk (``racecast.bundle.diskcache``) defaults to
``~/.cache/racecast/blocks``; every bundle a test writes is new, so a run would only
leave files there. The suite points it at a temporary directory instead, inherited by
every server process a test starts, and removes it at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_ENV = "RACECAST_DISK_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(_ENV):  # the caller chose one: leave it
        return
    d = tempfile.mkdtemp(prefix="racecast-test-blocks-")
    os.environ[_ENV] = d
    config._racecast_disk_cache = d  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    d = getattr(config, "_racecast_disk_cache", None)
    if d:
        shutil.rmtree(d, ignore_errors=True)
        os.environ.pop(_ENV, None)
