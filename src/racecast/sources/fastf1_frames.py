"""FastF1-shaped frames: what the FastF1 layer hands to the converter, and reading them.

:class:`FastF1Frames` holds a loaded session as plain FastF1-shaped pandas objects (same
column names and dtypes as FastF1's ``Laps``, ``Telemetry``, results...); tests build
them by hand. The readers below turn those frames into plain per-driver numpy arrays
(:class:`DriverLaps`, :class:`Trace`, :class:`CarTrace`), tolerant of the gaps, NaTs,
repeated laps and filler rows real FastF1 data has; they never import FastF1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

try:
    import pandas as pd
except ImportError:  # pandas comes with the fastf1 extra; without it only the clear error in fastf1.py
    pd = None  # type: ignore[assignment]

from racecast.race import Compound, Drs
from racecast.sources import IngestError
from racecast.sources._common import clean_samples


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


# -- values ------------------------------------------------------------------------------


def field_of(obj: Any, key: str, default: Any) -> Any:
    try:
        v = obj[key]
    except (KeyError, TypeError, IndexError):
        return default
    return default if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def seconds(values: Any, t0_date: Any = None) -> np.ndarray:
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


def scalar_seconds(v: Any) -> float:
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


def text(v: Any) -> str:
    if v is None:
        return ""
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v).strip()


def scalar_float(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def floats(col: pd.Series) -> np.ndarray:
    """Numbers (or booleans, e.g. Rainfall) as floats; missing -> NaN."""
    return np.array([scalar_float(v) for v in col], dtype=np.float64)


def bool_col(df: pd.DataFrame, name: str, default: bool) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), default)
    return np.array([default if text(v) == "" else bool(v) for v in df[name]], dtype=bool)


def num_col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return np.array(pd.to_numeric(df[name], errors="coerce"), dtype=np.float64)  # a writable copy


def time_col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return seconds(df[name].reset_index(drop=True))


# -- laps and telemetry ------------------------------------------------------------------


@dataclass
class DriverLaps:
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
    def empty(cls) -> "DriverLaps":
        z = np.zeros(0)
        return cls(np.zeros(0, dtype=np.int64), z, z, z, (z, z, z), (z, z, z), z, z,
                   np.zeros(0, dtype=np.int64), z, np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool))


def split_laps(laps: pd.DataFrame) -> dict[str, DriverLaps]:
    for col in ("LapNumber", "Time"):
        if col not in laps.columns:
            raise IngestError(f"FastF1 laps have no {col!r} column")
    if "DriverNumber" not in laps.columns:
        raise IngestError("FastF1 laps have no 'DriverNumber' column")
    df = laps.reset_index(drop=True)
    nums = np.array([text(v) for v in df["DriverNumber"]], dtype=object)
    lapn = num_col(df, "LapNumber")
    cols = {
        "end": time_col(df, "Time"),
        "start": time_col(df, "LapStartTime"),
        "lap_time": time_col(df, "LapTime"),
        "pit_in": time_col(df, "PitInTime"),
        "pit_out": time_col(df, "PitOutTime"),
        "s1": time_col(df, "Sector1Time"),
        "s2": time_col(df, "Sector2Time"),
        "s3": time_col(df, "Sector3Time"),
        "s1t": time_col(df, "Sector1SessionTime"),
        "s2t": time_col(df, "Sector2SessionTime"),
        "s3t": time_col(df, "Sector3SessionTime"),
        "tyre_life": num_col(df, "TyreLife"),
    }
    compound = np.array(
        [int(Compound.parse(text(v) or None)) for v in df["Compound"]] if "Compound" in df.columns else np.zeros(len(df)),
        dtype=np.int64,
    )
    generated = bool_col(df, "FastF1Generated", False)
    deleted = bool_col(df, "Deleted", False)
    accurate = bool_col(df, "IsAccurate", True)
    out: dict[str, DriverLaps] = {}
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
        dl = DriverLaps(
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
class Trace:
    t: np.ndarray
    x: np.ndarray  # raw FastF1 units until scaled
    y: np.ndarray


def _telemetry_time(df: pd.DataFrame, t0_date: Any) -> np.ndarray:
    for col in ("SessionTime", "Time"):
        if col in df.columns:
            t = time_col(df, col)
            if np.isfinite(t).any():
                return t
    if "Date" in df.columns:
        return seconds(df["Date"].reset_index(drop=True), t0_date)
    raise IngestError("FastF1 telemetry has no SessionTime, Time or Date column")


def position_trace(df: pd.DataFrame | None, t0_date: Any) -> Trace:
    if df is None or len(df) == 0 or "X" not in df.columns or "Y" not in df.columns:
        return Trace(np.zeros(0), np.zeros(0), np.zeros(0))
    t = _telemetry_time(df, t0_date)
    x, y = num_col(df, "X"), num_col(df, "Y")
    z = num_col(df, "Z") if "Z" in df.columns else np.zeros(len(df))
    # FastF1 fills missing position samples with X = Y = Z = 0: that is no data.
    valid = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0) & (np.nan_to_num(z) == 0))
    t, x, y = clean_samples(t, x, y, valid=valid)
    return Trace(t, x, y)


def _drs_code(raw: np.ndarray) -> np.ndarray:
    out = np.full(raw.shape, int(Drs.OFF), dtype=np.float64)
    out[raw == 8] = Drs.ELIGIBLE
    out[raw >= 10] = Drs.OPEN
    return out


@dataclass
class CarTrace:
    t: np.ndarray
    speed: np.ndarray
    throttle: np.ndarray
    brake: np.ndarray
    gear: np.ndarray
    drs: np.ndarray


def car_trace(df: pd.DataFrame | None, t0_date: Any) -> CarTrace | None:
    if df is None or len(df) == 0 or "Speed" not in df.columns:
        return None
    t = _telemetry_time(df, t0_date)
    speed = num_col(df, "Speed")
    throttle = num_col(df, "Throttle")
    throttle[(throttle > 100) | (throttle < 0)] = 0.0  # 104 = "no data" while parked
    brake_raw = df["Brake"] if "Brake" in df.columns else pd.Series(np.zeros(len(df)))
    brake = np.where(pd.to_numeric(brake_raw.astype(float), errors="coerce").fillna(0).to_numpy() > 0, 100.0, 0.0)
    gear = np.nan_to_num(num_col(df, "nGear"))
    drs = _drs_code(np.nan_to_num(num_col(df, "DRS")))
    t, speed, throttle, brake, gear, drs = clean_samples(t, speed, np.nan_to_num(throttle), brake, gear, drs, valid=np.isfinite(speed))
    if t.size == 0:
        return None
    # (memory) the values as float32, the channels' dtype (FastF1's are whole numbers: exact)
    return CarTrace(t, *(c.astype(np.float32) for c in (speed, throttle, brake, gear, drs)))


__all__ = [
    "CarTrace", "DriverLaps", "FastF1Frames", "Trace", "bool_col", "car_trace", "field_of", "floats", "num_col",
    "position_trace", "scalar_float", "scalar_seconds", "seconds", "split_laps", "text", "time_col",
]
