"""CPU time and memory of a process (and its children) from /proc: cheap, no dependencies."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid``'s threads and its descendants' threads, in seconds.

    Read from /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU), because
    /proc/<pid>/stat counts in 10 ms ticks: too coarse for a few viewers over a few
    seconds. Falls back to utime + stime where schedstat is missing. Compare deltas
    over a window (threads that exit take their time with them).
    """
    total = 0.0
    for p in _tree(pid):
        ns = _schedstat_field(p, 0)
        if ns is not None:
            total += ns / 1e9
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    return total


def _schedstat_field(pid: int, k: int) -> int | None:
    """Field ``k`` of schedstat summed over the threads of ``pid`` (None if unavailable)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total, seen = 0, False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[k])
                seen = True
        except (OSError, IndexError, ValueError):
            continue
    return total if seen else None


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` and its descendants, in bytes."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def wait_seconds(pid: int) -> float:
    """Time the threads of ``pid`` (and descendants) spent runnable but waiting for a CPU.

    From schedstat; a busy machine shows up here, so a run can say how contended it
    was instead of silently reporting slower numbers.
    """
    return sum((_schedstat_field(p, 1) or 0) for p in _tree(pid)) / 1e9
