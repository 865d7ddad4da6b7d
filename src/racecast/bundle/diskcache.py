"""Derived msgpack blocks kept on disk, so a block is built once per machine, not once per process.

A format-3 bundle ships only gzip chunks; the seed-compatible msgpack frames are
derived per block (``streams.Deriver``), ~5 ms of CPU per 100 frames. The in-memory
``blocks.CACHE`` shares that work between the viewers of one process; this cache
shares it between processes and restarts. It is a cache, never the truth:

* outside the bundle (``RACECAST_DISK_CACHE_DIR``, default ``$XDG_CACHE_HOME/racecast/blocks``),
  so the bundle as shipped is unchanged and a read-only bundle still gets one;
* keyed by the bundle's identity *at the time of use* (its manifest's hash and the
  ``chunks.gz`` file's inode, size and modification time, plus :data:`ENCODER_VERSION`):
  a replaced or rewritten bundle never reads another's blocks;
* each file is written to a temporary name and renamed into place (several worker
  processes may write the same block: each rename is whole, any winner is right);
* each file carries a CRC-32 of its content and is checked whole when read; a short,
  corrupt or mismatched file is deleted and the block rebuilt from the chunks, never sent;
* bounded in bytes (``RACECAST_DISK_CACHE_MB``, default 1024; 0 turns it off): past the bound
  the least recently used files (by modification time, refreshed on each hit) are deleted.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
import zlib
from pathlib import Path

from .blocks import Block

#: Bump when the msgpack encoder's bytes change: older files are then never read.
ENCODER_VERSION = 1
DEFAULT_MAX_BYTES = 1024 << 20
_MAGIC = b"RCDB"
_HEAD = struct.Struct("<4sIQIQI")  # magic, version, first item, items, data bytes, CRC-32
_SUFFIX = ".blk"


def default_dir() -> Path:
    env = os.environ.get("RACECAST_DISK_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "racecast" / "blocks"


def default_max_bytes() -> int:
    try:
        return max(0, int(float(os.environ.get("RACECAST_DISK_CACHE_MB", "")) * (1 << 20)))
    except ValueError:
        return DEFAULT_MAX_BYTES


class DiskBlockCache:
    """Blocks of derived streams as files under ``root``, at most ``max_bytes`` in all (approximately:
    other processes write too; each one trims the whole directory when its count says it is over)."""

    def __init__(self, root: Path | str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.rejected = 0
        self.writes = 0
        self._lock = threading.Lock()
        self._bytes: int | None = None  # what this process believes is there (None: not scanned yet)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def path(self, key: str, stream: str, b: int) -> Path:
        return self.root / key / f"{stream}-{b}{_SUFFIX}"

    def read(self, key: str, stream: str, b: int, first: int, count: int) -> Block | None:
        """Block ``b`` if a whole, intact file for it is there (``first`` and ``count`` items expected);
        None otherwise (a damaged file is deleted so the rebuilt block replaces it)."""
        p = self.path(key, stream, b)
        try:
            raw = _map(p)
        except OSError:
            self.misses += 1
            return None
        blk = _parse(raw, first, count)
        if blk is None:
            self.rejected += 1
            self.misses += 1
            _unlink(p)
            return None
        try:
            os.utime(p)  # least recently used goes first
        except OSError:
            pass
        self.hits += 1
        return blk

    def write(self, key: str, stream: str, b: int, blk: Block) -> None:
        """Store ``blk`` atomically (best effort: a full or read-only disk only means no cache)."""
        if not self.enabled:
            return
        p = self.path(key, stream, b)
        offs = struct.pack(f"<{len(blk.offsets)}I", *blk.offsets)
        crc = zlib.crc32(blk.data, zlib.crc32(offs))  # of offsets + data, without joining them
        head = _HEAD.pack(_MAGIC, ENCODER_VERSION, blk.first, len(blk), len(blk.data), crc)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(head)
                f.write(offs)
                f.write(blk.data)
            os.replace(tmp, p)
        except OSError:
            _unlink(tmp)
            return
        self.writes += 1
        with self._lock:
            if self._bytes is None:
                self._bytes = self.usage()
            else:
                self._bytes += len(head) + len(offs) + len(blk.data)
            over = self._bytes > self.max_bytes
        if over:
            self.trim()

    def usage(self, exclude: str | None = None) -> int:
        """Bytes of cached files on disk now, but for those of the bundle key ``exclude``."""
        total = 0
        for d in _scandir(self.root):
            if d.is_dir(follow_symlinks=False) and d.name != exclude:
                total += _dir_bytes(Path(d.path))
        return total

    def trim(self) -> None:
        """Delete the least recently used files until the directory is under 90 % of the bound."""
        files = []
        for d in _scandir(self.root):
            if not d.is_dir(follow_symlinks=False):
                continue
            for e in _scandir(Path(d.path)):
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                files.append((st.st_mtime_ns, st.st_size, e.path))
        total = sum(f[1] for f in files)
        files.sort()
        goal = int(self.max_bytes * 0.9)
        for _mtime, size, path in files:
            if total <= goal:
                break
            if _unlink(Path(path)):
                total -= size
        with self._lock:
            self._bytes = total


def _map(p: Path) -> "mmap.mmap | bytes":
    """The file's bytes, mapped read-only: a hit costs no copy and no fresh memory (its pages are the page
    cache's, shared by every worker). Safe because a cache file is never rewritten in place: it is
    written under a temporary name and renamed over, or deleted, and a mapping keeps the pages of the
    file it mapped. (Bundles are read, never mapped: a user may copy over a bundle file in place.)"""
    fd = os.open(p, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < _HEAD.size:
            return b""  # too short to be a block (and an empty file cannot be mapped): refused by _parse
        return mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def manifest_digest(manifest_bytes: bytes) -> bytes:
    """The manifest's part of :func:`bundle_key` (hashed once per opened bundle)."""
    return hashlib.sha1(manifest_bytes).digest()


