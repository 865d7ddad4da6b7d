"""Streams served from blocks: read with ``pread`` or derived on first use, shared through one bounded cache.

Every stream of an opened bundle is a sequence of items (frames or chunks)
grouped into *blocks* of consecutive items. A block is built once (read from
the bundle file with ``os.pread``, or derived from another stream's block) and
validated as it is built, then kept in the process-wide :class:`BlockCache`
(least recently used first out, bounded in bytes) where every viewer of every
connection slices it. So:

* nothing is serialized per viewer: the work of a block is done once, for all;
* the send path stays one slice of a ready buffer (``Stream.message(i)``);
* nothing is memory-mapped, so a bundle file truncated or rewritten under a
  running server cannot SIGBUS it: a short read or a bad item makes the block
  fail with :class:`BlockError` (a :class:`BundleError`), which the server turns
  into an error for the viewers of that replay while every other replay plays on.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from .format import BundleError
from .wsframe import binary_header, header_size

if TYPE_CHECKING:
    import numpy as np

#: Default bound of the shared block cache (bytes); ``RACECAST_BLOCK_CACHE_MB`` overrides it.
#: It must hold the blocks in use: viewers spread over a whole 57-lap race in msgpack mode use
#: ~1,230 blocks of ~0.45 MB (all of it); a block evicted while still in use is rebuilt.
DEFAULT_CACHE_BYTES = 384 << 20
#: Blocks queued for the background builder at most, and how long a reader waits for one in progress.
MAX_PREFETCH = 8
PREFETCH_WAIT_S = 5.0


class BlockError(BundleError):
    """A block of a bundle stream that cannot be read or decoded (truncated, corrupt, replaced)."""


class Block:
    """Items ``first .. first + len(offsets) - 2`` of a stream, back to back in one buffer.

    ``data`` is bytes, a read-only 1-D uint8 array (a derived block encoded in place) or a
    memoryview of bytes (a block read from the disk cache, after its header).
    """

    __slots__ = ("first", "data", "mv", "offsets", "nbytes", "ahead", "__weakref__")

    def __init__(self, first: int, data: "bytes | memoryview | np.ndarray", offsets: list[int]) -> None:
        self.first = first
        self.data = data
        self.mv = memoryview(data)
        self.offsets = offsets
        self.nbytes = len(data) + 8 * len(offsets) + 200
        self.ahead = False  # whether the block after it was asked for (once per block, not per use)

    def __len__(self) -> int:
        return len(self.offsets) - 1


class _Failed:
    """A cached failure: a damaged block is reported again without re-reading it every tick."""

    __slots__ = ("error", "nbytes")

    def __init__(self, error: BlockError) -> None:
        self.error = error
        self.nbytes = 200


class BlockCache:
    """Least-recently-used blocks of every open stream in the process, at most ``max_bytes`` in all.

    Thread-safe (HTTP handlers run in a thread pool while the ticker runs in the event loop).
    A block in use by a send stays alive after eviction until its slices are released.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.prefetched = 0
        self._d: OrderedDict[tuple[Any, ...], Block | _Failed] = OrderedDict()
        self._pending: dict[tuple[Any, ...], threading.Event] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # Blocks are keyed by their owner's token, not the owner: the cache never keeps a replaced
        # or closed bundle alive, and when one is garbage-collected its blocks go with it.
        self._tokens: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
        self._next_token = itertools.count(1)
        # Tokens of collected owners, purged under the lock by the next cache operation. The
        # finalizer only appends here: the garbage collector can run it on any thread, at any
        # allocation, including one made while this thread holds ``_lock`` (a deadlock if it
        # took the lock itself, as it once did: a CI run hung in ``prefetch``).
        self._dead: deque[int] = deque()

    def token(self, owner: Any) -> int:
        """The key prefix of ``owner``'s blocks (one per owner; its blocks are dropped when it is collected)."""
        with self._lock:
            t = self._tokens.get(owner)
            if t is None:
                t = self._tokens[owner] = next(self._next_token)
                weakref.finalize(owner, self._dead.append, t)
        return t

    def tokens_held(self) -> set[int]:
        """The owner tokens that have blocks in the cache (for tests and metrics)."""
        with self._lock:
            self._purge_dead()
            return {k[0] for k in self._d}

    def get(self, key: tuple[Any, ...], build: Callable[[], Block]) -> Block:
        """The block under ``key``, built by ``build()`` on a miss (outside the lock); a block the
        prefetcher is building is waited for rather than built twice."""
        with self._lock:
            b = self._d.get(key)
            if b is not None:
                self._d.move_to_end(key)
                self.hits += 1
            pending = self._pending.get(key) if b is None else None
        if pending is not None:
            pending.wait(PREFETCH_WAIT_S)
            with self._lock:
                b = self._d.get(key)
        if b is None:
            self.misses += 1
            try:
                b = build()
            except BlockError as e:
                b = _Failed(e)
            self._insert(key, b)
        if type(b) is _Failed:
            raise b.error
        return b  # type: ignore[return-value]

    def _insert(self, key: tuple[Any, ...], b: "Block | _Failed") -> None:
        with self._lock:
            self._purge_dead()
            old = self._d.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._d[key] = b
            self.nbytes += b.nbytes
            while self.nbytes > self.max_bytes and len(self._d) > 1:
                _, gone = self._d.popitem(last=False)
                self.nbytes -= gone.nbytes

    def prefetch(self, key: tuple[Any, ...], build: Callable[[], Block]) -> bool:
        """Build ``key`` in the background (one worker thread) unless cached, pending or too many are queued;
        False only in the last case (ask again later).

        Playback moves forward: building the next block before a viewer needs it keeps its cost
        off the ticker (the CPU is the same, the tick does not wait for it).
        """
        with self._lock:
            if key in self._d or key in self._pending:
                return True
            if len(self._pending) >= MAX_PREFETCH:
                return False
            ev = self._pending[key] = threading.Event()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="racecast-blocks")
            executor = self._executor
        executor.submit(self._fill, key, build, ev)
        return True

    def _fill(self, key: tuple[Any, ...], build: Callable[[], Block], ev: threading.Event) -> None:
        try:
            try:
                self._insert(key, build())
                self.prefetched += 1
            except BlockError as e:
                self._insert(key, _Failed(e))
            except Exception:  # never kill the worker; the block is built (and fails) on demand instead
                pass
        finally:
            with self._lock:
                self._pending.pop(key, None)
            ev.set()

    def holds(self, key: tuple[Any, ...], wait: float = 0.0) -> bool:
        """Whether ``key`` is cached, after waiting up to ``wait`` s for a background build of it."""
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None and wait > 0:
            pending.wait(wait)
        with self._lock:
            return key in self._d

    def drop(self, owner: Any) -> None:
        """Forget every block of ``owner`` (a closed or replaced bundle; one still in use rebuilds on demand)."""
        with self._lock:
            t = self._tokens.get(owner)
        if t is not None:
            self._drop_token(t)

    def _drop_token(self, t: int) -> None:
        with self._lock:
            self._purge_dead()
            self._drop_locked(t)

    def _drop_locked(self, t: int) -> None:
        for k in [k for k in self._d if k[0] == t]:
            self.nbytes -= self._d.pop(k).nbytes

    def _purge_dead(self) -> None:
        """Drop the blocks of owners collected since the last call (the caller holds ``_lock``)."""
        while self._dead:
            self._drop_locked(self._dead.popleft())

    def __len__(self) -> int:
        return len(self._d)


