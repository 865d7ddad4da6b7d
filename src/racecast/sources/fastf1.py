"""Real F1 sessions from FastF1 (https://docs.fastf1.dev), any session since 2018.

Two layers:

* :func:`load_fastf1_session` -- the thin part that talks to FastF1 (imported lazily,
  an optional extra): resolve the event, ``Session.load()``, and copy what it loaded
  into a :class:`FastF1Frames` of plain DataFrames.
* :func:`race_from_fastf1_frames` -- a pure function from those FastF1-shaped frames
  (same column names and dtypes as FastF1's ``Laps``, ``Telemetry``, results, track
  status...) to a :class:`~racecast.race.Race`. Tests build such frames by hand.

How the conversion stays honest:

* Every channel is resampled onto the frame grid. Position/car samples are sorted and
  de-duplicated (lap slices repeat boundary samples), FastF1's all-zero filler rows
  for missing position data are dropped, and across a gap longer than
  :data:`~racecast.sources._common.MAX_GAP` the last position is held -- nothing moves
  that the data doesn't show moving. X/Y are converted from FastF1's 1/10 m to metres.
* Running order in races and sprints is progress = laps completed + fraction, where
  the laps and the instants they complete come from the timing data (``Laps.Time``),
  so at every line crossing the order is exactly the timing order; between crossings
  the fraction is the share of the distance driven. Before a car's first crossing
  (the grid, the first corners) it is placed by where it is along the track, counted
  back from the line it will cross next -- at lights out that is the grid; pit-lane
  starters (``results.GridPosition`` 0) are behind every grid car until their first
  crossing. Cars take the chequered flag at their first crossing after the winner's:
  from then on their order is frozen in the order they finished. A car that stops for
  good without finishing is OUT from the moment it came to rest (ranked behind every
  running car), a car in the pit lane is PIT; a car in the results with no position
  data and no lap did not start: DNS, listed last, never drawn.
* Qualifying and practice replay the whole session; the order is the timing-screen
  order (best lap so far), cars in the garage are PIT.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

try:
    import pandas as pd
except ImportError:  # pandas comes with the fastf1 extra; without it only the clear error below
    pd = None  # type: ignore[assignment]

from racecast.race import (
    DEFAULT_FPS,
    Compound,
    Driver,
    Drs,
    PitStop,
    Race,
    RaceControlMessage,
    Status,
    TrackStatus,
    TrackStatusPeriod,
    empty_channels,
)
from racecast.sources import IngestError, ProgressFn
from racecast.sources.fastf1_cache import CacheMisses, configure_cache
from racecast.sources.ingest_report import with_warnings
from racecast.sources.officials import attach_officials
from racecast.sources._common import (
    build_race,
    chequered_flag,
    fallback_color,
    grid_ranks,
    lap1_along,
    anchored_order_key,
    order_key,
    pit_lane_start,
    start_slots,
    stop_time,
    fill_order,
    median_lap_length,
    clean_samples,
    frame_grid,
    geometry_from_path,
    path_distance,
    path_fractions,
    progress_from_crossings,
    project_along,
    race_gaps,
    report,
    resample_hold,
    resample_linear,
    resample_path,
    running_order,
    speed_from_distance,
    step_values,
    valid_color,
)

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
PRE_ROLL = 10.0  # s of grid shown before a race start
POST_ROLL = 15.0  # s shown after the last line crossing
MAX_DURATION = 6 * 3600.0  # a longer span means broken timing data
RAW_SCALE = 0.1  # FastF1 X/Y/Z are in 1/10 m


# -- plain data handed from the FastF1 layer to the converter ----------------------------


@dataclass(frozen=True)
class FastF1Frames:
    """What a loaded FastF1 session provides, as plain FastF1-shaped pandas objects.

    ``laps``: ``Session.laps``; ``pos_data``/``car_data``: ``Session.pos_data`` /
    ``Session.car_data`` (dicts of Telemetry frames keyed by driver number string);
    ``results``: ``Session.results``; ``track_status``, ``race_control_messages``,
    ``weather``: the session's frames of those names; times are FastF1 session times
    (Timedelta) except race-control messages (UTC datetimes, placed via ``t0_date``).
    """

    year: int
    round: int
    session: str  # identifier: "R", "S", "Q", "SQ", "SS", "FP1"...
    laps: pd.DataFrame
    pos_data: Mapping[str, pd.DataFrame]
    car_data: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    results: pd.DataFrame | None = None
    session_name: str = ""  # FastF1's name: "Race", "Qualifying"...
    race_like: bool = True  # race or sprint: positions by progress, chequered flag
    total_laps: int | None = None
    session_start_time: pd.Timedelta | None = None
    t0_date: pd.Timestamp | None = None
    track_status: pd.DataFrame | None = None
    race_control_messages: pd.DataFrame | None = None
    weather: pd.DataFrame | None = None
    rotation: float = 0.0  # CircuitInfo.rotation (degrees)
    corners: pd.DataFrame | None = None  # CircuitInfo.corners (X/Y in 1/10 m)
    event_name: str = ""
    circuit: str = ""
    country: str = ""
    date: str = ""


# -- the FastF1 layer --------------------------------------------------------------------


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
        label = f"{year} {_get(event, 'EventName', '')} {session}".replace("  ", " ")
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
        circuit = str(_get(event, "Location", "")) if event is not None else ""
    date = get("date")
    total = get("total_laps")
    return FastF1Frames(
        year=year,
        round=int(_get(event, "RoundNumber", 0)) if event is not None else 0,
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
        event_name=str(_get(event, "EventName", "")) if event is not None else "",
        circuit=circuit,
        country=str(_get(event, "Country", "")) if event is not None else "",
        date="" if date is None or pd.isna(date) else pd.Timestamp(date).isoformat(),
    )


def _get(obj: Any, key: str, default: Any) -> Any:
    try:
        v = obj[key]
    except (KeyError, TypeError, IndexError):
        return default
    return default if v is None or (not isinstance(v, str) and pd.isna(v)) else v


# -- the pure conversion -----------------------------------------------------------------


def _seconds(values: Any, t0_date: Any = None) -> np.ndarray:
    """FastF1 times (Timedelta, or datetime with ``t0_date``) -> float seconds, NaN for NaT."""
    s = pd.Series(values).reset_index(drop=True)
    if len(s) == 0:
        return np.zeros(0)
    if pd.api.types.is_timedelta64_dtype(s):
        return np.array(s.dt.total_seconds(), dtype=np.float64)
    if pd.api.types.is_bool_dtype(s):
        raise IngestError(f"expected times, got booleans in {s.name!r}")
    if pd.api.types.is_numeric_dtype(s):
        return np.array(s, dtype=np.float64)  # already seconds
    if not pd.api.types.is_datetime64_any_dtype(s):
        try:
            return np.array(pd.to_timedelta(s).dt.total_seconds(), dtype=np.float64)
        except (TypeError, ValueError):
            s = pd.to_datetime(s, errors="coerce")
    if t0_date is None or pd.isna(t0_date):
        return np.full(len(s), np.nan)  # dates without the session's t0 cannot be placed
    t0 = pd.Timestamp(t0_date)
    if s.dt.tz is not None:
        s = s.dt.tz_convert(None)
    if t0.tzinfo is not None:
        t0 = t0.tz_convert(None)
    return np.array((s - t0).dt.total_seconds(), dtype=np.float64)


def _scalar_seconds(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        if pd.isna(v):
            return math.nan
    except (TypeError, ValueError):
        pass
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return float(pd.Timedelta(v).total_seconds())


def _text(v: Any) -> str:
    if v is None:
        return ""
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v).strip()


def _bool_col(df: pd.DataFrame, name: str, default: bool) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), default)
    return np.array([default if _text(v) == "" else bool(v) for v in df[name]], dtype=bool)


def _num_col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return np.array(pd.to_numeric(df[name], errors="coerce"), dtype=np.float64)  # a writable copy


def _time_col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return _seconds(df[name].reset_index(drop=True))


@dataclass
class _Laps:
    """One driver's laps, times in FastF1 session seconds."""

    number: np.ndarray  # LapNumber (int)
    end: np.ndarray  # Time
    start: np.ndarray  # LapStartTime
    lap_time: np.ndarray
    sector: tuple[np.ndarray, np.ndarray, np.ndarray]
    sector_at: tuple[np.ndarray, np.ndarray, np.ndarray]
    pit_in: np.ndarray
    pit_out: np.ndarray
    compound: np.ndarray  # Compound codes
    tyre_life: np.ndarray
    generated: np.ndarray
    deleted: np.ndarray
    accurate: np.ndarray
    cross_t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # real line crossings
    cross_k: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def empty(cls) -> "_Laps":
        z = np.zeros(0)
        return cls(np.zeros(0, dtype=np.int64), z, z, z, (z, z, z), (z, z, z), z, z,
                   np.zeros(0, dtype=np.int64), z, np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool))


