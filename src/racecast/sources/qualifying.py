"""Knockout qualifying: the running order by segment (Q1/Q2/Q3), eliminated cars frozen.

A qualifying session is segments separated by breaks; after each break only the
fastest cars of the segment before run on. The order a timing screen shows is
therefore not the best lap over the session: cars knocked out in a segment stay
below every car still running, ordered by their best time *in that segment*; the
cars still running are ordered by their best time in the current segment (those
without one yet keep their order from the segment before).

Where the segments are comes from the data, by a rule that holds for any session:

* a **break** is a span of at least :data:`MIN_BREAK_S` in which no car runs
  (running = moving faster than :data:`RUNNING_KMH` over a second, by position);
* a driver whose last run ends before a break was knocked out at it; a break that
  knocks out fewer than :data:`MIN_ELIMINATED` cars is a stoppage (a red flag), not
  the end of a segment, and its cars count for the next break; so is one after
  which fewer cars run on than were knocked out (knockouts keep the larger part); at most
  :data:`MAX_SEGMENTS` segments are kept (the breaks knocking out the fewest cars go
  first).

With an official result (FastF1's ``Q1``/``Q2``/``Q3`` times) who was knocked out
where comes from it, and the eliminated cars are ordered by their official segment
time; the breaks still come from the data. The result is a new ``position``,
``gap`` and ``interval`` for the race and ``event["qualifying"]``: the segments
(name, start, end in replay seconds) and who was knocked out in each.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from racecast.race import Race, Status

MIN_BREAK_S = 60.0
RUNNING_KMH = 30.0
MIN_ELIMINATED = 2
MAX_SEGMENTS = 3


def timed_laps(race: Race) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per driver: (end time, lap time) of every timed lap, read off the ``lap_time`` channel."""
    t = race.t
    out = []
    lt_all = race["lap_time"]
    lap_all = race["lap"]
    for j in range(race.n_drivers):
        lt = lt_all[:, j].astype(np.float64)
        lap = lap_all[:, j]
        prev = np.concatenate([[np.nan], lt[:-1]])
        changed = ~((lt == prev) | (np.isnan(lt) & np.isnan(prev)))
        changed |= np.concatenate([[False], lap[1:] != lap[:-1]])
        f = np.flatnonzero(changed & np.isfinite(lt) & (lt > 0))
        out.append((t[f], lt[f]))
    return out


def running_mask(race: Race) -> np.ndarray:
    """(frames, drivers): the car is moving (over the last second) and not retired.

    Movement is read from the positions, not the ``speed`` channel: speed samples are
    interpolated across the gaps in the data of a car parked in its garage.
    """
    x = race["x"].astype(np.float64)
    y = race["y"].astype(np.float64)
    w = max(1, int(race.fps))
    v = np.zeros_like(x)
    if x.shape[0] > w:
        v[w:] = np.hypot(x[w:] - x[:-w], y[w:] - y[:-w]) * (3.6 * race.fps / w)
    return (v > RUNNING_KMH) & (race["status"] != Status.OUT)