def _cache_bytes() -> int:
    try:
        mb = float(os.environ.get("RACECAST_BLOCK_CACHE_MB", ""))
    except ValueError:
        return DEFAULT_CACHE_BYTES
    return max(1 << 20, int(mb * (1 << 20)))


#: The one cache of the process.
CACHE = BlockCache(_cache_bytes())


class Stream:
    """A sequence of payloads; ``stream[i]`` is payload i, ``message(i)`` its WebSocket binary frame.

    Items live in blocks of ``block_items`` built by ``load(b)`` and shared through
    :data:`CACHE`. A pre-framed stream (``framed``) holds each item as a complete
    WebSocket frame, so :meth:`message` is one slice of the block; ``stream[i]``
    is the payload inside it.
    """

    __slots__ = ("name", "count", "frames_per_item", "media_type", "info", "framed", "block_items", "derived",
                 "_load", "_fetch", "_owner", "_last", "_cache", "_file")  # fmt: skip

    def __init__(self, name: str, info: dict[str, Any], count: int, block_items: int,
                 load: Callable[[int], Block], owner: Any, *, framed: bool, derived: bool,
                 cache: BlockCache | None = None, file: "StoredFile | None" = None,
                 fetch: Callable[[int], Block] | None = None) -> None:  # fmt: skip
        self.name = name
        self.info = info
        self.count = count
        self.frames_per_item = int(info.get("frames_per_item", 1))
        self.media_type = str(info.get("media_type", "application/octet-stream"))
        self.framed = framed
        self.derived = derived
        self.block_items = block_items
        self._load = load
        self._fetch = fetch if fetch is not None else load  # a miss of the memory cache (may read a disk cache)
        self._last: tuple[int, Block | None] = (-1, None)  # one tuple: threads never see a torn pair
        self._cache = cache if cache is not None else CACHE
        self._owner = self._cache.token(owner)  # its blocks' key prefix (never the owner itself)
        self._file = file  # the data file a stored stream reads (closed with the stream)

    def __len__(self) -> int:
        return self.count

    def block(self, b: int) -> Block:
        """Block ``b`` (items ``b * block_items ...``), from the cache or built now."""
        last_b, blk = self._last
        if b == last_b:
            return blk  # type: ignore[return-value]
        blk = self._cache.get((self._owner, self.name, b), lambda: self._fetch(b))
        self._last = (b, blk)
        return blk

    def _ahead(self, b: int, blk: Block) -> None:
        """Ask for block ``b + 1`` to be built in the background (until the worker takes it).

        Called once a viewer is past the middle of block ``b``: playing on, it needs the next one
        soon (two seconds ahead at 1x), while a viewer who only seeked into ``b`` costs no second block.
        """
        nb = b + 1
        blk.ahead = nb * self.block_items >= self.count or self._cache.prefetch(
            (self._owner, self.name, nb), lambda: self._fetch(nb))  # fmt: skip

    def cursor(self) -> "Cursor":
        """A reader's own way through this stream (one per viewer): :meth:`message` that remembers its block."""
        return Cursor(self)

    def fileno(self) -> int | None:
        """The open data file of a stored stream (None when derived or closed)."""
        return self._file.fd if self._file is not None else None

    def forget_blocks(self) -> None:
        """Drop every cached block of this stream's owner (a cold cache, for benchmarks)."""
        self._cache._drop_token(self._owner)

    def load_block(self, b: int) -> Block:
        """Build block ``b`` now, bypassing every cache (``verify`` walks every block this way)."""
        return self._load(b)

    def fetch_block(self, b: int) -> Block:
        """Block ``b`` as a miss of the memory cache gets it (from the disk cache, or built and stored
        there), without putting it in the memory cache (``racecast warm`` walks every block this way)."""
        return self._fetch(b)

    def _item(self, i: int) -> memoryview:
        if not 0 <= i < self.count:
            raise IndexError(f"{self.name}[{i}] out of range 0..{self.count - 1}")
        b, j = divmod(i, self.block_items)
        return self._slice(b, j, self.block(b))

    def _slice(self, b: int, j: int, blk: Block) -> memoryview:
        """Item ``j`` of block ``b`` (``blk``); past the block's middle, its successor is asked for."""
        if not blk.ahead and self.derived and 2 * j >= self.block_items:
            self._ahead(b, blk)
        o = blk.offsets
        return blk.mv[o[j] : o[j + 1]]

    def __getitem__(self, i: int) -> memoryview:
        item = self._item(i)
        if self.framed:
            return item[header_size(len(item)) :]
        return item

    def message(self, i: int) -> memoryview | bytes:
        """Item ``i`` as a complete WebSocket binary frame: one slice of a cached block when pre-framed."""
        item = self._item(i)
        return item if self.framed else binary_header(len(item)) + item

    def span(self, start: int, stop: int) -> memoryview | bytes:
        """Payloads ``start..stop`` back to back (one slice when they share a raw block, else a copy)."""
        start = max(0, start)
        stop = min(self.count, stop)
        if stop <= start:
            return memoryview(b"")
        if not self.framed and start // self.block_items == (stop - 1) // self.block_items:
            b = start // self.block_items
            blk = self.block(b)
            j = start - blk.first
            if not blk.ahead and self.derived and 2 * (j + stop - start) > self.block_items:
                self._ahead(b, blk)
            o = blk.offsets
            return blk.mv[o[j] : o[j + stop - start]]
        return b"".join([self[i] for i in range(start, stop)])

    def nbytes(self) -> int | None:
        """Bytes stored on disk for this stream (None when derived on demand)."""
        return None if self.derived else int(self.info.get("bytes", 0))

    def close(self) -> None:
        self._last = (-1, None)
        if self._file is not None:
            self._file.close()


