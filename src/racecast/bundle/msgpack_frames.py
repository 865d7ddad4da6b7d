"""The seed-compatible frame payload: one msgpack map per frame, built once at ingest.

The content is what the seed system's clients (joptimus/f1-race-replay) read, in their
units and codes (docs/protocol.md, "Seed compatibility", has the field-by-field table)::

    {frame_index, t, lap, drivers: {CODE: {x, y, speed, gear, lap, position, tyre,
     tyre_age, throttle, brake, drs, dist, rel_dist, race_progress, gap_to_leader,
     gap_to_previous, lap_time, sector1, sector2, sector3, status}}, weather}

* ``x``/``y`` in FastF1 units (1/10 m; the race model holds metres);
* ``tyre`` 0 SOFT, 1 MEDIUM, 2 HARD, 3 INTERMEDIATE, 4 WET (-1 unknown);
* ``drs`` FastF1's raw codes: 0 off, 8 eligible, 12 open;
* ``brake`` 0-1 (FastF1's brake is on/off; the model's 0-100 % / 100), ``throttle`` 0-100;
* ``race_progress`` metres of race (laps x track length), like the seed's;
* ``gap_to_leader`` / ``gap_to_previous`` seconds, 0 for the leader and when unknown (a known
  0 behind the leader is -0.0, which reads as 0 to the seed's clients);
* ``status`` "Running", "Pit", "Retired", "Finished" or "DNS" (did not start);
* ``weather`` on every frame, with ``rain_state`` "Dry" or "Raining".

Floats are packed single-precision; integer-valued channels are packed as integers;
unknown lap and sector times are nil. The entry points (:func:`iter_msgpack_frames`,
:func:`decode_msgpack_frame`) are what bundle writers call; the content is this module's.

Encoding is vectorised: every msgpack *cell* (a key or a value) of a block of
frames is built as a padded byte column with a length, then the valid bytes are
gathered in one pass. The output is standard msgpack (any decoder reads it);
it is ~20x faster than building a dict per frame and calling ``packb``.
"""

from __future__ import annotations

import math

from typing import Any, Iterator

import msgpack
import numpy as np

from ..race import CHANNELS, Drs, Race, Status

#: The race model's per-car fields in order (racecast's own encodings, e.g. compact, decode to these).
DRIVER_FIELDS: tuple[str, ...] = (
    "x", "y", "speed", "gear", "lap", "position", "tyre", "tyre_age", "throttle", "brake", "drs",
    "dist", "rel_dist", "race_progress", "gap", "interval", "lap_time", "sector1", "sector2", "sector3", "status",
)  # fmt: skip
#: Keys of each car's map in the msgpack frames, in wire order (the seed's names).
SEED_DRIVER_FIELDS: tuple[str, ...] = (
    "x", "y", "speed", "gear", "lap", "position", "tyre", "tyre_age", "throttle", "brake", "drs",
    "dist", "rel_dist", "race_progress", "gap_to_leader", "gap_to_previous", "lap_time", "sector1", "sector2",
    "sector3", "status",
)  # fmt: skip
STATUS_LABELS = {int(s): s.label for s in Status}  # the model's labels (racecast's encodings)
#: Car status as the seed's clients read it (its leaderboard greys out "Retired").
SEED_STATUS = {
    int(Status.RUNNING): "Running", int(Status.PIT): "Pit", int(Status.OUT): "Retired", int(Status.FINISHED): "Finished",
    int(Status.DNS): "DNS",  # did not start: listed, never drawn
}  # fmt: skip
#: The model's DRS states as FastF1's raw codes (8: eligible, 10/12/14: open).
SEED_DRS = {int(Drs.OFF): 0, int(Drs.ELIGIBLE): 8, int(Drs.OPEN): 12}
#: FastF1 position units per metre.
POSITION_SCALE = 10.0
_BLOCK = 512  # frames assembled at a time

Cells = tuple[np.ndarray, np.ndarray]  # (bytes padded to width: (..., w) uint8, lengths: (...) int)


def _const(b: bytes, shape: tuple[int, ...]) -> Cells:
    arr = np.broadcast_to(np.frombuffer(b, dtype=np.uint8), (*shape, len(b)))
    return arr, np.full(shape, len(b), dtype=np.int64)


def _map_header(n: int) -> bytes:
    return msgpack.Packer().pack_map_header(n)


def _float_cells(a: np.ndarray, nullable: bool) -> Cells:
    out = np.empty((*a.shape, 5), dtype=np.uint8)
    out[..., 0] = 0xCA  # float 32
    out[..., 1:] = a.astype(">f4").view(np.uint8).reshape(*a.shape, 4)
    lengths = np.full(a.shape, 5, dtype=np.int64)
    if nullable:
        nan = np.isnan(a)
        out[..., 0][nan] = 0xC0  # nil
        lengths[nan] = 1
    return out, lengths


