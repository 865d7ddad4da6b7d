"""Compact frames: quantized integers, each frame a delta against its keyframe.

Frame ``i`` of the ``compact`` stream is a *keyframe* when ``i % K == 0`` (K =
:data:`KEY_INTERVAL`, one second at 25 FPS) and a *delta frame* otherwise. A
keyframe holds every channel of every driver, plus, for each fast channel, a
per-frame *rate* chosen at ingest; delta frame ``i`` of keyframe ``k`` holds, for
every fast channel, the residual ``value - (key value + (i - k) * rate)`` and, for
the slow channels, only the values that differ from the keyframe's. So any frame
decodes from its keyframe alone, whatever frames were skipped in between.

The rate is the encoder's choice (racecast uses the least-squares slope over the
second); decoders just apply it. Layout: see
docs/protocol.md, "Compact encoding". Everything is built at ingest, vectorised
over whole columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..race import Race
from .msgpack_frames import DRIVER_FIELDS
from .quantize import BY_NAME, FAST, NULL, SLOW, STATUS_LABELS, T_SCALE, quantize, quantized_weather
from .varint import DecodeError, zigzag
from .wire import (
    KIND_DELTA, KIND_KEY, KIND_NAMES, Reader, check_size, code_tokens,
    payloads, read_header, split, weather_dict, weather_rows, zz,
)  # fmt: skip

KEY_INTERVAL = 25
COMPACT_MEDIA_TYPE = "application/x-racecast-compact"
_BLOCK = 4096  # delta frames assembled at a time


class MissingKeyframe(DecodeError):
    """A delta frame arrived without the keyframe it is relative to (ask for / wait for it)."""


# -- rates -----------------------------------------------------------------------------------


def span_rates(v: np.ndarray, k_interval: int, nullable: bool) -> np.ndarray:
    """Per keyframe span and driver, the least-squares slope through the keyframe value. (spans, D) int64.

    Measured against the best of {0, chord, least squares} per span, it costs
    0.2 % more bytes for a fraction of the work. Residuals always fit a 5-byte
    varint: ``|n * rate| <= 1.5 * max|delta|`` for any span length.
    """
    n_frames, nd = v.shape
    n_sp = -(-n_frames // k_interval)
    pad = n_sp * k_interval - n_frames
    vp = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if pad else v
    vp = vp.reshape(n_sp, k_interval, nd)
    n = np.arange(k_interval, dtype=np.float64)
    w = np.where(np.arange(n_sp * k_interval).reshape(n_sp, k_interval) < n_frames, n[None, :], 0.0)
    delta = (vp - vp[:, :1, :]).astype(np.float64)
    num = np.einsum("sk,skd->sd", w, delta)
    rate = np.rint(num / np.maximum((w * w).sum(axis=1), 1.0)[:, None]).astype(np.int64)
    if nullable:
        rate[(vp == NULL).any(axis=1)] = 0
    return rate


# -- encoding --------------------------------------------------------------------------------


def iter_compact_frames(race: Race, k_interval: int = KEY_INTERVAL) -> Iterator[bytes]:
    """Yield the compact payload of every frame (keyframes every ``k_interval`` frames), a block at a time."""
    n_frames = race.n_frames
    step = max(1, _BLOCK // k_interval) * k_interval
    for f0 in range(0, n_frames, step):
        f1 = min(f0 + step, n_frames)
        keys = np.arange(f0, f1, k_interval)
        weather = quantized_weather(race, race.t[keys])
        yield from compact_payloads(quantize(race, f0, f1), f0, race.codes, weather, k_interval)


def compact_payloads(q: dict[str, np.ndarray], base: int, codes: list[str] | tuple[str, ...],
                     weather: list[list[tuple[int, int]]], k_interval: int = KEY_INTERVAL) -> list[bytes]:  # fmt: skip
    """Compact payloads of the frames in ``q`` (row 0 is frame ``base``, a keyframe).

    ``weather`` holds the quantized weather of each keyframe. The result depends only on
    the keyframe spans covered, so encoding a race span by span gives the same bytes as whole.
    """
    if base % k_interval:
        raise ValueError(f"a compact block must start on a keyframe, not at frame {base}")
    n = q["t"].shape[0]
    rates = {s.name: span_rates(q[s.name], k_interval, s.nullable) for s in FAST}
    t_rate = span_rates(q["t"][:, None], k_interval, False)[:, 0]
    keys = np.arange(base, base + n, k_interval)
    key_payloads = split(*_key_block(q, keys, rates, t_rate, weather, list(codes), base))
    idx = np.arange(base, base + n)
    deltas = idx[idx % k_interval != 0]
    delta_payloads = iter(split(*_delta_block(q, deltas, k_interval, rates, t_rate, base)) if deltas.size else [])
    return [key_payloads[(i - base) // k_interval] if i % k_interval == 0 else next(delta_payloads) for i in idx.tolist()]


def _key_block(q: dict[str, np.ndarray], k: np.ndarray, rates: dict[str, np.ndarray], t_rate: np.ndarray,
               weather: list[list[tuple[int, int]]], codes: list[str], base: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Payload bytes of the keyframes at frames ``k`` (span j starts at k[j]; row 0 of ``q`` is frame ``base``)."""
    nk = k.size
    r = k - base
    ct = np.asarray(code_tokens(codes), dtype=np.uint64)
    cols = [k[:, None].astype(np.uint64), np.broadcast_to(ct, (nk, ct.size))]
    cols += [zz(q["t"][r])[:, None], zz(t_rate)[:, None], zz(q["leader_lap"][r])[:, None]]
    for s in FAST:
        cols += [zz(q[s.name][r]), zz(rates[s.name])]
    for s in SLOW:
        cols.append(zz(q[s.name][r]))
    return payloads(KIND_KEY, np.concatenate(cols, axis=1), weather_rows(weather))


