"""The on-disk cache of derived msgpack blocks: shared across processes, checked, bounded, never stale.

A block read from disk must be byte-for-byte the block the chunks build; a damaged,
truncated or foreign file is refused and the block rebuilt, never sent.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from racecast.bundle import diskcache, open_bundle, write_bundle
from racecast.bundle.diskcache import DiskBlockCache
from tests.factories import tiny_race

ROOT = Path(__file__).resolve().parents[1]
N = 450  # 5 msgpack blocks of 100 frames, the last one short


@pytest.fixture(scope="module")
def race():
    return tiny_race(n_frames=N, n_drivers=4, retire=True, race_id="tiny")


@pytest.fixture()
def disk(tmp_path, monkeypatch):
    d = DiskBlockCache(tmp_path / "cache", max_bytes=64 << 20)
    monkeypatch.setattr(diskcache, "_DISK", d)
    return d


@pytest.fixture()
def bundle(tmp_path, race):
    return write_bundle(race, tmp_path / "tiny")


def _frames(path: Path) -> list[bytes]:
    b = open_bundle(path)
    s = b.streams["msgpack"]
    out = [bytes(s.message(i)) for i in range(s.count)]
    b.close()
    return out


def _built(path: Path) -> list[bytes]:
    """Every frame message built from the chunks, bypassing both caches."""
    b = open_bundle(path)
    s = b.streams["msgpack"]
    out = []
    for k in range(-(-s.count // s.block_items)):
        blk = s.load_block(k)
        out += [bytes(blk.mv[blk.offsets[j] : blk.offsets[j + 1]]) for j in range(len(blk))]
    b.close()
    return out


def _files(d: DiskBlockCache) -> list[Path]:
    return sorted(d.root.rglob("*.blk"))


def test_a_second_opening_reads_the_blocks_from_disk_byte_for_byte(disk, bundle):
    first = _frames(bundle)
    assert disk.writes == 5 and len(_files(disk)) == 5 and disk.hits == 0
    again = _frames(bundle)  # a new Bundle: the memory cache is per opened bundle
    assert disk.hits == 5 and disk.writes == 5
    assert first == again == _built(bundle)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign"])
def test_a_damaged_cached_block_is_refused_and_rebuilt(disk, bundle, tmp_path, race, damage):
    good = _frames(bundle)
    victim = _files(disk)[2]
    raw = bytearray(victim.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x40
    elif damage == "truncate":
        raw = raw[: len(raw) - 7]
    elif damage == "empty":
        raw = bytearray()
    else:  # another block's file under this name (first frame and count do not match)
        raw = bytearray(_files(disk)[0].read_bytes())
    victim.write_bytes(bytes(raw))
    assert _frames(bundle) == good
    assert disk.rejected == 1
    assert _frames(bundle) == good and disk.rejected == 1  # the rebuilt block replaced the bad file


def test_a_replaced_bundle_never_reads_the_old_ones_blocks(disk, tmp_path, race):
    path = write_bundle(race, tmp_path / "r")
    _frames(path)
    other = tiny_race(n_frames=N, n_drivers=3, race_id="tiny")
    write_bundle(other, path, overwrite=True)
    hits = disk.hits
    assert _frames(path) == _built(path)
    assert disk.hits == hits  # nothing of the old bundle was read


def test_rewriting_the_chunks_in_place_changes_the_key(disk, bundle):
    """``cp`` over a served bundle: the opened bundle must not keep serving cached blocks of the old file."""
    b = open_bundle(bundle)
    s = b.streams["msgpack"]
    for i in range(0, s.count, s.block_items):  # every block on disk
        s.message(i)
    data = bundle / "streams" / "chunks.gz.bin"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    data.write_bytes(bytes(raw))
    from racecast.bundle.blocks import BlockError

    b2 = open_bundle(bundle)  # same sizes: opens; every block must come from the (damaged) chunks
    with pytest.raises(BlockError):
        for i in range(0, b2.streams["msgpack"].count, 100):
            b2.streams["msgpack"].message(i)
    b.close()
    b2.close()


def test_the_cache_stays_within_its_bound_least_recently_used_first(tmp_path, monkeypatch, bundle):
    one = DiskBlockCache(tmp_path / "probe", max_bytes=64 << 20)
    monkeypatch.setattr(diskcache, "_DISK", one)
    _frames(bundle)
    size = max(p.stat().st_size for p in _files(one))
    d = DiskBlockCache(tmp_path / "small", max_bytes=3 * size)
    monkeypatch.setattr(diskcache, "_DISK", d)
    _frames(bundle)
    total = sum(p.stat().st_size for p in _files(d))
    assert 0 < total <= 3 * size
    assert any(p.name == "msgpack-4.blk" for p in _files(d))  # the most recent survives


def test_off_when_its_bound_is_zero(tmp_path, monkeypatch, bundle):
    d = DiskBlockCache(tmp_path / "off", max_bytes=0)
    monkeypatch.setattr(diskcache, "_DISK", d)
    assert _frames(bundle) == _built(bundle)
    assert _files(d) == [] and d.writes == 0


def test_unwritable_cache_directory_only_means_no_cache(tmp_path, monkeypatch, bundle):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    d = DiskBlockCache(blocker / "cache", max_bytes=64 << 20)
    monkeypatch.setattr(diskcache, "_DISK", d)
    assert _frames(bundle) == _built(bundle)
    assert d.writes == 0


def test_several_processes_fill_one_cache_at_once(tmp_path, bundle):
    """Worker processes building the same blocks at the same time: every file ends whole and right."""
    cache = tmp_path / "shared"
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["RACECAST_DISK_CACHE_DIR"] = {str(cache)!r}
        from racecast.bundle import open_bundle
        b = open_bundle({str(bundle)!r})
        s = b.streams["msgpack"]
        for rep in range(3):
            for k in range(5):
                s.load_block(k)
                s.fetch_block(k)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    assert not list(cache.rglob("*.tmp"))
    d = DiskBlockCache(cache)
    for k, p in enumerate(sorted(cache.rglob("*.blk"), key=lambda p: int(p.stem.split("-")[1]))):
        assert diskcache._parse(p.read_bytes(), 100 * k, min(100, N - 100 * k)) is not None
    assert len(list(cache.rglob("*.blk"))) == 5
    del d



#: The derived msgpack bytes of one fixed race, per ENCODER_VERSION. Files on disk are
#: trusted across racecast versions by that number alone, so a change to the chunk decoder
#: or the msgpack encoder that changes these bytes must bump ENCODER_VERSION (and add its digest).
DERIVED_MSGPACK_SHA256 = {1: "190340347563c8e1549ab77ede595f7ec7acc4234b49cc80fdb37760fcfe5e6a"}


def test_encoder_version_names_the_bytes_it_caches(tmp_path: Path) -> None:
    write_bundle(tiny_race(n_frames=250, n_drivers=4), tmp_path / "b")
    s = open_bundle(tmp_path / "b").streams["msgpack"]
    h = hashlib.sha256()
    for b in range(-(-s.count // s.block_items)):
        h.update(bytes(s.load_block(b).data))  # built now, bypassing both caches
    assert h.hexdigest() == DERIVED_MSGPACK_SHA256.get(diskcache.ENCODER_VERSION), (
        "the derived msgpack bytes changed: bump diskcache.ENCODER_VERSION so no old cached file is served, "
        f"and record {h.hexdigest()} for the new version"
    )


def test_racecast_warm_builds_every_block_once_and_viewers_then_only_read(disk, bundle, tmp_path, race):
    from typer.testing import CliRunner

    from racecast.cli import app

    cli = CliRunner()
    r = cli.invoke(app, ["warm", str(bundle)])
    assert r.exit_code == 0, r.output
    assert "5 blocks" in _said(r) and "(5 built now)" in _said(r)
    assert len(_files(disk)) == 5
    r = cli.invoke(app, ["warm", str(bundle)])
    assert r.exit_code == 0 and "(0 built now)" in _said(r)  # already there: read and kept
    before = (disk.hits, disk.writes)
    assert _frames(bundle) == _built(bundle)  # a new process's first viewer: every block a disk hit
    assert disk.hits - before[0] == 5 and disk.writes == before[1]


def test_racecast_warm_refuses_what_it_cannot_do(tmp_path, monkeypatch, bundle, race):
    from typer.testing import CliRunner

    from racecast.cli import app

    cli = CliRunner()
    old = write_bundle(race, tmp_path / "old", format_version=2)
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "c1", max_bytes=64 << 20))
    r = cli.invoke(app, ["warm", str(old)])
    assert r.exit_code == 1 and "stores its msgpack frames" in _said(r)
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "c2", max_bytes=0))
    r = cli.invoke(app, ["warm", str(bundle)])
    assert r.exit_code == 1 and "cache is off" in _said(r)
    monkeypatch.setattr(diskcache, "_DISK", DiskBlockCache(tmp_path / "c3", max_bytes=100_000))
    r = cli.invoke(app, ["warm", str(bundle)])
    assert r.exit_code == 1 and "raise RACECAST_DISK_CACHE_MB" in _said(r)
    r = cli.invoke(app, ["warm", "--data", str(tmp_path)])
    assert r.exit_code == 2 and "name the replays" in _said(r)


def _said(r) -> str:
    return " ".join(r.output.split())  # rich wraps long lines
