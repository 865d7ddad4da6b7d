"""Statistics over the load generator's arrival logs. Pure functions: tested without sockets.

Definitions (also in docs/performance.md):

- *segment*: a stretch of playback started by ``play`` or by a ``seek`` while playing, ending at
  the next command. Its frames are the binary messages whose index is *in band*: at/after the
  segment's target and no further ahead than the replay could have moved since the command
  was sent (``target <= f <= target + rate * (arrival - sent) + slack``, rate = fps x speed).
- *ack*: the first ``state`` message after the command whose ``frame`` is in band.
- *stale frame*: a binary message arriving after the ack (before the next command) that is
  out of band, i.e. a frame from before the seek. Frames between sending and the ack are
  in flight, not stale.
- *seek latency*: from sending the seek to the first in-band frame.
- *on time*: the viewer's schedule is anchored on its best frame (``anchor = min(arrival -
  f / rate)``); frame f is due at ``anchor + f / rate``. Each display period (1/fps) is a
  *slot* of ``speed`` consecutive frame indices; a slot is on time if one of its frames
  arrived at most ``TOLERANCE_PERIODS`` periods after it was due. Reported as the share of
  the viewers' slots (due inside the window) that were on time: skipped frames, starved
  viewers and drifting replay clocks all miss slots.
- *jitter*: |inter-arrival gap - that viewer's median gap|, over consecutive frames of a segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

TOLERANCE_PERIODS = 2  # a frame may arrive up to this many frame periods after it is due
SLACK_TICKS = 3  # band slack after a command, in ticks (covers a server's tick alignment)


@dataclass
class ClientLog:
    """Everything one load-generator client saw. Times are seconds on one monotonic clock."""

    times: np.ndarray  # arrival of each binary message
    frames: np.ndarray  # its frame_index
    sizes: np.ndarray  # its size on the wire (header + payload)
    commands: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (sent, command)
    states: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrived, state message)
    t_connect: float | None = None  # when the TCP connect started


@dataclass
class Segment:
    kind: str  # "play" or "seek"
    target: int
    t_send: float
    t_end: float
    rate: float  # replay frames per second of wall time
    t_ack: float | None = None
    members: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # indices into the log
    stale: int = 0

    def in_band(self, f: np.ndarray, a: np.ndarray) -> np.ndarray:
        speed_step = self.rate / 25.0  # frames per tick at 25 Hz
        hi = self.target + self.rate * (a - self.t_send) + SLACK_TICKS * max(speed_step, 1.0) + 2
        return (f >= self.target) & (f <= hi)


def percentile(values: Iterable[float] | np.ndarray, q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no values."""
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if a.size == 0:
        return None
    return float(np.percentile(a, q))


def segments(log: ClientLog, fps: int, speed: float) -> list[Segment]:
    """Split a client's log into playback segments and classify every frame (see module doc)."""
    out: list[Segment] = []
    playing = False
    position = 0
    cmds = sorted(log.commands, key=lambda c: c[0])
    for k, (t, cmd) in enumerate(cmds):
        t_next = cmds[k + 1][0] if k + 1 < len(cmds) else math.inf
        action = cmd.get("action")
        if action == "seek":
            position = int(cmd["frame"])
            if playing:
                out.append(Segment("seek", position, t, t_next, fps * float(speed)))
        elif action == "play":
            playing = True
            speed = float(cmd.get("speed", speed))
            out.append(Segment("play", position, t, t_next, fps * speed))
        elif action == "pause":
            playing = False
    for s in out:
        _classify(log, s)
    return out


def _classify(log: ClientLog, s: Segment) -> None:
    times, frames = log.times, log.frames
    lo = int(np.searchsorted(times, s.t_send, side="left"))
    hi = int(np.searchsorted(times, s.t_end, side="left"))
    a, f = times[lo:hi], frames[lo:hi]
    ok = s.in_band(f, a)
    for t, st in log.states:
        if t > s.t_send and t < s.t_end and "frame" in st:
            if s.in_band(np.array([st["frame"]]), np.array([t]))[0]:
                s.t_ack = t
                break
    s.members = lo + np.flatnonzero(ok)
    after = s.t_ack if s.t_ack is not None else (a[ok][0] if ok.any() else math.inf)
    s.stale = int(np.count_nonzero(~ok & (a > after)))


def first_arrival(log: ClientLog, s: Segment) -> float | None:
    return float(log.times[s.members[0]]) if s.members.size else None