def _int_cells(a: np.ndarray) -> Cells:
    """Smallest signed msgpack int encoding per value (fixint, int16 or int32)."""
    v = a.astype(np.int64)
    out = np.zeros((*v.shape, 5), dtype=np.uint8)
    lengths = np.empty(v.shape, dtype=np.int64)
    fix = (v >= -32) & (v <= 127)
    out[..., 0][fix] = (v[fix] & 0xFF).astype(np.uint8)
    lengths[fix] = 1
    i16 = ~fix & (v >= -(1 << 15)) & (v < (1 << 15))
    out[..., 0][i16] = 0xD1
    out[..., 1:3][i16] = v[i16].astype(">i2").view(np.uint8).reshape(-1, 2)
    lengths[i16] = 3
    i32 = ~fix & ~i16
    if i32.any():
        if np.any(np.abs(v[i32]) >= (1 << 31)):
            raise ValueError("integer channel value does not fit in 32 bits")
        out[..., 0][i32] = 0xD2
        out[..., 1:5][i32] = v[i32].astype(">i4").view(np.uint8).reshape(-1, 4)
        lengths[i32] = 5
    return out, lengths


def _table_cells(codes: np.ndarray, table: dict[int, bytes]) -> Cells:
    """Cells looked up by code from pre-packed values (e.g. status labels)."""
    width = max(len(b) for b in table.values())
    lut = np.zeros((256, width), dtype=np.uint8)
    lut_len = np.zeros(256, dtype=np.int64)
    for k, b in table.items():
        lut[k & 0xFF, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        lut_len[k & 0xFF] = len(b)
    idx = codes.astype(np.int64) & 0xFF
    return lut[idx], lut_len[idx]


def _concat(cells: list[Cells]) -> Cells:
    """Join cells along the last (byte) axis: padded bytes plus a mask of the valid ones."""
    lead = cells[0][1].shape
    data = np.concatenate([np.broadcast_to(a, (*lead, a.shape[-1])) for a, _ in cells], axis=-1)
    mask = np.concatenate([np.arange(a.shape[-1]) < np.asarray(ln)[..., None] for a, ln in cells], axis=-1)
    return data, np.broadcast_to(mask, data.shape)


def _seed_value_cells(race: Race, name: str, b0: int, b1: int) -> Cells:
    """The cells of one wire field for frames ``b0..b1`` (all drivers), in the seed's units and codes."""
    ch = race.channels
    if name in ("x", "y"):
        return _float_cells(ch[name][b0:b1] * np.float32(POSITION_SCALE), False)
    if name == "status":
        return _table_cells(ch["status"][b0:b1], {k: msgpack.packb(v) for k, v in SEED_STATUS.items()})
    if name == "drs":
        return _table_cells(ch["drs"][b0:b1], {k: msgpack.packb(v) for k, v in SEED_DRS.items()})
    if name == "tyre":
        return _int_cells(ch["tyre"][b0:b1].astype(np.int64) - 1)  # 0 unknown .. 5 wet -> -1, 0 SOFT .. 4 WET
    if name == "throttle":
        return _int_cells(np.rint(ch["throttle"][b0:b1]))
    if name == "brake":
        return _float_cells(np.round(ch["brake"][b0:b1] / 100.0, 2), False)
    if name == "race_progress":
        return _float_cells(ch["race_progress"][b0:b1] * race.geometry.length, False)
    if name in ("gap_to_leader", "gap_to_previous"):
        v = ch["gap" if name == "gap_to_leader" else "interval"][b0:b1]
        behind = ch["position"][b0:b1] != 1
        known = np.isfinite(v) & (v > 0) & behind
        # A known gap of exactly 0 behind the leader (cars crossing together) is -0.0: the seed's
        # clients read 0 as before; racecast's decoders (model_car, viewer/model.js) read a known 0.
        zero = np.where(behind & (v == 0), -0.0, 0.0)
        return _float_cells(np.where(known, v, zero), False)
    blk = ch[name][b0:b1]
    dtype, _unit, nullable = CHANNELS[name]
    if np.dtype(dtype).kind == "f":
        return _float_cells(blk, nullable)
    return _int_cells(blk)


def _weather_table(race: Race) -> tuple[list[bytes], np.ndarray | None]:
    """Every weather sample packed once (the seed's keys, ``rain_state`` added), and its time axis."""
    w = race.weather
    if "t" not in w or len(w["t"]) == 0:
        return [], None
    keys = [k for k in ("track_temp", "air_temp", "humidity", "wind_speed", "wind_direction") if k in w]
    rain = w.get("rainfall")
    packed = []
    for i in range(len(w["t"])):
        d: dict[str, Any] = {k: float(w[k][i]) for k in keys}
        wet = rain is not None and float(rain[i]) > 0
        d["rain_state"] = "Raining" if wet else "Dry"
        d["rainfall"] = 1.0 if wet else 0.0
        packed.append(msgpack.packb(d, use_single_float=True))
    return packed, np.asarray(w["t"])


def _encode_block(race: Race, b0: int, b1: int, weather: tuple[list[bytes], np.ndarray | None] | None = None) -> tuple[bytes, np.ndarray]:
    """Encode frames ``b0..b1``; return all their bytes and the per-frame byte lengths."""
    B, nd = b1 - b0, race.n_drivers
    # Per driver: code key, map header, then key + value for every field.
    driver_cells: list[Cells] = []
    for name in SEED_DRIVER_FIELDS:
        driver_cells.append(_const(msgpack.packb(name), (B, nd)))
        driver_cells.append(_seed_value_cells(race, name, b0, b1))
    codes = [msgpack.packb(c) for c in race.codes]
    code_w = max(len(c) for c in codes)
    code_arr = np.zeros((nd, code_w), dtype=np.uint8)
    for d, c in enumerate(codes):
        code_arr[d, : len(c)] = np.frombuffer(c, dtype=np.uint8)
    code_len = np.array([len(c) for c in codes], dtype=np.int64)
    head = [
        (np.broadcast_to(code_arr, (B, nd, code_w)), np.broadcast_to(code_len, (B, nd))),
        _const(_map_header(len(SEED_DRIVER_FIELDS)), (B, nd)),
    ]
    drv_data, drv_mask = _concat(head + driver_cells)
    drv_data = drv_data.reshape(B, -1)
    drv_mask = drv_mask.reshape(B, -1)

    idx = np.arange(b0, b1)
    table, wt = weather if weather is not None else _weather_table(race)
    if table:
        k = np.clip(np.searchsorted(wt, race.t[b0:b1], side="right") - 1, 0, len(table) - 1)
        w_width = max(len(w) for w in table)
        lut = np.zeros((len(table), w_width), dtype=np.uint8)
        for j, w in enumerate(table):
            lut[j, : len(w)] = np.frombuffer(w, dtype=np.uint8)
        w_arr = lut[k]
        w_len = np.array([len(w) for w in table], dtype=np.int64)[k]
        has_weather = np.ones(B, dtype=bool)
    else:
        w_arr = np.zeros((B, 1), dtype=np.uint8)
        w_len = np.zeros(B, dtype=np.int64)
        has_weather = np.zeros(B, dtype=bool)
    key_w = msgpack.packb("weather")
    top_hdr = np.where(has_weather, 0x85, 0x84).astype(np.uint8)[:, None]
    frame_cells: list[Cells] = [
        (top_hdr, np.ones(B, dtype=np.int64)),
        _const(msgpack.packb("frame_index"), (B,)),
        _int_cells(idx),
        _const(msgpack.packb("t"), (B,)),
        _float_cells(race.t[b0:b1], False),
        _const(msgpack.packb("lap"), (B,)),
        _int_cells(race.leader_lap[b0:b1]),
        _const(msgpack.packb("drivers") + _map_header(nd), (B,)),
    ]
    pre_data, pre_mask = _concat(frame_cells)
    post = [
        (np.broadcast_to(np.frombuffer(key_w, dtype=np.uint8), (B, len(key_w))), np.where(has_weather, len(key_w), 0)),
        (w_arr, w_len),
    ]
    post_data, post_mask = _concat(post)
    data = np.concatenate([pre_data, drv_data, post_data], axis=1)
    mask = np.concatenate([pre_mask, drv_mask, post_mask], axis=1)
    return data[mask].tobytes(), mask.sum(axis=1)


def iter_msgpack_frames(race: Race, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Yield the encoded payload of frames ``start..stop`` (all by default)."""
    stop = race.n_frames if stop is None else stop
    weather = _weather_table(race)
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        flat, lengths = _encode_block(race, b0, b1, weather)
        pos = 0
        for n in lengths.tolist():
            yield flat[pos : pos + n]
            pos += n


_MODEL_STATUS = {v: STATUS_LABELS[k] for k, v in SEED_STATUS.items()}


def seed_gap(v: float | None, lead: bool) -> float | None:
    """A seed gap back in model terms: 0 is "unknown" (None) except for the leader; -0.0 is a known 0."""
    if v is None or (v == 0 and math.copysign(1.0, v) > 0):
        return 0.0 if lead else None
    return float(v) if v != 0 else 0.0


def model_car(car: dict[str, Any], track_length: float) -> dict[str, Any]:
    """One car of a msgpack frame back in the race model's units and codes (racecast's viewer does the
    same in JavaScript). ``gap``/``interval`` come back None where the seed's 0 means "unknown"."""
    out = dict(car)
    out["x"] = car["x"] / POSITION_SCALE
    out["y"] = car["y"] / POSITION_SCALE
    out["tyre"] = car["tyre"] + 1
    out["drs"] = 2 if car["drs"] >= 10 else 1 if car["drs"] == 8 else 0
    out["brake"] = car["brake"] * 100.0
    out["race_progress"] = car["race_progress"] / track_length if track_length > 0 else 0.0
    lead = car["position"] == 1
    out["gap"] = seed_gap(car.get("gap_to_leader"), lead)
    out["interval"] = seed_gap(car.get("gap_to_previous"), lead)
    out.pop("gap_to_leader", None)
    out.pop("gap_to_previous", None)
    out["status"] = _MODEL_STATUS.get(car["status"], car["status"])
    return {k: out[k] for k in DRIVER_FIELDS}


def decode_msgpack_frame(payload: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame payload (the reference client decoder)."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=True)
