"""Bundle format 3 and the block cache: derived streams, damage under a running reader, upgrade, fuzzing.

Files are damaged *after* the bundle was opened (what a disk-full copy, ``rsync
--inplace`` or ``cp`` over a served bundle does): the process must survive (no
SIGBUS: nothing is mapped) and the damage must surface as a :class:`BundleError`
naming the bundle, when the damaged block is first needed and at ``verify``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from racecast.bundle import BundleError, DataDir, open_bundle, write_bundle
from racecast.bundle.blocks import Block, BlockCache, BlockError
from racecast.bundle.msgpack_frames import decode_msgpack_frame
from racecast.bundle.upgrade import upgrade_bundle
from racecast.cli import app
from racecast.server import create_app
from tests.factories import tiny_race
from tests.serverutil import ViewerClient, frames_only, running

ROOT = Path(__file__).resolve().parents[1]
N = 1000  # 40 chunks, 10 blocks of 100 frames


@pytest.fixture(scope="module")
def race():
    return tiny_race(n_frames=N, n_drivers=4, retire=True, race_id="tiny")


@pytest.fixture()
def v3(tmp_path, race):
    return write_bundle(race, tmp_path / "tiny")


@pytest.fixture()
def v2(tmp_path, race):
    return write_bundle(race, tmp_path / "old", format_version=2)


def _every_block(b, names=("msgpack", "compact", "chunks", "chunks.gz", "chunks.br", "chunks.zst")) -> None:
    for name in names:
        s = b.streams[name]
        for i in range(0, s.count, s.block_items):
            s.message(i)


# -- damage under a running reader --------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_truncated_after_open_fails_the_block_not_the_process(v2, v3, version):
    path, data = (v3, "chunks.gz.bin") if version == 3 else (v2, "msgpack.bin")
    b = open_bundle(path)
    first = bytes(b.frame(0))  # block 0 is now cached
    with open(path / "streams" / data, "r+b") as f:
        f.truncate(100)
    assert bytes(b.frame(1)) != first  # cached blocks keep playing
    with pytest.raises(BlockError, match="ends early.*truncated or replaced"):
        b.frame(N - 1)
    with pytest.raises(BlockError):  # reported again (from the cache), no re-read needed
        b.frame(N - 2)


def test_truncation_under_a_reader_in_another_process_is_no_sigbus(v2):
    """The issue-13 crash: a mapped file truncated under a reader killed it with SIGBUS."""
    script = textwrap.dedent(
        """
        import sys
        from racecast.bundle import open_bundle
        b = open_bundle(sys.argv[1])
        with open(sys.argv[2], "r+b") as f:
            f.truncate(10)
        try:
            b.frame(int(sys.argv[3]))
        except Exception as e:
            print(type(e).__name__)
        """
    )
    r = subprocess.run([sys.executable, "-c", script, str(v2), str(v2 / "streams" / "msgpack.bin"), str(N - 1)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "BlockError"


def test_flipped_websocket_header_never_reaches_a_socket(v2):
    """A stored pre-framed item whose header no longer matches its length is refused when its block is read."""
    b = open_bundle(v2)
    data = v2 / "streams" / "msgpack.bin"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0x40  # RSV bit in frame 0's first header byte
    data.write_bytes(bytes(raw))
    with pytest.raises(BlockError, match="item 0 has a damaged WebSocket frame header"):
        b.streams["msgpack"].message(0)
    with pytest.raises(BundleError):
        open_bundle(v2).verify()


@pytest.mark.parametrize("where", [0.1, 0.5, 0.95])
def test_corrupt_gzip_chunk_is_refused_at_verify_and_when_served(v3, where):
    data = v3 / "streams" / "chunks.gz.bin"
    raw = bytearray(data.read_bytes())
    raw[int(len(raw) * where)] ^= 0x5A
    data.write_bytes(bytes(raw))
    b = open_bundle(v3)  # same sizes: the structure checks pass
    with pytest.raises(BundleError):
        b.verify()
    with pytest.raises(BlockError, match="chunk"):
        _every_block(b)


def test_a_bundle_replaced_by_another_race_is_refused_per_block(tmp_path, v3):
    other = write_bundle(tiny_race(n_frames=N, n_drivers=3, race_id="tiny"), tmp_path / "other")
    b = open_bundle(v3)
    # Same size is unlikely; copy the other race's chunks over ours in place (what `cp` over a served bundle does).
    (v3 / "streams" / "chunks.gz.bin").write_bytes((other / "streams" / "chunks.gz.bin").read_bytes())
    with pytest.raises(BlockError):
        _every_block(b)


# -- the block cache ----------------------------------------------------------------------------


def test_block_cache_stays_within_its_bound():
    cache = BlockCache(max_bytes=10_000)
    owner = type("Owner", (), {})()
    o = cache.token(owner)  # blocks are keyed by their owner's token
    for k in range(100):
        blk = cache.get((o, "s", k), lambda k=k: Block(k, bytes(1000), [0, 500, 1000]))
        assert bytes(blk.mv[:3]) == b"\0\0\0"
        assert cache.nbytes <= 10_000
    assert 1 <= len(cache) <= 10
    built = []
    cache.get((o, "s", 99), lambda: built.append(1) or Block(0, b"", [0]))
    assert built == []  # the most recent block is still cached
    cache.drop(owner)
    assert len(cache) == 0 and cache.nbytes == 0


def test_an_owner_collected_while_the_cache_is_locked_does_not_deadlock():
    """The garbage collector runs finalizers at whatever allocation triggers it, even one made
    while the cache holds its (non-reentrant) lock. A CI run hung for good in ``prefetch`` when
    a collected bundle's finalizer took that lock; now it only queues the token, purged later."""
    import gc
    import threading

    cache = BlockCache(max_bytes=10_000)
    owner = type("Owner", (), {})()
    owner.cycle = owner  # only the cyclic collector frees it
    t = cache.token(owner)
    cache.get((t, "s", 0), lambda: Block(0, bytes(100), [0, 100]))
    keep = type("Owner", (), {})()
    k = cache.token(keep)
    del owner
    done = threading.Event()

    def collect_under_the_lock() -> None:
        with cache._lock:  # what an allocation inside prefetch() or _insert() amounts to
            gc.collect()
        done.set()

    threading.Thread(target=collect_under_the_lock, daemon=True).start()
    assert done.wait(60), "a finalizer took the cache's lock while its own thread held it"
    assert t in {key[0] for key in cache._d}  # not dropped yet: only queued
    cache.get((k, "s", 1), lambda: Block(0, bytes(100), [0, 100]))
    assert t not in cache.tokens_held()  # the collected owner's block went at the next operation
    assert cache.nbytes == sum(b.nbytes for b in cache._d.values())


