"""FastF1's cache for racecast: where it is, offline mode, and what a load could not find.

``racecast ingest fastf1 --offline`` (and ``racecast serve --offline``) load a session
from a FastF1 cache that already holds it, without a single request to the network:
FastF1's own offline mode (``fastf1.Cache.offline_mode(True)``, requests-cache's
``only_if_cached``) answers every request from the cache or with a miss. FastF1 logs
each miss (the log record carries ``offline_cache_miss_url``) and carries on with what
it has, so :class:`CacheMisses` collects those records and :func:`describe_misses`
turns their URLs into the names of the data that is missing ("lap timing",
"position telemetry"...), which the ingest error or report then states.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from racecast.sources import IngestError

#: FastF1's live-timing pages (the last part of their URL) -> what a user knows them as.
LIVE_TIMING_PAGES = {
    "SessionInfo": "session info",
    "DriverList": "driver list",
    "TimingData": "lap timing",
    "TimingAppData": "tyre and stint data",
    "TimingStats": "timing stats",
    "SessionStatus": "session status",
    "TrackStatus": "track status",
    "LapCount": "lap count",
    "Position.z": "position telemetry",
    "CarData.z": "car telemetry",
    "WeatherData": "weather",
    "RaceControlMessages": "race control messages",
    "Index": "event schedule",
}


def default_cache_dir() -> Path | None:
    """FastF1's default cache directory (``FASTF1_CACHE``, else its per-OS default)."""
    env = os.environ.get("FASTF1_CACHE")
    if env:
        return Path(os.path.expanduser(os.path.expandvars(env)))
    if sys.platform == "darwin":
        return Path("~/Library/Caches/fastf1").expanduser()
    if sys.platform == "win32":
        return Path(os.path.expandvars(r"%LOCALAPPDATA%\Temp\fastf1"))
    if sys.platform.startswith("linux"):
        home_cache = Path("~/.cache").expanduser()
        return home_cache / "fastf1" if home_cache.exists() else Path("~/.fastf1").expanduser()
    return None


def configure_cache(ff1: Any, cache_dir: str | os.PathLike[str] | None, *, offline: bool) -> Path | None:
    """Point FastF1 at its cache; with ``offline`` require an existing one and switch offline mode on.

    Online, a given directory is created if missing (None: FastF1's default). Offline,
    the directory must exist (a new empty one could hold nothing), else IngestError
    says which directory was looked for and how to fill it.
    """
    path = Path(os.fspath(cache_dir)) if cache_dir is not None else None
    if offline:
        path = path if path is not None else default_cache_dir()
        if path is None or not path.is_dir():
            where = f"at {path}" if path is not None else "(no default cache directory on this platform)"
            raise IngestError(
                f"--offline needs an existing FastF1 cache, but there is none {where}: "
                "load the session once online with --cache DIR, then use --offline --cache DIR"
            )
    elif path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IngestError(f"cannot create the FastF1 cache directory {path}: {exc}") from exc
    cache = getattr(ff1, "Cache", None)
    if cache is None:
        if offline or path is not None:
            raise IngestError("this FastF1 has no cache to configure (FastF1 >= 3.1 has one): pip install -U fastf1")
        return None
    if path is not None:
        cache.configure(cache_dir=str(path)) if hasattr(cache, "configure") else cache.enable_cache(str(path))
    if offline:
        if not hasattr(cache, "offline_mode"):
            raise IngestError("this FastF1 has no offline mode (FastF1 >= 3.1 has it): pip install -U fastf1")
        cache.offline_mode(True)
    elif hasattr(cache, "offline_mode") and getattr(cache, "_requests_session_cached", None) is not None:
        cache.offline_mode(False)  # a previous offline ingest in this process must not stick
    return path


def describe_url(url: str) -> str:
    """What a FastF1 request URL fetches, in words ("lap timing (TimingData)")."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".jsonStream", ".json"):
        if last.endswith(suffix):
            last = last[: -len(suffix)]
    if "schedule" in last:
        return f"event schedule ({last})"
    if "ergast" in url or "jolpi" in url:
        parts = url.split("/f1/", 1)[-1].split("?")[0].rsplit(".", 1)[0].split("/")
        names = [p for p in parts if p and not p.isdigit()]
        if not names:  # /f1/2025.json: the season
            return f"event schedule (Ergast {parts[0]})"
        what = {"results": "official results", "qualifying": "official results", "sprint": "official results",
                "laps": "lap times"}.get(names[-1], "Ergast data")
        return f"{what} (Ergast {names[-1]})"
    name = LIVE_TIMING_PAGES.get(last)
    return f"{name} ({last})" if name else last


def describe_misses(urls: list[str]) -> list[str]:
    """The distinct data missing from the cache, in the order FastF1 asked for it."""
    out: list[str] = []
    for u in urls:
        d = describe_url(u)
        if d not in out:
            out.append(d)
    return out


class CacheMisses(logging.Handler):
    """Collects the URLs FastF1 found neither online nor (offline) in its cache, while active.

    ``with CacheMisses() as misses: ...`` then ``misses.urls``. Attached to the ``fastf1``
    logger tree (FastF1's loggers propagate to it), whatever its level.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.urls: list[str] = []
        self._logger = logging.getLogger("fastf1")
        self._old_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        url = getattr(record, "offline_cache_miss_url", None)
        if url and url not in self.urls:
            self.urls.append(str(url))

    def __enter__(self) -> "CacheMisses":
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.WARNING:  # misses are logged as warnings
            self._logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)

    def missing(self) -> list[str]:
        return describe_misses(self.urls)


__all__ = ["CacheMisses", "configure_cache", "default_cache_dir", "describe_misses", "describe_url"]
