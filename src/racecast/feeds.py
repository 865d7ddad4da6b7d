"""What a viewer's connection sends for a position, sans I/O: its per-viewer stream choice.

The engine asks ``feed.message(i, have)`` for the binary message that brings a
viewer to frame ``i`` (``have``: the last frame it delivered to this viewer, :data:`UNKNOWN`
when unknown, e.g. at connect or after a seek), offers it, and calls
``feed.delivered()`` when the message was written. Every message is a
zero-copy slice of the bundle except a compact keyframe + delta pair.

* :class:`FrameFeed` — one pre-encoded frame per message (msgpack, the default).
* :class:`CompactFeed` — compact frames; a delta frame goes out alone when the
  viewer already holds its keyframe, else after it in the same message.
* :class:`ChunkFeed` — one-second chunks pushed ahead of the playhead (bounded
  lookahead); the client paces playback from the state messages. ``None`` means
  nothing is due at this position.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

from .bundle import Bundle, Stream
from .bundle.blocks import Cursor
from .bundle.wsframe import binary_header
from .errors import BadRequest
from .playback import Playback

__all__ = [
    "Feed",
    "FrameFeed",
    "CompactFeed",
    "ChunkFeed",
    "FeedError",
    "make_feed",
    "framed",
    "Message",
    "CHUNK_BATCH",
    "CHUNK_COMPRESSIONS",
    "DEFAULT_LOOKAHEAD_S",
    "MAX_LOOKAHEAD_CHUNKS",
    "UNKNOWN",
    "WAKE_NOW",
]

#: Chunk mode: how far ahead of the playhead chunks are pushed (seconds of wall time), and a hard cap.
DEFAULT_LOOKAHEAD_S = 2.0
MAX_LOOKAHEAD_CHUNKS = 8
#: Chunk mode: chunks written per push. When chunk k enters the lookahead window, k and k + 1
#: go out back to back in one write, so a playing viewer costs one visit and one system call
#: every two seconds of race instead of every second (the chunk benchmark's two biggest costs).
CHUNK_BATCH = 2
#: Chunk compressions (a WebSocket client's ``compression=``, an HTTP content coding) -> the bundle
#: stream holding the chunks so compressed. The one table of them: chunks over HTTP use it too.
CHUNK_COMPRESSIONS = {"identity": "chunks", "gzip": "chunks.gz", "br": "chunks.br", "zstd": "chunks.zst"}
#: ``have`` when the viewer's last delivered frame is unknown (at connect, after a seek or a jump).
UNKNOWN = -1
#: What :meth:`Feed.wake_frame` returns when the feed has work at once (a refused message to retry).
WAKE_NOW = -1

Message = memoryview | bytes | tuple[memoryview, ...]


class FeedError(BadRequest, ValueError):
    """A connection option this replay cannot honour (unknown encoding, mode or compression)."""

    kind = "bad_encoding"


class Feed(Protocol):
    """What a viewer is sent: the engine's only view of a connection's stream choice."""

    stream: Stream
    #: True: something is due at every tick (the engine visits the viewer each tick). False: the
    #: engine visits it only when :meth:`wake_frame` says (the timing wheel).
    every_tick: ClassVar[bool]
    #: A cursor of the stream whose ``message(i)`` is already the complete WebSocket frame for frame
    #: ``i``, when every frame of this feed is one stored message (:class:`FrameFeed`); None otherwise.
    #: The engine's direct path then writes that zero-copy slice without a call into the feed.
    preframed: Cursor | None

    def message(self, i: int, have: int) -> Message | None:
        """What brings the viewer to frame ``i``: one message, several (a tuple, written together), or None.
        ``have``: the last frame delivered to this viewer, or :data:`UNKNOWN`."""
        ...

    def framed_message(self, i: int, have: int) -> bytes | memoryview | None:
        """:meth:`message` as complete WebSocket frames, in one buffer (for sinks that write frames)."""
        ...

    def wake_frame(self) -> int:
        """The first playhead frame at which :meth:`message` may have work (:data:`WAKE_NOW`: at once).
        Asked only of feeds that are not ``every_tick``; valid until the next command."""
        ...

    def delivered(self) -> None:
        """The last message was written (the feed may advance what it has pushed)."""
        ...


def framed(data: Message | None) -> bytes | memoryview | None:
    """``data`` (one payload or a tuple of them) as binary WebSocket frames in one buffer."""
    if data is None:
        return None
    if type(data) is tuple:
        return b"".join([binary_header(len(d)) + d for d in data])
    return binary_header(len(data)) + data  # type: ignore[arg-type]


class FrameFeed:
    """One pre-encoded frame per message."""

    __slots__ = ("stream", "preframed")
    every_tick = True  # a frame is due at every tick: the engine visits the viewer each tick

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.preframed = stream.cursor()  # this viewer's way through the stream (it remembers its block)

    def message(self, i: int, have: int) -> memoryview:
        return self.stream[i]

    def framed_message(self, i: int, have: int) -> memoryview | bytes:
        return self.preframed.message(i)  # stored pre-framed: a zero-copy slice of a shared, checked block

    def wake_frame(self) -> int:
        return WAKE_NOW

    def delivered(self) -> None:
        pass


class CompactFeed:
    """Compact frames: the keyframe rides along whenever the viewer may not hold it."""

    __slots__ = ("stream", "k")
    every_tick = True
    preframed = None

    def __init__(self, stream: Stream, keyframe_interval: int) -> None:
        self.stream = stream
        self.k = keyframe_interval

    def message(self, i: int, have: int) -> memoryview | bytes:
        k = i - i % self.k
        if i == k or (have >= 0 and have - have % self.k == k):
            return self.stream[i]
        return b"".join((self.stream[k], self.stream[i]))

    def framed_message(self, i: int, have: int) -> bytes | memoryview | None:
        return framed(self.message(i, have))

    def wake_frame(self) -> int:
        return WAKE_NOW

    def delivered(self) -> None:
        pass


class ChunkFeed:
    """Chunks from the one containing the playhead up to ``lookahead`` seconds ahead, up to
    :data:`CHUNK_BATCH` per call (written together)."""

    __slots__ = ("stream", "per", "playback", "lookahead_s", "next", "_pending")
    every_tick = False  # the engine visits it when :meth:`wake_frame` says: once per CHUNK_BATCH chunks
    preframed = None

    def __init__(self, stream: Stream, playback: Playback, lookahead_s: float = DEFAULT_LOOKAHEAD_S) -> None:
        self.stream = stream
        self.per = stream.frames_per_item
        self.playback = playback
        self.lookahead_s = lookahead_s
        self.next = 0  # next chunk to push
        self._pending = -1

    def _ahead(self) -> float:
        pb = self.playback
        return min(self.lookahead_s * pb.fps * pb.speed, MAX_LOOKAHEAD_CHUNKS * self.per) if pb.playing else 0

    def wake_frame(self) -> int:
        """The first playhead frame at which :meth:`message` may return a chunk, given what was pushed.

        :data:`WAKE_NOW` when the last chunk offered was refused (backpressure: retry at the next tick);
        a frame past the replay when every chunk is out. Valid until the next command."""
        if self._pending >= 0:
            return WAKE_NOW
        if self.next >= self.stream.count:
            return self.stream.count * self.per
        return math.ceil(self.next * self.per - self._ahead())

    def message(self, i: int, have: int) -> memoryview | tuple[memoryview, ...] | None:
        """The chunk(s) to push at playhead ``i``: up to :data:`CHUNK_BATCH` consecutive chunks, each
        its own WebSocket message (a tuple when more than one), or None."""
        c = i // self.per
        if have < 0 or c >= self.next or c < self.next - MAX_LOOKAHEAD_CHUNKS - CHUNK_BATCH:
            self.next = c  # start, seek, or the viewer fell behind what was pushed: restart at the playhead
        ahead = self._ahead()
        count = self.stream.count
        if self.next >= count or (self.next > c and self.next * self.per > i + ahead):
            self._pending = -1
            return None
        first = self.next
        stop = min(count, first + CHUNK_BATCH)
        self._pending = stop
        if stop - first == 1:
            return self.stream[first]
        return tuple(self.stream[k] for k in range(first, stop))

    def framed_message(self, i: int, have: int) -> bytes | memoryview | None:
        return framed(self.message(i, have))

    def delivered(self) -> None:
        if self._pending >= 0:
            self.next = self._pending
            self._pending = -1


def make_feed(bundle: Bundle, playback: Playback, params: dict[str, str]) -> Feed:
    """The feed a connection's query asks for.

    Args:
        bundle: the replay's opened bundle (its streams).
        playback: the viewer's playback state (chunk mode reads its speed and position).
        params: the WebSocket URL's query: ``encoding=msgpack|compact|...`` (frames, the default
            mode), or ``mode=chunks`` with ``compression=gzip|identity|br|zstd`` (default gzip)
            and ``lookahead`` seconds (0.5-10, default 2).

    Returns:
        A :class:`FrameFeed`, :class:`CompactFeed` or :class:`ChunkFeed`.

    Raises:
        FeedError: an unknown mode, encoding or compression, one this bundle lacks, or a
            lookahead that is not a number in range (a :class:`~racecast.errors.BadRequest`:
            HTTP 400, close code 4400).
    """
    mode = params.get("mode", "frames")
    if mode == "chunks":
        comp = params.get("compression", "gzip")
        if comp not in CHUNK_COMPRESSIONS:
            raise FeedError(f"unknown chunk compression {comp[:40]!r}; use one of {', '.join(CHUNK_COMPRESSIONS)}")
        stream = bundle.streams.get(CHUNK_COMPRESSIONS[comp])
        if stream is None:
            have = [c for c, name in CHUNK_COMPRESSIONS.items() if name in bundle.streams]
            raise FeedError(f"this replay has no {comp} chunks; it has: {', '.join(have) or 'none'}")
        try:
            lookahead = float(params.get("lookahead", DEFAULT_LOOKAHEAD_S))
        except ValueError:
            raise FeedError("lookahead must be a number of seconds") from None
        if not 0.5 <= lookahead <= 10:
            raise FeedError("lookahead must be between 0.5 and 10 seconds")
        return ChunkFeed(stream, playback, lookahead)
    if mode != "frames":
        raise FeedError(f"unknown mode {mode[:40]!r}; use frames or chunks")
    encoding = params.get("encoding", "msgpack")
    stream = bundle.streams.get(encoding)
    if stream is None or stream.frames_per_item != 1:
        usable = sorted(n for n, s in bundle.streams.items() if s.frames_per_item == 1)
        raise FeedError(f"unknown frame encoding {encoding[:40]!r}; this replay has: {', '.join(usable)}")
    if encoding == "compact":
        return CompactFeed(stream, int(stream.info.get("keyframe_interval", 25)))
    return FrameFeed(stream)
