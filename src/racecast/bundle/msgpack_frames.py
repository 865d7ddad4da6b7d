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
import threading

from typing import Any, Callable, Iterator, Sequence

import msgpack
import numpy as np

from ..race import CHANNELS, Drs, Race, Status
from .wsframe import OP_BINARY

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

#: A cell writer: (bytes grid (..., w) uint8, mask (..., w) bool) -> None, for a cell of width w.
Writer = Callable[[np.ndarray, np.ndarray], None]
#: (width in bytes, writer or None, static bytes or None). Static bytes are the same in every frame
#: and every block (keys, a float's 0xCA marker; a tuple: one value per driver, e.g. the driver
#: codes): they are written once into a template grid that each block copies, and the writer fills
#: only what varies.
Cell = tuple[int, "Writer | None", "bytes | tuple[bytes, ...] | None"]


def _map_header(n: int) -> bytes:
    return msgpack.Packer().pack_map_header(n)


def _const(b: bytes) -> Cell:
    return len(b), None, b


def _float_cell(a: np.ndarray, nullable: bool) -> Cell:
    """float 32 (0xCA + 4 bytes big-endian); nil where NaN when ``nullable``."""

    def put(data: np.ndarray, mask: np.ndarray) -> None:
        data[..., 1:] = np.ascontiguousarray(a, dtype=">f4").view(np.uint8).reshape(*a.shape, 4)
        if nullable:
            nan = np.isnan(a)
            if nan.any():  # whole-column writes: a masked scatter into the strided grid costs more
                data[..., 0] = np.where(nan, 0xC0, 0xCA).astype(np.uint8)  # nil, or the float 32 marker
                mask[..., 1:] = ~nan[..., None]

    return 5, put, b"\xca\0\0\0\0"  # the template holds the marker, every byte valid


def _int_cell(a: np.ndarray) -> Cell:
    """Smallest signed msgpack int encoding per value (fixint, int16 or int32)."""
    v = a.astype(np.int64)
    if v.size and (int(v.max()) >= (1 << 31) or int(v.min()) < -(1 << 31)):
        raise ValueError("integer channel value does not fit in 32 bits")
    fix = (v >= -32) & (v <= 127)
    if fix.all():
        def put_fix(data: np.ndarray, mask: np.ndarray) -> None:
            data[..., 0] = (v & 0xFF).astype(np.uint8)  # fixint / negative fixint: the low byte
            mask[...] = True

        return 1, put_fix, None
    i16 = ~fix & (v >= -(1 << 15)) & (v < (1 << 15))
    wide = not (fix | i16).all()

    def put(data: np.ndarray, mask: np.ndarray) -> None:
        be = np.ascontiguousarray(v, dtype=">i4").view(np.uint8).reshape(*v.shape, 4)
        data[..., 0] = np.where(fix, v & 0xFF, np.where(i16, 0xD1, 0xD2)).astype(np.uint8)
        data[..., 1:3] = np.where(i16[..., None], be[..., 2:4], be[..., 0:2])
        length = np.where(fix, 1, 3)
        if wide:
            data[..., 3:5] = be[..., 2:4]
            length = np.where(fix | i16, length, 5)
        mask[...] = np.arange(data.shape[-1]) < length[..., None]

    return (5 if wide else 3), put, None


Lut = tuple[np.ndarray, np.ndarray]  # (pre-packed values padded to one width, their lengths)


