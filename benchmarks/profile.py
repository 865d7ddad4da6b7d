"""Sample a running server with py-spy and keep the top of the profile for the report.

py-spy is optional (``pip install py-spy``); without it the report says so.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def find_py_spy() -> str | None:
    """py-spy beside this interpreter (the venv) or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> str | None:
    """Sample ``pid`` for ``seconds`` into ``out`` (py-spy raw format); returns an error or None."""
    exe = find_py_spy()
    if exe is None:
        return "py-spy not installed (pip install py-spy)"
    cmd = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return "py-spy timed out"
    if r.returncode != 0 or not out.exists():
        return f"py-spy failed ({r.returncode}): {(r.stderr or r.stdout)[-300:].strip()}"
    return None


def top(raw: str, n: int = 15, inclusive_filter: str | None = None) -> dict[str, Any]:
    """Top frames of a py-spy raw profile (``frame;frame;... count`` per line).

    ``self``: where samples were taken (the line that was running), ``inclusive``: frames on
    the stack (only those whose text contains ``inclusive_filter``, if given), each as
    ``[percent, frame]``, most first.
    """
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        line = line.strip()
        if not line or " " not in line:
            continue
        stack, count = line.rsplit(" ", 1)
        try:
            k = int(count)
        except ValueError:
            continue
        frames = stack.split(";")
        total += k
        self_c[frames[-1]] += k
        for f in set(frames):
            if inclusive_filter is None or inclusive_filter in f:
                incl[f] += k
    pct = lambda c: [[round(100.0 * v / total, 1), f] for f, v in c.most_common(n)] if total else []  # noqa: E731
    return {"samples": total, "self": pct(self_c), "inclusive": pct(incl)}
