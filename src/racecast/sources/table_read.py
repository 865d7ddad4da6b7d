"""Reading a long-form table (CSV or Parquet) into per-driver samples: columns, units, cells.

The format is described in :mod:`.table`. This part maps the columns to their roles
(names, aliases, units), parses every cell (numbers, ISO times and durations, status and
tyre words) and splits the rows into one :class:`Samples` per driver, with the exact
line crossings the ``lap`` column gives. Anything unusable is an :class:`IngestError`
naming the column, row (CSV line) or driver; contradictions become warnings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from racecast.race import Compound, Status
from racecast.sources import IngestError
from racecast.sources._common import clean_samples

# base name -> (kind, default unit)
_BASES: dict[str, tuple[str, str]] = {
    "time": ("time", "s"),
    "driver": ("id", ""),
    "x": ("length", "m"),
    "y": ("length", "m"),
    "lat": ("angle", "deg"),
    "lon": ("angle", "deg"),
    "speed": ("speed", "km/h"),
    "throttle": ("percent", "%"),
    "brake": ("percent", "%"),
    "gear": ("count", ""),
    "drs": ("code", ""),
    "lap": ("count", ""),
    "tyre": ("label", ""),
    "tyre_age": ("count", ""),
    "lap_time": ("duration", "s"),
    "sector1": ("duration", "s"),
    "sector2": ("duration", "s"),
    "sector3": ("duration", "s"),
    "gap": ("duration", "s"),
    "interval": ("duration", "s"),
    "status": ("label", ""),
    "team": ("text", ""),
    "name": ("text", ""),
    "color": ("text", ""),
    "number": ("count", ""),
    # accepted, ignored
    "z": ("ignored", ""),
    "position": ("ignored", ""),
    "race_progress": ("ignored", ""),
    "rel_dist": ("ignored", ""),
    "dist": ("ignored", ""),
}
_ALIASES = {
    "t": "time", "timestamp": "time", "datetime": "time", "date": "time",
    "car": "driver", "driver_id": "driver", "code": "driver",
    "latitude": "lat", "longitude": "lon", "lng": "lon", "long": "lon",
    "colour": "color", "tire": "tyre", "compound": "tyre", "tire_age": "tyre_age", "tyre_life": "tyre_age",
    "altitude": "z", "elevation": "z", "laptime": "lap_time",
}  # fmt: skip
_UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0},
    "duration": {"s": 1.0, "sec": 1.0, "seconds": 1.0, "ms": 1e-3},
    "length": {"m": 1.0, "km": 1000.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "ft": 0.3048},
    "angle": {"deg": 1.0, "degrees": 1.0},
    "speed": {"km/h": 1.0, "kmh": 1.0, "kph": 1.0, "m/s": 3.6, "mps": 3.6, "mph": 1.609344, "kn": 1.852, "kt": 1.852, "knots": 1.852},
    "percent": {"%": 1.0, "pct": 1.0, "percent": 1.0, "frac": 100.0, "fraction": 100.0},
}
_STATUS_WORDS = {
    "running": Status.RUNNING, "run": Status.RUNNING, "on_track": Status.RUNNING, "ontrack": Status.RUNNING,
    "pit": Status.PIT, "pits": Status.PIT, "in_pit": Status.PIT, "garage": Status.PIT,
    "out": Status.OUT, "retired": Status.OUT, "dnf": Status.OUT, "dns": Status.OUT,
    "finished": Status.FINISHED, "finish": Status.FINISHED,
}  # fmt: skip
_UNIT_RE = re.compile(r"^(.*?)\s*[\[(]\s*([^\])]+?)\s*[\])]$")


def _column_role(col: str) -> tuple[str, float]:
    """(base name, unit factor) for a column header, or IngestError naming it."""
    raw = str(col).strip()
    name = raw.lower()
    unit = None
    m = _UNIT_RE.match(name)
    if m:
        name, unit = m.group(1).strip(), m.group(2).strip()
    name = re.sub(r"[\s\-]+", "_", name)
    base = _ALIASES.get(name, name)
    if base not in _BASES and unit is None and "_" in name:
        head, _, tail = name.rpartition("_")
        head = _ALIASES.get(head, head)
        if head in _BASES:
            base, unit = head, tail
    if base not in _BASES:
        known = ", ".join(sorted(b for b in _BASES if _BASES[b][0] != "ignored"))
        raise IngestError(f"column {raw!r} can't be mapped to a racecast channel (known columns: {known}); drop or rename it")
    kind, default = _BASES[base]
    if unit is None or unit == default:
        return base, 1.0
    units = _UNITS.get(kind, {})
    if kind == "time" and unit in ("iso", "datetime"):
        return base, 1.0
    if unit not in units:
        hint = f"use one of {', '.join(units)}" if units else "it takes no unit"
        raise IngestError(f"column {raw!r}: unknown unit {unit!r} for {base} ({hint})")
    return base, units[unit]


def _import_pandas() -> Any:
    try:
        import pandas as pd  # noqa: PLC0415 -- optional: only tables need it
    except ImportError as exc:
        raise IngestError("reading tables needs pandas: pip install 'racecast[table]'") from exc
    return pd


def read_file(path: Path) -> tuple[Any, bool]:
    """The file as a DataFrame (CSV: all text, to report bad cells), and whether it is CSV."""
    pd = _import_pandas()
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path} is a directory, not a table")
    suffixes = [s.lower() for s in path.suffixes]
    if path.stat().st_size == 0:
        raise IngestError(f"{path.name} is empty")
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path), False
        except ImportError as exc:
            raise IngestError("reading Parquet needs pyarrow: pip install 'racecast[table]'") from exc
        except Exception as exc:
            raise IngestError(f"{path.name}: not a readable Parquet file ({exc})") from exc
    csv_like = [".csv", ".tsv", ".txt"]
    if suffixes and (suffixes[-1] in csv_like or (len(suffixes) > 1 and suffixes[-2] in csv_like and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz"))):
        sep = "\t" if ".tsv" in suffixes else ","
        try:
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise IngestError(f"{path.name} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise IngestError(f"{path.name}: not a readable CSV file ({exc})") from exc
        return df, True
    raise IngestError(f"{path.name}: unsupported file type (use .csv, .tsv or .parquet)")


def _where(i: int, csv: bool) -> str:
    return f"row {i + 1} (line {i + 2})" if csv else f"row {i + 1}"


def _is_blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def _numbers(col: Any, name: str, csv: bool) -> np.ndarray:
    """A column as floats; blanks -> NaN; anything else non-numeric -> IngestError naming the cell."""
    pd = _import_pandas()
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(col):
        out = np.array(col, dtype=np.float64)
    else:
        vals = col.to_numpy(dtype=object)
        lowered = np.array([str(v).strip().lower() if not _is_blank(v) else "" for v in vals], dtype=object)
        bools = {"true": 1.0, "false": 0.0}
        mapped = np.array([bools.get(v, v) for v in lowered], dtype=object)
        out = np.array(pd.to_numeric(pd.Series(mapped, dtype=object).replace("", np.nan), errors="coerce"), dtype=np.float64)
        bad = np.flatnonzero(np.isnan(out) & (lowered != ""))
        if bad.size:
            i = int(bad[0])
            raise IngestError(f"column {name!r} {_where(i, csv)}: {vals[i]!r} is not a number")
    inf = np.flatnonzero(np.isinf(out))
    if inf.size:
        raise IngestError(f"column {name!r} {_where(int(inf[0]), csv)}: {out[inf[0]]} is not a finite number")
    return out


def _times(col: Any, name: str, factor: float, csv: bool) -> np.ndarray:
    """Seconds: numbers x unit, or ISO timestamps / durations (relative to the earliest)."""
    pd = _import_pandas()
    if pd.api.types.is_datetime64_any_dtype(col):
        d = col
    elif pd.api.types.is_timedelta64_dtype(col):
        return np.array(col.dt.total_seconds(), dtype=np.float64)
    else:
        try:
            return _numbers(col, name, csv) * factor
        except IngestError:
            pass
        vals = col.astype(object)
        blank = vals.map(_is_blank).to_numpy(dtype=bool)
        text = vals.where(~blank, None)
        numeric = pd.to_numeric(text, errors="coerce").notna().to_numpy()
        if numeric.sum() * 2 >= (~blank).sum():  # mostly numbers: the odd cell out is the error
            i = int(np.flatnonzero(~numeric & ~blank)[0])
            raise IngestError(f"column {name!r} {_where(i, csv)}: {col.iloc[i]!r} is neither a number of seconds nor a timestamp")
        try:
            return np.array(pd.to_timedelta(text).dt.total_seconds(), dtype=np.float64)
        except (ValueError, TypeError):
            pass
        d = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = np.flatnonzero(d.isna().to_numpy() & ~blank)
        if bad.size:
            i = int(bad[0])
            raise IngestError(f"column {name!r} {_where(i, csv)}: {col.iloc[i]!r} is neither a number of seconds nor a timestamp")
    d = pd.to_datetime(d, utc=True)
    t0 = d.min()
    return np.array((d - t0).dt.total_seconds(), dtype=np.float64)


@dataclass
class Columns:
    role: dict[str, str]  # base -> original column name
    factor: dict[str, float]
    ignored: list[str]


def map_columns(columns: list[Any]) -> Columns:
    role: dict[str, str] = {}
    factor: dict[str, float] = {}
    ignored: list[str] = []
    for col in columns:
        base, f = _column_role(col)
        if _BASES[base][0] == "ignored":
            ignored.append(str(col))
            continue
        if base in role:
            raise IngestError(f"columns {role[base]!r} and {str(col)!r} both give {base}; keep one")
        role[base], factor[base] = str(col), f
    geo = ("x" in role or "y" in role), ("lat" in role or "lon" in role)
    if geo[0] and geo[1]:
        raise IngestError("give positions as x/y or as lat/lon, not both")
    need = ["time", "driver"] + (["lat", "lon"] if geo[1] else ["x", "y"])
    missing = [c for c in need if c not in role]
    if missing:
        found = ", ".join(repr(str(c)) for c in columns) or "none"
        raise IngestError(f"missing column(s) {', '.join(repr(c) for c in missing)}: a table needs time, driver, x, y (found: {found})")
    return Columns(role, factor, ignored)


@dataclass
class Samples:
    code: str
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray  # original row index of each sample
    extra: dict[str, np.ndarray]  # channel -> values (aligned with t)
    meta: dict[str, str]
    #: exact line crossings given by the data: (times, laps completed) where the lap
    #: column steps up between two rows of the same instant (the boundary sample twice)
    boundaries: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, dtype=np.int64))
    no_positions: bool = False  # not one valid position: did not start (listed as DNS)


def _status_codes(col: Any, name: str, csv: bool) -> np.ndarray:
    vals = col.to_numpy(dtype=object)
    out = np.full(len(vals), np.nan)
    for i, v in enumerate(vals):
        if _is_blank(v):
            continue
        s = str(v).strip().lower().replace(" ", "_")
        if s in _STATUS_WORDS:
            out[i] = _STATUS_WORDS[s]
            continue
        try:
            code = int(float(s))
        except ValueError:
            code = -1
        if code not in Status._value2member_map_:
            raise IngestError(f"column {name!r} {_where(i, csv)}: unknown status {v!r} (use running, pit, out, finished)")
        out[i] = code
    return out


def _tyre_codes(col: Any, name: str, csv: bool) -> np.ndarray:
    vals = col.to_numpy(dtype=object)
    out = np.full(len(vals), np.nan)
    for i, v in enumerate(vals):
        if _is_blank(v):
            continue
        s = str(v).strip()
        try:
            code = int(float(s))
            if code not in Compound._value2member_map_:
                raise IngestError(f"column {name!r} {_where(i, csv)}: unknown tyre code {v!r}")
            out[i] = code
        except ValueError:
            out[i] = Compound.parse(s)
    return out


def read_samples(df: Any, cols: Columns, csv: bool, warnings: list[str]) -> list[Samples]:
    role = cols.role
    n = len(df)
    t = _times(df[role["time"]], role["time"], cols.factor["time"], csv)
    blank_t = np.flatnonzero(np.isnan(t))
    if blank_t.size:
        raise IngestError(f"column {role['time']!r} {_where(int(blank_t[0]), csv)} is empty")
    drv_raw = df[role["driver"]].to_numpy(dtype=object)
    drv = np.array(["" if _is_blank(v) else _id_text(v) for v in drv_raw], dtype=object)
    blank_d = np.flatnonzero(drv == "")
    if blank_d.size:
        raise IngestError(f"column {role['driver']!r} {_where(int(blank_d[0]), csv)} is empty")
    if "lat" in role:
        lat = _numbers(df[role["lat"]], role["lat"], csv)
        lon = _numbers(df[role["lon"]], role["lon"], csv)
        ok = np.isfinite(lat) & np.isfinite(lon)
        if not ok.any():
            raise IngestError("columns 'lat'/'lon' have no values")
        lat0, lon0 = float(np.mean(lat[ok])), float(np.mean(lon[ok]))
        r = 6_371_000.0
        x = np.radians(lon - lon0) * r * math.cos(math.radians(lat0))
        y = np.radians(lat - lat0) * r
    else:
        x = _numbers(df[role["x"]], role["x"], csv) * cols.factor["x"]
        y = _numbers(df[role["y"]], role["y"], csv) * cols.factor["y"]
    # (memory) float32, the channels' own dtype: codes and laps are exact, values end up float32 anyway
    extra: dict[str, np.ndarray] = {}
    for base in ("speed", "throttle", "brake", "gear", "drs", "lap", "tyre_age", "lap_time", "sector1", "sector2", "sector3", "gap", "interval"):
        if base in role:
            extra[base] = (_numbers(df[role[base]], role[base], csv) * cols.factor[base]).astype(np.float32)
    if "tyre" in role:
        extra["tyre"] = _tyre_codes(df[role["tyre"]], role["tyre"], csv).astype(np.float32)
    if "status" in role:
        extra["status"] = _status_codes(df[role["status"]], role["status"], csv).astype(np.float32)
    if "number" in role:
        extra["number"] = _numbers(df[role["number"]], role["number"], csv)
    meta_cols = {k: df[role[k]].to_numpy(dtype=object) for k in ("team", "name", "color") if k in role}

    out = []
    rows_all = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    for code in dict.fromkeys(drv.tolist()):
        m = drv == code
        rows = rows_all[m]
        tm = t[m]
        back = np.flatnonzero(np.diff(tm) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise IngestError(
                f"time goes backwards for driver {code!r} at {_where(int(rows[i]), csv)}: "
                f"{tm[i - 1]:g} s then {tm[i]:g} s (each driver's rows must be in time order)"
            )
        xm, ym = x[m], y[m]
        valid = np.isfinite(xm) & np.isfinite(ym)
        boundaries = _boundaries(code, tm, extra["lap"][m] if "lap" in extra else None, warnings)
        # every position at exactly (0, 0) is FastF1's filler for "no position" (a non-starter)
        no_positions = not valid.any() or bool(np.all((xm[valid] == 0) & (ym[valid] == 0)))
        if no_positions:
            warnings.append(f"driver {code!r} has no valid positions (every x/y blank, or all at 0,0): listed as did not start")
            valid = np.zeros(tm.size, dtype=bool)
            valid[0] = True  # one placeholder sample keeps its time and details; never drawn
        ts, xs, ys, rs, *ex = clean_samples(tm, xm, ym, rows, *(v[m] for v in extra.values()), valid=valid)
        meta = {}
        for k, v in meta_cols.items():
            vals = [str(a).strip() for a in v[m] if not _is_blank(a)]
            meta[k] = vals[0] if vals else ""
        if "number" in extra:
            nums = extra["number"][m]
            nums = nums[np.isfinite(nums)]
            meta["number"] = str(int(nums[0])) if nums.size else ""
        out.append(Samples(code, ts, xs, ys, rs, {k: e for k, e in zip(extra, ex) if k != "number"}, meta, boundaries, no_positions))
    return out


def _boundaries(code: str, t: np.ndarray, lap: np.ndarray | None, warnings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Exact crossings where the lap steps up between two rows of one instant; warns when the lap goes back."""
    empty = (np.zeros(0), np.zeros(0, dtype=np.int64))
    if lap is None:
        return empty
    ok = np.isfinite(lap)
    tt, ll = t[ok], lap[ok]
    if tt.size < 2:
        return empty
    back = np.flatnonzero(np.diff(ll) < 0)
    if back.size:
        i = int(back[0])
        warnings.append(
            f"driver {code!r}: the lap column goes backwards {back.size} time(s), first at {tt[i + 1]:g} s "
            f"({ll[i]:g} -> {ll[i + 1]:g}); laps are counted from the highest lap reached"
        )
    step = np.flatnonzero((np.diff(ll) > 0) & (np.diff(tt) == 0))
    return tt[step].astype(np.float64), (ll[step + 1] - 1).astype(np.int64)


def _id_text(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


__all__ = ["Columns", "Samples", "map_columns", "read_file", "read_samples"]
