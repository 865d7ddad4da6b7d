"""Compact frames and chunks: exact round trips, skips, and refusal of bad input."""

from __future__ import annotations

import dataclasses
import gzip
import math

import brotli
import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racecast.bundle import open_bundle, write_bundle
from racecast.bundle.chunks import CHUNK_FRAMES, decode_chunk, decode_chunks
from racecast.bundle.compact import KEY_INTERVAL, DecodeError, MissingKeyframe, decode_compact
from racecast.bundle.msgpack_frames import decode_msgpack_frame, model_car
from racecast.bundle.quantize import NULL, QUANTS, quantize
from racecast.bundle.wire import MAX_PAYLOAD_BYTES
from racecast.race import Race, Status
from tests.factories import tiny_race

N_FRAMES = 25 * 12 + 7  # a short last chunk and a short last keyframe span


def varied_race(n_frames: int = N_FRAMES, n_drivers: int = 5, seed: int = 1) -> Race:
    """tiny_race with noisy telemetry, gear changes, unknown (NaN) timings and a retirement."""
    base = tiny_race(n_frames=n_frames, n_drivers=n_drivers, retire=True, race_id="varied")
    rng = np.random.default_rng(seed)
    ch = {k: np.array(v) for k, v in base.channels.items()}
    shape = (n_frames, n_drivers)
    ch["speed"] += rng.normal(0, 3, shape).astype(np.float32)
    ch["throttle"][:] = rng.uniform(0, 100, shape)
    ch["brake"][:] = np.where(rng.random(shape) < 0.2, 100.0, 0.0)
    ch["gear"][:] = rng.integers(1, 9, shape) * (rng.random(shape) < 0.1) + 6 * (rng.random(shape) >= 0.1)
    ch["drs"][::40] = 2
    ch["gap"][:] = rng.uniform(0, 30, shape)
    ch["gap"][rng.random(shape) < 0.05] = np.nan
    ch["interval"][:] = np.where(rng.random(shape) < 0.5, np.nan, rng.uniform(0, 3, shape))
    ch["sector1"][n_frames // 3 :] = 27.123
    ch["sector2"][n_frames // 4 :] = np.nan
    ch["tyre_age"][n_frames // 2 :] += 1
    ch["x"] += rng.normal(0, 0.3, shape).astype(np.float32)
    return dataclasses.replace(base, channels=ch)


@pytest.fixture(scope="module")
def race() -> Race:
    return varied_race()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, race):
    b = open_bundle(write_bundle(race, tmp_path_factory.mktemp("b") / "varied"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def q(race):
    return quantize(race)


def assert_frame(f, q, i):
    assert f.frame_index == i
    assert f.t == q["t"][i] and f.lap == q["leader_lap"][i]
    for spec in QUANTS:
        np.testing.assert_array_equal(f.q[spec.name], q[spec.name][i], err_msg=f"{spec.name} at frame {i}")


def test_quantization_keeps_positions_to_the_centimetre(race, q):
    for name in ("x", "y", "dist"):
        assert np.abs(q[name] / 100 - race.channels[name]).max() <= 0.005 + 1e-6  # 1 cm steps, rounded
    assert (q["gap"] == NULL).any() and (q["interval"] == NULL).any()


def test_every_compact_frame_round_trips_exactly(bundle, q):
    s = bundle.streams["compact"]
    assert s.count == bundle.n_frames and s.info["keyframe_interval"] == KEY_INTERVAL
    key = None
    for i in range(s.count):
        f = decode_compact(s[i], key)
        assert f.is_key == (i % KEY_INTERVAL == 0)
        key = f.key
        assert_frame(f, q, i)


def test_compact_frames_are_much_smaller_than_msgpack(bundle):
    size = {n: sum(len(bundle.streams[n][i]) for i in range(bundle.n_frames)) for n in ("compact", "msgpack")}
    assert size["compact"] * 4 < size["msgpack"]


def test_a_delta_without_its_keyframe_is_refused_clearly(bundle):
    s = bundle.streams["compact"]
    with pytest.raises(MissingKeyframe, match="needs keyframe 25"):
        decode_compact(s[30])
    other = decode_compact(s[0])
    with pytest.raises(MissingKeyframe, match=r"needs keyframe 25 \(decoder holds 0\)"):
        decode_compact(s[30], other)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, N_FRAMES - 1), min_size=1, max_size=40))
def test_any_frame_decodes_after_arbitrary_skips(bundle, q, order):
    """A client holding some keyframe: the sender adds the frame's keyframe only when it differs."""
    s = bundle.streams["compact"]
    key = None
    for i in order:
        k = i - i % KEY_INTERVAL
        msg = bytes(s[i]) if key is not None and key.frame_index == k or i == k else bytes(s[k]) + bytes(s[i])
        f = decode_compact(msg, key)
        key = f.key
        assert key.frame_index == k
        assert_frame(f, q, i)


def test_compact_dicts_match_the_msgpack_frames(bundle):
    s = bundle.streams["compact"]
    key = None
    for i in range(0, s.count, 7):
        k = i - i % KEY_INTERVAL
        key = decode_compact(s[k])
        got = decode_compact(s[i], key).to_dict()
        want = decode_msgpack_frame(bundle.frame(i))
        length = bundle.manifest["geometry"]["length"]
        want["drivers"] = {c: model_car(car, length) for c, car in want["drivers"].items()}
        del want["weather"]  # every msgpack frame has it; compact frames only once a second
        got.pop("weather", None)
        assert got.keys() == want.keys() and got["frame_index"] == i and got["lap"] == want["lap"]
        assert got["t"] == pytest.approx(want["t"], abs=5e-4)
        for code, car in want["drivers"].items():
            mine = got["drivers"][code]
            assert list(mine) == list(car)
            for name, v in car.items():
                tol = {"x": 0.006, "y": 0.006, "dist": 0.006, "brake": 0.6, "speed": 0.051, "gap": 5e-4, "interval": 5e-4,
                       "rel_dist": 6e-6, "race_progress": 6e-6, "lap_time": 5e-4, "sector1": 5e-4,
                       "sector2": 5e-4, "sector3": 5e-4}.get(name, 0)  # fmt: skip
                if name in ("gap", "interval"):  # the seed's 0 is "unknown" too, and the leader's always
                    if car["position"] != 1:
                        assert (mine[name] or 0) == pytest.approx(v or 0, abs=5e-4), (name, i, code)
                elif v is None or isinstance(v, str):
                    assert mine[name] == v, (name, i, code)
                else:
                    assert mine[name] == pytest.approx(v, abs=tol + abs(v) * 1e-6), (name, i, code)


def test_every_chunk_round_trips_exactly(bundle, q):
    s = bundle.streams["chunks"]
    assert s.frames_per_item == CHUNK_FRAMES and s.count == math.ceil(bundle.n_frames / CHUNK_FRAMES)
    for c in range(s.count):
        ch = decode_chunk(s[c])
        rows = slice(c * CHUNK_FRAMES, min((c + 1) * CHUNK_FRAMES, bundle.n_frames))
        assert ch.first_frame == rows.start and ch.n_frames == rows.stop - rows.start
        np.testing.assert_array_equal(ch.t, q["t"][rows])
        np.testing.assert_array_equal(ch.lap, q["leader_lap"][rows])
        for spec in QUANTS:
            np.testing.assert_array_equal(ch.q[spec.name], q[spec.name][rows], err_msg=f"{spec.name} chunk {c}")


def test_chunk_frames_equal_compact_frames(bundle):
    s = bundle.streams["compact"]
    for c in (0, 5, bundle.streams["chunks"].count - 1):
        frames = decode_chunk(bundle.streams["chunks"][c]).frames()
        key = decode_compact(s[c * CHUNK_FRAMES])
        assert "weather" in frames[0] and all("weather" not in f for f in frames[1:])
        for f in frames:
            assert f == decode_compact(s[f["frame_index"]], key).to_dict()


@pytest.mark.parametrize(
    "suffix, decompress",
    [("gz", gzip.decompress), ("br", brotli.decompress), ("zst", lambda b: zstandard.ZstdDecompressor().decompress(b))],
)
def test_compressed_chunks_hold_the_raw_chunks(bundle, suffix, decompress):
    raw, packed = bundle.streams["chunks"], bundle.streams[f"chunks.{suffix}"]
    assert packed.count == raw.count and packed.frames_per_item == CHUNK_FRAMES
    assert packed.info["content_encoding"] == {"gz": "gzip", "br": "br", "zst": "zstd"}[suffix]
    for c in range(raw.count):
        assert decompress(bytes(packed[c])) == bytes(raw[c])
    assert sum(len(packed[c]) for c in range(raw.count)) < sum(len(raw[c]) for c in range(raw.count))


# -- bad input ------------------------------------------------------------------------------


def _decode_any(b: bytes, key=None) -> None:
    if b[:2] == b"\xc1\x12":
        decode_chunk(b)
    else:
        decode_compact(b, key)


def test_truncated_payloads_are_refused(bundle):
    key = decode_compact(bundle.streams["compact"][0])
    for p in (bytes(bundle.streams["compact"][0]), bytes(bundle.streams["compact"][3]), bytes(bundle.streams["chunks"][1])):
        for n in range(len(p)):
            with pytest.raises(DecodeError):
                _decode_any(p[:n], key)


def test_foreign_and_oversized_payloads_are_refused(bundle):
    with pytest.raises(DecodeError, match="not a compact payload"):
        decode_compact(bytes(bundle.frame(0)))  # a msgpack frame
    with pytest.raises(DecodeError, match="version"):
        decode_compact(b"\xc1\x21" + bytes(bundle.streams["compact"][0])[2:])
    with pytest.raises(DecodeError, match="over the"):
        decode_compact(b"\xc1\x10" + b"\x01" * MAX_PAYLOAD_BYTES)
    with pytest.raises(DecodeError, match="over the"):
        decode_chunk(b"\xc1\x12" + b"\x00" * MAX_PAYLOAD_BYTES)
    with pytest.raises(DecodeError, match="expected a chunk"):
        decode_chunk(bytes(bundle.streams["compact"][0]))
    with pytest.raises(DecodeError, match="expected a compact frame"):
        decode_compact(bytes(bundle.streams["chunks"][0]))
    # Counts that promise more than the payload holds fail before anything is allocated.
    with pytest.raises(DecodeError, match="truncated|over the limit"):
        decode_compact(b"\xc1\x10\x00\xff\xff\xff\x0f")
    with pytest.raises(DecodeError, match="longer than"):
        decode_compact(b"\xc1\x10" + b"\xff" * 9 + b"\x01")


def test_trailing_garbage_is_refused(bundle):
    key = decode_compact(bundle.streams["compact"][0])
    with pytest.raises(DecodeError):
        decode_compact(bytes(bundle.streams["compact"][1]) + b"\x00", key)
    raw = bytes(bundle.streams["chunks"][0])
    with pytest.raises(DecodeError, match="unexpected bytes"):
        decode_chunk(raw + b"\x00")
    with pytest.raises(DecodeError, match="CRC"):
        decode_chunk(raw[:-1] + bytes([raw[-1] ^ 1]))


def test_chunks_back_to_back_decode_in_order(bundle):
    s = bundle.streams["chunks"]
    got = decode_chunks(s.span(3, s.count))  # one zero-copy slice, as a ?from=3 response
    assert [c.first_frame for c in got] == [c * CHUNK_FRAMES for c in range(3, s.count)]
    with pytest.raises(DecodeError, match="truncated"):
        decode_chunks(bytes(s.span(3, 5))[:-1])
    # Concatenated gzip / zstd members are one valid stream of the concatenated chunks.
    assert gzip.decompress(bytes(bundle.streams["chunks.gz"].span(2, 6))) == bytes(s.span(2, 6))
    zd = zstandard.ZstdDecompressor().decompressobj()
    assert zd.decompress(bytes(bundle.streams["chunks.zst"][2])) == bytes(s[2])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_garbled_payloads_give_a_decode_error_or_a_frame_never_a_crash(bundle, data):
    which = data.draw(st.sampled_from(["key", "delta", "chunk"]))
    src = {"key": bundle.streams["compact"][25], "delta": bundle.streams["compact"][27],
           "chunk": bundle.streams["chunks"][2]}[which]  # fmt: skip
    b = bytearray(src)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(b) - 1))
        b[pos] = data.draw(st.integers(0, 255))
    key = decode_compact(bundle.streams["compact"][25])
    try:
        _decode_any(bytes(b), key)
    except DecodeError:
        return
    if which == "chunk":
        assert bytes(b) == bytes(src), "a changed chunk must fail its CRC"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"", b"\xc1\x10", b"\xc1\x11", b"\xc1\x12"]))
def test_random_bytes_give_a_decode_error_never_a_crash(blob, prefix):
    for fn in (decode_compact, decode_chunk):
        try:
            fn(prefix + blob)
        except DecodeError:
            pass


def test_status_labels_and_nulls_in_dicts(bundle, race):
    d = decode_chunk(bundle.streams["chunks"][bundle.streams["chunks"].count - 1]).frames()[-1]
    retired = race.codes[0]
    assert d["drivers"][retired]["status"] == Status.OUT.label
    assert any(car["interval"] is None for car in d["drivers"].values())
    assert msgpack.packb(d)  # plain Python values only
