"""Scoring a replay against the official facts of its session (pure: a Race + a truth dict).

Each metric is a function ``(Context) -> Result | None`` (None: does not apply to this
session); :data:`METRICS` lists them in report order. Add a metric by decorating it with
:func:`metric` in any module imported by :mod:`racecast.accuracy` -- the runner and the
report pick it up.

Truth times are the pack's clock (race: 0 = lights out); :meth:`Context.frame` maps one to
the first replay frame at or after it. "Timing order" below is what the official timing
shows: a car's place when it completes lap k is 1 + the cars that completed lap k before
it (and have not retired since).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from racecast.race import Race, Status

#: Targets (issue 11): crossing error in frames, leader share of frames, retirement lag (s).
MAX_CROSSING_ERROR_FRAMES = 1.0
MIN_LEADER_SHARE = 0.999
MAX_RETIREMENT_LAG_S = 1.0
#: Where the start order is read: lights out + this many seconds.
START_CHECK_S = 2.0


@dataclass(frozen=True)
class Result:
    """One row of a session's table: ``value`` as shown, ``ok`` (None: not a target), details."""

    key: str
    label: str
    value: str
    ok: bool | None = None
    details: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)  # raw figures (JSON-able)


@dataclass
class Context:
    race: Race
    truth: dict[str, Any]
    path: str  # "table", "table-nostatus", "fastf1"
    shift: float = 0.0  # truth time + shift = the source's clock (FastF1: session time)

    @property
    def offset(self) -> float:
        """Replay time (race.t) of truth time 0."""
        return self.shift - float(self.race.event.get("session_time_offset", 0.0))

    def frame(self, truth_t: float) -> int:
        """First replay frame at or after truth time ``truth_t`` (clamped to the last)."""
        i = int(np.searchsorted(self.race.t, truth_t + self.offset - 1e-9, side="left"))
        return min(i, self.race.n_frames - 1)

    def truth_time(self, frames: np.ndarray | int) -> np.ndarray:
        return self.race.t[frames] - self.offset

    @property
    def is_race(self) -> bool:
        return "crossings" in self.truth

    def col(self, code: str) -> int | None:
        try:
            return self.race.codes.index(code)
        except ValueError:
            return None

    def order_at(self, f: int) -> list[str]:
        pos = self.race["position"][f]
        return [self.race.codes[j] for j in np.argsort(pos, kind="stable")]


Metric = Callable[[Context], "Result | None"]
METRICS: list[Metric] = []


def metric(fn: Metric) -> Metric:
    """Register ``fn`` (report order = registration order)."""
    METRICS.append(fn)
    return fn


def score(race: Race, truth: dict[str, Any], path: str, shift: float = 0.0, metrics: list[Metric] | None = None) -> list[Result]:
    ctx = Context(race, truth, path, shift)
    out = []
    for m in METRICS if metrics is None else metrics:
        r = m(ctx)
        if r is not None:
            out.append(r)
    return out


def _mismatches(got: list[str], want: list[str]) -> list[str]:
    return [f"P{i + 1}: {g} (want {w})" for i, (g, w) in enumerate(zip(got, want)) if g != w]


# -- races -------------------------------------------------------------------------------