def bundle_key(manifest: bytes, fd: int) -> str:
    """The identity of a bundle now: its manifest (:func:`manifest_digest`) and its chunks file as the
    file system sees it (one ``fstat`` per block read)."""
    st = os.fstat(fd)
    h = hashlib.sha1(manifest)
    h.update(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{ENCODER_VERSION}".encode())
    return h.hexdigest()[:24]


def _parse(raw: "bytes | mmap.mmap", first: int, count: int) -> Block | None:
    if len(raw) < _HEAD.size:
        return None
    magic, version, f0, n, nbytes, crc = _HEAD.unpack_from(raw)
    if magic != _MAGIC or version != ENCODER_VERSION or f0 != first or n != count:
        return None
    start = _HEAD.size + 4 * (n + 1)
    if len(raw) != start + nbytes:
        return None
    body = memoryview(raw)[_HEAD.size :]
    if zlib.crc32(body) != crc:
        return None
    offs = list(struct.unpack_from(f"<{n + 1}I", raw, _HEAD.size))
    if offs[0] != 0 or offs[-1] != nbytes or any(a > b for a, b in zip(offs, offs[1:])):
        return None
    return Block(first, memoryview(raw)[start:], offs)  # a view: no second copy of the block


def _dir_bytes(d: Path) -> int:
    total = 0
    for e in _scandir(d):
        try:
            total += e.stat(follow_symlinks=False).st_size
        except OSError:
            pass
    return total


def _scandir(p: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(p) as it:
            return list(it)
    except OSError:
        return []


def _unlink(p: Path) -> bool:
    try:
        p.unlink()
        return True
    except OSError:
        return False


_DISK: DiskBlockCache | None = None
_DISK_LOCK = threading.Lock()


def disk_cache() -> DiskBlockCache:
    """The process's disk cache (configured from the environment on first use)."""
    global _DISK
    with _DISK_LOCK:
        if _DISK is None:
            _DISK = DiskBlockCache(default_dir(), default_max_bytes())
        return _DISK
