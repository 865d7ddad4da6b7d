"""A replay's msgpack blocks built into the disk cache ahead of use: by ``racecast warm``, or in the
background once a msgpack viewer of the server first plays the replay.

Format 3 derives the seed-compatible msgpack frames a block (100 frames) at a time
(``streams.Deriver``) and keeps each built block on disk (``diskcache.py``). A block
nobody has built yet costs whoever needs it first a build, ~2-3 ms of CPU, where a
disk read costs ~0.3 ms and format 2 (every frame stored) a slice: a few viewers
seeking through a race nobody watched on this machine cost several times what they
cost before format 3. Building the whole replay once, ahead of them, makes every seek
a read. It is work a viewer who plays the whole race makes happen anyway, done ahead,
once per replay per machine (the disk cache outlives the process and is shared by
workers): the 57-lap demo race, 1,233 blocks, took 8.7 s of CPU over 18 s and 600 MB.

The background :class:`Warmer` is bounded like everything else: one thread per process,
one replay at a time, at most :data:`MAX_QUEUED` waiting; the thread runs at the lowest
CPU priority and rests as long as it worked after each block (at most half of the
process's time, never a tick's worth at once); a replay is warmed only when its blocks
fit in the disk cache beside what other replays hold there (it never evicts them);
one process of a machine warms a given replay at a time (a lock file); and
``RACECAST_WARM=0`` turns it off.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from ..errors import Unavailable
from . import diskcache

log = logging.getLogger("racecast.warm")

#: Environment switch of background warming ("0", "false", "no", "off": off; on by default).
ENV = "RACECAST_WARM"
#: Replays waiting for the background thread at most (more are not queued: their viewers build as they go).
MAX_QUEUED = 16
#: After a block that took ``c`` s of CPU the background thread sleeps ``PACE * c``: it takes at most
#: 1 / (1 + PACE) of the process's time, in slices of one block (~3 ms), so the ticker is never held up long.
PACE = 1.0
#: Why a replay is not warmed here: another process of the machine is warming it (not worth a warning).
ELSEWHERE = "another process is warming it"
#: Share of the disk cache's bound a warmed replay may fill together with what is already there.
FILL = 0.9


class WarmRefused(Unavailable, ValueError):
    """A replay that cannot be warmed here (no disk cache, frames stored, too large for the cache)."""

    kind = "warm_refused"


@dataclass
class WarmReport:
    """What one warm did: blocks of the replay, how many it built, its CPU and wall time, or why it stopped."""

    replay: str
    blocks: int = 0
    built: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    refused: str | None = None


def _check(bundle: Any) -> tuple[Any, diskcache.DiskBlockCache, str]:
    s = bundle.streams["msgpack"]
    if not s.derived:
        raise WarmRefused(f"{bundle.id} stores its msgpack frames (format {bundle.format_version}): nothing to build")
    disk = bundle.disk_cache()  # the one its blocks are written to
    if disk is None:
        raise WarmRefused("the disk block cache is off (RACECAST_DISK_CACHE_MB=0): nothing to warm")
    key = bundle.disk_cache_key()
    if key is None:
        raise WarmRefused(f"{bundle.id}: its chunks file is closed")
    return s, disk, key


def warm(bundle: Any, progress: Callable[[float], None] | None = None, *, pace: float = 0.0,
         beside_others: bool = False, go_on: Callable[[], bool] | None = None,
         rest: Callable[[float], Any] = time.sleep) -> WarmReport:  # fmt: skip
    """Build every msgpack block of a format-3 ``bundle`` that the disk cache lacks.

    ``pace``: sleep that many times each block's CPU time after it (0: flat out, ``racecast warm``).
    ``beside_others``: refuse unless the replay fits beside the other replays' blocks (the background
    warm never evicts them); otherwise only unless it fits the cache at all (it would evict its own).
    ``go_on``: asked before each block; False stops the warm (reported as refused). ``rest``: how to wait
    between blocks (the background warmer's wakes up when the warm is cancelled).
    Raises :class:`WarmRefused` when there is nothing it may do; a replay too large for the cache is
    found once its first block is built, and said in the report's ``refused``.
    """
    s, disk, key = _check(bundle)
    n = -(-s.count // s.block_items)
    missing = [k for k in range(n) if not disk.path(key, s.name, k).exists()]
    report = WarmReport(bundle.id, blocks=n)
    t0, c0 = time.monotonic(), time.thread_time()
    sized = False
    for j, k in enumerate(missing):
        if go_on is not None and not go_on():
            report.refused = "stopped: the replay was replaced or closed"
            break
        c1 = time.thread_time()
        nbytes = bundle.store_msgpack_block(k)  # 0 when another process wrote it meanwhile
        if nbytes:
            report.built += 1
            if not sized:
                report.refused = _room_for(bundle, disk, key, nbytes * n, beside_others)
                if report.refused:
                    break
                sized = True
        if progress is not None:
            progress((j + 1) / len(missing))
        if pace > 0:
            rest(pace * (time.thread_time() - c1))
    report.cpu_s = time.thread_time() - c0
    report.wall_s = time.monotonic() - t0
    return report


def _room_for(bundle: Any, disk: diskcache.DiskBlockCache, key: str, need: int, beside_others: bool) -> str | None:
    """Why ``need`` bytes of this replay's blocks may not go into the disk cache (None: they may)."""
    room = FILL * disk.max_bytes
    others = disk.usage(exclude=key) if beside_others else 0
    if need + others <= room:
        return None
    held = f" with {_mb(others)} of other replays'" if beside_others else ""
    return (f"{bundle.id} needs about {_mb(need)} of msgpack blocks; the disk cache holds {_mb(disk.max_bytes)}{held} "
            "(raise RACECAST_DISK_CACHE_MB)")  # fmt: skip


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


def _enabled_by_env() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class Warmer:
    """One background thread that warms the replays asked for, one after another (see the module)."""

    def __init__(self, enabled: bool | None = None, pace: float = PACE) -> None:
        self.enabled = _enabled_by_env() if enabled is None else enabled
        self.pace = pace
        self.blocks_built = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.reports: deque[WarmReport] = deque(maxlen=32)
        self._wake = threading.Condition()
        # Bundles are held weakly: the warmer never keeps a replaced or closed bundle alive.
        self._queue: deque[tuple[str, weakref.ref[Any]]] = deque()
        self._asked: set[str] = set()  # disk keys asked for in this process (each warmed once)
        self._current: weakref.ref[Any] | None = None
        self._stop_current = threading.Event()  # set: stop the warm in progress (and wake it from its rest)
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def request(self, bundle: Any) -> bool:
        """Warm ``bundle`` in the background unless it was asked for before (by its identity on disk), it
        derives no msgpack frames, warming is off or the queue is full. True when queued."""
        if not self.enabled:
            return False
        s = bundle.streams.get("msgpack")
        key = bundle.disk_cache_key() if s is not None and s.derived else None
        if key is None:
            return False
        with self._wake:
            if key in self._asked:
                return False
            if len(self._queue) >= MAX_QUEUED:
                log.warning("not warming %s: %d replays are queued for warming already", bundle.id, MAX_QUEUED)
                return False
            self._asked.add(key)
            self._queue.append((key, weakref.ref(bundle)))
            self._idle.clear()
            if self._thread is None:
                # Started once and kept (idle, it costs nothing): a thread that exits takes its CPU time
                # out of per-thread accounting (/proc/PID/task), which the benchmarks read.
                self._thread = threading.Thread(target=self._run, name="racecast-warm", daemon=True)
                self._thread.start()
            self._wake.notify()
        return True

    def cancel(self, bundle: Any) -> None:
        """Stop warming ``bundle`` (replaced or closed): unqueued, or stopped before its next block."""
        with self._wake:
            self._queue = deque(e for e in self._queue if e[1]() is not bundle)
            if self._current is not None and self._current() is bundle:
                self._stop_current.set()

    def wait(self, timeout: float) -> bool:
        """Whether every queued warm is done, after waiting up to ``timeout`` s."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        _lowest_priority()
        while True:
            with self._wake:
                while not self._queue:
                    self._current = None
                    self._idle.set()
                    self._wake.wait()
                key, ref = self._queue.popleft()
                self._current = ref
                self._stop_current.clear()
            bundle = ref()
            if bundle is None:
                continue
            report = self._warm_one(key, bundle)
            del bundle
            self.reports.append(report)
            self.blocks_built += report.built
            self.cpu_s += report.cpu_s
            self.wall_s += report.wall_s
            if report.refused:
                (log.info if report.refused == ELSEWHERE else log.warning)("not warming %s: %s", report.replay, report.refused)
            else:
                log.info("warmed %s: %d of %d msgpack blocks built into the disk cache, %.2f s of CPU over %.1f s",
                         report.replay, report.built, report.blocks, report.cpu_s, report.wall_s)  # fmt: skip

    def _warm_one(self, key: str, bundle: Any) -> WarmReport:
        disk = bundle.disk_cache()
        if disk is None:
            return WarmReport(bundle.id, refused="the disk block cache is off")
        lock = _try_lock(disk.root / f".{key}.warming")
        if lock is None:
            return WarmReport(bundle.id, refused=ELSEWHERE)
        try:
            stop = self._stop_current
            return warm(bundle, pace=self.pace, beside_others=True, go_on=lambda: not stop.is_set(), rest=stop.wait)
        except WarmRefused as e:
            return WarmReport(bundle.id, refused=str(e))
        except Exception as e:  # a damaged block, a closed bundle: its viewers get the error when they reach it
            return WarmReport(bundle.id, refused=f"stopped: {e}")
        finally:
            lock.close()  # releases the lock


def _try_lock(path: Path) -> IO[bytes] | None:
    """An exclusive lock on ``path`` held while the returned file is open; None when another process
    holds it (or the directory cannot be written: then there is no disk cache to fill either)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "ab")
    except OSError:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _lowest_priority() -> None:
    """Nice 19 for the calling thread only (Linux: a thread's id is a ``PRIO_PROCESS`` target)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


#: The warmer of the process (servers ask it; ``racecast warm`` calls :func:`warm` directly).
WARMER = Warmer()
