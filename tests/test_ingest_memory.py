"""An ingest process sets its allocators so memory freed while building a race goes back to the system."""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
from racecast.ingest_memory import tune_for_ingest
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
tuned = tune_for_ingest()
import numpy as np
import pyarrow as pa
np.ones(3_000_000); big = None  # one large array freed: glibc would raise its mmap threshold past 24 MB
before = rss()
arrays, small = [], []
for _ in range(64):  # 2.4 MB arrays (~150 MB in all), each followed by a small one that stays
    arrays.append(np.ones(300_000))
    small.append(np.ones(10_000))
held = rss()
del arrays  # the holes between the small arrays: kept by a fragmented heap, returned when tuned
after = rss()
print(json.dumps({"tuned": tuned, "pool": pa.default_memory_pool().backend_name,
                  "held": held - before, "kept": after - before}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings are Linux-only")
def test_tuned_process_returns_freed_arrays_and_uses_arrows_system_pool():
    pytest.importorskip("pyarrow")
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["tuned"] is True
    assert r["pool"] == "system"  # pyarrow imported after tuning takes the system allocator
    assert r["held"] > 100e6  # the arrays were really resident...
    assert r["kept"] < 0.2 * r["held"]  # ...and freeing them gave the memory back (the small ones stay)


def test_a_pool_the_user_chose_is_kept():
    code = "import os; from racecast.ingest_memory import tune_for_ingest; tune_for_ingest(); print(os.environ['ARROW_DEFAULT_MEMORY_POOL'])"
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert p.stdout.strip() == "jemalloc"
