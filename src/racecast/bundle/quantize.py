"""Channels as integers at their natural resolution: the common ground of the compact encodings.

Both the compact frames and the chunks carry every channel as an integer in a
fixed unit (e.g. ``x`` in centimetres, ``speed`` in 0.1 km/h). Decoders turn the
integer back into a value by dividing by the channel's ``scale``; the decoded
value is therefore exactly ``round(original * scale) / scale``, and every test
compares decoded integers with :func:`quantize` exactly.

Unknown values of nullable channels are the sentinel :data:`NULL` (the smallest
int32), which no real value reaches.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..race import CHANNELS, WEATHER_FIELDS, Race, Status

#: The integer that stands for "unknown" in nullable channels.
NULL = -(2**31)
_I32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Quant:
    """How one channel becomes an integer: ``q = round(value * scale)``."""

    id: int  # channel number on the wire
    name: str
    scale: int
    unit: str  # the unit of one integer step
    fast: bool  # changes most frames (sent every frame) vs rarely (sent on change)
    nullable: bool = False


#: Every per-driver channel, in wire order: the "fast" ones (ids 0-9) are sent
#: for every driver in every frame; the "slow" ones (ids 10-20) only on change.
QUANTS: tuple[Quant, ...] = (
    Quant(0, "x", 100, "cm", True),
    Quant(1, "y", 100, "cm", True),
    Quant(2, "speed", 10, "0.1 km/h", True),
    Quant(3, "throttle", 1, "1 %", True),
    Quant(4, "brake", 1, "1 %", True),
    Quant(5, "dist", 100, "cm", True),
    Quant(6, "rel_dist", 100_000, "1e-5 of a lap", True),
    Quant(7, "race_progress", 100_000, "1e-5 lap", True),
    Quant(8, "gap", 1000, "ms", True, True),
    Quant(9, "interval", 1000, "ms", True, True),
    Quant(10, "gear", 1, "gear", False),
    Quant(11, "drs", 1, "Drs code", False),
    Quant(12, "lap", 1, "lap", False),
    Quant(13, "position", 1, "place", False),
    Quant(14, "tyre", 1, "Compound code", False),
    Quant(15, "tyre_age", 1, "lap", False),
    Quant(16, "status", 1, "Status code", False),
    Quant(17, "lap_time", 1000, "ms", False, True),
    Quant(18, "sector1", 1000, "ms", False, True),
    Quant(19, "sector2", 1000, "ms", False, True),
    Quant(20, "sector3", 1000, "ms", False, True),
)
FAST: tuple[Quant, ...] = tuple(q for q in QUANTS if q.fast)
SLOW: tuple[Quant, ...] = tuple(q for q in QUANTS if not q.fast)
BY_NAME: Mapping[str, Quant] = {q.name: q for q in QUANTS}
assert [q.id for q in QUANTS] == list(range(len(QUANTS)))
assert {q.name for q in QUANTS} == set(CHANNELS)

#: Frame time ``t`` travels in milliseconds; weather values in tenths of their unit.
T_SCALE = 1000
WEATHER_SCALE = 10
#: Weather field ids on the wire (index in ``WEATHER_FIELDS``, ``t`` excluded).
WEATHER_IDS: Mapping[str, int] = {name: i for i, name in enumerate(WEATHER_FIELDS) if name != "t"}
WEATHER_NAMES: Mapping[int, str] = {i: name for name, i in WEATHER_IDS.items()}
STATUS_LABELS: Mapping[int, str] = {int(s): s.label for s in Status}


def _to_int(a: np.ndarray, scale: int, nullable: bool, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind in "iu" and scale == 1:
        q = a.astype(np.int64)
    else:
        f = a.astype(np.float64) * scale
        null = np.isnan(f) if nullable else np.zeros(f.shape, dtype=bool)
        q = np.rint(np.where(null, 0.0, f))
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{what}: value is not finite")
        q = q.astype(np.int64)
        q[null] = NULL
    real = q != NULL if nullable else slice(None)
    if q.size and (np.any(q[real] > _I32_MAX) or np.any(q[real] < -_I32_MAX)):
        raise ValueError(f"{what}: a value does not fit 32 bits at {scale} steps per unit")
    return q


def quantize(race: Race, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Every channel as int64 arrays shaped (frames, drivers), plus ``t`` (ms) and ``leader_lap``.

    ``start``/``stop`` quantize only those frames (row 0 is frame ``start``): encoders
    work a block at a time so ingest memory does not grow with the race.
    """
    sl = slice(start, stop)
    out = {q.name: _to_int(race.channels[q.name][sl], q.scale, q.nullable, q.name) for q in QUANTS}
    out["t"] = _to_int(race.t[sl], T_SCALE, False, "t")
    out["leader_lap"] = race.leader_lap[sl].astype(np.int64)
    return out


def dequantize_columns(q: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray] | None = None,
                       row: int = 0, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Channels back from integers, in the race model's dtypes (NaN for NULL); ``names``: only those.

    With ``out`` (arrays shaped (frames, drivers)), the values are written into
    ``out[name][row : row + len]`` instead of new arrays.
    """
    res: dict[str, np.ndarray] = {}
    for spec in QUANTS if names is None else [BY_NAME[n] for n in names]:
        a = q[spec.name]
        dtype = np.dtype(CHANNELS[spec.name][0])
        if dtype.kind == "f":
            v = a / spec.scale if spec.scale != 1 else a.astype(np.float64)
            if spec.nullable:
                v[a == NULL] = np.nan
            v = v.astype(dtype)
        else:
            v = a.astype(dtype)
        if out is not None:
            out[spec.name][row : row + len(v)] = v
        res[spec.name] = v
    return res


_cache: "weakref.WeakKeyDictionary[Race, dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def quantized(race: Race) -> dict[str, np.ndarray]:
    """:func:`quantize`, computed once per race object (every compact stream of a bundle shares it)."""
    q = _cache.get(race)
    if q is None:
        q = _cache[race] = quantize(race)
    return q


def quantized_weather(race: Race, t: np.ndarray) -> list[list[tuple[int, int]]]:
    """Weather at each time in ``t`` (s) as ``[(field id, value in tenths)]`` (empty if none)."""
    w = race.weather
    if "t" not in w or len(w["t"]) == 0:
        return [[] for _ in range(len(t))]
    idx = np.clip(np.searchsorted(w["t"], t, side="right") - 1, 0, len(w["t"]) - 1)
    fields = [(WEATHER_IDS[k], _to_int(v, WEATHER_SCALE, True, f"weather {k}")) for k, v in w.items() if k != "t"]
    return [[(fid, int(q[i])) for fid, q in fields if q[i] != NULL] for i in idx.tolist()]
