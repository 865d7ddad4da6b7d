"""The race's story as a list of events, computed once from a :class:`~racecast.race.Race`.

Pure functions over the race model's channels (no I/O): everything here reads the
``position``, ``status``, ``lap``, ``speed``, ``tyre`` and ``lap_time`` channels and the
race's track-status periods, so it works the same for every source (simulator, FastF1,
tables). The bundle writer stores the result (``analysis.json``); a bundle written
before that gets the same list derived on first request.

Rules, each chosen so a replay never tells a story the data does not support:

- **Pit stop**: a run of ``PIT`` status after the start that ends back on track (a run that
  ends the car's race is a retirement in the pit lane; a run from before the start is a
  pit-lane start). Stationary time is the time the car spends below 1 km/h in that run.
- **Overtake**: two cars swap places in the running order and the new order holds for
  :data:`HOLD_S` seconds (side-by-side flicker and failed attempts are not passes). It is
  an overtake only when it happened on track: a swap within :data:`PIT_WINDOW_S` of either
  car being in the pit lane is a change *through the pits*, one where either car retired or
  finished is not a pass, and one under a safety car, VSC or red flag is not counted.
- **Leader change**: the car in P1 changes and the new leader holds :data:`HOLD_S` s (any
  cause: the event says whether it came through the pits).
- **Fastest lap**: each lap that beats every earlier complete lap of the race (lap 1, from
  a standing start, is never counted); the last one is ``final``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..race import Compound, Race, Status, TrackStatus

#: A change of order must hold this long to count (s): shorter ones are flicker or a failed attempt.
HOLD_S = 3.0
#: A swap this close (s) to either car being in the pit lane is a change through the pits.
PIT_WINDOW_S = 3.0
#: Below this speed (km/h) a car in the pit lane is stationary (in its box).
STATIONARY_KMH = 1.0
#: Track statuses under which position changes are not overtakes, and their event kinds.
NEUTRALISED = {TrackStatus.SC: "safety_car", TrackStatus.VSC: "vsc", TrackStatus.VSC_ENDING: "vsc", TrackStatus.RED: "red_flag"}
#: Every event kind, in the order a list of them is documented.
KINDS = (
    "start",
    "overtake",
    "leader",
    "pit_stop",
    "safety_car",
    "vsc",
    "red_flag",
    "retirement",
    "fastest_lap",
    "chequered_flag",
)
#: Sessions with a running order worth reading as a race (others get pit visits, flags, fastest laps).
RACE_SESSIONS = ("R", "S", "SS", "")


@dataclass(frozen=True)
class Event:
    kind: str
    t: float  # s, on the race's time axis
    frame: int
    lap: int  # the lap of the (first) driver involved; the leader's lap for race-wide events
    drivers: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "t": round(self.t, 3), "frame": self.frame, "lap": self.lap, "drivers": list(self.drivers), **self.data}


@dataclass(frozen=True)
class PositionChange:
    """One confirmed swap of two cars in the running order, with why it happened."""

    t: float
    frame: int
    gainer: int  # driver index now ahead
    loser: int
    reason: str  # "track", "pit", "retirement", "finish", "neutralised", "grid"


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` frame ranges (stop exclusive) where a 1-D boolean mask is true."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def is_race(race: Race) -> bool:
    return str(race.event.get("session_type", "") or "").upper() in RACE_SESSIONS


def start_frame(race: Race) -> int:
    """Lights out: the first frame on which the leader is on lap 1 (0 if never)."""
    ll = race.leader_lap
    on = np.flatnonzero(ll >= 1)
    return int(on[0]) if on.size else 0


def _status_at(race: Race, t: float) -> TrackStatus:
    for p in race.track_status:
        if p.start <= t < p.end:
            return p.status
    return TrackStatus.GREEN


def _hold_frames(race: Race, seconds: float) -> int:
    return max(1, int(round(seconds * race.fps)))


def confirmed_changes(t: np.ndarray, values: np.ndarray, hold: float) -> list[tuple[int, int, int]]:
    """Changes of a per-row value that then hold ``hold`` seconds: ``(row, old, new)``.

    ``values`` is a 1-D integer series sampled at ``t``; a run shorter than ``hold`` (other
    than the last, which holds to the end) is flicker and never becomes the confirmed value.
    """
    if values.size == 0:
        return []
    flips = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], flips])
    ends_t = np.concatenate([t[flips], [math.inf]])
    out = []
    current = int(values[0])
    for s, end in zip(starts.tolist(), ends_t.tolist()):
        v = int(values[s])
        if v != current and end - t[s] >= hold:
            out.append((s, current, v))
            current = v
    return out


def position_changes(race: Race, hold: float = HOLD_S) -> list[PositionChange]:
    """Every confirmed swap of two cars' order, classified by cause (see the module docstring)."""
    pos = race.channels["position"]
    status = race.channels["status"]
    n, nd = pos.shape
    if n < 2 or nd < 2:
        return []
    t = race.t
    changed = np.flatnonzero(np.any(pos[1:] != pos[:-1], axis=1)) + 1
    rows = np.concatenate([[0], changed])
    p = pos[rows].astype(np.int16)
    tr = t[rows]
    ia, ib = np.triu_indices(nd, 1)
    ahead = p[:, ia] < p[:, ib]  # (rows, pairs): a ahead of b
    flipping = np.flatnonzero(np.any(ahead[1:] != ahead[:-1], axis=0))
    start = start_frame(race)
    win = _hold_frames(race, PIT_WINDOW_S)
    in_pit = status == Status.PIT
    out: list[PositionChange] = []
    for k in flipping.tolist():
        a, b = int(ia[k]), int(ib[k])
        for row, _old, new in confirmed_changes(tr, ahead[:, k].astype(np.int8), hold):
            f = int(rows[row])
            gainer, loser = (a, b) if new else (b, a)
            out.append(PositionChange(float(t[f]), f, gainer, loser, _reason(race, f, gainer, loser, start, win, in_pit)))
    out.sort(key=lambda c: (c.frame, c.gainer, c.loser))
    return out


