"""decode_chunk_run: a run of consecutive chunks decoded in one pass equals decoding each chunk and
concatenating, and damage anywhere raises the error decoding that chunk alone raises, naming it."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racecast.bundle import open_bundle, write_bundle
from racecast.bundle.blocks import BlockError
from racecast.bundle.chunks import (
    ChunkRunError, _batched_run, decode_chunk, decode_chunk_run, iter_chunks,
)  # fmt: skip
from racecast.bundle.quantize import FAST, SLOW
from racecast.bundle.varint import DecodeError, decode_varints, encode_varints
from racecast.sources.simulate import simulate_race
from tests.factories import tiny_race


@pytest.fixture(scope="module")
def sim_chunks() -> list[bytes]:
    """A simulated race (pit stops, position changes) whose last chunk is shorter (frames % 25 != 0)."""
    race = simulate_race(laps=2, n_drivers=6, seed=3, id="sim")
    assert race.n_frames % 25
    return list(iter_chunks(race))


@pytest.fixture(scope="module")
def tiny_chunks() -> list[bytes]:
    race = tiny_race(n_frames=310, n_drivers=4, retire=True, race_id="tiny")  # last chunk: 10 frames
    return list(iter_chunks(race))


def expected(payloads):
    """Per chunk, then concatenated (what Deriver.decoded did before runs): a tuple, or the first error."""
    cs = []
    for j, p in enumerate(payloads):
        try:
            c = decode_chunk(p)
        except DecodeError as e:
            return ("error", j, str(e))
        if cs and c.codes != cs[0].codes:
            return ("error", j, "drivers")
        cs.append(c)
    q = {n: np.concatenate([c.q[n] for c in cs]) for n in cs[0].q}
    q["t"] = np.concatenate([c.t for c in cs])
    q["leader_lap"] = np.concatenate([c.lap for c in cs])
    return cs[0].first_frame, cs[0].codes, q, [c.weather for c in cs]


def got(payloads, codes=None):
    try:
        r = decode_chunk_run(payloads, codes)
    except ChunkRunError as e:
        return ("error", e.index, "drivers" if "has drivers" in str(e) else str(e))
    return r.first_frame, r.codes, r.q, r.weathers


def assert_same(a, b) -> None:
    assert type(a[0]) is type(b[0])
    if a[0] == "error" or b[0] == "error":
        assert a == b
        return
    assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
    assert list(a[2]) == list(b[2])  # same channels, same order
    for name in a[2]:
        assert a[2][name].dtype == b[2][name].dtype == np.int64, name
        assert a[2][name].shape == b[2][name].shape, name
        assert np.array_equal(a[2][name], b[2][name]), name


@pytest.mark.parametrize("which", ["sim", "tiny"])
def test_every_run_equals_chunk_by_chunk_decoding(which, sim_chunks, tiny_chunks):
    chunks = sim_chunks if which == "sim" else tiny_chunks
    changed = 0
    batched = 0
    for n in (1, 2, 4, 5):
        for c0 in range(0, len(chunks) - n + 1):
            run = chunks[c0 : c0 + n]
            want = expected(run)
            assert_same(got(run), want)
            assert_same(got(run, want[1]), want)
            batched += _batched_run(run) is not None
            changed += sum(int(np.count_nonzero(np.diff(want[2][s.name], axis=0))) for s in SLOW)
    assert changed > 0  # slow channels change inside runs (status, tyre, position...): the change path is covered
    # every run of chunks of one length takes the one-pass path; a longer one ending with the last, shorter chunk does not
    runs = sum(len(chunks) - n + 1 for n in (1, 2, 4, 5))
    assert batched == runs - 3


def test_a_run_with_the_shorter_last_chunk_is_decoded_chunk_by_chunk(tiny_chunks):
    run = tiny_chunks[-3:]
    assert _batched_run(run) is None
    r = decode_chunk_run(run)
    assert r.q["t"].shape == (2 * 25 + 10,) and r.q["x"].shape == (60, 4)
    assert_same(got(run), expected(run))


def _reseal(body_values: np.ndarray) -> bytes:
    """A chunk of these varints (after the header and length field), with a correct length and CRC-32."""
    flat, _ = encode_varints(np.asarray(body_values, dtype=np.uint64))
    c = b"\xc1\x12" + flat.tobytes()
    body = c[:2] + (len(c) + 8).to_bytes(4, "little") + c[2:]
    return body + zlib.crc32(body).to_bytes(4, "little")


def _values(raw: bytes) -> np.ndarray:
    return decode_varints(np.frombuffer(raw[6:-4], dtype=np.uint8))[0].copy()


def test_reseal_is_faithful(tiny_chunks):
    assert _reseal(_values(tiny_chunks[2])) == tiny_chunks[2]


@pytest.mark.parametrize("damage", ["crc", "truncated", "frame count", "change frame", "change driver", "trailing"])
@pytest.mark.parametrize("at", [0, 2, 3])
def test_a_damaged_chunk_raises_naming_it(tiny_chunks, damage, at):
    run = list(tiny_chunks[4:8])
    raw = run[at]
    vals = _values(raw)
    nf, nd = int(vals[1]), int(vals[2])
    i = 3  # the change count follows first, nf, the codes, t, lap, the fast channels and the slow bases
    for _ in range(nd):
        i += 1 + int(vals[i])
    i_changes = i + 2 * nf + len(FAST) * nd * nf + len(SLOW) * nd
    if damage == "crc":
        run[at] = raw[:-1] + bytes([raw[-1] ^ 1])
    elif damage == "truncated":
        run[at] = raw[: len(raw) // 2]
    elif damage == "frame count":
        vals[1] = nf + 1
        run[at] = _reseal(vals)
    elif damage in ("change frame", "change driver"):
        if vals[i_changes] == 0:  # give it one change to break
            vals = np.concatenate([vals[: i_changes], [1, 1, 0, SLOW[0].id, 0], vals[i_changes + 1 :]])
        vals[i_changes + (1 if damage == "change frame" else 2)] = nf if damage == "change frame" else nd
        run[at] = _reseal(vals)
    else:
        run[at] = _reseal(np.concatenate([vals, [0]]))
    want = expected(run)
    assert want[:2] == ("error", at)
    with pytest.raises(ChunkRunError) as e:
        decode_chunk_run(run)
    assert e.value.index == at and str(e.value) == want[2]
    assert isinstance(e.value, DecodeError)


def test_other_drivers_raise_naming_the_chunk(tiny_chunks):
    other = list(iter_chunks(tiny_race(n_frames=310, n_drivers=4, race_id="other")))  # same count, other codes
    codes = decode_chunk(tiny_chunks[0]).codes
    renamed = list(iter_chunks(_renamed(tiny_race(n_frames=310, n_drivers=4, race_id="x"))))
    assert decode_chunk(renamed[0]).codes != codes
    mixed = [tiny_chunks[0], tiny_chunks[1], renamed[2], tiny_chunks[3]]
    with pytest.raises(ChunkRunError, match="has drivers") as e:
        decode_chunk_run(mixed)
    assert e.value.index == 2
    with pytest.raises(ChunkRunError, match="has drivers") as e:
        decode_chunk_run(renamed[:4], codes)  # consistent among themselves, not the expected ones
    assert e.value.index == 0
    assert decode_chunk_run(other[:4], codes).codes == codes  # same drivers: fine
    with pytest.raises(ValueError):
        decode_chunk_run([])


def _renamed(race):
    import dataclasses

    drivers = tuple(dataclasses.replace(d, code="Z" + d.code[1:]) for d in race.drivers)
    return dataclasses.replace(race, drivers=drivers)


def test_deriver_blocks_equal_chunk_by_chunk_and_name_damaged_chunks(tmp_path):
    race = tiny_race(n_frames=460, n_drivers=3, retire=True, race_id="d")  # 19 chunks: last block 3, last short
    b = open_bundle(write_bundle(race, tmp_path / "d"))
    d = b._deriver
    chunks = list(iter_chunks(race))
    for blk in range(5):
        f0, q, weathers = d.decoded(blk)
        want = expected(chunks[4 * blk : 4 * blk + 4])
        assert_same((f0, want[1], q, weathers), want)
    b.close()


# -- fuzz ---------------------------------------------------------------------------------------

_token_edits = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 2**35 - 1) | st.integers(0, 300)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), edits=_token_edits, byte_edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=3),
       cut=st.none() | st.integers(-6, 6))  # fmt: skip
def test_fuzz_a_mutated_chunk_in_a_run(tiny_chunks, which, edits, byte_edits, cut):
    """Values of one chunk changed (resealed, so the structure is parsed), or its bytes changed with the
    CRC recomputed: the run decodes exactly as chunk-by-chunk decoding does, or raises the same error."""
    run = list(tiny_chunks[4:8])
    vals = _values(run[which])
    for where, v in edits:
        vals[int(where * (vals.size - 1))] = v
    if cut is not None and cut < 0:
        vals = vals[:cut]
    elif cut:
        vals = np.concatenate([vals, np.arange(cut, dtype=np.uint64)])
    raw = bytearray(_reseal(vals))
    for where, v in byte_edits:
        raw[6 + int(where * (len(raw) - 11))] = v
    body = bytes(raw[:-4])
    run[which] = body + zlib.crc32(body).to_bytes(4, "little")
    assert_same(got(run), expected(run))


def test_fuzz_found_no_huge_allocation_path(tiny_chunks):
    """A frame count and driver count at their limits with few values is refused before allocating."""
    vals = _values(tiny_chunks[4])
    vals[1] = 1000  # MAX_CHUNK_FRAMES
    run = [tiny_chunks[3], _reseal(vals)]
    with pytest.raises(ChunkRunError) as e:
        decode_chunk_run(run)
    assert e.value.index == 1 and "truncated" in str(e.value)


def test_block_errors_from_the_deriver_name_the_chunk(tmp_path, monkeypatch):
    race = tiny_race(n_frames=200, n_drivers=3, race_id="e")
    b = open_bundle(write_bundle(race, tmp_path / "e"))
    d = b._deriver
    d.decoded(0)
    import racecast.bundle.streams as streams

    def boom(payloads, codes=None):
        raise ChunkRunError(2, "chunk: CRC-32 mismatch (truncated or corrupted)")

    monkeypatch.setattr(streams, "decode_chunk_run", boom)
    with pytest.raises(BlockError, match=r"chunk 6 of .* is damaged \(chunk: CRC-32 mismatch"):
        d.decoded(1)
    b.close()


def _varints_by_hand(buf: bytes):
    """Plain-Python LEB128: the values of the complete varints, or the first too-long one's error."""
    out, v, shift, start = [], 0, 0, 0
    for i, b in enumerate(buf):
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if i - start + 1 > 5:
                return f"varint at byte {start} is longer than 5 bytes"
            out.append(v)
            v, shift, start = 0, 0, i + 1
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**35 - 1), max_size=40), st.binary(max_size=40), st.booleans())
def test_decode_varints_matches_a_byte_by_byte_decoder(values, noise, mix):
    """Encoded values round-trip; arbitrary bytes (long runs, a trailing incomplete varint) decode or
    fail exactly as a byte-by-byte decoder does."""
    flat, _ = encode_varints(np.asarray(values, dtype=np.uint64))
    buf = flat.tobytes() + noise if mix else noise
    want = _varints_by_hand(buf)
    try:
        vals, ends = decode_varints(np.frombuffer(buf, dtype=np.uint8))
    except DecodeError as e:
        assert str(e) == want
        return
    assert vals.dtype == np.uint64 and vals.tolist() == want
    assert ends.tolist() == [i for i, b in enumerate(buf) if b < 0x80]
    if mix:
        assert vals.tolist()[: len(values)] == values
