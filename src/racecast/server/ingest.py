"""Server-side ingest: sessions asked for by ``POST /api/sessions`` become bundles in the background.

One :class:`Job` per session id: a second request for an id being ingested joins the
running job. At most :data:`MAX_CONCURRENT_INGESTS` run at once, at most
:data:`MAX_QUEUED_INGESTS` more wait; beyond that :meth:`IngestManager.submit` raises
:class:`IngestBusy` (the API answers 503). Each job runs in a child process
(:mod:`racecast.ingest_worker`): FastF1 and pandas are CPU-heavy and hold the GIL,
and the event loop running here also runs the one playback clock of every viewer.
The parent only reads the child's progress lines (async pipe reads) and fans the
latest state out to waiting clients: each waiter sleeps on an event and, when woken,
reads the newest progress (latest wins: a slow client never queues updates).

A lock file per session id (``<data>/.ingest-<id>.lock``, ``flock``) makes server
processes sharing a data directory (``--workers N``) ingest a session once: the
others wait for the lock and then find the bundle written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from ..bundle import DataDir
from ..errors import Busy, Unavailable

log = logging.getLogger("racecast.ingest")

#: Ingests running at once (each is one child process using about one core).
MAX_CONCURRENT_INGESTS = 1
#: Ingests waiting for a slot; one more request for a new session gets 503.
MAX_QUEUED_INGESTS = 4
#: Seconds one ingest may take (download included) before its process is killed.
INGEST_TIMEOUT = 1800.0
#: Failed jobs remembered (their error is shown by GET /api/sessions/{id}); oldest forgotten first.
MAX_REMEMBERED_FAILURES = 64
#: Seconds between two looks at another process's ingest lock.
LOCK_POLL = 0.25
#: The default loader: FastF1 (optional extra); it lives in the light child module.
DEFAULT_LOADER = "racecast.ingest_worker:load_fastf1"
#: Session codes the seed clients send (FastF1 identifiers).
SESSION_CODES = ("R", "S", "Q", "SQ", "SS", "FP1", "FP2", "FP3")
#: FastF1 has position data from this season on.
FIRST_YEAR = 2018

#: Where each loader stage sits in the job's overall progress (start, end) and how it is described.
STAGES: dict[str, tuple[float, float, str]] = {
    "load": (0.02, 0.55, "loading the session data"),
    "prepare": (0.55, 0.60, "reading lap timing"),
    "geometry": (0.60, 0.64, "building the track"),
    "resample": (0.64, 0.78, "resampling telemetry"),
    "order": (0.78, 0.83, "computing the running order"),
    "timing": (0.83, 0.86, "computing timing screens"),
    "encode": (0.86, 1.00, "encoding the replay bundle"),
}

QUEUED, LOADING, DONE, FAILED = "queued", "loading", "done", "failed"


class IngestUnavailable(Unavailable):
    """Ingest cannot run on this server (the loader's dependency is missing)."""

    kind = "ingest_unavailable"


class IngestBusy(Busy):
    """Every ingest slot and queue place is taken."""

    kind = "ingest_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "60"})


def fastf1_missing() -> str | None:
    """The error to show when FastF1 is not importable here (checked without importing it)."""
    from ..sources.fastf1 import MISSING_FASTF1

    try:
        found = importlib.util.find_spec("fastf1") is not None
    except (ValueError, ImportError):  # sys.modules["fastf1"] is None: blocked
        found = False
    return None if found else MISSING_FASTF1


def session_code(session_type: str) -> str | None:
    """The FastF1 session code for what a client sent (case-insensitive), None if it is not one."""
    s = session_type.strip().upper()
    return s if s in SESSION_CODES else None


def check_session(year: int, round_num: int, session_type: str) -> str | None:
    """Why a session cannot be ingested (a message for the client), or None."""
    if session_code(session_type) is None:
        return f"session_type must be one of {', '.join(SESSION_CODES)} to be ingested, got {session_type!r}"
    this_year = _dt.datetime.now(_dt.timezone.utc).year
    if year < FIRST_YEAR:
        return f"FastF1 has position data from {FIRST_YEAR} on; {year} is too early"
    if year > this_year:
        return f"{year} is in the future: no session of it has data yet"
    if round_num < 1:
        return "round_num must be 1 or more to be ingested (round 0 is pre-season testing)"
    return None


@dataclass(frozen=True)
class IngestRequest:
    session_id: str
    year: int
    round: int
    session: str
    refresh: bool = False


class Job:
    """One session's ingest: its state, overall progress and, when it failed, why."""

    def __init__(self, request: IngestRequest) -> None:
        self.request = request
        self.state = QUEUED
        self.progress = 0.0
        self.message = "queued"
        self.error: str | None = None
        self.n_frames = 0
        self.pid: int | None = None
        self.created = time.time()
        self.finished: float | None = None
        self.version = 0
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str:
        return self.request.session_id

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, LOADING)

    def update(self, *, state: str | None = None, progress: float | None = None, message: str | None = None) -> None:
        """Change the job and wake every waiter (progress never goes back)."""
        if state is not None:
            self.state = state
        if progress is not None:
            self.progress = max(self.progress, min(1.0, float(progress)))
        if message is not None:
            self.message = message
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, seen: int) -> None:
        """Return once the job's version is past ``seen``."""
        if self.version == seen:
            await self._changed.wait()

    def status(self) -> dict[str, Any]:
        """The job as ``GET /api/sessions/{id}`` shows it."""
        out: dict[str, Any] = {"session_id": self.session_id, "loading": self.active, "status": self.state,
                               "progress": round(self.progress, 4), "message": self.message}
        if self.error is not None:
            out["error"] = self.error
        return out