def test_derived_blocks_are_shared_not_rebuilt(v3):
    b = open_bundle(v3)
    s = b.streams["msgpack"]
    first = s.message(10)
    again = b.streams["msgpack"].message(20)
    assert first.obj is again.obj  # one block, sliced by every send


def test_the_next_block_is_built_ahead_in_the_background(v3):
    """Once a viewer is past the middle of a block the next is built by the worker thread; a viewer who
    only landed in a block's first half (a seek) costs no second block."""
    from racecast.bundle.blocks import CACHE

    b = open_bundle(v3)
    s = b.streams["msgpack"]
    half = s.block_items // 2
    s.message(half - 1)
    assert not CACHE.holds((CACHE.token(b), "msgpack", 1), wait=1)
    s.message(half)
    assert CACHE.holds((CACHE.token(b), "msgpack", 1), wait=30)  # built by the worker thread, not by this call
    before = CACHE.misses
    s.message(s.block_items)  # block 1: a hit
    assert CACHE.misses == before
    last = s.count - 1
    s.message(last)
    assert not CACHE.holds((CACHE.token(b), "msgpack", last // s.block_items + 1), wait=1)  # nothing past the end


@pytest.mark.parametrize("version", [2, 3])
def test_a_viewers_cursor_sends_what_the_stream_does_and_keeps_no_block_alive(v2, v3, version):
    """Each viewer reads through its own cursor (the stream's one-block shortcut is shared by all of them):
    same bytes at every frame, in any order, the next block still asked for past the middle, and the
    block it remembers is held weakly: the cache alone decides what stays in memory."""
    import gc
    import random
    import weakref

    from racecast.bundle.blocks import CACHE

    b = open_bundle(v3 if version == 3 else v2)
    s = b.streams["msgpack"]
    c, other = s.cursor(), s.cursor()
    order = list(range(s.count)) + random.Random(7).sample(range(s.count), 300)
    for i in order:
        assert bytes(c.message(i)) == bytes(s.message(i))
        assert bytes(other.message(s.count - 1 - i)) == bytes(s.message(s.count - 1 - i))
    with pytest.raises(IndexError):
        c.message(s.count)
    if version == 3:
        s.forget_blocks()
        c.message(s.block_items // 2 + 1)  # past the middle of block 0: block 1 is built ahead
        assert CACHE.holds((CACHE.token(b), "msgpack", 1), wait=30)
    c.message(150)
    held = weakref.ref(s.block(1))
    s.message(850)  # the stream's own shortcut moves on
    s.forget_blocks()
    gc.collect()
    assert held() is None  # the cursor at block 1 did not keep it
    assert bytes(c.message(151)) == bytes(s.message(151))  # and reads it again when it must
    b.close()


# -- format 3 content ----------------------------------------------------------------------------


def test_v3_msgpack_frames_match_v2_within_resolution(v2, v3):
    b2, b3 = open_bundle(v2), open_bundle(v3)
    for i in (0, 1, 249, 250, 500, N - 1):
        f2, f3 = decode_msgpack_frame(b2.frame(i)), decode_msgpack_frame(b3.frame(i))
        assert f3["frame_index"] == f2["frame_index"] == i and f3["t"] == f2["t"] and f3["lap"] == f2["lap"]
        assert f3.get("weather") == f2.get("weather")
        for code, car2 in f2["drivers"].items():
            car3 = f3["drivers"][code]
            assert list(car3) == list(car2)
            for k, v in car2.items():
                if isinstance(v, float):
                    assert car3[k] == pytest.approx(v, abs=0.06, rel=1e-5), (i, code, k)  # half a step of the chunks (x, y in 1/10 m)
                else:
                    assert car3[k] == v, (i, code, k)


def test_v3_is_a_small_fraction_of_v2(v2, v3):
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())  # noqa: E731
    assert size(v3) * 10 < size(v2)


def test_v3_writes_are_deterministic(tmp_path, race):
    a = write_bundle(race, tmp_path / "a")
    b = write_bundle(race, tmp_path / "b")
    for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_unknown_derived_stream_is_refused(v3):
    m = json.loads((v3 / "manifest.json").read_text())
    m["streams"]["hologram"] = {"derived_from": "chunks", "count": 1}
    (v3 / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="'hologram' cannot be derived"):
        open_bundle(v3)


def test_missing_compressor_drops_only_its_stream(v3, monkeypatch):
    import racecast.bundle.open as bopen

    monkeypatch.setattr(bopen, "compressor", lambda coding: None)
    b = open_bundle(v3)
    assert "chunks.br" not in b.streams and "chunks.zst" not in b.streams
    assert "msgpack" in b.streams and "chunks.gz" in b.streams


# -- upgrade ---------------------------------------------------------------------------------------


def test_upgrade_rewrites_v2_as_v3_and_keeps_the_race(v2):
    before = open_bundle(v2)
    frames = [bytes(before.streams["compact"].message(i)) for i in range(0, N, 97)]
    before.close()
    old, new = upgrade_bundle(v2)
    assert new * 10 < old
    b = open_bundle(v2)
    assert b.format_version == 3
    b.verify()
    assert [bytes(b.streams["compact"].message(i)) for i in range(0, N, 97)] == frames
    assert upgrade_bundle(v2) == (new, new)  # already current: left alone


def test_upgrade_cli_and_the_hint_for_old_bundles(tmp_path, race):
    data = tmp_path / "data"
    write_bundle(race, data / "tiny", format_version=2)
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", "tiny", "--json", "--data", str(data)])
    assert r.exit_code == 0 and json.loads(r.stdout)["upgrade"] == "racecast upgrade tiny"
    [s] = DataDir(data).summaries()
    assert s["format_version"] == 2 and s["upgrade"] == "racecast upgrade tiny"
    r = runner.invoke(app, ["upgrade", "--all", "--data", str(data)])
    assert r.exit_code == 0 and "upgraded tiny" in r.stdout, r.output
    r = runner.invoke(app, ["inspect", "tiny", "--json", "--data", str(data)])
    info = json.loads(r.stdout)
    assert info["format_version"] == 3 and "upgrade" not in info
    assert info["streams"]["chunks.gz"]["stored_bytes"] > 0 and info["streams"]["msgpack"]["derived_from"] == "chunks"
    assert set(info["channels"]) >= {"x", "y", "speed", "status"}
    r = runner.invoke(app, ["inspect", "tiny", "--data", str(data)])
    assert "channel x" in r.stdout and "derived from chunks" in r.stdout
    r = runner.invoke(app, ["upgrade", "nope", "--data", str(data)])
    assert r.exit_code == 1 and "failed" in r.stdout and "Traceback" not in r.output


def test_upgrade_refuses_a_damaged_old_bundle(v2):
    data = v2 / "streams" / "compact.bin"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="content hash mismatch"):
        upgrade_bundle(v2)
    assert open_bundle(v2).format_version == 2  # left as it was


# -- the server keeps serving -------------------------------------------------------------------


def test_viewer_of_a_damaged_replay_gets_an_error_others_keep_playing(tmp_path):
    data = tmp_path / "data"
    write_bundle(tiny_race(n_frames=N, race_id="bad"), data / "bad")
    write_bundle(tiny_race(n_frames=N, race_id="good"), data / "good")

    async def go(srv) -> None:
        bad = await ViewerClient.open(srv.ws_url("bad"))
        good = await ViewerClient.open(srv.ws_url("good"))
        await bad.ready()
        await good.ready()
        with open(data / "bad" / "streams" / "chunks.gz.bin", "r+b") as f:
            f.truncate(50)
        await bad.send(action="seek", frame=N - 10)
        err = await bad.until("error")
        assert "truncated or replaced" in err["message"]
        await good.command(action="play", speed=4.0)
        got = frames_only(await good.collect(0.6))
        assert got and got == sorted(got)
        await bad.close()
        await good.close()

    with running(create_app(data)) as srv:
        asyncio.run(go(srv))
        with srv.http() as c:
            assert c.get("/api/replays/good").status_code == 200


# -- fuzzing the stored-block codecs --------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, race):
    root = tmp_path_factory.mktemp("fuzz")
    return {3: write_bundle(race, root / "v3"), 2: write_bundle(race, root / "v2", format_version=2)}


def _mutated(src: Path, dst: Path, data: str, edits: list[tuple[float, int]], cut: float | None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    f = dst / "streams" / data
    raw = bytearray(f.read_bytes())
    for where, value in edits:
        raw[int(where * (len(raw) - 1))] = value
    f.write_bytes(bytes(raw))
    b = open_bundle(dst)
    if cut is not None:  # truncated after opening
        with open(f, "r+b") as fh:
            fh.truncate(int(cut * len(raw)))
    return b


_edits = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=0, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_edits, cut=st.none() | st.floats(0, 1))
def test_fuzz_gzip_chunk_blocks_only_ever_raise_block_errors(pristine, tmp_path_factory, edits, cut):
    """Format 3: whatever happens to chunks.gz.bin, every derived stream either serves or raises BlockError."""
    b = _mutated(pristine[3], tmp_path_factory.mktemp("m") / "b", "chunks.gz.bin", edits, cut)
    for name, s in b.streams.items():
        for i in range(0, s.count, max(1, s.block_items // 2)):
            try:
                s.message(i)
            except BlockError:
                pass
    try:
        b.verify()
    except BundleError:
        pass
    b.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_edits, cut=st.none() | st.floats(0, 1), name=st.sampled_from(["msgpack.bin", "chunks.gz.bin", "chunks.bin"]))
def test_fuzz_stored_v2_blocks_only_ever_raise_block_errors(pristine, tmp_path_factory, edits, cut, name):
    """Format 2: a served pre-framed item is always exactly one binary frame of its length, or refused."""
    from racecast.bundle.wsframe import binary_header, header_size

    b = _mutated(pristine[2], tmp_path_factory.mktemp("m") / "b", name, edits, cut)
    for s in b.streams.values():
        for i in range(0, s.count, 7):
            try:
                m = bytes(s.message(i))
            except BlockError:
                continue
            h = header_size(len(m))
            assert m[:h] == binary_header(len(m) - h)
    b.close()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_as_a_gzip_chunk(blob):
    from racecast.bundle.streams import _checker

    check = _checker("chunks.gz", {"media_type": "application/x-racecast-chunk", "content_encoding": "gzip"}, False)
    for payload in (blob, gzip.compress(blob, mtime=0)):
        try:
            check(0, payload, [0, len(payload)])
        except BlockError:
            pass


def test_a_replaced_bundles_blocks_leave_the_cache_and_the_bundle_is_freed(tmp_path):
    """Replace a format 3 bundle under a running server: the old bundle's blocks are dropped from the
    process-wide cache as soon as the server sees the new one, and once its last viewer leaves the old
    bundle object itself is freed (the cache keys blocks by a token, never by the bundle)."""
    import gc
    import weakref

    from racecast.bundle.blocks import CACHE
    from tests.serverutil import async_wait_until, write_race

    write_race(tmp_path, "r", 600)
    app = create_app(tmp_path)
    replays = app.state.racecast.replays
    with running(app) as srv:

        async def go() -> None:
            old = await ViewerClient.open(srv.ws_url("r"))
            assert (await old.ready())["frames"] == 600
            await old.command(action="seek", frame=450)
            assert await old.next_frame() >= 450  # msgpack blocks of the old bundle built and cached
            old_bundle = replays.cached("r").bundle
            token = CACHE.token(old_bundle)
            assert token in CACHE.tokens_held()
            gone = weakref.ref(old_bundle)
            del old_bundle
            await old.command(action="pause")
            write_bundle(tiny_race(n_frames=300, n_drivers=4, race_id="r"), tmp_path / "r", overwrite=True)
            new = await ViewerClient.open(srv.ws_url("r"))
            assert (await new.ready())["frames"] == 300
            assert token not in CACHE.tokens_held()  # dropped when the server opened the new bundle
            assert (await old.command(action="seek", frame=100))["frame"] == 100  # the old viewer plays on
            assert await old.next_frame() >= 100  # (rebuilding the blocks it needs)
            await old.close()
            await async_wait_until(lambda: srv.metric("racecast_connections_open") == 1, what="the old viewer gone")
            for _ in range(50):
                gc.collect()
                if gone() is None:
                    break
                await asyncio.sleep(0.1)
            assert gone() is None  # nothing keeps the replaced bundle alive...
            assert token not in CACHE.tokens_held()  # ...nor its blocks
            await new.close()

        asyncio.run(go())


# -- the vectorised chunk decoder (what every derived block runs) -------------------------------


def _change_section(raw: bytes):
    """A raw chunk's varints, and where its slow-channel changes start (count first)."""
    import numpy as np

    from racecast.bundle.quantize import FAST, SLOW
    from racecast.bundle.varint import decode_varints

    vals, _ends = decode_varints(np.frombuffer(raw[6:-4], dtype=np.uint8))
    v = vals.tolist()
    nf, nd = v[1], v[2]
    i = 3
    for _ in range(nd):
        i += 1 + v[i]
    i += 2 * nf + len(FAST) * nd * nf + len(SLOW) * nd
    return vals.copy(), i


def _resealed(raw: bytes, vals) -> bytes:
    import zlib

    from racecast.bundle.varint import encode_varints

    flat, _lens = encode_varints(vals)
    c = raw[:2] + flat.tobytes()
    body = c[:2] + (len(c) + 8).to_bytes(4, "little") + c[2:]
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize("bad", ["frame 0", "frame past the end", "driver", "channel", "out of order"])
def test_bad_slow_changes_are_refused_by_the_decoder(race, bad):
    from racecast.bundle.chunks import decode_chunk, iter_chunks
    from racecast.bundle.varint import DecodeError

    raw = next(c for c in iter_chunks(race) if _change_section(c)[0][_change_section(c)[1]] >= 2)
    vals, i = _change_section(raw)
    assert decode_chunk(_resealed(raw, vals)).first_frame == decode_chunk(raw).first_frame  # resealing is faithful
    nf, nd = int(vals[1]), int(vals[2])
    j0, j1 = i + 1, i + 5  # the first two changes: (frame, driver, channel id, value)
    if bad == "frame 0":
        vals[j0] = 0
    elif bad == "frame past the end":
        vals[j0] = nf
    elif bad == "driver":
        vals[j0 + 1] = nd
    elif bad == "channel":
        vals[j0 + 2] = 99
    else:
        vals[j0], vals[j1] = max(int(vals[j1]) + 1, 2), 1
    with pytest.raises(DecodeError, match="out of range or out of order"):
        decode_chunk(_resealed(raw, vals))


def test_slow_changes_hold_from_their_frame_on(race):
    """The vectorised carry-forward equals applying each change from its frame to the chunk's end, in order."""
    import numpy as np

    from racecast.bundle.chunks import decode_chunk, iter_chunks
    from racecast.bundle.quantize import SLOW

    by_id = {s.id: s.name for s in SLOW}
    seen = 0
    for raw in iter_chunks(race):
        c = decode_chunk(raw)
        vals, i = _change_section(raw)
        n = int(vals[i])
        base = {name: np.repeat(c.q[name][:1], c.n_frames, axis=0).copy() for name in by_id.values()}
        for j, d, cid, v in vals[i + 1 : i + 1 + 4 * n].reshape(-1, 4).tolist():
            base[by_id[cid]][j:, d] = (v >> 1) ^ -(v & 1)
            seen += 1
        for name in by_id.values():
            assert np.array_equal(base[name], c.q[name]), name
    assert seen > 0