def find_breaks(race: Race, running: np.ndarray | None = None) -> list[tuple[int, int, list[int]]]:
    """Segment ends: ``(first idle frame, first frame running again, drivers knocked out)``."""
    run = running_mask(race) if running is None else running
    anyrun = run.any(axis=1)
    idx = np.flatnonzero(anyrun)
    if idx.size == 0:
        return []
    min_len = int(math.ceil(MIN_BREAK_S * race.fps))
    idle = ~anyrun
    idle[: idx[0]] = False
    idle[idx[-1] + 1 :] = False
    d = np.diff(np.concatenate([[0], idle.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    gaps = [(int(a), int(b)) for a, b in zip(starts, ends) if b - a >= min_len]
    if not gaps:
        return []
    last_run = np.array([int(np.flatnonzero(run[:, j])[-1]) if run[:, j].any() else -1 for j in range(race.n_drivers)])
    cands: list[tuple[int, int, list[int]]] = []
    prev_end = -1
    for a, b in gaps:
        cands.append((a, b, [j for j in range(race.n_drivers) if prev_end <= last_run[j] < a or (prev_end < 0 and last_run[j] < 0)]))
        prev_end = b
    def after(k: int) -> int:  # cars still running after break k
        return int((last_run >= cands[k][1]).sum())

    def weak(k: int) -> bool:  # too few out, or more out than go on: a stoppage or the session's end
        return len(cands[k][2]) < MIN_ELIMINATED or after(k) < len(cands[k][2])

    # drop stoppages: the weakest break goes first (its cars count for the next one)
    while cands and (len(cands) > MAX_SEGMENTS - 1 or any(weak(k) for k in range(len(cands)))):
        i = min(range(len(cands)), key=lambda k: (not weak(k), len(cands[k][2]), -k))
        moved = cands.pop(i)[2]
        if i < len(cands):
            a, b, out = cands[i]
            cands[i] = (a, b, sorted(out + moved))
    return cands


def _official_segments(results: Any, codes: list[str], code_of_number: Mapping[str, str]) -> dict[str, tuple[int, list[float]]] | None:
    """code -> (segments reached, official time per segment in s) from FastF1 results, if they have Q1..Q3."""
    if results is None or len(results) == 0 or "Q1" not in results.columns:
        return None
    out: dict[str, tuple[int, list[float]]] = {}
    df = results.reset_index(drop=True)
    for i in range(len(df)):
        abbr = str(df["Abbreviation"][i]) if "Abbreviation" in df.columns else ""
        num = str(df["DriverNumber"][i]) if "DriverNumber" in df.columns else ""
        code = abbr if abbr in codes else code_of_number.get(num, "")
        if code not in codes:
            continue
        times = []
        for q in ("Q1", "Q2", "Q3"):
            v = df[q][i] if q in df.columns else None
            try:
                s = float(v.total_seconds()) if hasattr(v, "total_seconds") else float(v)
            except (TypeError, ValueError):
                s = math.nan
            times.append(s)
        reached = max([k + 1 for k, s in enumerate(times) if math.isfinite(s)], default=1)
        out[code] = (reached, times)
    return out or None


def knockout(
    race: Race, *, results: Any = None, segment_prefix: str = "Q", laps: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
) -> tuple[Race, list[str]]:
    """``race`` with the knockout running order, and warnings (e.g. the data and the results disagree)."""
    warnings: list[str] = []
    nd, n = race.n_drivers, race.n_frames
    codes = race.codes
    t = race.t
    breaks = find_breaks(race)
    nseg = len(breaks) + 1
    bounds = [t[a] for a, _b, _e in breaks]  # segment k ends at bounds[k]
    resumes = [t[min(b, n - 1)] for _a, b, _e in breaks]
    elim_seg = np.full(nd, nseg, dtype=np.int64)  # segment (1-based) a driver was knocked out in; nseg = still in at the end
    for k, (_a, _b, out) in enumerate(breaks):
        elim_seg[out] = k + 1
    source = "data"
    official = _official_segments(results, codes, {str(d.number): d.code for d in race.drivers})
    off_time = np.full((nd, MAX_SEGMENTS), np.nan)
    if official is not None:
        reached = max(r for r, _ in official.values())
        if reached != nseg:
            warnings.append(
                f"qualifying: the official results have {reached} segments, the data shows {nseg} "
                f"(breaks of {MIN_BREAK_S:.0f} s with no car running): segments follow the data"
            )
        else:
            source = "results"
            for j, c in enumerate(codes):
                if c in official:
                    r, times = official[c]
                    elim_seg[j] = r
                    off_time[j, :] = times
                else:
                    warnings.append(f"qualifying: {c} is in the data but not in the official results")
            data_out = {k + 1: sorted(codes[j] for j in out) for k, (_a, _b, out) in enumerate(breaks)}
            for k, cs in data_out.items():
                off = sorted(c for j, c in enumerate(codes) if elim_seg[j] == k)
                if cs != off:
                    warnings.append(f"qualifying: the data suggests {', '.join(cs) or 'nobody'} out in {segment_prefix}{k}, the results {', '.join(off) or 'nobody'}")
    laps = list(laps) if laps is not None else timed_laps(race)
    seg_lo = [-math.inf] + bounds
    seg_hi = bounds + [math.inf]

    def best_in(j: int, k: int, until: float) -> float:
        et, lt = laps[j]
        m = (et >= seg_lo[k]) & (et < seg_hi[k]) & (et <= until)
        return float(lt[m].min()) if m.any() else math.nan

    events = sorted({0.0, *[float(x) for et, _ in laps for x in et], *bounds, *resumes})
    numbers = [d.number for d in race.drivers]
    orders: list[np.ndarray] = []
    gaps: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    prev_rank = np.argsort(np.argsort(numbers, kind="stable"), kind="stable")  # before any time: by car number
    last_pos = prev_rank + 1
    last_seg = 0
    for ev in events:
        cur = sum(1 for b in bounds if b <= ev)  # 0-based segment in force (its knocked-out cars are known)
        if cur != last_seg:  # a new segment: cars without a time in it keep the order the last one ended with
            prev_rank, last_seg = last_pos - 1, cur
        keys = []
        shown = np.full(nd, np.nan)
        group = np.zeros(nd, dtype=np.int64)
        for j in range(nd):
            k = min(int(elim_seg[j]) - 1, cur)  # the segment whose time ranks this driver now
            group[j] = k
            tm = off_time[j, k] if k < cur and math.isfinite(off_time[j, k]) else best_in(j, k, ev)
            shown[j] = tm
            has = math.isfinite(tm)
            keys.append((-k, 0 if has else 1, tm if has else float(prev_rank[j]), numbers[j]))
        order = sorted(range(nd), key=lambda j: keys[j])
        pos = np.empty(nd, dtype=np.int64)
        pos[order] = np.arange(1, nd + 1)
        last_pos = pos
        g = np.full(nd, np.nan)
        iv = np.full(nd, np.nan)
        for i, j in enumerate(order):
            if not math.isfinite(shown[j]):
                continue
            same = [o for o in order[:i] if group[o] == group[j] and math.isfinite(shown[o])]
            # gap to the fastest of the same segment group (the overall P1 is 0; a frozen group's first has none)
            g[j] = shown[j] - shown[same[0]] if same else (0.0 if i == 0 else np.nan)
            if same:
                iv[j] = shown[j] - shown[same[-1]]
        orders.append(pos)
        gaps.append(g)
        ints.append(iv)
    ev_arr = np.array(events)
    which = np.clip(np.searchsorted(ev_arr, t, side="right") - 1, 0, len(events) - 1)
    pos_ch = np.stack(orders)[which].astype(np.int8)
    gap_ch = np.stack(gaps)[which].astype(np.float32)
    int_ch = np.stack(ints)[which].astype(np.float32)
    ch = dict(race.channels)
    ch["position"], ch["gap"], ch["interval"] = pos_ch, gap_ch, int_ch
    # A qualifying order ranks cars by time, not by who is still out there: a car not on
    # track (not yet out, in its garage, stopped for good) is PIT, never OUT below the rest.
    st = np.array(race["status"], copy=True)
    st[st == Status.OUT] = Status.PIT
    ch["status"] = st
    segments = []
    for k in range(nseg):
        start = float(t[0]) if k == 0 else float(resumes[k - 1])
        end = float(bounds[k]) if k < len(bounds) else float(t[-1])
        segments.append({"name": f"{segment_prefix}{k + 1}", "start": round(start, 3), "end": round(end, 3)})
    info = {
        "source": source,
        "segments": segments,
        "eliminated": {f"{segment_prefix}{k + 1}": [codes[j] for j in np.argsort(pos_ch[-1]) if elim_seg[j] == k + 1] for k in range(nseg - 1)},
        "order": [codes[j] for j in np.argsort(pos_ch[-1])],
        "rule": f"segments end at breaks of >= {MIN_BREAK_S:.0f} s with no car running that knock out >= {MIN_ELIMINATED} cars",
    }
    if nseg == 1:
        warnings.append(f"qualifying: no break knocking out cars found (no car running for {MIN_BREAK_S:.0f} s): one segment, best-lap order")
    new = dataclasses.replace(race, channels=ch, event={**race.event, "qualifying": info})
    return new, warnings


__all__ = ["MAX_SEGMENTS", "MIN_BREAK_S", "MIN_ELIMINATED", "RUNNING_KMH", "find_breaks", "knockout", "running_mask", "timed_laps"]
