"""Session series from FastF1-shaped frames: track status periods, race-control messages,
pit stops, weather and corner marks, each clipped to the replay (times relative to its first frame)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

try:
    import pandas as pd
except ImportError:  # pandas comes with the fastf1 extra; without it only the clear error in fastf1.py
    pd = None  # type: ignore[assignment]

from racecast.race import Compound, Driver, PitStop, RaceControlMessage, TrackStatus, TrackStatusPeriod
from racecast.sources.fastf1_frames import DriverLaps, floats, num_col, scalar_float, seconds, text, time_col


def track_status_periods(df: pd.DataFrame | None, begin: float, end: float) -> tuple[TrackStatusPeriod, ...]:
    """Track status periods clipped to the replay (times relative to ``begin``)."""
    if df is None or len(df) == 0 or "Time" not in df.columns or "Status" not in df.columns:
        return ()
    ts = time_col(df, "Time")
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


def messages_of(df: pd.DataFrame | None, t0_date: Any, begin: float, end: float, code_of: Mapping[str, str]) -> tuple[RaceControlMessage, ...]:
    """Race-control messages within the replay (times relative to ``begin``)."""
    last = end - begin
    if df is None or len(df) == 0 or "Time" not in df.columns or "Message" not in df.columns:
        return ()
    d = df.reset_index(drop=True)
    ts = seconds(d["Time"], t0_date) - begin
    out = []
    for i in np.argsort(ts, kind="stable"):
        t = ts[i]
        if not (math.isfinite(t) and 0 <= t <= last):
            continue
        lap = num_col(d, "Lap")[i] if "Lap" in d.columns else math.nan
        num = text(d["RacingNumber"][i]) if "RacingNumber" in d.columns else ""
        out.append(
            RaceControlMessage(
                t=round(float(t), 3),
                message=text(d["Message"][i]),
                category=(text(d["Category"][i]) if "Category" in d.columns else "") or "Other",
                lap=int(lap) if math.isfinite(lap) else None,
                driver=code_of.get(num) if num else None,
            )
        )
    return tuple(out)


def pit_stops_of(dlaps: list[DriverLaps], drivers: list[Driver], begin: float) -> tuple[PitStop, ...]:
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


def weather_of(df: pd.DataFrame | None, begin: float, end: float) -> dict[str, np.ndarray]:
    """Weather readings from the one in force at the first frame to the last frame."""
    last = end - begin
    if df is None or len(df) == 0 or "Time" not in df.columns:
        return {}
    d = df.reset_index(drop=True)
    ts = time_col(d, "Time") - begin
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    ok = np.isfinite(ts) & (ts <= last)
    before = np.flatnonzero(ok & (ts <= 0))
    if before.size:  # keep the reading in force at the first frame
        ok &= np.arange(ts.size) >= before[-1]
    out = {"t": np.round(ts[ok], 3)}
    for src, dst in _WEATHER.items():
        if src in d.columns:
            out[dst] = floats(d[src])[order][ok]
        else:
            out[dst] = np.full(int(ok.sum()), np.nan)
    if out["t"].size == 0:
        return {}
    return out


def corners_of(df: pd.DataFrame | None, scale: float) -> list[dict[str, Any]]:
    if df is None or len(df) == 0 or "X" not in df.columns or "Y" not in df.columns:
        return []
    out = []
    for _, r in df.iterrows():
        x, y = scalar_float(r.get("X")), scalar_float(r.get("Y"))
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        num = scalar_float(r.get("Number"))
        out.append(
            {
                "number": int(num) if math.isfinite(num) else None,
                "letter": text(r.get("Letter")),
                "x": round(x * scale, 2),
                "y": round(y * scale, 2),
                "angle": round(scalar_float(r.get("Angle")), 2) if math.isfinite(scalar_float(r.get("Angle"))) else None,
            }
        )
    return out


__all__ = ["corners_of", "messages_of", "pit_stops_of", "track_status_periods", "weather_of"]
