"""Warming: a replay's msgpack blocks built into the disk cache ahead of its viewers.

The server asks once per replay, from its first msgpack viewer; the warm is bounded (never
evicts other replays' blocks, one process per replay, stops for a replaced bundle, keeps no
bundle alive) and what it writes is byte for byte what the chunks build. Blocks read back
from the cache are mapped: a cache file replaced or deleted under a mapped block must not
change the bytes that block serves.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import json
import weakref
from pathlib import Path

import pytest
import websockets

from racecast.bundle import diskcache, open_bundle, warming, write_bundle
from racecast.bundle.blocks import CACHE
from racecast.bundle.diskcache import DiskBlockCache
from racecast.bundle.warming import Warmer, WarmRefused
from racecast.server import create_app
from tests.factories import tiny_race
from tests.serverutil import T, ViewerClient, async_wait_until, running, wait_until

from tests.test_diskcache import N, _built, bundle, disk, race  # noqa: F401  (fixtures shared with the disk cache's tests)

BLOCKS = -(-N // 100)  # msgpack blocks of 100 frames, the last one short


def _files(d: DiskBlockCache, key: str | None = None) -> list[Path]:
    return sorted((d.root / key if key else d.root).rglob("*.blk"))


def _warmed(w: Warmer) -> warming.WarmReport:
    assert w.wait(T(60)), "the background warm did not finish"
    return w.reports[-1]


def test_the_background_warm_writes_every_block_and_viewers_then_only_read(disk, bundle):
    b = open_bundle(bundle)
    w = Warmer(enabled=True, pace=0.0)
    assert w.request(b)
    r = _warmed(w)
    assert (r.blocks, r.built, r.refused) == (BLOCKS, BLOCKS, None)
    assert len(_files(disk)) == BLOCKS and w.blocks_built == BLOCKS and w.cpu_s > 0
    assert CACHE.token(b) not in CACHE.tokens_held()  # nothing of it kept in memory: viewers' blocks stay
    s = b.streams["msgpack"]
    hits, writes = disk.hits, disk.writes
    assert [bytes(s.message(i)) for i in range(s.count)] == _built(bundle)
    assert disk.hits - hits == BLOCKS and disk.writes == writes  # every block read from disk, none built
    b.close()


def test_a_replay_is_asked_for_once_and_only_what_can_be_warmed_is(disk, bundle, tmp_path, race, monkeypatch):
    b = open_bundle(bundle)
    w = Warmer(enabled=True, pace=0.0)
    assert w.request(b) and not w.request(b)  # once per replay (by its identity on disk)
    assert not w.request(open_bundle(bundle))  # another opening of the same bundle: the same replay
    _warmed(w)
    assert not Warmer(enabled=False).request(b)
    monkeypatch.setenv(warming.ENV, "0")
    assert not Warmer().enabled
    monkeypatch.setenv(warming.ENV, "1")
    assert Warmer().enabled
    old = open_bundle(write_bundle(race, tmp_path / "old", format_version=2))
    assert not Warmer(enabled=True).request(old)  # format 2 stores its frames: nothing to build
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "off", max_bytes=0))
    assert not Warmer(enabled=True).request(open_bundle(bundle))  # no disk cache: nowhere to put them


def test_a_warm_never_evicts_other_replays_blocks(tmp_path, monkeypatch, bundle, race):
    probe = DiskBlockCache(tmp_path / "probe", max_bytes=64 << 20)
    monkeypatch.setattr(diskcache, "_DISK", probe)
    one = warming.warm(open_bundle(bundle))
    size = sum(p.stat().st_size for p in _files(probe))
    assert one.built == BLOCKS
    # A cache with room for one replay and a half: the first fits, the second would push it out.
    d = DiskBlockCache(tmp_path / "small", max_bytes=int(size * 1.5 / warming.FILL))
    monkeypatch.setattr(diskcache, "_DISK", d)
    first = open_bundle(bundle)
    w = Warmer(enabled=True, pace=0.0)
    assert w.request(first) and _warmed(w).built == BLOCKS
    kept = {p: p.read_bytes() for p in _files(d)}
    other = open_bundle(write_bundle(tiny_race(n_frames=N, n_drivers=4, race_id="other"), tmp_path / "other"))
    assert w.request(other)
    r = _warmed(w)
    assert r.refused and "other replays" in r.refused and "RACECAST_DISK_CACHE_MB" in r.refused
    assert r.built == 1  # the block that measured the replay's size
    assert {p: p.read_bytes() for p in kept} == kept  # the first replay's blocks are all still there
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "tiny-cache", max_bytes=100_000))
    r = warming.warm(open_bundle(bundle))  # racecast warm: too large for the cache at all
    assert r.refused and "raise RACECAST_DISK_CACHE_MB" in r.refused and "other replays" not in r.refused
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "off", max_bytes=0))
    with pytest.raises(WarmRefused, match="cache is off"):
        warming.warm(open_bundle(bundle))


def test_at_most_max_queued_replays_wait_for_the_warmer(disk, tmp_path, race, monkeypatch):
    monkeypatch.setattr(warming, "MAX_QUEUED", 3)
    w = Warmer(enabled=True, pace=1e6)  # its first replay rests "for ever" after one block: the rest wait
    bundles = [open_bundle(write_bundle(race, tmp_path / f"r{k}")) for k in range(5)]
    assert w.request(bundles[0])
    wait_until(lambda: _files(disk), timeout=60, what="the first replay's first block")
    assert [w.request(b) for b in bundles[1:]] == [True, True, True, False]  # three queued, the fourth refused
    for b in bundles:
        w.cancel(b)
    assert w.wait(T(60)) and [r.built for r in w.reports] == [1]  # the queued ones were dropped unwarmed


def test_a_replay_another_process_is_warming_is_left_to_it(disk, bundle):
    b = open_bundle(bundle)
    key = b.disk_cache_key()
    assert key is not None
    disk.root.mkdir(parents=True, exist_ok=True)
    with open(disk.root / f".{key}.warming", "ab") as held:  # what another worker process holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        w = Warmer(enabled=True, pace=0.0)
        assert w.request(b)
        r = _warmed(w)
    assert r.refused == warming.ELSEWHERE and r.built == 0 and _files(disk) == []


def test_a_cancelled_warm_stops_and_keeps_no_bundle_alive(disk, bundle):
    b = open_bundle(bundle)
    w = Warmer(enabled=True, pace=1e6)  # rests "for ever" after its first block, until cancelled
    assert w.request(b)
    wait_until(lambda: _files(disk), timeout=60, what="the first block written")  # then it rests
    assert len(_files(disk)) == 1 and not w.wait(0)
    w.cancel(b)
    r = _warmed(w)
    assert r.refused and "replaced or closed" in r.refused and r.built == 1
    gone = weakref.ref(b)
    b.close()
    del b
    gc.collect()
    assert gone() is None  # the warmer held it weakly


def test_a_mapped_block_keeps_its_bytes_when_its_file_is_replaced_or_deleted(disk, bundle):
    b = open_bundle(bundle)
    s = b.streams["msgpack"]
    key = b.disk_cache_key()
    s.fetch_block(1)  # built and written
    blk = disk.read(key, "msgpack", 1, 100, 100)  # read back: mapped
    assert blk is not None
    before = bytes(blk.data)
    path = disk.path(key, "msgpack", 1)
    other = s.fetch_block(2)
    disk.write(key, "msgpack", 1, other)  # another block renamed over it (as every write is)
    assert bytes(blk.data) == before
    path.unlink()  # trimmed, or the directory deleted
    assert bytes(blk.data) == before
    b.close()


def test_the_server_warms_a_replay_once_a_msgpack_viewer_plays_it(tmp_path, monkeypatch, race):
    d = DiskBlockCache(tmp_path / "cache", max_bytes=64 << 20)
    monkeypatch.setattr(diskcache, "_DISK", d)
    w = Warmer(enabled=True, pace=0.0)
    monkeypatch.setattr(warming, "WARMER", w)
    write_bundle(race, tmp_path / "data" / "tiny")
    app = create_app(tmp_path / "data")
    with running(app) as srv:

        async def go() -> None:
            async with websockets.connect(srv.ws_url("tiny", "?mode=chunks")) as chunky:
                while json.loads(await asyncio.wait_for(chunky.recv(), T(10)))["type"] != "loading_complete":
                    pass
                await chunky.send(json.dumps({"action": "play", "speed": 1}))
                assert await asyncio.wait_for(chunky.recv(), T(10))
            v = await ViewerClient.open(srv.ws_url("tiny"))
            await v.ready()
            await v.command(action="pause")
            await v.command(action="seek", frame=300)
            assert w.wait(0) and not w.reports  # a chunk viewer; a msgpack one that connected and positioned itself
            await v.command(action="play", speed=1)
            await async_wait_until(lambda: w.reports, what="the background warm")
            await v.close()

        asyncio.run(go())
        r = _warmed(w)
        assert (r.blocks, r.refused) == (BLOCKS, None) and r.built >= BLOCKS - 3  # (the viewer built its own)
        assert len(_files(d)) == BLOCKS
        assert srv.metric("racecast_warm_blocks_built") == r.built
        assert srv.metric("racecast_warm_cpu_seconds") > 0
