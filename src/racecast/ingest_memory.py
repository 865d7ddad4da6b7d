"""Allocator settings for an ingest process: memory freed while a race is built goes back to the system.

An ingest builds a whole race in memory from large temporary arrays (a table's
columns, per-driver samples, whole-race working arrays). With the allocators'
defaults much of what is freed stays in the process: glibc raises its mmap
threshold after the first large free, so later arrays land on the heap and
fragment it; Arrow's mimalloc pool keeps its pages; every Arrow reader thread gets
its own malloc arena. Measured on the largest real race of the pack (2025 Dutch GP,
72 laps, FastF1 frames): peak RSS ~615 MB with the defaults, ~505 MB with these
settings, at the same CPU time. A 1 MiB threshold took ~500 MB but cost 40 % more
load CPU (every per-driver array freshly mapped); these values are the knee.

Call :func:`tune_for_ingest` first thing in a process that ingests (``racecast
ingest``, the server's ingest child, the accuracy and storage benchmarks); it is
process-wide, so a server never calls it for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Allocations from this size on get their own mapping, returned to the system when freed
#: (setting it also stops glibc from raising it after each large free). Whole-race arrays are
#: over it; per-driver arrays (~1.2 MB for a 100-minute race) stay on the heap, which is cheaper.
MMAP_THRESHOLD = 2 << 20
#: Free memory at the top of the heap beyond this is returned to the system.
TRIM_THRESHOLD = 16 << 20
_tuned = False

#: Malloc arenas (one per thread by default: Arrow's reader threads each keep one).
ARENA_MAX = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def tune_for_ingest() -> bool:
    """Set the allocators for an ingest (glibc thresholds, Arrow's system pool); True if glibc took them.

    Harmless elsewhere: without glibc (macOS, musl) only the Arrow pool is set; an
    ``ARROW_DEFAULT_MEMORY_POOL`` the user set is kept.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # read when pyarrow is first imported
        pa = sys.modules.get("pyarrow")
        if pa is not None:  # already imported: switch its default pool now
            pa.set_memory_pool(pa.system_memory_pool())
    libc = _libc()
    if libc is None:
        return False
    global _tuned
    _tuned = True
    ok = True
    for param, value in ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, ARENA_MAX)):
        ok = bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value))) and ok
    return ok


def release_free_memory() -> None:
    """In a process tuned for ingest, return the heap's free pages to the system now (glibc
    ``malloc_trim``): what a source freed after reading, before the race's arrays are allocated.
    A no-op in any other process (a server, the tests) and without glibc."""
    if not _tuned:
        return
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(ctypes.c_size_t(0))
