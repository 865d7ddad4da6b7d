"""Real redis-server and nginx for tests, unprivileged, on free ports, in a temporary directory.

`make test` installs both (Debian packages). Without them a test skips with the reason,
except under CI=true, where a missing service is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.common import NGINX, free_port, wait_port  # noqa: F401 - re-exported: tests take them from here
from benchmarks.common import RedisServer as _RedisServer


def require(binary: str, package: str) -> str:
    """The path of ``binary``; skip (fail under CI=true) when it is not installed."""
    path = shutil.which(binary) or (binary if os.access(binary, os.X_OK) else None)
    if path is None:
        msg = f"{binary} is not installed (Debian package {package}; `make services` installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class RedisServer(_RedisServer):
    """``redis-server`` on 127.0.0.1:<free port> (benchmarks/common.py); skips when it is not installed."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, require("redis-server", "redis-server"))