def on_time_slots(
    times: np.ndarray, frames: np.ndarray, rate: float, start: float, end: float, fps: int
) -> tuple[int, int]:
    """(on-time slots, slots) for one segment's frames (arrival order) over due times in ``[start, end)``.

    The viewer's schedule is anchored on its best frame: frame f is due at
    ``anchor + f / rate`` with ``anchor = min(arrival - f / rate)``. Each display period
    (1/fps) is one *slot*, holding ``rate / fps`` consecutive frame indices (one frame at
    1x, four at 4x). A slot is on time if a frame of it arrived at most
    ``TOLERANCE_PERIODS`` periods after it was due. Slots are counted on the due-time
    grid, so the count does not depend on where the window cuts the stream; a skipped
    frame, a starved viewer and a drifting replay clock all show up as missed slots.
    """
    if times.size == 0:
        return 0, 0
    period = 1.0 / fps
    step = rate * period  # frame indices per slot
    anchor = float(np.min(times - frames / rate))
    due = anchor + frames / rate
    ok = times <= due + TOLERANCE_PERIODS * period + 1e-9
    j0 = math.ceil((start - anchor) / period - 1e-9)
    j1 = math.ceil((end - anchor) / period - 1e-9)
    if j1 <= j0:
        return 0, 0
    slots = np.floor(frames[ok] / step + 1e-9).astype(np.int64)
    hit = np.unique(slots[(slots >= j0) & (slots < j1)])
    return int(hit.size), int(j1 - j0)


def jitter(gaps: np.ndarray) -> np.ndarray:
    """|gap - median gap| for one viewer's inter-arrival gaps (seconds)."""
    if gaps.size < 2:
        return np.zeros(0)
    return np.abs(gaps - np.median(gaps))


def summarise(logs: Sequence[ClientLog], t0: float, t1: float, fps: int, speed: float) -> dict[str, Any]:
    """Per-point metrics over the window ``[t0, t1)`` (see module doc for each definition)."""
    window = t1 - t0
    n = len(logs)
    per_viewer_fps: list[float] = []
    total_frames = 0
    total_bytes = 0
    on = ticks = 0
    jit: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    connect_first: list[float] = []
    seek_lat: list[float] = []
    seeks = seeks_lost = stale = 0
    for log in logs:
        if log.t_connect is not None and log.times.size:
            connect_first.append(float(log.times[0] - log.t_connect))
        lo = int(np.searchsorted(log.times, t0, side="left"))
        hi = int(np.searchsorted(log.times, t1, side="left"))
        total_frames += hi - lo
        total_bytes += int(log.sizes[lo:hi].sum())
        per_viewer_fps.append((hi - lo) / window if window > 0 else 0.0)
        client_gaps: list[np.ndarray] = []
        for s in segments(log, fps, speed):
            stale += s.stale
            first = first_arrival(log, s)
            if s.kind == "seek":
                seeks += 1
                if first is None:
                    seeks_lost += 1
                else:
                    seek_lat.append(first - s.t_send)
            if first is None:
                continue
            a = log.times[s.members]
            f = log.frames[s.members].astype(np.float64)
            # Due times in the window, but not in its last periods: frames due then may
            # still be on their way (and after a seek they belong to the old segment).
            margin = TOLERANCE_PERIODS / fps
            o, k = on_time_slots(a, f, s.rate, max(first, t0), min(s.t_end, t1) - margin, fps)
            on += o
            ticks += k
            # Steady state only: the gap after a segment's first frame (e.g. a seek target
            # sent at once, then the next tick) is part of the seek, not jitter.
            steady = a[1:]
            in_win = steady[(steady >= t0) & (steady < t1)]
            if in_win.size >= 2:
                client_gaps.append(np.diff(in_win))
        if client_gaps:
            g = np.concatenate(client_gaps)
            gaps.append(g)
            jit.append(jitter(g))
    all_gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    all_jit = np.concatenate(jit) if jit else np.zeros(0)
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    return {
        "viewers": n,
        "window_s": round(window, 3),
        "frames_delivered": total_frames,
        "fps_per_viewer_min": round(min(per_viewer_fps), 2) if per_viewer_fps else None,
        "fps_per_viewer_median": round(float(np.median(per_viewer_fps)), 2) if per_viewer_fps else None,
        "gap_p50_ms": ms(percentile(all_gaps, 50)),
        "jitter_p50_ms": ms(percentile(all_jit, 50)),
        "jitter_p99_ms": ms(percentile(all_jit, 99)),
        "on_time_slots": on,
        "slots": ticks,
        "on_time_pct": round(100.0 * on / ticks, 3) if ticks else None,
        "bytes_per_frame": round(total_bytes / total_frames, 1) if total_frames else None,
        "bytes_per_viewer_s": round(total_bytes / (n * window), 1) if n and window > 0 else None,
        "connect_first_p50_ms": ms(percentile(connect_first, 50)),
        "connect_first_p99_ms": ms(percentile(connect_first, 99)),
        "seeks": seeks,
        "seeks_without_frame": seeks_lost,
        "seek_p50_ms": ms(percentile(seek_lat, 50)),
        "seek_p99_ms": ms(percentile(seek_lat, 99)),
        "stale_frames": stale,
    }
