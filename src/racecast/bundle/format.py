"""What a replay bundle is on disk, shared by the writer and the reader.

A bundle is a directory::

    manifest.json            everything small: ids, drivers, geometry, events, file sizes, hash
    arrays/<name>.npy        one column per channel, shaped (frames, drivers), opened by mmap
    streams/<name>.bin       pre-encoded payloads (frames or chunks) back to back
    streams/<name>.idx.npy   uint64 offsets, count + 1 of them: item i is bin[idx[i]:idx[i+1]]

A stream whose manifest entry says ``"framing": "websocket"`` (format version 2)
stores each item as a complete WebSocket binary frame, header included, so the
server writes frame i to a socket as one zero-copy slice; its payload is the
item minus the 2-10 byte header (see :mod:`.wsframe`).

The manifest is written last and the directory renamed into place, so a
directory with a manifest is complete; the content hash covers the manifest
(minus the hash) and every file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import Damaged
from ..race import Race

FORMAT_NAME = "racecast-bundle"
#: 3: only ``chunks.gz`` is stored, every other stream is derived from it when served;
#: 2: every stream stored, frame streams pre-framed for WebSocket; 1: not pre-framed. All are read.
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BundleError(Damaged):
    """A bundle that cannot be used: missing, truncated, corrupt, malformed or from a newer racecast."""


def validate_id(replay_id: str) -> str:
    """Return ``replay_id`` if it is a safe bundle name (no paths, no dot-files), else raise."""
    if not isinstance(replay_id, str) or not _ID_RE.fullmatch(replay_id) or ".." in replay_id:  # fullmatch: no trailing newline
        raise ValueError(
            f"invalid replay id {replay_id!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return replay_id


@dataclass(frozen=True)
class StreamEncoder:
    """How to pre-encode one stream of payloads from a race at ingest.

    ``encode(race)`` yields ``ceil(n_frames / frames_per_item)`` payloads in order.
    """

    name: str
    encode: Callable[[Race], Iterable[bytes]]
    frames_per_item: int = 1
    media_type: str = "application/octet-stream"
    extra: Mapping[str, Any] | None = None  # stored in the manifest beside the stream
    #: ``"websocket"``: store each item as a complete WebSocket binary frame (streams sent one
    #: item per message); ``None``: raw payloads (streams served as byte ranges, e.g. chunks).
    framing: str | None = None


def item_count(n_frames: int, frames_per_item: int) -> int:
    return -(-n_frames // frames_per_item)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_hash(manifest: Mapping[str, Any], root: Path) -> str:
    """sha256 over the manifest (without its hash) and every listed file, in name order."""
    h = hashlib.sha256()
    h.update(canonical_json({k: v for k, v in manifest.items() if k != "content_hash"}))
    for name in sorted(manifest["files"]):
        h.update(name.encode() + b"\0")
        with open(root / name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return "sha256:" + h.hexdigest()
