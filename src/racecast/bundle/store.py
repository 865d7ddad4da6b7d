"""The data directory: bundles stored by id, opened once per process and shared."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import platformdirs

from .format import FORMAT_VERSION, MANIFEST, BundleError, validate_id
from .open import Bundle, open_bundle

ENV_VAR = "RACECAST_DATA"
log = logging.getLogger("racecast.bundle")
#: Hidden temporary directories untouched this long (s) are a killed writer's: removed on open/list.
ORPHAN_AGE = 3600.0


def default_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` if given, else ``$RACECAST_DATA``, else the per-user data directory."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("racecast", appauthor=False))


class DataDir:
    """Bundles under one directory, by id. :meth:`open` caches: one mapping per process."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = default_data_dir(root)
        self._open: dict[str, Bundle] = {}
        self._lock = threading.Lock()

    def path_of(self, replay_id: str) -> Path:
        """Where bundle ``replay_id`` lives; raises ``ValueError`` for ids that look like paths."""
        return self.root / validate_id(replay_id)

    def ids(self) -> list[str]:
        """Ids of every complete bundle (hidden temporary directories are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    def clean_orphans(self, max_age: float = ORPHAN_AGE) -> list[Path]:
        """Remove writers' hidden temporary directories (``.<id>.tmp-*``, ``.<id>.old-*``) untouched for
        ``max_age`` seconds: what a writer killed mid-write (SIGKILL, power loss) leaves behind.

        A bundle is renamed into place whole, so these are never a replay; a live writer
        touches its directory far more often than ``max_age``. Returns what was removed.
        """
        if not self.root.is_dir():
            return []
        now = time.time()
        removed = []
        for p in self.root.iterdir():
            if not (p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)) or p.is_symlink() or not p.is_dir():
                continue
            try:
                newest = max([p.stat().st_mtime] + [c.stat().st_mtime for c in p.iterdir()])
            except OSError:
                continue
            if now - newest >= max_age:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
        return removed

    def exists(self, replay_id: str) -> bool:
        return (self.path_of(replay_id) / MANIFEST).is_file()

    def open(self, replay_id: str) -> Bundle:
        """The shared, opened bundle ``replay_id``; raises ``KeyError`` if absent, BundleError if damaged."""
        path = self.path_of(replay_id)
        with self._lock:
            b = self._open.get(replay_id)
            if b is None:
                if not (path / MANIFEST).is_file():
                    raise KeyError(replay_id)
                b = self._open[replay_id] = open_bundle(path)
                if b.format_version < FORMAT_VERSION:
                    log.warning(
                        "replay %s is an old bundle (format %d, %.0f MB); `racecast upgrade %s` rewrites it"
                        " as format %d, about 20x smaller", replay_id, b.format_version, b.size_bytes / 1e6,
                        replay_id, FORMAT_VERSION,
                    )  # fmt: skip
            return b

    def forget(self, replay_id: str) -> None:
        """Drop the cached mapping of ``replay_id`` (it was replaced on disk); its users keep their map."""
        with self._lock:
            self._open.pop(replay_id, None)

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per bundle; damaged bundles are listed with their error instead."""
        self.clean_orphans()
        out = []
        for rid in self.ids():
            try:
                out.append(summary(self.open(rid)))
            except (BundleError, ValueError) as e:
                out.append({"id": rid, "status": "damaged", "error": str(e)})
        return out

    def close(self) -> None:
        with self._lock:
            for b in self._open.values():
                b.close()
            self._open.clear()


def summary(b: Bundle) -> dict[str, Any]:
    """The list-view facts of a bundle (what `racecast list` and `GET /api/replays` show)."""
    m = b.manifest
    ev = m.get("event", {})
    return {
        "id": b.id,
        "title": b.title,
        "date": ev.get("date"),
        "frames": b.n_frames,
        "fps": b.fps,
        "duration": round(b.duration, 3),
        "drivers": len(b.drivers),
        "laps": int(m.get("total_laps", 0)),
        "format_version": b.format_version,
        **({"upgrade": f"racecast upgrade {b.id}"} if b.format_version < FORMAT_VERSION else {}),
    }