def _no_block() -> Block | None:
    return None


class Cursor:
    """One reader's way through a stream (a viewer's): :meth:`message` is :meth:`Stream.message`, but
    the block it read last is remembered here.

    The stream's own shortcut remembers one block for all its readers: viewers spread over a race
    missed it at almost every frame and each paid a locked cache lookup. A cursor misses only when
    its viewer enters another block, and its hit is one slice (the engine calls it per viewer per
    tick). It holds that block weakly, so the cache alone still decides what stays in memory.
    """

    __slots__ = ("stream", "_per", "_b", "_ref", "_hit")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._per = stream.block_items
        self._b = -1
        self._ref: Callable[[], Block | None] = _no_block
        self._hit = 0  # items from this one on are served without asking for the next block

    def message(self, i: int) -> memoryview | bytes:
        b, j = divmod(i, self._per)
        if b == self._b:
            blk = self._ref()
            if blk is not None and (j < self._hit or blk.ahead):
                o = blk.offsets
                return blk.mv[o[j] : o[j + 1]]
        return self._miss(i, b, j)

    def _miss(self, i: int, b: int, j: int) -> memoryview | bytes:
        s = self.stream
        if not 0 <= i < s.count:
            raise IndexError(f"{s.name}[{i}] out of range 0..{s.count - 1}")
        blk = s.block(b)
        if s.framed:  # (an item of a stream stored without framing needs its header: never a plain slice)
            self._b, self._ref = b, weakref.ref(blk)
            # Up to the middle a hit is a slice; past it, a derived stream asks for the next block once.
            self._hit = (self._per + 1) // 2 if s.derived else self._per
        item = s._slice(b, j, blk)
        return item if s.framed else binary_header(len(item)) + item