def _split_laps(laps: pd.DataFrame) -> dict[str, _Laps]:
    for col in ("LapNumber", "Time"):
        if col not in laps.columns:
            raise IngestError(f"FastF1 laps have no {col!r} column")
    if "DriverNumber" not in laps.columns:
        raise IngestError("FastF1 laps have no 'DriverNumber' column")
    df = laps.reset_index(drop=True)
    nums = np.array([_text(v) for v in df["DriverNumber"]], dtype=object)
    lapn = _num_col(df, "LapNumber")
    cols = {
        "end": _time_col(df, "Time"),
        "start": _time_col(df, "LapStartTime"),
        "lap_time": _time_col(df, "LapTime"),
        "pit_in": _time_col(df, "PitInTime"),
        "pit_out": _time_col(df, "PitOutTime"),
        "s1": _time_col(df, "Sector1Time"),
        "s2": _time_col(df, "Sector2Time"),
        "s3": _time_col(df, "Sector3Time"),
        "s1t": _time_col(df, "Sector1SessionTime"),
        "s2t": _time_col(df, "Sector2SessionTime"),
        "s3t": _time_col(df, "Sector3SessionTime"),
        "tyre_life": _num_col(df, "TyreLife"),
    }
    compound = np.array(
        [int(Compound.parse(_text(v) or None)) for v in df["Compound"]] if "Compound" in df.columns else np.zeros(len(df)),
        dtype=np.int64,
    )
    generated = _bool_col(df, "FastF1Generated", False)
    deleted = _bool_col(df, "Deleted", False)
    accurate = _bool_col(df, "IsAccurate", True)
    out: dict[str, _Laps] = {}
    for num in dict.fromkeys(nums):
        if not num:
            continue
        m = (nums == num) & np.isfinite(lapn)
        order = np.argsort(lapn[m], kind="stable")
        idx = np.flatnonzero(m)[order]
        # one row per lap number (FastF1 sometimes repeats a lap)
        _, first = np.unique(lapn[idx], return_index=True)
        idx = idx[np.sort(first)]
        c = {k: v[idx] for k, v in cols.items()}
        dl = _Laps(
            number=lapn[idx].astype(np.int64),
            end=c["end"],
            start=c["start"],
            lap_time=c["lap_time"],
            sector=(c["s1"], c["s2"], c["s3"]),
            sector_at=(c["s1t"], c["s2t"], c["s3t"]),
            pit_in=c["pit_in"],
            pit_out=c["pit_out"],
            compound=compound[idx],
            tyre_life=c["tyre_life"],
            generated=generated[idx],
            deleted=deleted[idx],
            accurate=accurate[idx],
        )
        # Real line crossings: timed, not made up by FastF1, strictly later each lap.
        ok = np.isfinite(dl.end) & ~dl.generated
        ct, ck = [], []
        for t, k in zip(dl.end[ok], dl.number[ok]):
            if not ct or (t > ct[-1] and k > ck[-1]):
                ct.append(float(t))
                ck.append(int(k))
        dl.cross_t = np.array(ct, dtype=np.float64)
        dl.cross_k = np.array(ck, dtype=np.int64)
        out[num] = dl
    return out


@dataclass
class _Trace:
    t: np.ndarray
    x: np.ndarray  # raw FastF1 units until scaled
    y: np.ndarray


