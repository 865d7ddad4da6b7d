"""Rewrite a bundle of an older format as the current one, in place and atomically.

Format 1-2 bundles store every stream pre-encoded (~800 MB for a 57-lap race);
format 3 stores the gzip chunks and derives the rest when served (~13 MB). The
race is read back from the old bundle's arrays (exact values) and written anew;
the old directory is replaced only once the new one is complete, so a failure
or a kill midway leaves the old bundle as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

from .format import FORMAT_VERSION, MANIFEST
from .open import open_bundle
from .write import write_bundle


def bundle_size(path: Path) -> int:
    """Bytes of every file of the bundle at ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def upgrade_bundle(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Upgrade the bundle at ``path`` to :data:`FORMAT_VERSION`; return its size before and after.

    A bundle already at the current version is left alone (same size twice).
    Raises :class:`~racecast.bundle.BundleError` if the old bundle is damaged
    (it is verified first: a damaged bundle is not silently re-encoded).
    """
    path = Path(path)
    b = open_bundle(path)
    try:
        before = bundle_size(path)
        if b.format_version >= FORMAT_VERSION:
            return before, before
        b.verify()
        race = b.race()
        write_bundle(race, path, overwrite=True)
    finally:
        b.close()
    assert (path / MANIFEST).is_file()
    return before, bundle_size(path)