def _reason(race: Race, f: int, a: int, b: int, start: int, win: int, in_pit: np.ndarray) -> str:
    status = race.channels["status"]
    n = race.n_frames
    if f <= start:
        return "grid"
    lo, hi = max(0, f - win), min(n, f + win + 1)
    pair = [a, b]
    if np.any(status[lo:hi][:, pair] == Status.OUT):
        return "retirement"
    if np.any(status[f, pair] == Status.FINISHED) or np.any(status[f - 1, pair] == Status.FINISHED):
        return "finish"
    if np.any(in_pit[lo:hi][:, pair]):
        return "pit"
    if _status_at(race, float(race.t[f])) in NEUTRALISED:
        return "neutralised"
    return "track"


# -- laps ------------------------------------------------------------------------------------------
def crossings(race: Race) -> list[np.ndarray]:
    """Per driver, the frame at which it completed lap 1, 2, ... (the flag counts for the last)."""
    lap = race.channels["lap"].astype(np.int32)
    status = race.channels["status"]
    out = []
    for d in range(race.n_drivers):
        col = lap[:, d]
        up = np.flatnonzero(col[1:] > col[:-1]) + 1
        frames: list[int] = []
        for f in up.tolist():
            completed = int(col[f - 1])
            if completed < 1:
                continue  # lights out (lap 0 -> 1), not a crossing
            while len(frames) < completed - 1:  # a lap skipped by missing data: no time for it
                frames.append(-1)
            if len(frames) < completed:
                frames.append(f)
        fin = np.flatnonzero(status[:, d] == Status.FINISHED)
        if fin.size:
            f = int(fin[0])
            if not frames or (frames[-1] != f and f > frames[-1] and int(col[f]) > len(frames)):
                while len(frames) < int(col[f]) - 1:
                    frames.append(-1)
                frames.append(f)
        out.append(np.asarray(frames, dtype=np.int64))
    return out


