"""The seed-compatible frame payload: one msgpack map per frame, built once at ingest.

Layout (kept so the seed system's clients keep working, extended with a few keys)::

    {frame_index, t, lap, drivers: {CODE: {x, y, speed, gear, lap, position, tyre,
     tyre_age, throttle, brake, drs, dist, rel_dist, race_progress, gap, interval,
     lap_time, sector1, sector2, sector3, status}}, weather?}

Floats are packed single-precision (positions exact to 1 mm on any track under
16 km across); integer-valued channels are packed as integers; unknown optional
values are nil. ``weather`` rides along once per second of race time.
"""

from __future__ import annotations

from typing import Any, Iterator

import msgpack
import numpy as np

from ..race import CHANNELS, Race, Status

#: Keys of each driver's map, in wire order, with the channel each one reads.
DRIVER_FIELDS: tuple[str, ...] = (
    "x", "y", "speed", "gear", "lap", "position", "tyre", "tyre_age", "throttle", "brake", "drs",
    "dist", "rel_dist", "race_progress", "gap", "interval", "lap_time", "sector1", "sector2", "sector3", "status",
)  # fmt: skip
_ROUNDED_INT = ("throttle", "brake")  # stored as float, natural resolution is 1 %
STATUS_LABELS = {int(s): s.label for s in Status}
_BLOCK = 2048  # frames converted to Python objects at a time


def _column_lists(race: Race, start: int, stop: int) -> list[list[Any]]:
    cols = []
    for name in DRIVER_FIELDS:
        blk = race.channels[name][start:stop]
        if name in _ROUNDED_INT:
            cols.append(np.rint(blk).astype(np.int16).tolist())
        elif name == "status":
            cols.append([[STATUS_LABELS[v] for v in row] for row in blk.tolist()])
        elif CHANNELS[name][2]:  # nullable float: NaN -> None
            obj = blk.astype(object)
            obj[np.isnan(blk)] = None
            cols.append(obj.tolist())
        else:
            cols.append(blk.tolist())
    return cols


def _weather_at(race: Race, t: float) -> dict[str, Any] | None:
    w = race.weather
    if "t" not in w or len(w["t"]) == 0:
        return None
    i = int(np.searchsorted(w["t"], t, side="right")) - 1
    i = min(max(i, 0), len(w["t"]) - 1)
    return {k: float(v[i]) for k, v in w.items() if k != "t"}


def iter_msgpack_frames(race: Race, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Yield the encoded payload of frames ``start..stop`` (all by default)."""
    stop = race.n_frames if stop is None else stop
    packer = msgpack.Packer(use_single_float=True, autoreset=True)
    codes = race.codes
    fields = DRIVER_FIELDS
    nf = len(fields)
    t_all = race.t
    leader_lap = race.leader_lap
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        cols = _column_lists(race, b0, b1)
        ts = t_all[b0:b1].tolist()
        laps = leader_lap[b0:b1].tolist()
        for k in range(b1 - b0):
            rows = [c[k] for c in cols]
            drivers = {code: {fields[j]: rows[j][d] for j in range(nf)} for d, code in enumerate(codes)}
            i = b0 + k
            frame: dict[str, Any] = {"frame_index": i, "t": ts[k], "lap": laps[k], "drivers": drivers}
            if i % race.fps == 0:
                weather = _weather_at(race, ts[k])
                if weather is not None:
                    frame["weather"] = weather
            yield packer.pack(frame)


def decode_msgpack_frame(payload: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame payload (the reference client decoder)."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=True)
