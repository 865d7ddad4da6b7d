"""Replay bundles: round trip, atomic writes, and refusal of damaged bundles."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from racecast.bundle import BundleError, DataDir, open_bundle, write_bundle
from racecast.bundle.format import FORMAT_VERSION
from racecast.bundle.write import default_encoders
from racecast.bundle.wsframe import frame_header, header_size
from racecast.bundle.msgpack_frames import SEED_DRIVER_FIELDS, decode_msgpack_frame
from racecast.bundle.quantize import BY_NAME
from racecast.race import CHANNELS, Status
from tests.factories import tiny_race

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def race():
    return tiny_race(n_frames=300, n_drivers=4, retire=True)


@pytest.fixture()
def bundle_path(tmp_path, race):
    return write_bundle(race, tmp_path / "tiny")


def q(name: str, value: float) -> float:
    """Half a step of the channel's chunk resolution, plus float32 rounding."""
    return 0.5 / BY_NAME[name].scale + 1e-6 * abs(float(value))


def test_every_frame_decodes_to_the_arrays_in_the_seeds_units_and_codes(race, bundle_path):
    """The seed's contract (joptimus/f1-race-replay frontend/src/types/index.ts, Leaderboard.tsx,
    TrackVisualization3D.tsx, TelemetryChart.tsx), field by field, for every frame."""
    b = open_bundle(bundle_path)
    assert b.n_frames == race.n_frames and b.fps == race.fps
    seed_status = {Status.RUNNING: "Running", Status.PIT: "Pit", Status.OUT: "Retired", Status.FINISHED: "Finished"}
    seen_status = set()
    for i in range(race.n_frames):
        f = decode_msgpack_frame(b.frame(i))
        assert f["frame_index"] == i
        assert f["t"] == pytest.approx(race.t[i], abs=1e-3)
        assert f["lap"] == race.leader_lap[i]
        assert list(f["drivers"]) == race.codes
        w = f["weather"]  # on every frame, with the seed's keys
        assert w["rain_state"] in ("Dry", "Raining") and {"air_temp", "track_temp"} <= set(w)
        for d, code in enumerate(race.codes):
            car = f["drivers"][code]
            ch = {name: race.channels[name][i, d] for name in CHANNELS}
            assert list(car) == list(SEED_DRIVER_FIELDS)
            # Format 3 derives the frames from the chunks: values exact to the chunks' resolution (q).
            assert abs(car["x"] - 10 * float(ch["x"])) <= 10 * q("x", ch["x"]) and abs(car["y"] - 10 * float(ch["y"])) <= 10 * q("y", ch["y"])  # 1/10 m
            assert car["tyre"] == int(ch["tyre"]) - 1 and -1 <= car["tyre"] <= 4  # 0 SOFT .. 4 WET
            assert car["drs"] == {0: 0, 1: 8, 2: 12}[int(ch["drs"])]  # FastF1's raw codes
            assert car["throttle"] == round(float(ch["throttle"]))
            assert car["brake"] == pytest.approx(float(ch["brake"]) / 100, abs=0.006)  # 0-1
            assert car["status"] == seed_status[Status(int(ch["status"]))]
            seen_status.add(car["status"])
            assert car["race_progress"] == pytest.approx(float(ch["race_progress"]) * race.geometry.length, abs=q("race_progress", ch["race_progress"]) * race.geometry.length)
            for key, name in (("gap_to_leader", "gap"), ("gap_to_previous", "interval")):
                v = float(ch[name])
                want = 0.0 if math.isnan(v) or ch["position"] == 1 else v
                assert car[key] == pytest.approx(want, abs=q(name, want)), (key, i, code)
            for name in ("speed", "gear", "lap", "position", "tyre_age", "dist", "rel_dist", "lap_time", "sector1", "sector2", "sector3"):
                want = ch[name]
                if CHANNELS[name][2] and math.isnan(want):
                    assert car[name] is None
                else:
                    assert car[name] == pytest.approx(float(want), abs=q(name, want)), (name, i, code)
    assert "Retired" in seen_status  # the race has a retirement: the seed's leaderboard greys it out


@pytest.fixture()
def v2_path(tmp_path, race):
    return write_bundle(race, tmp_path / "tiny2", format_version=2)