def _telemetry_time(df: pd.DataFrame, t0_date: Any) -> np.ndarray:
    for col in ("SessionTime", "Time"):
        if col in df.columns:
            t = _time_col(df, col)
            if np.isfinite(t).any():
                return t
    if "Date" in df.columns:
        return _seconds(df["Date"].reset_index(drop=True), t0_date)
    raise IngestError("FastF1 telemetry has no SessionTime, Time or Date column")


def _position_trace(df: pd.DataFrame | None, t0_date: Any) -> _Trace:
    if df is None or len(df) == 0 or "X" not in df.columns or "Y" not in df.columns:
        return _Trace(np.zeros(0), np.zeros(0), np.zeros(0))
    t = _telemetry_time(df, t0_date)
    x, y = _num_col(df, "X"), _num_col(df, "Y")
    z = _num_col(df, "Z") if "Z" in df.columns else np.zeros(len(df))
    # FastF1 fills missing position samples with X = Y = Z = 0: that is no data.
    valid = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0) & (np.nan_to_num(z) == 0))
    t, x, y = clean_samples(t, x, y, valid=valid)
    return _Trace(t, x, y)


def _drs_code(raw: np.ndarray) -> np.ndarray:
    out = np.full(raw.shape, int(Drs.OFF), dtype=np.float64)
    out[raw == 8] = Drs.ELIGIBLE
    out[raw >= 10] = Drs.OPEN
    return out


@dataclass
class _Car:
    t: np.ndarray
    speed: np.ndarray
    throttle: np.ndarray
    brake: np.ndarray
    gear: np.ndarray
    drs: np.ndarray


def _car_trace(df: pd.DataFrame | None, t0_date: Any) -> _Car | None:
    if df is None or len(df) == 0 or "Speed" not in df.columns:
        return None
    t = _telemetry_time(df, t0_date)
    speed = _num_col(df, "Speed")
    throttle = _num_col(df, "Throttle")
    throttle[(throttle > 100) | (throttle < 0)] = 0.0  # 104 = "no data" while parked
    brake_raw = df["Brake"] if "Brake" in df.columns else pd.Series(np.zeros(len(df)))
    brake = np.where(pd.to_numeric(brake_raw.astype(float), errors="coerce").fillna(0).to_numpy() > 0, 100.0, 0.0)
    gear = np.nan_to_num(_num_col(df, "nGear"))
    drs = _drs_code(np.nan_to_num(_num_col(df, "DRS")))
    t, speed, throttle, brake, gear, drs = clean_samples(t, speed, np.nan_to_num(throttle), brake, gear, drs, valid=np.isfinite(speed))
    if t.size == 0:
        return None
    # (memory) the values as float32, the channels' dtype (FastF1's are whole numbers: exact)
    return _Car(t, *(c.astype(np.float32) for c in (speed, throttle, brake, gear, drs)))


def _drivers(results: pd.DataFrame | None, numbers: list[str]) -> list[tuple[str, Driver]]:
    """(driver number, Driver) for every number with data, in the results' order."""
    rows: dict[str, Any] = {}
    order: list[str] = []
    if results is not None and len(results) and "DriverNumber" in results.columns:
        for _, r in results.iterrows():
            num = _text(r.get("DriverNumber"))
            if num and num not in rows:
                rows[num] = r
                order.append(num)
    rest = sorted((n for n in numbers if n not in rows), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    ordered = [n for n in order if n in numbers] + rest
    out: list[tuple[str, Driver]] = []
    used: set[str] = set()
    for i, num in enumerate(ordered):
        r = rows.get(num, {})
        code = _text(r.get("Abbreviation")) or f"N{num}"
        if code in used:
            code = f"{code}{num}"
        used.add(code)
        name = _text(r.get("FullName")) or _text(r.get("BroadcastName")) or code
        color = valid_color(_text(r.get("TeamColor"))) or fallback_color(i)
        number = int(num) if num.isdigit() else 1000 + i
        out.append((num, Driver(code=code, number=number, name=name, team=_text(r.get("TeamName")), color=color)))
    return out


def _window(frames: FastF1Frames, laps: dict[str, _Laps], traces: dict[str, _Trace]) -> tuple[float, float, float]:
    """(start, begin, end) in session seconds: session/race start, first and last frame."""
    all_cross = np.concatenate([dl.cross_t for dl in laps.values()] + [np.zeros(0)])
    sst = _scalar_seconds(frames.session_start_time)
    if frames.race_like:
        lap1 = np.concatenate([dl.start[dl.number == 1] for dl in laps.values()] + [np.zeros(0)])
        lap1 = lap1[np.isfinite(lap1)]
        start = float(lap1.min()) if lap1.size else sst
        begin_pad = PRE_ROLL
    else:
        start = sst
        if not math.isfinite(start):
            outs = np.concatenate([np.concatenate([dl.pit_out, dl.start]) for dl in laps.values()])
            outs = outs[np.isfinite(outs)]
            start = float(outs.min()) if outs.size else math.nan
        begin_pad = 0.0
    first_pos = min((tr.t[0] for tr in traces.values() if tr.t.size), default=math.nan)
    if not math.isfinite(start):
        if all_cross.size:
            start = float(all_cross.min()) - 120.0
        elif math.isfinite(first_pos):
            start = first_pos
        else:
            raise IngestError("FastF1 data has neither lap times nor positions to place the session in time")
    ends = [float(all_cross.max())] if all_cross.size else []
    if not frames.race_like:
        e = np.concatenate([dl.end for dl in laps.values()])
        e = e[np.isfinite(e)]
        if e.size:
            ends.append(float(e.max()))
    if not ends:
        last_pos = max((tr.t[-1] for tr in traces.values() if tr.t.size), default=start)
        ends.append(float(last_pos))
    begin, end = start - begin_pad, max(ends) + POST_ROLL
    if end - begin > MAX_DURATION:
        raise IngestError(f"the session's timing spans {(end - begin) / 3600:.1f} h: the timing data looks broken")
    if end <= begin:
        raise IngestError("FastF1 timing data ends before the session starts")
    return start, begin, end


def _reference_lap(laps: dict[str, _Laps], traces: dict[str, _Trace], race_like: bool) -> tuple[str, int, np.ndarray, np.ndarray, np.ndarray]:
    """The fastest clean lap with good position data: (driver, lap row, t, x, y) raw units."""
    cands = []
    for num, dl in laps.items():
        for i in range(dl.number.size):
            if not (math.isfinite(dl.start[i]) and math.isfinite(dl.end[i]) and dl.end[i] > dl.start[i]):
                continue
            if dl.generated[i] or dl.deleted[i]:
                continue
            clean = (
                math.isnan(dl.pit_in[i]) and math.isnan(dl.pit_out[i]) and dl.accurate[i]
                and not (race_like and dl.number[i] == 1)
            )  # fmt: skip
            duration = dl.lap_time[i] if math.isfinite(dl.lap_time[i]) else dl.end[i] - dl.start[i]
            cands.append((0 if clean else 1, duration, num, i))
    cands.sort(key=lambda c: (c[0], c[1], c[2], c[3]))
    for _clean, _dur, num, i in cands:
        tr = traces.get(num)
        if tr is None or tr.t.size < 3:
            continue
        t0, t1 = laps[num].start[i], laps[num].end[i]
        inside = (tr.t > t0) & (tr.t < t1)
        ts = tr.t[inside]
        if ts.size < 20:
            continue
        edges = np.concatenate([[t0], ts, [t1]])
        if np.diff(edges).max() > 2.0:
            continue
        x = np.concatenate([[np.interp(t0, tr.t, tr.x)], tr.x[inside], [np.interp(t1, tr.t, tr.x)]])
        y = np.concatenate([[np.interp(t0, tr.t, tr.y)], tr.y[inside], [np.interp(t1, tr.t, tr.y)]])
        return num, i, edges, x, y
    raise IngestError("no lap has enough position data to draw the track from")


def _position_scale(ref_t: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray, car: _Car | None) -> float:
    """Metres per FastF1 position unit: 0.1, unless the car's speed clearly says otherwise."""
    if car is None:
        return RAW_SCALE
    m = (car.t >= ref_t[0]) & (car.t <= ref_t[-1])
    if m.sum() < 10:
        return RAW_SCALE
    v, t = car.speed[m] / 3.6, car.t[m]
    driven = float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(t)))
    raw = float(np.hypot(np.diff(ref_x), np.diff(ref_y)).sum())
    if not (raw > 0 and driven > 0):
        return RAW_SCALE
    r = driven / raw
    return RAW_SCALE if 0.07 <= r <= 0.14 else float(f"{r:.3g}")