def stage_progress(stage: str, fraction: float) -> tuple[float | None, str]:
    """Overall progress and a message for a loader stage (unknown stages don't move the bar)."""
    span = STAGES.get(stage)
    f = min(max(fraction, 0.0), 1.0)
    if span is None:
        return None, f"{stage} ({f:.0%})"
    a, b, text = span
    return a + (b - a) * f, f"{text} ({f:.0%})"


class IngestManager:
    """Runs ingest jobs for one server process. Create and call it from the event loop."""

    def __init__(
        self,
        data: DataDir,
        loader: str = DEFAULT_LOADER,
        *,
        max_concurrent: int = MAX_CONCURRENT_INGESTS,
        max_queued: int = MAX_QUEUED_INGESTS,
        timeout: float = INGEST_TIMEOUT,
        max_failures: int = MAX_REMEMBERED_FAILURES,
        check: Callable[[], str | None] | None = None,
        on_done: Callable[[str], None] | None = None,
        on_outcome: Callable[[str], None] | None = None,
        loader_options: dict[str, Any] | None = None,
    ) -> None:
        if max_concurrent < 1 or max_queued < 0 or timeout <= 0 or max_failures < 1:
            raise ValueError("ingest limits must be positive")
        self.data = data
        self.loader = loader
        #: Keyword arguments for the loader in the child (JSON-able), e.g. FastF1's
        #: ``{"offline": True, "cache_dir": "..."}`` from ``racecast serve --offline``.
        self.loader_options = dict(loader_options or {})
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.timeout = timeout
        self.max_failures = max_failures
        self.check = check if check is not None else (fastf1_missing if loader == DEFAULT_LOADER else None)
        self.on_done = on_done
        self.on_outcome = on_outcome or (lambda _outcome: None)
        self.ingests_started = 0  # child processes started (a test-visible count)
        self._jobs: dict[str, Job] = {}  # active jobs
        self._failed: OrderedDict[str, Job] = OrderedDict()
        self._slots: asyncio.Semaphore | None = None

    # -- queries -----------------------------------------------------------------------------
    def job(self, session_id: str) -> Job | None:
        """The active job for ``session_id``, else its remembered failure, else None."""
        return self._jobs.get(session_id) or self._failed.get(session_id)

    @property
    def active_count(self) -> int:
        return len(self._jobs)

    # -- submitting --------------------------------------------------------------------------
    def submit(self, request: IngestRequest) -> Job:
        """Start (or join) the ingest of ``request.session_id``.

        Raises :class:`IngestUnavailable` when the loader cannot run here and
        :class:`IngestBusy` when the running slots and the queue are full.
        """
        running = self._jobs.get(request.session_id)
        if running is not None:
            return running
        if self.check is not None and (problem := self.check()):
            raise IngestUnavailable(problem)
        limit = self.max_concurrent + self.max_queued
        if len(self._jobs) >= limit:
            self.on_outcome("busy")
            raise IngestBusy(
                f"the server is already ingesting {self.max_concurrent} session(s) with {self.max_queued} waiting; "
                "try again in a minute"
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        job = Job(request)
        ahead = len(self._jobs)
        if ahead >= self.max_concurrent:
            job.message = f"queued behind {ahead} other ingest(s)"
        self._jobs[request.session_id] = job
        self._failed.pop(request.session_id, None)
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"ingest {request.session_id}")
        return job

    async def _run(self, job: Job) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                job.update(state=LOADING, progress=0.0, message="starting the ingest")
                await self._locked(job)
        except asyncio.CancelledError:
            self._finish(job, "the server is shutting down: ingest stopped")
            raise
        except Exception as e:  # a bug here must still end the job for its waiters
            log.exception("ingest of %s failed", job.session_id)
            self._finish(job, f"ingest of {job.session_id} failed: {type(e).__name__}: {e}")
        else:
            self._finish(job, job.error)

    async def _locked(self, job: Job) -> None:
        """Hold the cross-process lock of the session, then ingest unless another process just did."""
        root = self.data.root
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / f".ingest-{job.session_id}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        job.update(message="another server process is ingesting this session")
                        waited = True
                    await asyncio.sleep(LOCK_POLL)
            if waited and self._fresh(job):
                job.update(progress=1.0, message="ingested by another server process")
                return
            await self._child(job)
        finally:
            os.close(fd)  # releases the lock

    def _fresh(self, job: Job) -> bool:
        """The bundle exists and (for a refresh) was written after the job was asked for."""
        path = self.data.path_of(job.session_id) / "manifest.json"
        try:
            return not job.request.refresh or path.stat().st_mtime >= job.created
        except OSError:
            return False

    async def _child(self, job: Job) -> None:
        r = job.request
        spec = {"loader": self.loader, "session_id": r.session_id, "year": r.year, "round": r.round,
                "session": r.session, "data_dir": str(self.data.root), "refresh": r.refresh,
                "options": self.loader_options}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the child imports what this process can
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "racecast.ingest_worker", json.dumps(spec),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, env=env,
        )
        self.ingests_started += 1
        self.on_outcome("started")
        job.pid = proc.pid
        log.info("ingesting %s in process %d", r.session_id, proc.pid)
        assert proc.stdout is not None
        result: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while line := await proc.stdout.readline():
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if "stage" in msg:
                        p, text = stage_progress(str(msg["stage"]), float(msg.get("fraction", 0.0)))
                        job.update(progress=p, message=text)
                    elif "done" in msg or "error" in msg:
                        result = msg
                await proc.wait()
        except TimeoutError:
            job.error = f"ingest of {r.session_id} took longer than {self.timeout:g} s and was stopped"
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if job.error is not None:
            pass
        elif result is not None and "error" in result:
            job.error = str(result["error"])
        elif result is not None and proc.returncode == 0:
            job.n_frames = int(result.get("done", 0))
            job.update(progress=1.0, message="replay ready")
        else:
            code = proc.returncode
            how = f"was killed by signal {signal.Signals(-code).name}" if code and code < 0 else f"exited with code {code}"
            job.error = f"the ingest process of {r.session_id} {how} before finishing; no replay was written"
        if job.error is not None:
            self._clean_partial(r.session_id)

    def _clean_partial(self, session_id: str) -> None:
        """Remove a killed writer's temporary directories (the bundle itself is never partial)."""
        for p in self.data.root.glob(f".{session_id}.tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

    def _finish(self, job: Job, error: str | None) -> None:
        self._jobs.pop(job.session_id, None)
        job.finished = time.time()
        if error is None:
            job.error = None
            if self.on_done is not None:
                self.on_done(job.session_id)
            job.update(state=DONE, progress=1.0, message="replay ready")
            self.on_outcome("done")
            log.info("ingested %s", job.session_id)
            return
        job.error = error
        job.update(state=FAILED, message=error)
        self.on_outcome("failed")
        log.warning("ingest of %s failed: %s", job.session_id, error)
        self._failed[job.session_id] = job
        while len(self._failed) > self.max_failures:
            self._failed.popitem(last=False)

    async def shutdown(self) -> None:
        """Stop every job (their child processes are killed) and wait for them to end."""
        tasks = [j.task for j in list(self._jobs.values()) if j.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


__all__ = [
    "IngestManager", "IngestRequest", "Job", "IngestBusy", "IngestUnavailable", "check_session", "session_code",
    "fastf1_missing", "DEFAULT_LOADER", "MAX_CONCURRENT_INGESTS", "MAX_QUEUED_INGESTS",
    "INGEST_TIMEOUT", "MAX_REMEMBERED_FAILURES", "SESSION_CODES",
]