@metric
def final_order(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    want = list(ctx.truth["line_order"])
    got = [c for c in ctx.order_at(ctx.race.n_frames - 1) if c in want]
    bad = _mismatches(got, want)
    value = "yes" if not bad else f"**no** ({len(bad)} wrong)"
    return Result("final_order", "final order = order at the line", value, not bad and len(got) == len(want),
                  (f"final order {' '.join(got)}", *bad), {"order": got, "wrong": len(bad)})


_WANT_STATUS = {"finished": Status.FINISHED, "dnf": Status.OUT, "dns": Status.DNS if hasattr(Status, "DNS") else Status.OUT}


@metric
def final_status(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    last = ctx.race["status"][-1]
    wrong = []
    for r in ctx.truth["classification_at_line"]:
        j = ctx.col(r["driver"])
        want = _WANT_STATUS.get(r["status"], Status.OUT)
        if j is None:
            wrong.append(f"{r['driver']}=missing (want {want.label})")
        elif int(last[j]) != int(want):
            wrong.append(f"{r['driver']}={Status(int(last[j])).label} (want {want.label})")
    return Result("final_status", "final status wrong", ", ".join(wrong) if wrong else "none", not wrong, (), {"wrong": wrong})


@metric
def total_laps(ctx: Context) -> Result | None:
    if ctx.is_race:
        want = int(ctx.truth["total_laps"])
        label = f"total laps (truth {want})"
    else:
        want = max((len(v) for v in ctx.truth.get("laps", {}).values()), default=0)
        label = f"total laps = most laps of a driver (truth {want})"
    got = int(ctx.race.total_laps)
    return Result("total_laps", label, str(got) if got == want else f"{got} **wrong**", got == want, (), {"got": got, "want": want})


def _retired_at(ctx: Context) -> dict[str, float]:
    return {r["driver"]: float(r["out_t"]) for r in ctx.truth.get("classification_at_line", []) if r.get("out_t") is not None}


def _crossing_events(ctx: Context) -> list[tuple[float, str, int]]:
    ev = [(float(t), d, k + 1) for d, ts in ctx.truth["crossings"].items() for k, t in enumerate(ts)]
    ev.sort()
    return ev


@metric
def crossing_order(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    out_t = _retired_at(ctx)
    done: dict[int, list[tuple[float, str]]] = {}
    n = ok = 0
    bad = []
    pos = ctx.race["position"]
    for t, d, k in _crossing_events(ctx):
        ahead = sum(1 for (te, e) in done.get(k, []) if out_t.get(e, math.inf) >= t)
        done.setdefault(k, []).append((t, d))
        j = ctx.col(d)
        if t > out_t.get(d, math.inf):
            continue  # crossed after it stopped (rolling into the pits): it is out, not racing
        n += 1
        if j is None:
            continue
        f = ctx.frame(t)
        got = int(pos[f, j])
        if got == ahead + 1:
            ok += 1
        elif len(bad) < 4:
            bad.append(f"{d} lap {k} @ {t:.3f}: replay P{got}, timing P{ahead + 1}")
    share = ok / n if n else 1.0
    return Result("crossing_order", "order right after each line crossing", f"{100 * share:.2f}% of {n}", ok == n, tuple(bad),
                  {"share": share, "n": n})


@metric
def crossing_error(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    prog = ctx.race["race_progress"]
    fps = ctx.race.fps
    errs = []
    worst: list[tuple[float, str]] = []
    for t, d, k in _crossing_events(ctx):
        j = ctx.col(d)
        if j is None:
            continue
        reached = np.flatnonzero(prog[:, j] >= k - 1e-6)
        if not reached.size:
            e = math.inf
        else:
            e = float((ctx.race.t[reached[0]] - (t + ctx.offset)) * fps)
        errs.append(e)
        worst.append((abs(e), f"{d} lap {k} @ {t:.3f}: {e:+.2f} frames"))
    if not errs:
        return Result("crossing_error", "crossing registered: error in frames", "no crossings", False)
    a = np.array(errs)
    fin = a[np.isfinite(a)]
    missing = int((~np.isfinite(a)).sum())
    med = float(np.median(np.abs(fin))) if fin.size else math.nan
    mx = float(np.max(np.abs(fin))) if fin.size else math.nan
    inside = float(np.mean((a >= 0) & (a < 1))) * 100
    value = f"{med:.2f} / {mx:.2f} ({inside:.1f}%)" + (f", {missing} never registered" if missing else "")
    worst.sort(reverse=True)
    ok = missing == 0 and mx <= MAX_CROSSING_ERROR_FRAMES
    return Result("crossing_error", "crossing registered: error in frames median / max abs (in [0,1) %)", value, ok,
                  tuple(w for _, w in worst[:3]) if not ok else (), {"median": med, "max": mx, "in_0_1_pct": inside, "missing": missing})


def _truth_leader(ctx: Context, tt: np.ndarray) -> np.ndarray:
    """Replay column of the truth leader at each truth time, -2 where timing can't tell.

    Timing knows the leader at each lap end (the first car over the line). Between two lap
    ends led by the same car that car led throughout; where the lap leader changed, the moment
    of the pass is not in the timing data, so those frames are not judged. Before the first
    lap end the pole sitter leads if it also led lap 1; after the flag, the winner.
    """
    by_lap = sorted(ctx.truth.get("leader_by_lap", []), key=lambda r: r["t"])
    start = ctx.truth.get("start_order") or []
    ts = [0.0] + [float(r["t"]) for r in by_lap]
    who = [start[0] if start else None] + [r["driver"] for r in by_lap]
    out = np.full(tt.size, -2, dtype=np.int64)
    for i in range(len(ts)):
        a = ts[i]
        b = ts[i + 1] if i + 1 < len(ts) else math.inf
        nxt = who[i + 1] if i + 1 < len(who) else who[i]
        if who[i] is None or who[i] != nxt:
            continue
        j = ctx.col(who[i])
        m = (tt >= a) & (tt < b)
        out[m] = -1 if j is None else j
    return out


@metric
def leader_share(ctx: Context) -> Result | None:
    if not ctx.is_race or not ctx.truth.get("leader_by_lap"):
        return None
    f0 = ctx.frame(0.0)
    frames = np.arange(f0, ctx.race.n_frames)
    tt = ctx.truth_time(frames)
    want = _truth_leader(ctx, tt)
    judged = want != -2
    got = np.argmax(ctx.race["position"][frames] == 1, axis=1)
    wrong = judged & (got != want)
    share = 1.0 - float(wrong.sum()) / max(int(judged.sum()), 1)
    spans = []
    if wrong.any():
        w = np.flatnonzero(wrong)
        breaks = np.flatnonzero(np.diff(w) > 1)
        starts = np.concatenate([[w[0]], w[breaks + 1]])
        ends = np.concatenate([w[breaks], [w[-1]]])
        for a, b in sorted(zip(starts, ends), key=lambda ab: ab[0] - ab[1])[:3]:
            want_code = ctx.race.codes[want[a]] if want[a] >= 0 else "?"
            spans.append(f"{tt[a]:.1f}-{tt[b]:.1f} s: replay leader {ctx.race.codes[got[a]]} (timing {want_code})")
    value = f"{100 * share:.3f}% of {int(judged.sum())}"
    return Result("leader_share", "leader correct, % of frames (where timing shows the same leader at both lap ends)", value,
                  share >= MIN_LEADER_SHARE, tuple(spans), {"share": share, "judged": int(judged.sum()), "frames": int(frames.size)})


@metric
def start_order(ctx: Context) -> Result | None:
    if not ctx.is_race or not ctx.truth.get("start_order"):
        return None
    want = list(ctx.truth["start_order"])
    f = ctx.frame(START_CHECK_S)
    got = [c for c in ctx.order_at(f) if c in want]
    displaced = sum(1 for g, w in zip(got, want) if g != w)
    rank = {c: i for i, c in enumerate(got)}
    swapped = sum(1 for i in range(len(want)) for k in range(i + 1, len(want)) if rank.get(want[i], 99) > rank.get(want[k], 99))
    ok = displaced == 0 and len(got) == len(want)
    value = "yes" if ok else f"**no**: {displaced} displaced, {swapped} swapped pairs"
    return Result("start_order", f"start order at lights out + {START_CHECK_S:g} s = grid (pit lane last)", value, ok,
                  (f"order at start + {START_CHECK_S:g} s: {' '.join(got)} (grid: {' '.join(want)})",) if not ok else (),
                  {"order": got, "displaced": displaced})


@metric
def non_starters(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    dns = [r["driver"] for r in ctx.truth["classification_at_line"] if r["status"] == "dns"]
    if not dns:
        return Result("non_starters", "non-starters (DNS, never drawn or running)", "none in this race", None)
    bad = []
    dns_code = int(getattr(Status, "DNS", -1))
    for d in dns:
        j = ctx.col(d)
        if j is None:
            bad.append(f"{d} missing")
        elif not np.all(ctx.race["status"][:, j] == dns_code):
            bad.append(f"{d} not DNS throughout")
    return Result("non_starters", "non-starters (DNS, never drawn or running)", "ok" if not bad else "; ".join(bad), not bad)


@metric
def retirements(ctx: Context) -> Result | None:
    if not ctx.is_race:
        return None
    out_t = _retired_at(ctx)
    if not out_t:
        return Result("retirements", "retirements: replay OUT minus stop time (s)", "none in this race", None)
    parts, ok, lags = [], True, {}
    st = ctx.race["status"]
    for d, t in out_t.items():
        j = ctx.col(d)
        if j is None:
            parts.append(f"{d} missing")
            ok = False
            continue
        out = st[:, j] == Status.OUT
        if not out[-1]:
            parts.append(f"{d} not OUT at the end")
            ok = False
            continue
        notout = np.flatnonzero(~out)
        f = int(notout[-1]) + 1 if notout.size else 0
        lag = float(ctx.race.t[f] - (t + ctx.offset))
        lags[d] = lag
        ok &= abs(lag) <= MAX_RETIREMENT_LAG_S
        parts.append(f"{d} {lag:+.1f}")
    return Result("retirements", "retirements: replay OUT minus stop time (s)", ", ".join(parts), ok, (), {"lags": lags})


@metric
def pit_stops(ctx: Context) -> Result | None:
    stops = ctx.truth.get("pit_stops") or []
    official = [(s["driver"], int(s["lap_in"])) for s in stops if s.get("in_official_list")]
    if not ctx.is_race:
        return None
    found = {(p.driver, int(p.lap)) for p in ctx.race.pit_stops}
    hit = sum(1 for o in official if o in found)
    extra = len(found - set(official))
    return Result("pit_stops", "pit stops found / official (extra)", f"{hit} / {len(official)} ({extra})", None, (),
                  {"found": hit, "official": len(official), "extra": extra})


# -- qualifying and practice -----------------------------------------------------------------


@metric
def best_lap_order(ctx: Context) -> Result | None:
    if ctx.is_race or "best_lap_order" not in ctx.truth:
        return None
    want = [r["driver"] for r in ctx.truth["best_lap_order"]]
    got = [c for c in ctx.order_at(ctx.race.n_frames - 1) if c in want]
    bad = _mismatches(got, want)
    return Result("best_lap_order", "final order = best-lap order", "yes" if not bad else f"**no** ({len(bad)} wrong)", None,
                  (f"final order {' '.join(got)}", *bad[:6]), {"order": got, "wrong": len(bad)})