def check_framed(name: str, first: int, data: bytes, offsets: list[int]) -> None:
    """Every item of a pre-framed block must be exactly one unfragmented binary frame of its own length."""
    for j in range(len(offsets) - 1):
        a, b = offsets[j], offsets[j + 1]
        n = b - a
        if n < 2:
            raise BlockError(f"stream {name!r}: item {first + j} is {n} bytes, too short for a WebSocket frame")
        h = header_size(n)
        if data[a : a + h] != binary_header(n - h):
            raise BlockError(f"stream {name!r}: item {first + j} has a damaged WebSocket frame header")


class StoredFile:
    """One stream file of a bundle, read with ``pread`` (never mapped): short reads are errors, not SIGBUS."""

    def __init__(self, path: os.PathLike[str] | str, size: int) -> None:
        self.path = path
        self.size = size
        self._fd: int | None = os.open(path, os.O_RDONLY)

    def read(self, offset: int, n: int, what: str) -> bytes:
        fd = self._fd
        if fd is None:
            raise BlockError(f"{what}: the bundle was closed")
        try:
            data = os.pread(fd, n, offset)
        except OSError as e:
            raise BlockError(f"{what}: read failed ({e})") from e
        if len(data) != n:
            raise BlockError(
                f"{what}: the file {self.path} ends early ({len(data)} of {n} bytes at offset {offset}):"
                " it was truncated or replaced after the bundle was opened"
            )
        return data

    @property
    def fd(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
