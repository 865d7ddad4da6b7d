"""The client side of chunk mode, sans I/O: pace playback locally and check every chunk came on time.

A chunk-mode client (``/ws/replay/{id}?mode=chunks``) receives ``state`` messages
and chunks. :class:`ChunkPacer` keeps the playhead the way the server does
(``frame + elapsed x fps x speed`` from the last state), stores the chunks it gets
(bounded), answers which frame to show now, and counts chunks that arrived after
the playhead had already reached them (late: after it had played into the chunk,
or, for the chunk a seek landed in, moved past the seek's target). The benchmark harness and tests
drive it with their own clock: every method takes ``now``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from .bundle.chunks import Chunk, decode_chunk

__all__ = [
    "ChunkPacer",
    "MAX_KEPT",
]

#: Chunks kept for display (the lookahead is at most 8 chunks, plus one of a pushed pair; a few behind for small seeks).
MAX_KEPT = 16


@dataclass
class ChunkPacer:
    fps: float
    frame: float = 0.0  # playhead at ``anchor``
    anchor: float = 0.0
    playing: bool = False
    speed: float = 1.0
    last_frame: int | None = None
    chunks: dict[int, Chunk] = field(default_factory=dict)  # chunk index -> decoded chunk
    received: int = 0
    late: int = 0
    bytes: int = 0
    jump: float | None = None  # where the last jump (a seek) put the playhead

    def position(self, now: float) -> float:
        p = self.frame + (max(0.0, now - self.anchor) * self.fps * self.speed if self.playing else 0.0)
        return p if self.last_frame is None else min(p, float(self.last_frame))

    def on_state(self, msg: dict[str, Any], now: float) -> None:
        """A ``state`` message (JSON, already parsed)."""
        frame = float(msg["frame"])
        if abs(frame - self.position(now)) >= 1:
            self.jump = frame
        self.frame = frame
        self.anchor = now
        self.playing = bool(msg["playing"])
        self.speed = float(msg.get("speed", self.speed))

    def on_chunk(self, payload: bytes, now: float) -> Chunk:
        """A binary message (gzip or raw chunk). Late if the playhead was already past its first frame."""
        self.bytes += len(payload)
        raw = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
        c = decode_chunk(raw)
        self.received += 1
        p = self.position(now)
        need = c.first_frame  # the first frame of it the playhead needs
        if self.jump is not None and c.first_frame <= self.jump < c.first_frame + c.n_frames:
            need = int(self.jump)
        if self.playing and p >= need + 1:
            self.late += 1
        self.chunks[c.first_frame] = c
        while len(self.chunks) > MAX_KEPT:  # drop what the playhead passed longest ago, else the farthest ahead
            behind = [f for f, k in self.chunks.items() if f + k.n_frames <= p]
            del self.chunks[min(behind) if behind else max(self.chunks)]
        return c

    def frame_at(self, now: float) -> dict[str, Any] | None:
        """The frame to show at ``now`` (None if its chunk has not arrived: a stall)."""
        i = int(self.position(now))
        for first, c in self.chunks.items():
            if first <= i < first + c.n_frames:
                return c.frames()[i - first]
        return None