def _drs_zone_fractions(ref_t: np.ndarray, ref_x: np.ndarray, ref_y: np.ndarray, car: _Car | None) -> list[tuple[float, float]]:
    if car is None:
        return []
    m = (car.t >= ref_t[0]) & (car.t <= ref_t[-1])
    t, open_ = car.t[m], car.drs[m] == Drs.OPEN
    zones = []
    i = 0
    while i < t.size:
        if open_[i]:
            j = i
            while j + 1 < t.size and open_[j + 1]:
                j += 1
            if t[j] - t[i] >= 1.0:
                a, b = path_fractions(ref_x, ref_y, ref_t, [t[i], t[j]])
                zones.append((a, b))
            i = j + 1
        else:
            i += 1
    return zones


def _pit_lane(laps: dict[str, _Laps], traces: dict[str, _Trace], scale: float) -> tuple[np.ndarray, np.ndarray] | None:
    best = None
    for num, dl in laps.items():
        for i in range(dl.number.size - 1):
            t_in, t_out = dl.pit_in[i], dl.pit_out[i + 1]
            if math.isfinite(t_in) and math.isfinite(t_out) and t_out > t_in and (best is None or t_out - t_in < best[0]):
                best = (t_out - t_in, num, t_in, t_out)
    if best is None:
        return None
    _, num, t_in, t_out = best
    tr = traces.get(num)
    if tr is None:
        return None
    m = (tr.t >= t_in - 1.0) & (tr.t <= t_out + 1.0)
    if m.sum() < 5:
        return None
    return resample_path(tr.x[m] * scale, tr.y[m] * scale, spacing=5.0)


def _last_movement(tr: _Trace, dist: np.ndarray) -> float:
    """Time of the last sample that moved the car (-inf when it never moved)."""
    moved = np.flatnonzero(np.diff(dist) > 0)
    return float(tr.t[moved[-1] + 1]) if moved.size else -math.inf


def _pit_intervals(dl: _Laps, race_like: bool) -> list[tuple[float, float]]:
    out = []
    n = dl.number.size
    for i in range(n):
        if math.isfinite(dl.pit_in[i]):
            nxt = dl.pit_out[i + 1] if i + 1 < n else math.nan
            out.append((dl.pit_in[i], nxt if math.isfinite(nxt) and nxt > dl.pit_in[i] else math.inf))
    first_out = dl.pit_out[0] if n else math.nan
    if math.isfinite(first_out):
        if race_like:
            if dl.number[0] == 1:  # pit-lane start
                out.append((-math.inf, first_out))
        else:  # in the garage until the first run
            out.append((-math.inf, first_out))
    return out


def _non_starters(frames: FastF1Frames, traces: Mapping[str, _Trace], laps: Mapping[str, _Laps]) -> list[str]:
    """Driver numbers in the results (or pos_data) with no valid position and no completed lap."""
    known: list[str] = list(traces)
    res = frames.results
    if res is not None and len(res) and "DriverNumber" in res.columns:
        known += [_text(v) for v in res["DriverNumber"]]
    out = []
    for num in dict.fromkeys(k for k in known if k):
        tr = traces.get(num)
        dl = laps.get(num)
        if (tr is None or tr.t.size == 0) and (dl is None or dl.cross_t.size == 0):
            out.append(num)
    return out