def lap_times(race: Race, cross: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per driver, the time of each completed lap (s; NaN where unknown; lap 1 from lights out).

    The ``lap_time`` channel (the source's timing, exact) is used when it agrees with the
    crossing times within 2 s; otherwise the difference of the crossing frames' times.
    """
    t = race.t
    lt = race.channels["lap_time"]
    n = race.n_frames
    t_start = float(t[start_frame(race)])
    settle = max(1, race.fps // 2)
    out = []
    for d, fr in enumerate(cross):
        times = np.full(fr.size, np.nan)
        prev = t_start
        for k, f in enumerate(fr.tolist()):
            if f < 0:
                prev = math.nan
                continue
            diff = float(t[f]) - prev
            ch = float(lt[min(f + settle, n - 1), d])
            if k > 0 and math.isfinite(ch) and math.isfinite(diff) and abs(ch - diff) < 2.0:
                times[k] = ch
            else:
                times[k] = diff
            prev = float(t[f])
        out.append(times)
    return out


# -- the events ------------------------------------------------------------------------------------
def _ev(race: Race, kind: str, f: int, drivers: Iterable[int] = (), lap: int | None = None, **data: Any) -> Event:
    ds = tuple(drivers)
    if lap is None:
        lap = int(race.channels["lap"][f, ds[0]]) if ds else int(race.leader_lap[f])
    return Event(kind, float(race.t[f]), int(f), int(lap), tuple(race.drivers[i].code for i in ds), data)


def _pit_stops(race: Race, start: int) -> tuple[list[Event], dict[int, list[tuple[int, int]]]]:
    status = race.channels["status"]
    speed = race.channels["speed"]
    tyre = race.channels["tyre"]
    age = race.channels["tyre_age"]
    n = race.n_frames
    events: list[Event] = []
    visits: dict[int, list[tuple[int, int]]] = {}
    for d in range(race.n_drivers):
        for a, b in runs(status[:, d] == Status.PIT):
            if a <= start:
                continue  # a pit-lane start (or in the pit lane before the race), not a stop
            if b >= n or status[b, d] != Status.RUNNING:
                continue  # never left: the race ended there (a retirement in the pit lane)
            visits.setdefault(d, []).append((a, b))
            stationary = float(np.count_nonzero(speed[a:b, d] < STATIONARY_KMH)) / race.fps
            before = Compound(int(tyre[max(a - 1, 0), d]))
            after = Compound(int(tyre[min(b + race.fps, n - 1), d]))
            fresh = int(age[min(b + race.fps, n - 1), d]) < int(age[max(a - 1, 0), d])
            ts = _status_at(race, float(race.t[a]))
            events.append(
                _ev(
                    race,
                    "pit_stop",
                    a,
                    [d],
                    t_in=round(float(race.t[a]), 3),
                    t_out=round(float(race.t[b]), 3),
                    exit_frame=int(b),
                    pit_lane_s=round(float(race.t[b] - race.t[a]), 3),
                    stationary_s=round(stationary, 2) if stationary > 0 else None,
                    tyre_in=before.name,
                    tyre_out=after.name,
                    tyre_change=bool(before != after or fresh),
                    track_status=ts.name,
                )
            )
    return events, visits


def _lap_neutralised(race: Race, t_a: float, t_b: float) -> str | None:
    """The neutralisation (``SC``, ``VSC``, ``RED``) in force at any time in ``[t_a, t_b]``, if any."""
    found = None
    for p in race.track_status:
        if p.status in NEUTRALISED and p.start < t_b and p.end > t_a:
            found = "VSC" if p.status == TrackStatus.VSC_ENDING else p.status.name
            if found == "SC" or found == "RED":
                return found
    return found


def _pit_losses(race: Race, pits: list[Event], cross: Sequence[np.ndarray], times: Sequence[np.ndarray]) -> list[Event]:
    """Each stop's time loss: its in-lap + out-lap against the same two laps of the cars that
    did not stop on them and ran them at about the same time (median), so a stop under a safety
    car is measured against safety-car laps. ``loss_s`` is None when no such reference exists."""
    t = race.t
    stop_laps = {(e.drivers[0], e.lap) for e in pits} | {(e.drivers[0], e.lap + 1) for e in pits}
    out = []
    for e in pits:
        d = race.codes.index(e.drivers[0])
        k = e.lap - 1  # index of the in-lap
        loss = None
        neutral = None
        if k + 1 < times[d].size and cross[d][k + 1] >= 0 and math.isfinite(times[d][k] + times[d][k + 1]):
            mine = times[d][k] + times[d][k + 1]
            t_end = float(t[cross[d][k + 1]])
            neutral = _lap_neutralised(race, t_end - mine, t_end)
            ref = []
            for o in range(race.n_drivers):
                c = race.codes[o]
                if o == d or k + 1 >= times[o].size or cross[o][k + 1] < 0:
                    continue
                if (c, k + 1) in stop_laps or (c, k + 2) in stop_laps:
                    continue
                if abs(float(t[cross[o][k + 1]]) - t_end) > 60.0 or not math.isfinite(times[o][k] + times[o][k + 1]):
                    continue
                ref.append(times[o][k] + times[o][k + 1])
            if ref:
                loss = round(float(mine - np.median(ref)), 2)
        out.append(Event(e.kind, e.t, e.frame, e.lap, e.drivers, dict(e.data, loss_s=loss, laps_neutralised=neutral)))
    return out


def _retirements(race: Race, start: int, cross: Sequence[np.ndarray]) -> list[Event]:
    status = race.channels["status"]
    n = race.n_frames
    out = []
    for d in range(race.n_drivers):
        col = status[:, d]
        if col[-1] != Status.OUT:
            continue
        r = runs(col == Status.OUT)[-1]
        f = r[0]
        if f <= start:  # out before lights out: did not start
            out.append(_ev(race, "retirement", f, [d], dns=True, in_pit=False, laps_completed=0))
            continue
        prev = int(col[f - 1]) if f > 0 else Status.OUT
        completed = int(np.count_nonzero((cross[d] >= 0) & (cross[d] <= f)))
        out.append(_ev(race, "retirement", min(f, n - 1), [d], dns=False, in_pit=prev == Status.PIT, laps_completed=completed))
    return out


def _track_periods(race: Race) -> list[Event]:
    out = []
    for p in race.track_status:
        kind = NEUTRALISED.get(p.status)
        if kind is None:
            continue
        f = race.frame_at(p.start)
        fe = race.frame_at(p.end)
        out.append(_ev(race, kind, f, end_t=round(float(p.end), 3), end_frame=fe, duration_s=round(p.end - p.start, 3), status=p.status.name))
    # a VSC followed by its "ending" phase is one period
    merged: list[Event] = []
    for e in out:
        last = merged[-1] if merged else None
        if last is not None and last.kind == e.kind == "vsc" and abs(last.data["end_t"] - e.t) < 1.0:
            data = dict(last.data, end_t=e.data["end_t"], end_frame=e.data["end_frame"], duration_s=round(e.data["end_t"] - last.t, 3))
            merged[-1] = Event(last.kind, last.t, last.frame, last.lap, last.drivers, data)
        else:
            merged.append(e)
    return merged


def _fastest_laps(race: Race, cross: Sequence[np.ndarray], times: Sequence[np.ndarray]) -> list[Event]:
    laps = []
    for d, (fr, lt) in enumerate(zip(cross, times)):
        for k in range(1, fr.size):  # lap 1 (standing start) never counts
            if fr[k] >= 0 and math.isfinite(lt[k]) and lt[k] > 0:
                laps.append((int(fr[k]), d, k + 1, float(lt[k])))
    laps.sort()
    best = math.inf
    out = []
    for f, d, lap, s in laps:
        if s < best - 1e-9:
            best = s
            out.append(_ev(race, "fastest_lap", f, [d], lap=lap, lap_time=round(s, 3), final=False))
    if out:
        last = out[-1]
        out[-1] = Event(last.kind, last.t, last.frame, last.lap, last.drivers, dict(last.data, final=True))
    return out


def _leader_changes(race: Race, start: int, hold: float, visits: dict[int, list[tuple[int, int]]]) -> list[Event]:
    pos = race.channels["position"]
    leader = np.argmin(pos, axis=1).astype(np.int16)
    out = []
    win = _hold_frames(race, PIT_WINDOW_S)
    in_pit = race.channels["status"] == Status.PIT
    for f, old, new in confirmed_changes(race.t, leader[start:], hold):
        f += start
        reason = _reason(race, f, new, old, start, win, in_pit)
        out.append(_ev(race, "leader", f, [new, old], reason=reason))
    return out


def compute_events(race: Race, hold: float = HOLD_S) -> list[Event]:
    """Every event of the race, in time order (see :data:`KINDS` and the module docstring)."""
    start = start_frame(race)
    racing = is_race(race)
    cross = crossings(race)
    times = lap_times(race, cross)
    events: list[Event] = []
    pits, visits = _pit_stops(race, start)
    events += _pit_losses(race, pits, cross, times)
    events += _track_periods(race)
    events += _fastest_laps(race, cross, times)
    if racing:
        if start > 0 or race.leader_lap[0] >= 1:
            events.append(_ev(race, "start", start, lap=1))
        for c in position_changes(race, hold):
            if c.reason == "track":
                lap = int(race.channels["lap"][c.frame, c.gainer])
                events.append(_ev(race, "overtake", c.frame, [c.gainer, c.loser], lap=lap, position=int(race.channels["position"][c.frame, c.gainer])))
        events += _leader_changes(race, start, hold, visits)
        events += _retirements(race, start, cross)
        fin = np.flatnonzero(np.any(race.channels["status"] == Status.FINISHED, axis=1))
        if fin.size:
            f = int(fin[0])
            winner = int(np.flatnonzero(race.channels["status"][f] == Status.FINISHED)[0])
            events.append(_ev(race, "chequered_flag", f, [winner], lap=int(race.total_laps) or int(race.leader_lap[f])))
    order = {k: i for i, k in enumerate(KINDS)}
    events.sort(key=lambda e: (e.frame, order.get(e.kind, 99), e.drivers))
    return events


def filter_events(events: Iterable[dict[str, Any]], kinds: Sequence[str] = (), drivers: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Events of any of ``kinds`` involving any of ``drivers`` (an empty filter keeps all)."""
    ks, ds = set(kinds), set(drivers)
    return [e for e in events if (not ks or e["kind"] in ks) and (not ds or ds.intersection(e.get("drivers", ())))]