def _delta_block(q: dict[str, np.ndarray], f: np.ndarray, k_interval: int, rates: dict[str, np.ndarray],
                 t_rate: np.ndarray, base: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Payload bytes of delta frames ``f`` (none of them a keyframe; row 0 of ``q`` is frame ``base``)."""
    B = f.size
    span = (f - base) // k_interval  # span within the block: rates are per block span
    k = span * k_interval  # row of the keyframe
    rf = f - base  # row of the frame
    n = (rf - k)[:, None]
    cols = [f[:, None].astype(np.uint64), n.astype(np.uint64)]
    cols.append(zz(q["t"][rf] - q["t"][k] - n[:, 0] * t_rate[span])[:, None])
    cols.append(zz(q["leader_lap"][rf] - q["leader_lap"][k])[:, None])
    for s in FAST:
        v = q[s.name]
        cols.append(zz(v[rf] - v[k] - n * rates[s.name][span]))
    # Slow channels: (driver, channel id, value) for each that differs from the keyframe.
    slow = np.stack([q[s.name][rf] for s in SLOW], axis=1)  # (B, S, D)
    slow_key = np.stack([q[s.name][k] for s in SLOW], axis=1)
    fr, si, di = np.nonzero(slow != slow_key)
    ids = np.array([s.id for s in SLOW], dtype=np.uint64)
    changes = np.stack([di.astype(np.uint64), ids[si], zz(slow[fr, si, di])], axis=1)
    cols.append(np.bincount(fr, minlength=B).astype(np.uint64)[:, None])
    return payloads(KIND_DELTA, np.concatenate(cols, axis=1), (changes, fr))


# -- decoding --------------------------------------------------------------------------------


@dataclass
class CompactFrame:
    """One decoded frame in quantized integers (see :mod:`racecast.bundle.quantize` for units).

    A keyframe also carries ``rates``: pass it as ``keyframe`` to decode the delta frames after it.
    """

    frame_index: int
    keyframe_index: int
    t: int  # ms
    lap: int  # leader's lap
    codes: tuple[str, ...]
    q: dict[str, np.ndarray]  # channel -> int64 (drivers,), NULL for unknown
    weather: list[tuple[int, int]] | None = None
    rates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    t_rate: int = field(default=0, repr=False)
    base: "CompactFrame | None" = field(default=None, repr=False, compare=False)

    @property
    def is_key(self) -> bool:
        return self.frame_index == self.keyframe_index

    @property
    def key(self) -> "CompactFrame":
        """The keyframe this frame decodes against (itself for a keyframe): keep it for the next delta."""
        return self if self.base is None else self.base

    def to_dict(self) -> dict[str, Any]:
        """The frame as the msgpack frames show it: ``{frame_index, t, lap, drivers: {CODE: {...}}}``."""
        q = {name: a[None, :] for name, a in self.q.items()}
        return frames_dicts(self.frame_index, [self.t], [self.lap], self.codes, q, self.weather)[0]


def _values(name: str, a: np.ndarray) -> list[Any]:
    """Dequantized values of integer array ``a`` of channel ``name`` (any shape), as nested lists."""
    spec = BY_NAME[name]
    if name == "status":
        lab = STATUS_LABELS.get
        return [[lab(v, v) for v in row] for row in a.tolist()] if a.ndim == 2 else [lab(v, v) for v in a.tolist()]
    vals = (a / spec.scale).tolist() if spec.scale != 1 else a.tolist()
    if spec.nullable and (a == NULL).any():
        null = (a == NULL).tolist()
        if a.ndim == 1:
            return [None if n else v for v, n in zip(vals, null)]
        return [[None if n else v for v, n in zip(rv, rn)] for rv, rn in zip(vals, null)]
    return vals


def frames_dicts(first: int, t_ms: list[int], lap: list[int], codes: tuple[str, ...], q: dict[str, np.ndarray],
                 weather: list[tuple[int, int]] | None) -> list[dict[str, Any]]:  # fmt: skip
    """Normalized frame dicts from integer columns ``q[name]`` shaped (frames, drivers); weather on the first."""
    cols = [_values(name, q[name]) for name in DRIVER_FIELDS]
    out = []
    for j in range(len(t_ms)):
        rows = [c[j] for c in cols]
        drivers = {code: dict(zip(DRIVER_FIELDS, vals)) for code, vals in zip(codes, zip(*rows))}
        f: dict[str, Any] = {"frame_index": first + j, "t": t_ms[j] / T_SCALE, "lap": lap[j], "drivers": drivers}
        if j == 0 and weather:
            f["weather"] = weather_dict(weather)
        out.append(f)
    return out


def decode_compact(payload: bytes | bytearray | memoryview, keyframe: CompactFrame | None = None) -> CompactFrame:
    """Decode one compact payload (or several back to back: a keyframe then a delta of its span).

    Returns the last frame; pass its ``.key`` as ``keyframe`` next time. A delta
    needs its keyframe (from an earlier call, or earlier in the same buffer);
    without it, :class:`MissingKeyframe`. Bad input raises :class:`DecodeError`, quickly.
    """
    check_size(payload)
    key = keyframe
    offset = 0
    frame: CompactFrame | None = None
    while True:
        kind = read_header(payload, offset)
        if kind == KIND_KEY:
            frame, offset = _decode_key(payload, offset)
            key = frame
        elif kind == KIND_DELTA:
            frame, offset = _decode_delta(payload, offset, key)
        else:
            raise DecodeError(f"expected a compact frame, got a {KIND_NAMES[kind]}")
        if offset == len(payload):
            return frame


def _decode_key(buf: bytes | bytearray | memoryview, offset: int) -> tuple[CompactFrame, int]:
    r = Reader(buf, offset, "keyframe")
    k = r.u()
    codes = r.codes()
    nd = len(codes)
    t, t_rate, lap = r.z(), r.z(), r.z()
    q: dict[str, np.ndarray] = {}
    rates: dict[str, np.ndarray] = {}
    for s in FAST:
        q[s.name] = r.zs(nd)
        rates[s.name] = r.zs(nd)
    for s in SLOW:
        q[s.name] = r.zs(nd)
    weather = r.weather()
    return CompactFrame(k, k, t, lap, codes, q, weather, rates, t_rate), r.end()


_SLOW_BY_ID = {s.id: s.name for s in SLOW}


def _decode_delta(buf: bytes | bytearray | memoryview, offset: int, key: CompactFrame | None) -> tuple[CompactFrame, int]:
    r = Reader(buf, offset, "delta frame")
    i = r.u()
    n = r.u()
    if n == 0 or n > i:
        raise r.fail(f"keyframe offset {n} is not valid for frame {i}")
    k = i - n
    if key is None or not key.is_key or key.frame_index != k:
        have = "none" if key is None else str(key.keyframe_index)
        raise MissingKeyframe(f"delta frame {i} needs keyframe {k} (decoder holds {have})")
    nd = len(key.codes)
    t = key.t + n * key.t_rate + r.z()
    lap = key.lap + r.z()
    q: dict[str, np.ndarray] = {}
    for s in FAST:
        q[s.name] = key.q[s.name] + n * key.rates[s.name] + r.zs(nd)
    for s in SLOW:
        q[s.name] = key.q[s.name].copy()
    n_changes = r.count(nd * len(SLOW), 3, "change count")
    ch = r.take(3 * n_changes).reshape(-1, 3)
    for d, cid, v in zip(ch[:, 0].tolist(), ch[:, 1].tolist(), ch[:, 2].tolist()):
        name = _SLOW_BY_ID.get(cid)
        if name is None or d >= nd:
            raise r.fail(f"change for driver {d}, channel {cid} is out of range")
        q[name][d] = (v >> 1) ^ -(v & 1)
    return CompactFrame(i, k, t, lap, key.codes, q, base=key), r.end()


__all__ = ["KEY_INTERVAL", "CompactFrame", "DecodeError", "MissingKeyframe", "decode_compact", "iter_compact_frames"]