def _grid_ranks(
    frames: FastF1Frames, nums: list[str], dlaps: list[_Laps], geometry: Any, ch: Mapping[str, np.ndarray], start_f: int, dns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(start order, pit-lane starters): the results' GridPosition (0 = pit lane, last), else
    where cars stood at the start, with cars leaving the pit lane on lap 1 (or standing off
    the grid) behind it."""
    ahead, off = start_slots(geometry, ch["x"][start_f], ch["y"][start_f])
    pit = pit_lane_start(ahead, off) | dns
    for j, dl in enumerate(dlaps):
        if dl.number.size and dl.number[0] == 1 and math.isfinite(dl.pit_out[0]):
            pit[j] = True
    given = None
    res = frames.results
    if res is not None and len(res) and "GridPosition" in res.columns and "DriverNumber" in res.columns:
        gp = {_text(r): _scalar_float(v) for r, v in zip(res["DriverNumber"], res["GridPosition"])}
        given = np.array([gp.get(num, math.nan) for num in nums], dtype=np.float64)
        if not np.isfinite(given).any():
            given = None
        else:
            pit = dns | (np.isfinite(given) & (given <= 0))  # the official grid says who started from the pit lane (0)
    return grid_ranks(ahead, pit, given), pit


def _results_disagree(
    results: pd.DataFrame | None, nums: list[str], drivers: list[Driver], dlaps: list[_Laps], t_fin: np.ndarray, dns: np.ndarray
) -> list[str]:
    """Warnings where the results' lap count disagrees with the laps the timing data shows."""
    if results is None or len(results) == 0 or "Laps" not in results.columns or "DriverNumber" not in results.columns:
        return []
    laps_of = {_text(r): _scalar_float(v) for r, v in zip(results["DriverNumber"], results["Laps"])}
    # disqualified / excluded cars: their official lap count is not what they drove
    cp = results["ClassifiedPosition"] if "ClassifiedPosition" in results.columns else [""] * len(results)
    dsq = {_text(r) for r, c in zip(results["DriverNumber"], cp) if _text(c).upper() in ("D", "E")}
    out = []
    for j, num in enumerate(nums):
        want = laps_of.get(num, math.nan) if num not in dsq else math.nan
        if not math.isfinite(want) or dns[j]:
            continue
        got = int(dlaps[j].cross_k.max()) if dlaps[j].cross_k.size else 0
        if got != int(want):
            out.append(f"driver {drivers[j].code}: the results say {int(want)} laps, the timing data has {got}; the replay follows the timing data")
    return out


def race_from_fastf1_frames(
    frames: FastF1Frames,
    *,
    fps: int = DEFAULT_FPS,
    progress: ProgressFn | None = None,
) -> Race:
    """Convert FastF1-shaped frames to a :class:`Race` (pure: no FastF1, no network)."""
    report(progress, "prepare", 0.0)
    laps = _split_laps(frames.laps)
    traces = {str(k): _position_trace(v, frames.t0_date) for k, v in frames.pos_data.items()}
    numbers = [n for n, tr in traces.items() if tr.t.size > 0]
    if not numbers:
        raise IngestError("FastF1 data has no position samples for any driver")
    warnings: list[str] = []
    # A car with neither a position sample (FastF1 gives non-starters all-zero filler) nor
    # a completed lap did not start: listed as DNS, never drawn. In races only: in other
    # sessions a car that never left the garage is simply not in the session's data.
    dns_nums = _non_starters(frames, traces, laps) if frames.race_like else []
    pairs = _drivers(frames.results, numbers + dns_nums)
    nums = [num for num, _ in pairs]
    drivers = [d for _, d in pairs]
    dns = np.array([num in dns_nums for num in nums], dtype=bool)
    live = [num for num in nums if num not in dns_nums]
    cars = {n: _car_trace(frames.car_data.get(n), frames.t0_date) for n in live}
    dlaps = [laps.get(n) or _Laps.empty() for n in nums]
    start, begin, end = _window(frames, {n: laps[n] for n in live if n in laps}, {n: traces[n] for n in live})
    grid = frame_grid(begin, end, fps)
    n, nd = grid.size, len(drivers)
    report(progress, "prepare", 1.0)

    # -- track geometry from a clean lap ------------------------------------------------
    report(progress, "geometry", 0.0)
    ref_num, ref_i, ref_t, ref_x, ref_y = _reference_lap({k: laps[k] for k in live if k in laps}, traces, frames.race_like)
    scale = _position_scale(ref_t, ref_x, ref_y, cars.get(ref_num))
    rx, ry = ref_x * scale, ref_y * scale
    rl = laps[ref_num]
    sector_t = [rl.sector_at[0][ref_i], rl.sector_at[1][ref_i]]
    sectors = path_fractions(rx, ry, ref_t, sector_t) if all(math.isfinite(v) for v in sector_t) else []
    geometry = geometry_from_path(
        rx,
        ry,
        closed=True,
        sectors=sectors,
        drs_zones=_drs_zone_fractions(ref_t, rx, ry, cars.get(ref_num)),
        pit_lane=_pit_lane({k: laps[k] for k in live if k in laps}, traces, scale),
        rotation=frames.rotation,
    )
    report(progress, "geometry", 1.0)

    # -- resample telemetry onto the grid -----------------------------------------------
    ch = empty_channels(n, nd)
    dist = ch["dist"]  # (memory) the channel itself, filled in place; made relative to the start below
    last_move = np.full(nd, -math.inf)
    for j, num in enumerate(nums):
        if dns[j]:
            continue
        tr = traces[num]
        x, y = tr.x * scale, tr.y * scale
        ch["x"][:, j] = resample_linear(tr.t, x, grid)
        ch["y"][:, j] = resample_linear(tr.t, y, grid)
        d = path_distance(x, y)
        # Distance (for progress only) is interpolated across feed gaps: both ends are
        # real samples, and a hole spanning a line crossing must not shorten that lap.
        dist[:, j] = np.interp(grid, tr.t, d)
        last_move[j] = _last_movement(tr, d)
        car = cars[num]
        if car is not None:
            ch["speed"][:, j] = np.clip(resample_linear(car.t, car.speed, grid), 0, None)
            ch["throttle"][:, j] = resample_linear(car.t, car.throttle, grid)
            ch["brake"][:, j] = resample_hold(car.t, car.brake, grid)
            ch["gear"][:, j] = resample_hold(car.t, car.gear, grid)
            ch["drs"][:, j] = resample_hold(car.t, car.drs, grid)
        else:
            ch["speed"][:, j] = resample_linear(tr.t, speed_from_distance(tr.t, d), grid)
        report(progress, "resample", (j + 1) / nd)

    # -- progress, status, order --------------------------------------------------------
    report(progress, "order", 0.0)
    lap_len = _lap_length(dlaps, grid, dist, geometry.length)
    start_f = int(np.clip(np.searchsorted(grid, start), 0, n - 1))
    prog = np.zeros((n, nd))
    for j, dl in enumerate(dlaps):
        if dns[j]:
            continue
        if dl.cross_t.size:
            prog[:, j] = progress_from_crossings(grid, dist[:, j], dl.cross_t, dl.cross_k, lap_len)
        else:  # never completed a lap: where it stood at the start, plus distance since
            s0 = float(project_along(geometry, ch["x"][start_f, j], ch["y"][start_f, j])[0])
            if s0 > geometry.length / 2:
                s0 -= geometry.length
            s0 *= lap_len / geometry.length
            prog[:, j] = np.minimum((s0 + dist[:, j] - dist[start_f, j]) / lap_len, 0.999)

    status = np.zeros((n, nd), dtype=np.int8)
    for j, dl in enumerate(dlaps):
        for a, b in _pit_intervals(dl, frames.race_like):
            status[(grid >= a) & (grid <= b), j] = Status.PIT

    finish_order = np.full(nd, np.nan)
    margin_m = 0.0
    t_fin = np.full(nd, math.inf)
    t_out = np.full(nd, math.inf)
    crossings = [(dl.cross_t, dl.cross_k) for dl in dlaps]
    if frames.race_like:
        # Classification at the line: the flag falls when the first car completes the last
        # lap; every other car takes it at its first crossing after that (laps down too).
        _t_flag, _total, fin_t = chequered_flag(crossings, frames.total_laps)
        for j, dl in enumerate(dlaps):
            if dns[j]:
                continue
            if np.isfinite(fin_t[j]):
                t_fin[j] = fin_t[j]
                fin = grid >= t_fin[j] - 1e-9
                prog[fin, j] = dl.cross_k[np.flatnonzero(dl.cross_t >= t_fin[j] - 1e-9)[0]]
                status[fin, j] = Status.FINISHED
            else:
                # out from where it stopped (the first sample from which it stays put); its
                # progress still counts a line crossing it rolled over after that (pit lane)
                tr = traces[nums[j]]
                t_out[j] = stop_time(tr.t, tr.x * scale, tr.y * scale)
                if not math.isfinite(t_out[j]):
                    t_out[j] = last_move[j]
                last_cross = float(dl.cross_t.max()) if dl.cross_t.size else -math.inf
                freeze = max(t_out[j], last_cross, float(tr.t[-1]) if tr.t.size else -math.inf)
                after = grid > freeze
                if after.any():
                    first = int(np.argmax(after))
                    held = prog[first - 1, j] if first > 0 else prog[0, j]
                    prog[after, j] = max(held, float(dl.cross_k[-1])) if dl.cross_k.size else held
                    dist[after, j] = dist[first - 1, j] if first > 0 else dist[0, j]
                status[grid >= t_out[j], j] = Status.OUT
        finished = np.flatnonzero(np.isfinite(t_fin))
        finish_order[finished[np.argsort(t_fin[finished], kind="stable")]] = np.arange(1, finished.size + 1)
        for j in finished:
            fin = grid >= t_fin[j] - 1e-9
            if fin.any():
                dist[fin, j] = dist[int(np.argmax(fin)), j]
        status[:, dns] = Status.DNS
        ranks, pit_start = _grid_ranks(frames, nums, dlaps, geometry, ch, start_f, dns)
        lap1 = []
        for j, num in enumerate(nums):
            tr = traces.get(num)
            if dns[j] or tr is None or tr.t.size == 0:
                lap1.append((np.zeros(0, dtype=np.int64), np.zeros(0), math.nan))
                continue
            first = float(dlaps[j].cross_t[0]) if dlaps[j].cross_t.size else math.inf
            idx, s_along, s_cross = lap1_along(geometry, grid, tr.t, tr.x * scale, tr.y * scale, first)
            keep = grid[idx] >= start  # from lights out; before it the grid is the grid
            lap1.append((idx[keep], s_along[keep], s_cross))
        key = order_key(grid, prog, crossings, ranks, fps, lap1, geometry.length, pit_start)
        # between the lines the feed moves a car up only by more than its own error at the line
        xy = [None if dns[j] or num not in traces else (traces[num].t, traces[num].x * scale, traces[num].y * scale) for j, num in enumerate(nums)]
        key, margin_m = anchored_order_key(key, grid, crossings, ranks, pit_start, geometry, xy, lap_len)
        positions = running_order(key, status, finish_order)
        del key  # (memory) whole-race temporaries go as soon as they are used
        warnings += _results_disagree(frames.results, nums, drivers, dlaps, t_fin, dns)
    else:
        positions, best = _best_lap_order(grid, dlaps, drivers)
    rel = fill_order(ch, positions, status, prog)
    rel[status == Status.FINISHED] = 1.0
    np.clip(rel, 0.0, 1.0, out=ch["rel_dist"])
    del rel
    dist -= dist[start_f].copy()[None, :]
    np.maximum(dist, 0.0, out=dist)
    lap = np.floor(prog)
    lap += 1
    lap = lap.astype(np.int64)
    lap[status == Status.FINISHED] = np.round(prog[status == Status.FINISHED]).astype(np.int64)
    np.clip(lap, 0, None, out=lap)
    if frames.race_like:
        np.maximum(lap, 1, out=lap)  # LAP 1 from lights out, also for a grid behind the line
        lap[grid < start] = 0
        lap[:, dns] = 0
        for name in ("x", "y", "speed", "dist", "rel_dist", "race_progress"):
            ch[name][:, dns] = 0
    ch["lap"][:] = lap
    if frames.race_like:
        leader = np.argmax(positions == 1, axis=1)
        leader_lap = np.maximum.accumulate(lap[np.arange(n), leader])
    else:
        leader_lap = np.maximum.accumulate(lap.max(axis=1))
    del lap, prog, dist  # (memory)
    report(progress, "order", 1.0)

    # -- timing-screen channels from the laps ------------------------------------------
    report(progress, "timing", 0.0)
    for j, dl in enumerate(dlaps):
        _timing_channels(ch, j, dl, grid)
    if frames.race_like:
        ch["gap"], ch["interval"] = race_gaps(grid, [(dl.cross_t, dl.cross_k) for dl in dlaps], t_out)  # float32: no copy
    else:
        _best_lap_gaps(ch, positions, best)
    report(progress, "timing", 1.0)

    total = max((int(dl.cross_k.max()) for dl in dlaps if dl.cross_k.size), default=0)
    if not frames.race_like:
        total = max((int(dl.number.max()) for dl in dlaps if dl.number.size), default=0)
    code_of = {num: d.code for num, d in zip(nums, drivers)}
    session_label = frames.session_name or frames.session
    event = {
        "year": int(frames.year),
        "round": int(frames.round),
        "session_type": frames.session,
        "session_name": session_label,
        "name": frames.event_name,
        "circuit": frames.circuit,
        "country": frames.country,
        "date": frames.date,
        "source": "fastf1",
        "start_t": round(start - begin, 3),
        "session_time_offset": round(begin, 3),
        "position_scale": scale,
        **({"order_margin_m": round(margin_m, 2)} if frames.race_like else {}),
        "scheduled_laps": frames.total_laps,
        "corners": _corners(frames.corners, scale),
        # drivers with lap times but not one position sample can't be drawn: left out
        "skipped_drivers": sorted(set(laps) - set(nums)),
        "warnings": warnings,
    }
    title = f"{frames.year} {frames.event_name or f'round {frames.round}'} - {session_label}"
    del traces, cars  # (memory) the samples are in the channels now: not kept while the race is validated
    race = build_race(
        "the FastF1 data",
        fps=fps,
        channels=ch,
        drivers=tuple(drivers),
        leader_lap=leader_lap,
        total_laps=int(total),
        geometry=geometry,
        id=f"{frames.year}_{frames.round}_{frames.session}",
        title=title,
        event=event,
        track_status=_track_status(frames.track_status, begin, grid[-1]),
        messages=_messages(frames.race_control_messages, frames.t0_date, begin, grid[-1], code_of),
        pit_stops=_pit_stops(dlaps, drivers, begin) if frames.race_like else (),
        weather=_weather(frames.weather, begin, grid[-1]),
    )
    timed = [_timed_laps(dl, begin) for dl in dlaps]
    return attach_officials(race, results=frames.results, session=frames.session, race_like=frames.race_like, laps=timed)


def _timed_laps(dl: _Laps, begin: float) -> tuple[np.ndarray, np.ndarray]:
    """(end in replay seconds, lap time) of a driver's valid timed laps (not deleted, not generated)."""
    ok = np.isfinite(dl.end) & np.isfinite(dl.lap_time) & ~dl.deleted & ~dl.generated
    return dl.end[ok] - begin, dl.lap_time[ok]


def _lap_length(dlaps: list[_Laps], grid: np.ndarray, dist: np.ndarray, fallback: float) -> float:
    """Median distance driven per full, green, non-pit lap (in the same units as ``dist``)."""
    vals = []
    for j, dl in enumerate(dlaps):
        if dl.cross_t.size < 2:
            continue
        dc = np.interp(dl.cross_t, grid, dist[:, j])
        pit_laps = set(dl.number[np.isfinite(dl.pit_in) | np.isfinite(dl.pit_out)].tolist())
        for a in range(dl.cross_t.size - 1):
            k = int(dl.cross_k[a + 1])
            if k - int(dl.cross_k[a]) == 1 and k not in pit_laps and k != 1:
                vals.append(dc[a + 1] - dc[a])
    return median_lap_length(vals, fallback)


def _timing_channels(ch: dict[str, np.ndarray], j: int, dl: _Laps, grid: np.ndarray) -> None:
    if dl.number.size == 0:
        return
    ends = dl.end.copy()
    ends[~np.isfinite(ends)] = -np.inf
    ends = np.maximum.accumulate(ends)
    idx = np.clip(np.searchsorted(ends, grid, side="left"), 0, dl.number.size - 1)
    ch["tyre"][:, j] = dl.compound[idx]
    ch["tyre_age"][:, j] = np.nan_to_num(dl.tyre_life[idx]).astype(np.int64)
    ch["lap_time"][:, j] = step_values(dl.end, dl.lap_time, grid, np.nan)
    # sector times show up when each sector is completed
    fallback = (
        dl.start + dl.sector[0],
        dl.start + np.nan_to_num(dl.sector[0], nan=np.nan) + dl.sector[1],
        dl.end,
    )
    for s in range(3):
        at = np.where(np.isfinite(dl.sector_at[s]), dl.sector_at[s], fallback[s])
        ok = np.isfinite(dl.sector[s])
        ch[f"sector{s + 1}"][:, j] = step_values(at[ok], dl.sector[s][ok], grid, np.nan)


def _best_lap_order(grid: np.ndarray, dlaps: list[_Laps], drivers: list[Driver]) -> tuple[np.ndarray, np.ndarray]:
    """Qualifying/practice order: best valid lap time so far (then car number)."""
    n, nd = grid.size, len(dlaps)
    best = np.full((n, nd), np.nan)
    key = np.empty((n, nd))
    for j, dl in enumerate(dlaps):
        ok = np.isfinite(dl.end) & np.isfinite(dl.lap_time) & ~dl.deleted & ~dl.generated
        et, lt = dl.end[ok], dl.lap_time[ok]
        order = np.argsort(et, kind="stable")
        et, lt = et[order], lt[order]
        if et.size:
            run_best = np.fmin.accumulate(lt)
            best[:, j] = step_values(et, run_best, grid, np.nan)
            # when the current best was set breaks ties between equal times
            set_at = np.array([et[int(np.flatnonzero(lt[: i + 1] == run_best[i])[0])] for i in range(et.size)])
            when = step_values(et, set_at, grid, np.nan)
        else:
            when = np.full(n, np.nan)
        key[:, j] = np.where(np.isfinite(best[:, j]), best[:, j] + 1e-9 * np.nan_to_num(when), 1e9 + drivers[j].number)
    status = np.zeros((n, nd), dtype=np.int8)
    return running_order(-key, status), best


def _best_lap_gaps(ch: dict[str, np.ndarray], positions: np.ndarray, best: np.ndarray) -> None:
    n, nd = best.shape
    fastest = np.nanmin(np.where(np.isfinite(best), best, np.inf), axis=1)
    gap = best - fastest[:, None]
    order = np.argsort(positions, axis=1)  # driver index by position
    rows = np.arange(n)[:, None]
    best_sorted = best[rows, order]
    ahead = np.concatenate([np.full((n, 1), np.nan), best_sorted[:, :-1]], axis=1)
    itv = np.empty((n, nd))
    itv[rows, order] = best_sorted - ahead
    ch["gap"][:] = np.where(np.isfinite(best), gap, np.nan)
    ch["interval"][:] = np.where(np.isfinite(best), itv, np.nan)


def _track_status(df: pd.DataFrame | None, begin: float, end: float) -> tuple[TrackStatusPeriod, ...]:
    """Track status periods clipped to the replay (times relative to ``begin``)."""
    if df is None or len(df) == 0 or "Time" not in df.columns or "Status" not in df.columns:
        return ()
    ts = _time_col(df, "Time")
    codes = []
    for v in df["Status"]:
        try:
            codes.append(int(str(v).strip()))
        except ValueError:
            codes.append(-1)
    order = np.argsort(ts, kind="stable")
    periods: list[list[Any]] = []
    end_all = end
    for pos_i, i in enumerate(order):
        if not math.isfinite(ts[i]) or codes[i] not in TrackStatus._value2member_map_:
            continue
        nxt = end_all
        for k in order[pos_i + 1 :]:
            if math.isfinite(ts[k]):
                nxt = ts[k]
                break
        a, b = max(ts[i], begin), min(nxt, end_all)
        if b <= a:
            continue
        st = TrackStatus(codes[i])
        if periods and periods[-1][2] == st and abs(periods[-1][1] - a) < 1e-9:
            periods[-1][1] = b
        else:
            periods.append([a, b, st])
    return tuple(TrackStatusPeriod(round(float(a - begin), 3), round(float(b - begin), 3), st) for a, b, st in periods)


def _messages(df: pd.DataFrame | None, t0_date: Any, begin: float, end: float, code_of: Mapping[str, str]) -> tuple[RaceControlMessage, ...]:
    """Race-control messages within the replay (times relative to ``begin``)."""
    last = end - begin
    if df is None or len(df) == 0 or "Time" not in df.columns or "Message" not in df.columns:
        return ()
    d = df.reset_index(drop=True)
    ts = _seconds(d["Time"], t0_date) - begin
    out = []
    for i in np.argsort(ts, kind="stable"):
        t = ts[i]
        if not (math.isfinite(t) and 0 <= t <= last):
            continue
        lap = _num_col(d, "Lap")[i] if "Lap" in d.columns else math.nan
        num = _text(d["RacingNumber"][i]) if "RacingNumber" in d.columns else ""
        out.append(
            RaceControlMessage(
                t=round(float(t), 3),
                message=_text(d["Message"][i]),
                category=(_text(d["Category"][i]) if "Category" in d.columns else "") or "Other",
                lap=int(lap) if math.isfinite(lap) else None,
                driver=code_of.get(num) if num else None,
            )
        )
    return tuple(out)


def _pit_stops(dlaps: list[_Laps], drivers: list[Driver], begin: float) -> tuple[PitStop, ...]:
    stops = []
    for d, dl in zip(drivers, dlaps):
        for i in range(dl.number.size - 1):
            t_in, t_out = dl.pit_in[i], dl.pit_out[i + 1]
            if math.isfinite(t_in) and math.isfinite(t_out) and t_out > t_in:
                stops.append(
                    PitStop(
                        driver=d.code,
                        lap=int(dl.number[i]),
                        t_in=round(float(t_in - begin), 3),
                        t_out=round(float(t_out - begin), 3),
                        compound_in=Compound(int(dl.compound[i])),
                        compound_out=Compound(int(dl.compound[i + 1])),
                    )
                )
    return tuple(sorted(stops, key=lambda s: (s.t_in, s.driver)))


_WEATHER = {
    "AirTemp": "air_temp",
    "TrackTemp": "track_temp",
    "Humidity": "humidity",
    "Rainfall": "rainfall",
    "WindSpeed": "wind_speed",
    "WindDirection": "wind_direction",
}


def _weather(df: pd.DataFrame | None, begin: float, end: float) -> dict[str, np.ndarray]:
    """Weather readings from the one in force at the first frame to the last frame."""
    last = end - begin
    if df is None or len(df) == 0 or "Time" not in df.columns:
        return {}
    d = df.reset_index(drop=True)
    ts = _time_col(d, "Time") - begin
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    ok = np.isfinite(ts) & (ts <= last)
    before = np.flatnonzero(ok & (ts <= 0))
    if before.size:  # keep the reading in force at the first frame
        ok &= np.arange(ts.size) >= before[-1]
    out = {"t": np.round(ts[ok], 3)}
    for src, dst in _WEATHER.items():
        if src in d.columns:
            out[dst] = _floats(d[src])[order][ok]
        else:
            out[dst] = np.full(int(ok.sum()), np.nan)
    if out["t"].size == 0:
        return {}
    return out


def _corners(df: pd.DataFrame | None, scale: float) -> list[dict[str, Any]]:
    if df is None or len(df) == 0 or "X" not in df.columns or "Y" not in df.columns:
        return []
    out = []
    for _, r in df.iterrows():
        x, y = _scalar_float(r.get("X")), _scalar_float(r.get("Y"))
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        num = _scalar_float(r.get("Number"))
        out.append(
            {
                "number": int(num) if math.isfinite(num) else None,
                "letter": _text(r.get("Letter")),
                "x": round(x * scale, 2),
                "y": round(y * scale, 2),
                "angle": round(_scalar_float(r.get("Angle")), 2) if math.isfinite(_scalar_float(r.get("Angle"))) else None,
            }
        )
    return out


def _floats(col: pd.Series) -> np.ndarray:
    """Numbers (or booleans, e.g. Rainfall) as floats; missing -> NaN."""
    return np.array([_scalar_float(v) for v in col], dtype=np.float64)


def _scalar_float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


__all__ = [
    "FastF1Frames",
    "MISSING_FASTF1",
    "SESSION_CODES",
    "frames_from_session",
    "load_fastf1_session",
    "normalise_session",
    "race_from_fastf1_frames",
]