def _lut(values: Sequence[bytes]) -> Lut:
    width = max(len(b) for b in values)
    lut = np.zeros((len(values), width), dtype=np.uint8)
    for k, b in enumerate(values):
        lut[k, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return lut, np.array([len(b) for b in values], dtype=np.int64)


def _lut_cell(idx: np.ndarray, lut: Lut) -> Cell:
    """Cells looked up by index from pre-packed values (status labels, DRS codes, weather)."""
    values, lens = lut
    valid = np.arange(values.shape[1]) < lens[:, None]  # each value's mask, looked up like its bytes

    def put(data: np.ndarray, mask: np.ndarray) -> None:
        data[...] = values[idx]
        mask[...] = valid[idx]

    return values.shape[1], put, None


def _per_driver_const(values: Sequence[bytes]) -> Cell:
    """A static cell with one value per driver (the driver codes): written into the template once."""
    return max(len(v) for v in values), None, tuple(values)


def _table_lut(table: dict[int, bytes]) -> Lut:
    """A lookup of codes 0-255 (indexed by the code's low byte) from pre-packed values."""
    return _lut([table.get(k, b"") for k in range(256)])


def _split(a: np.ndarray, nd: int) -> np.ndarray:
    """A (frames, nd * w) slice as a (frames, nd, w) view of the same bytes (never a copy)."""
    v = a.view()
    v.shape = (a.shape[0], nd, a.shape[1] // nd)  # raises rather than copy
    return v


def _fill(data: np.ndarray, mask: np.ndarray, cells: Sequence[Cell]) -> None:
    off = 0
    for w, put, _static in cells:
        if put is not None:
            put(data[..., off : off + w], mask[..., off : off + w])
        off += w


def _fill_static(data: np.ndarray, mask: np.ndarray, cells: Sequence[Cell]) -> None:
    off = 0
    for w, _put, static in cells:
        if isinstance(static, tuple):  # one value per driver: data and mask are (..., drivers, width)
            values, lens = _lut(static)
            data[..., off : off + w] = values
            mask[..., off : off + w] = np.arange(w) < lens[:, None]
        elif static is not None:
            data[..., off : off + w] = np.frombuffer(static, dtype=np.uint8)
            mask[..., off : off + w] = True
        off += w


#: Template grids (static bytes written, their mask set) per layout; a race has a handful of
#: layouts (integer cells are 1, 3 or 5 bytes wide depending on a block's values).
_TEMPLATES: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
_MAX_TEMPLATES = 64
#: Per thread, the grids a block is assembled in, reused block after block (keyed by shape).
#: A fresh half-megabyte grid per block cost more in page faults than the encoding itself.
_SCRATCH = threading.local()
_MAX_SCRATCH = 4


def _scratch(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None = getattr(_SCRATCH, "grids", None)
    if grids is None:
        grids = _SCRATCH.grids = {}
    hit = grids.get(shape)
    if hit is None:
        if len(grids) >= _MAX_SCRATCH:
            grids.pop(next(iter(grids)))
        hit = grids[shape] = (np.empty(shape, dtype=np.uint8), np.empty(shape, dtype=bool))
    return hit


def _template(B: int, nd: int, lead: int, pre: Sequence[Cell], drv: Sequence[Cell],
              post: Sequence[Cell]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(data, mask) grids for a block of this layout with the static bytes in place: this thread's
    scratch grids, valid until its next call. ``lead`` columns come first (a frame header's room)."""
    key = (B, nd, lead, *[(w, st) for w, _p, st in pre], None, *[(w, st) for w, _p, st in drv], None,
           *[(w, st) for w, _p, st in post])  # fmt: skip
    hit = _TEMPLATES.get(key)
    if hit is None:
        w_pre = lead + sum(c[0] for c in pre)
        d_end = w_pre + nd * sum(c[0] for c in drv)
        width = d_end + sum(c[0] for c in post)
        data = np.zeros((B, width), dtype=np.uint8)
        mask = np.zeros((B, width), dtype=bool)
        _fill_static(data[:, lead:w_pre], mask[:, lead:w_pre], pre)
        _fill_static(_split(data[:, w_pre:d_end], nd), _split(mask[:, w_pre:d_end], nd), drv)
        _fill_static(data[:, d_end:], mask[:, d_end:], post)
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.pop(next(iter(_TEMPLATES)), None)
        hit = _TEMPLATES[key] = (data, mask)
    data, mask = _scratch(hit[0].shape)
    np.copyto(data, hit[0])
    np.copyto(mask, hit[1])
    return data, mask


def _frame_headers(data: np.ndarray, mask: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Write each row's WebSocket binary frame header (2, 4 or 10 bytes, RFC 6455) for a payload of
    ``n`` bytes into the row's first 10 columns; return the header sizes."""
    n = n.astype(np.int64)
    data[:, 0] = OP_BINARY
    small, mid = n < 126, (n >= 126) & (n < 65536)
    big = ~(small | mid)
    data[:, 1] = np.where(small, n, np.where(mid, 126, 127)).astype(np.uint8)
    be = n.astype(">u8").view(np.uint8).reshape(-1, 8)
    data[mid, 2:4] = be[mid, 6:8]
    data[big, 2:10] = be[big]
    hs = np.where(small, 2, np.where(mid, 4, 10))
    mask[:, :10] = np.arange(10) < hs[:, None]
    return hs


def _seed_value_cell(race: Race, name: str, b0: int, b1: int) -> Cell:
    """The cell of one wire field for frames ``b0..b1`` (all drivers), in the seed's units and codes."""
    ch = race.channels
    if name in ("x", "y"):
        return _float_cell(ch[name][b0:b1] * np.float32(POSITION_SCALE), False)
    if name == "status":
        return _lut_cell(ch["status"][b0:b1].astype(np.int64) & 0xFF, _STATUS_LUT)
    if name == "drs":
        return _lut_cell(ch["drs"][b0:b1].astype(np.int64) & 0xFF, _DRS_LUT)
    if name == "tyre":
        return _int_cell(ch["tyre"][b0:b1].astype(np.int64) - 1)  # 0 unknown .. 5 wet -> -1, 0 SOFT .. 4 WET
    if name == "throttle":
        return _int_cell(np.rint(ch["throttle"][b0:b1]))
    if name == "brake":
        return _float_cell(np.round(ch["brake"][b0:b1] / 100.0, 2), False)
    if name == "race_progress":
        return _float_cell(ch["race_progress"][b0:b1] * race.geometry.length, False)
    if name in ("gap_to_leader", "gap_to_previous"):
        v = ch["gap" if name == "gap_to_leader" else "interval"][b0:b1]
        behind = ch["position"][b0:b1] != 1
        known = np.isfinite(v) & (v > 0) & behind
        # A known gap of exactly 0 behind the leader (cars crossing together) is -0.0: the seed's
        # clients read 0 as before; racecast's decoders (model_car, viewer/model.js) read a known 0.
        zero = np.where(behind & (v == 0), -0.0, 0.0)
        return _float_cell(np.where(known, v, zero), False)
    blk = ch[name][b0:b1]
    dtype, _unit, nullable = CHANNELS[name]
    if np.dtype(dtype).kind == "f":
        return _float_cell(blk, nullable)
    return _int_cell(blk)


_STATUS_LUT = _table_lut({k: msgpack.packb(v) for k, v in SEED_STATUS.items()})
_DRS_LUT = _table_lut({k: msgpack.packb(v) for k, v in SEED_DRS.items()})
_TOP_LUT = _lut([b"\x84", b"\x85"])  # the frame's map: 4 keys, 5 with weather
#: The weather of a race: its samples packed (None without weather), their times.
Weather = tuple[Lut | None, np.ndarray | None]
_KEYS = {name: msgpack.packb(name) for name in (*SEED_DRIVER_FIELDS, "frame_index", "t", "lap", "weather")}


def weather_table(race: Race) -> Weather:
    """Every weather sample packed once (the seed's keys, ``rain_state`` added), and its time axis."""
    w = race.weather
    if "t" not in w or len(w["t"]) == 0:
        return None, None
    keys = [k for k in ("track_temp", "air_temp", "humidity", "wind_speed", "wind_direction") if k in w]
    rain = w.get("rainfall")
    packed = []
    for i in range(len(w["t"])):
        d: dict[str, Any] = {k: float(w[k][i]) for k in keys}
        wet = rain is not None and float(rain[i]) > 0
        d["rain_state"] = "Raining" if wet else "Dry"
        d["rainfall"] = 1.0 if wet else 0.0
        packed.append(msgpack.packb(d, use_single_float=True))
    return _lut(packed), np.asarray(w["t"])


def _encode_block(race: Race, b0: int, b1: int, weather: Weather | None = None,
                  first_index: int | None = None, framed: bool = False) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Encode frames ``b0..b1``; return all their bytes (uint8, back to back) and each frame's length.

    Every cell (a key or a value) is written into its slot of one byte grid (frames x bytes)
    with a mask of its valid bytes; the frames are the masked bytes in order. ``first_index``:
    the ``frame_index`` of row ``b0`` (default ``b0``). ``framed``: each frame starts with its
    WebSocket binary frame header (counted in its length), ready to send as it is.
    """
    B, nd = b1 - b0, race.n_drivers
    # Per driver: code key, map header, then key + value for every field.
    drv_cells: list[Cell] = [
        _per_driver_const([msgpack.packb(c) for c in race.codes]),
        _const(_map_header(len(SEED_DRIVER_FIELDS))),
    ]
    for name in SEED_DRIVER_FIELDS:
        drv_cells += [_const(_KEYS[name]), _seed_value_cell(race, name, b0, b1)]
    idx = np.arange(B) + (b0 if first_index is None else first_index)
    table, wt = weather if weather is not None else weather_table(race)
    pre: list[Cell] = [
        _lut_cell(np.full(B, 0 if table is None else 1), _TOP_LUT),
        _const(_KEYS["frame_index"]), _int_cell(idx),
        _const(_KEYS["t"]), _float_cell(race.t[b0:b1], False),
        _const(_KEYS["lap"]), _int_cell(race.leader_lap[b0:b1]),
        _const(msgpack.packb("drivers") + _map_header(nd)),
    ]  # fmt: skip
    post: list[Cell] = []
    if table is not None:
        k = np.clip(np.searchsorted(wt, race.t[b0:b1], side="right") - 1, 0, len(table[0]) - 1)
        post = [_const(_KEYS["weather"]), _lut_cell(k, table)]
    lead = 10 if framed else 0
    w_pre = lead + sum(c[0] for c in pre)
    d_end = w_pre + nd * sum(c[0] for c in drv_cells)
    data, mask = _template(B, nd, lead, pre, drv_cells, post)
    _fill(data[:, lead:w_pre], mask[:, lead:w_pre], pre)
    _fill(_split(data[:, w_pre:d_end], nd), _split(mask[:, w_pre:d_end], nd), drv_cells)
    _fill(data[:, d_end:], mask[:, d_end:], post)
    lengths = np.add.reduce(mask[:, lead:].view(np.uint8), axis=1, dtype=np.int64)
    if framed:
        lengths += _frame_headers(data, mask, lengths)
    return data[mask], lengths


def msgpack_block(race: Race, first_index: int, weather: Weather | None = None) -> list[bytes]:
    """Every frame of ``race`` (a block of a longer race: its rows only) numbered from ``first_index``.
    ``weather``: :func:`weather_table` of the whole race, computed once."""
    return list(_payloads(race, 0, race.n_frames, weather, first_index))


def msgpack_framed_block(race: Race, first_index: int, weather: Weather | None = None) -> tuple[np.ndarray, list[int]]:
    """Like :func:`msgpack_block`, but as one read-only buffer of WebSocket binary frames (header and
    payload each) and the offsets of the frames in it (one more than the frames): a derived block as
    it is cached and sent, built without a per-frame object or a copy."""
    parts, lens = [], []
    for b0 in range(0, race.n_frames, _BLOCK):
        b1 = min(b0 + _BLOCK, race.n_frames)
        flat, lengths = _encode_block(race, b0, b1, weather, first_index + b0, framed=True)
        parts.append(flat)
        lens.append(lengths)
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
    flat.flags.writeable = False
    offsets = np.zeros(race.n_frames + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lens), out=offsets[1:])
    return flat, offsets.tolist()


def _payloads(race: Race, start: int, stop: int, weather: Weather | None, first_index: int | None = None) -> Iterator[bytes]:
    first = start if first_index is None else first_index
    for b0 in range(start, stop, _BLOCK):
        b1 = min(b0 + _BLOCK, stop)
        flat, lengths = _encode_block(race, b0, b1, weather, first + (b0 - start))
        data = flat.tobytes()
        pos = 0
        for n in lengths.tolist():
            yield data[pos : pos + n]
            pos += n


def iter_msgpack_frames(race: Race, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Yield the encoded payload of frames ``start..stop`` (all by default)."""
    stop = race.n_frames if stop is None else stop
    yield from _payloads(race, start, stop, weather_table(race))


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