def test_version_3_stores_only_the_gzip_chunks(race, bundle_path):
    m = json.loads((bundle_path / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION == 3
    # the frames as gzip chunks, plus the analysis (events, lap data) computed at ingest
    assert sorted(m["files"]) == ["analysis.json", "arrays/leader_lap.npy", "arrays/t.npy", "streams/chunks.gz.bin", "streams/chunks.gz.idx.npy"]
    b = open_bundle(bundle_path)
    assert {n for n, s in b.streams.items() if not s.derived} == {"chunks.gz"}
    assert {"msgpack", "compact", "chunks", "chunks.br", "chunks.zst"} <= set(b.streams)
    assert set(m["channels"]) == set(CHANNELS)  # where the bytes go, per channel
    assert all(c["gzip_bytes"] > 0 for c in m["channels"].values())


def test_arrays_round_trip(race, bundle_path, v2_path):
    for path in (bundle_path, v2_path):
        b = open_bundle(path)
        assert np.array_equal(b.t, race.t) and np.array_equal(b.leader_lap, race.leader_lap)
        for name in CHANNELS:
            a = b.array(name)
            assert a.dtype == race.channels[name].dtype and not a.flags.writeable
            if b.format_version == 2:
                assert np.array_equal(a, race.channels[name], equal_nan=True), name
            else:  # decoded from the chunks: exact to their resolution
                want = race.channels[name].astype(np.float64)
                tol = 0.5 / BY_NAME[name].scale + 1e-6 * np.abs(np.nan_to_num(want))
                assert np.array_equal(np.isnan(a), np.isnan(want)), name
                assert np.all(np.abs(np.nan_to_num(a - want)) <= tol), name
        r2 = b.race()
        assert r2.codes == race.codes and r2.pit_stops == race.pit_stops and r2.messages == race.messages
        assert r2.geometry.length == pytest.approx(race.geometry.length)
        b.verify()


def test_v2_and_v3_serve_the_same_compact_frames_and_chunks(bundle_path, v2_path):
    b3, b2 = open_bundle(bundle_path), open_bundle(v2_path)
    for name in ("compact", "chunks", "chunks.gz", "chunks.br", "chunks.zst"):
        s2, s3 = b2.streams[name], b3.streams[name]
        assert s3.count == s2.count
        assert all(bytes(s3.message(i)) == bytes(s2.message(i)) for i in range(s3.count)), name


def test_frames_are_zero_copy_views_of_a_shared_block(bundle_path):
    b = open_bundle(bundle_path)
    v = b.frame(3)
    assert isinstance(v, memoryview) and v.readonly
    assert v.obj is b.frame(4).obj  # both slices of the same cached block, no copies
    with pytest.raises(IndexError):
        b.frame(b.n_frames)
    other = open_bundle(bundle_path)  # another opening (e.g. another replay object): its own blocks
    assert bytes(other.frame(3)) == bytes(v)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("name", ["msgpack", "compact"])
def test_frame_streams_are_ready_websocket_frames(bundle_path, v2_path, name, version):
    s = open_bundle(bundle_path if version == 3 else v2_path).streams[name]
    assert s.framed
    for i in (0, 1, s.count // 2, s.count - 1):
        payload = bytes(s[i])
        msg = s.message(i)
        assert isinstance(msg, memoryview) and msg.obj is s.block(i // s.block_items).data  # a slice of the block
        assert bytes(msg) == frame_header(len(payload)) + payload
    assert bytes(s.span(3, 6)) == b"".join(bytes(s[i]) for i in range(3, 6))  # payloads only
    with pytest.raises(IndexError):
        s.message(s.count)


def test_chunk_streams_stay_raw_for_byte_ranges(bundle_path):
    s = open_bundle(bundle_path).streams["chunks"]
    assert not s.framed
    assert bytes(s.span(0, 2)) == bytes(s[0]) + bytes(s[1])
    assert bytes(s.span(8, 12)) == b"".join(bytes(s[i]) for i in range(8, 12))  # across blocks


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_header_size_recovers_every_length_form(n):
    assert header_size(len(frame_header(n)) + n) == len(frame_header(n))


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_headers_written_in_the_grid_are_the_reference_headers(n):
    """The encoder writes each frame's header beside it in its byte grid (every length form)."""
    import numpy as np

    from racecast.bundle.msgpack_frames import _frame_headers

    data, mask = np.zeros((2, 12), dtype=np.uint8), np.zeros((2, 12), dtype=bool)
    hs = _frame_headers(data, mask, np.array([n, 5]))
    assert bytes(data[0][mask[0]]) == frame_header(n) and hs[0] == len(frame_header(n))
    assert bytes(data[1][mask[1]]) == frame_header(5)


def test_a_framed_block_longer_than_one_encoding_pass_is_the_frames_with_their_headers():
    """msgpack_framed_block (derived blocks) equals msgpack_block framed one by one, also when the
    frames take more than one pass of the encoder (its passes are 512 frames)."""
    from racecast.bundle.msgpack_frames import msgpack_block, msgpack_framed_block

    r = tiny_race(n_frames=1100, n_drivers=3, retire=True)
    flat, offsets = msgpack_framed_block(r, 40)
    frames = msgpack_block(r, 40)
    assert len(offsets) == len(frames) + 1 == 1101
    assert [bytes(flat[a:b]) for a, b in zip(offsets, offsets[1:])] == [frame_header(len(f)) + f for f in frames]
    assert decode_msgpack_frame(frames[700])["frame_index"] == 740
    assert not flat.flags.writeable  # cached and shared: never written after


def test_version_1_bundles_without_framing_still_play(race, tmp_path):
    encoders = [replace(e, framing=None) for e in default_encoders()]
    path = write_bundle(race, tmp_path / "old", encoders=encoders, format_version=2)
    mpath = path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = 1
    mpath.write_text(json.dumps(m))
    s = open_bundle(path).streams["msgpack"]
    assert not s.framed
    payload = bytes(s[7])
    assert bytes(s.message(7)) == frame_header(len(payload)) + payload
    assert s.span(2, 4) == bytes(s[2]) + bytes(s[3])


def test_unknown_stream_framing_is_refused(v2_path):
    bundle_path = v2_path
    mpath = bundle_path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["streams"]["msgpack"]["framing"] = "http2"
    mpath.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="unknown framing 'http2'"):
        open_bundle(bundle_path)


def test_same_race_gives_byte_identical_bundles(race, tmp_path):
    a = write_bundle(race, tmp_path / "a")
    b = write_bundle(race, tmp_path / "b")
    for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_existing_bundle_is_not_replaced_without_overwrite(race, bundle_path):
    with pytest.raises(FileExistsError):
        write_bundle(race, bundle_path)
    write_bundle(race, bundle_path, overwrite=True)
    open_bundle(bundle_path).verify()
    assert [p.name for p in bundle_path.parent.iterdir()] == ["tiny"]  # no temporaries left behind


#: Per version: (the bundle fixture, a stream data file, its index, an array file).
FILES = {2: ("v2_path", "msgpack.bin", "msgpack.idx.npy", "x.npy"),
         3: ("bundle_path", "chunks.gz.bin", "chunks.gz.idx.npy", "t.npy")}  # fmt: skip


@pytest.fixture(params=[2, 3])
def damaged(request):
    """(bundle path, stream data file, index file, array file) of a fresh bundle of each version."""
    fixture, data, idx, arr = FILES[request.param]
    return request.getfixturevalue(fixture), data, idx, arr


def test_truncated_stream_is_refused(damaged):
    bundle_path, name, _, _ = damaged
    data = bundle_path / "streams" / name
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(BundleError, match=rf"{name} is \d+ bytes, expected \d+ \(truncated or damaged\)"):
        open_bundle(bundle_path)


def test_a_frame_range_decodes_only_the_chunks_that_hold_it(race, tmp_path, monkeypatch):
    """``array(name, frames)`` on a version 3 bundle: the same rows as the whole channel, decoded from
    only the chunk blocks covering the range, and nothing of it kept; a whole channel is kept alone."""
    long_race = tiny_race(n_frames=1000, n_drivers=3)
    path = write_bundle(long_race, tmp_path / "long")
    whole = open_bundle(path)
    full = {n: whole.array(n) for n in ("dist", "x", "lap_time", "status")}
    assert set(whole._arrays) >= set(full) and "speed" not in whole._arrays  # only what was asked
    b = open_bundle(path)
    seen: list[int] = []
    real = b._deriver.decoded
    monkeypatch.setattr(b._deriver, "decoded", lambda k: seen.append(k) or real(k))
    rows = slice(430, 611)  # frames 430..610: chunk blocks 4, 5 and 6 (100 frames each)
    got = b.arrays(["dist", "x", "lap_time", "status"], rows)
    assert sorted(set(seen)) == [4, 5, 6] and len(seen) == 3  # each block decoded once for all four
    for n, a in got.items():
        assert a.shape == (181, 3) and not a.flags.writeable
        assert np.array_equal(a, full[n][rows], equal_nan=True), n
    assert np.array_equal(b.array("x", slice(430, 431)), full["x"][430:431])  # a kept block: no decode
    assert len(seen) == 3 and not b._arrays.keys() & set(got)  # a range is not kept
    assert b.array("t", rows).shape == (181,) and b.array("x", slice(990, 2000)).shape == (10, 3)
    with pytest.raises(ValueError, match="step 1"):
        b.array("x", slice(0, 100, 2))
    with pytest.raises(KeyError):
        b.array("no_such_channel", rows)


def test_a_frame_range_of_a_v2_bundle_is_a_slice(race, v2_path):
    b = open_bundle(v2_path)
    assert np.array_equal(b.array("speed", slice(10, 20)), race.channels["speed"][10:20])


def test_truncated_array_is_refused(damaged):
    bundle_path, _, _, arr = damaged
    with open(bundle_path / "arrays" / arr, "r+b") as f:
        f.truncate(64)
    with pytest.raises(BundleError, match=f"{arr} is 64 bytes"):
        open_bundle(bundle_path)


def test_missing_file_is_refused(damaged):
    bundle_path, _, idx, _ = damaged
    os.remove(bundle_path / "streams" / idx)
    with pytest.raises(BundleError, match=f"{idx} is missing"):
        open_bundle(bundle_path)


def test_flipped_byte_is_caught_by_verify(damaged):
    bundle_path, name, _, _ = damaged
    data = bundle_path / "streams" / name
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    b = open_bundle(bundle_path)  # same sizes: structure is fine
    with pytest.raises(BundleError, match="content hash mismatch"):
        b.verify()


def test_garbled_offsets_are_refused(damaged):
    bundle_path, _, name, _ = damaged
    idx_path = bundle_path / "streams" / name
    idx = np.load(idx_path)
    idx[5], idx[6] = idx[6], idx[5]
    with open(idx_path, "r+b") as f:  # same size, different content
        np.save(f, idx)
    with pytest.raises(BundleError, match="not monotonic"):
        open_bundle(bundle_path)


def test_manifest_damage_is_refused(bundle_path):
    mpath = bundle_path / "manifest.json"
    m = json.loads(mpath.read_text())
    mpath.write_text(mpath.read_text()[:-20])
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_path)
    m["format_version"] = FORMAT_VERSION + 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="newer than this racecast supports"):
        open_bundle(bundle_path)
    m["format_version"] = FORMAT_VERSION
    m["files"]["../../etc/passwd"] = 10
    mpath.write_text(json.dumps(m))
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(bundle_path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(tmp_path / "empty")


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from racecast.bundle import write_bundle, default_encoders
    from racecast.bundle.format import StreamEncoder
    from tests.factories import tiny_race

    def stalls(race):
        for i in range(race.n_frames):
            if i == 50:
                Path(sys.argv[2]).write_text("mid-write")
                time.sleep(60)
            yield b"x" * 10

    enc = default_encoders() + [StreamEncoder("stall", stalls)]
    write_bundle(tiny_race(n_frames=300), sys.argv[1], encoders=enc, overwrite=True)
    """
)


@pytest.mark.parametrize("existing", [False, True])
def test_writer_killed_mid_write_leaves_no_valid_looking_bundle(tmp_path, existing):
    target = tmp_path / "data" / "tiny"
    if existing:
        write_bundle(tiny_race(n_frames=100), target)
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target), str(marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "writer exited before reaching the middle"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p for p in target.parent.iterdir() if p.name.startswith(".tiny.tmp-")]
    assert leftovers, "the writer should have been killed inside its temporary directory"
    for p in leftovers:
        with pytest.raises(BundleError):
            open_bundle(p)
    store = DataDir(target.parent)
    if existing:
        assert store.ids() == ["tiny"]
        b = open_bundle(target)
        b.verify()
        assert b.n_frames == 100  # the old bundle, intact
    else:
        assert not target.exists() and store.ids() == []


def test_data_dir_rejects_path_like_ids(tmp_path):
    store = DataDir(tmp_path)
    for bad in ["../etc", "a/b", ".hidden", "", "x" * 65, "a\\b", "ok?"]:
        with pytest.raises(ValueError, match="invalid replay id"):
            store.path_of(bad)
    with pytest.raises(KeyError):
        store.open("missing")


def test_data_dir_lists_and_shares_bundles(tmp_path, race):
    store = DataDir(tmp_path)
    write_bundle(race, store.path_of("tiny"))
    (tmp_path / "junk").mkdir()
    assert store.ids() == ["tiny"]
    assert store.open("tiny") is store.open("tiny")  # opened once per process
    [s] = store.summaries()
    assert s["id"] == "tiny" and s["frames"] == race.n_frames and s["laps"] == 3


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("RACECAST_DATA", str(tmp_path / "env"))
    assert DataDir().root == tmp_path / "env"
    assert DataDir(tmp_path / "flag").root == tmp_path / "flag"
    monkeypatch.delenv("RACECAST_DATA")
    assert "racecast" in str(DataDir().root)
