"""Real F1 sessions from FastF1 (https://docs.fastf1.dev), any session since 2018: the FastF1 layer.

Two layers:

* this module -- the thin part that talks to FastF1 (imported lazily, an optional
  extra): :func:`load_fastf1_session` resolves the event, runs ``Session.load()`` and
  copies what it loaded into a :class:`~.fastf1_frames.FastF1Frames` of plain DataFrames
  (:func:`frames_from_session`);
* :func:`~.fastf1_convert.race_from_fastf1_frames` -- a pure function from those
  FastF1-shaped frames to a :class:`~racecast.race.Race` (:mod:`.fastf1_convert`, with
  :mod:`.fastf1_frames` and :mod:`.fastf1_series`). Tests build such frames by hand.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import pandas as pd
except ImportError:  # pandas comes with the fastf1 extra; without it only the clear error below
    pd = None  # type: ignore[assignment]

from racecast.race import DEFAULT_FPS, Race
from racecast.sources import IngestError, ProgressFn
from racecast.sources.fastf1_cache import CacheMisses, configure_cache
from racecast.sources.fastf1_convert import race_from_fastf1_frames
from racecast.sources.fastf1_frames import FastF1Frames, field_of
from racecast.sources.ingest_report import with_warnings
from racecast.sources._common import report

MISSING_FASTF1 = "FastF1 is not installed: pip install 'racecast[fastf1]'"

#: Session identifiers accepted (also FastF1's full names), normalised for the race id.
SESSION_CODES = {
    "R": "R", "RACE": "R",
    "S": "S", "SPRINT": "S",
    "Q": "Q", "QUALIFYING": "Q",
    "SQ": "SQ", "SPRINT QUALIFYING": "SQ",
    "SS": "SS", "SPRINT SHOOTOUT": "SS",
    "FP1": "FP1", "PRACTICE 1": "FP1",
    "FP2": "FP2", "PRACTICE 2": "FP2",
    "FP3": "FP3", "PRACTICE 3": "FP3",
}  # fmt: skip
FIRST_YEAR = 2018  # FastF1 has position telemetry from 2018 on


def _import_fastf1() -> Any:
    try:
        import fastf1  # noqa: PLC0415 -- optional extra, imported only when used
    except ImportError as exc:
        raise IngestError(MISSING_FASTF1) from exc
    if hasattr(fastf1, "set_log_level"):  # its INFO chatter would swamp progress bars and server logs
        fastf1.set_log_level("WARNING")
    return fastf1


def normalise_session(session: str) -> str:
    code = SESSION_CODES.get(str(session).strip().upper())
    if code is None:
        raise IngestError(f"unknown session {session!r}: use one of R, S, Q, SQ, SS, FP1, FP2, FP3")
    return code


def _offline_hint() -> str:
    return (
        "FastF1 downloads from livetiming.formula1.com and api.jolpi.ca; check the network "
        "connection, or use a --cache directory that already holds this session"
    )


def load_fastf1_session(
    year: int,
    event: int | str,
    session: str = "R",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    fps: int = DEFAULT_FPS,
    offline: bool = False,
) -> Race:
    """Load a session with FastF1 and convert it to a :class:`Race` (id ``{year}_{round}_{session}``).

    ``event``: round number or a name FastF1 resolves ("Miami", "Monza"...); ``session``:
    R, S, Q, SQ, SS, FP1, FP2, FP3. ``cache_dir``: FastF1's cache directory (created if
    missing; FastF1's default cache when None). ``progress(stage, fraction)`` is called
    as stages advance; safe to run in a worker thread. ``offline``: load from an existing
    cache only, never the network (FastF1's offline mode; see :mod:`.fastf1_cache`).
    Raises :class:`IngestError` when FastF1 is missing, the event or session is unknown,
    or the data can't be loaded (offline: naming the data the cache lacks).
    """
    code = normalise_session(session)
    try:
        year = int(year)
    except (TypeError, ValueError):
        raise IngestError(f"year must be a number, got {year!r}") from None
    if year < FIRST_YEAR:
        raise IngestError(f"FastF1 has position data from {FIRST_YEAR} on; {year} is too early")
    if isinstance(event, str) and event.strip().isdigit():
        event = int(event.strip())
    ff1 = _import_fastf1()
    report(progress, "load", 0.0)
    cache_path = configure_cache(ff1, cache_dir, offline=offline)
    what = f"{year} event {event!r} session {code}"
    with CacheMisses() as misses:
        try:
            ses = ff1.get_session(year, event, code)
        except Exception as exc:  # FastF1 raises ValueError for unknown events and offline schedules
            raise IngestError(f"FastF1 cannot find {what}: {exc} ({_hint(offline, cache_path, misses)})") from exc
        report(progress, "load", 0.1)
        try:
            ses.load(laps=True, telemetry=True, weather=True, messages=True)
        except Exception as exc:
            raise IngestError(f"FastF1 failed to load {what}: {exc} ({_hint(offline, cache_path, misses)})") from exc
    report(progress, "load", 0.9)
    try:
        frames = frames_from_session(ses, year=year, session=code)
    except IngestError as exc:
        if not offline:
            raise
        raise IngestError(f"{exc.args[0].split(' (')[0]} ({_hint(offline, cache_path, misses)})") from exc
    report(progress, "load", 1.0)
    race = race_from_fastf1_frames(frames, fps=fps, progress=progress)
    if misses.urls:  # loaded without some of the data: the ingest report says which
        race = with_warnings(race, [f"not in the FastF1 cache (offline): {m}" for m in misses.missing()])
    return race


def _hint(offline: bool, cache_path: Any, misses: CacheMisses) -> str:
    if not offline:
        return _offline_hint()
    where = cache_path if cache_path is not None else "FastF1's default cache"
    lacks = ", ".join(misses.missing()) or "nothing reported missing"
    return f"offline: this session is not (fully) in the FastF1 cache at {where}; missing: {lacks}"


def frames_from_session(ses: Any, *, year: int, session: str) -> FastF1Frames:
    """Copy a loaded FastF1 ``Session`` into :class:`FastF1Frames` (checks it really loaded).

    FastF1 logs and swallows most download errors inside ``load()``; what didn't load
    is then missing (accessing it raises), which is reported here as an IngestError.
    """

    def get(name: str) -> Any:
        try:
            return getattr(ses, name)
        except Exception:  # DataNotLoadedError and friends
            return None

    label = f"{year} {session}"
    event = get("event")
    if event is not None:
        label = f"{year} {field_of(event, 'EventName', '')} {session}".replace("  ", " ")
    laps = get("laps")
    if laps is None or len(laps) == 0:
        raise IngestError(f"FastF1 loaded no lap timing data for {label} ({_offline_hint()})")
    pos = get("pos_data")
    if not pos:
        raise IngestError(f"FastF1 loaded no position data for {label} ({_offline_hint()})")
    name = str(get("name") or "")
    race_like = name in ("Race", "Sprint") or (name == "Sprint Qualifying" and year <= 2023)
    if not name:
        race_like = session in ("R", "S")
    rotation, corners = 0.0, None
    try:
        info = ses.get_circuit_info()
        if info is not None:
            rotation, corners = float(info.rotation), info.corners
    except Exception:  # circuit info is a nicety; its server may be unreachable
        pass
    info = get("session_info") or {}
    circuit = ""
    try:
        circuit = str(info["Meeting"]["Circuit"]["ShortName"])
    except (KeyError, TypeError):
        circuit = str(field_of(event, "Location", "")) if event is not None else ""
    date = get("date")
    total = get("total_laps")
    return FastF1Frames(
        year=year,
        round=int(field_of(event, "RoundNumber", 0)) if event is not None else 0,
        session=session,
        session_name=name,
        race_like=race_like,
        laps=pd.DataFrame(laps),
        pos_data={str(k): pd.DataFrame(v) for k, v in pos.items()},
        car_data={str(k): pd.DataFrame(v) for k, v in (get("car_data") or {}).items()},
        results=None if get("results") is None else pd.DataFrame(get("results")),
        total_laps=int(total) if total is not None and not pd.isna(total) else None,
        session_start_time=get("session_start_time"),
        t0_date=get("t0_date"),
        track_status=get("track_status"),
        race_control_messages=get("race_control_messages"),
        weather=get("weather_data"),
        rotation=rotation,
        corners=corners,
        event_name=str(field_of(event, "EventName", "")) if event is not None else "",
        circuit=circuit,
        country=str(field_of(event, "Country", "")) if event is not None else "",
        date="" if date is None or pd.isna(date) else pd.Timestamp(date).isoformat(),
    )


__all__ = [
    "FastF1Frames",
    "MISSING_FASTF1",
    "SESSION_CODES",
    "frames_from_session",
    "load_fastf1_session",
    "normalise_session",
    "race_from_fastf1_frames",
]
