"""Accuracy metrics for what the officials say: the results view and the qualifying knockout.

Registered with :func:`~racecast.accuracy.metrics.metric` (imported by :mod:`racecast.accuracy`):

* races: the results document (``event["results"]``) against the official classification
  (FastF1 path: the official order, every disqualification and time penalty noted; table
  path: no results in the source, so the view must show the order at the line marked
  unofficial);
* qualifying: the final order against the official knockout order, and the segments
  (how many, who was knocked out in each) against the official Q1/Q2/Q3 times.
"""

from __future__ import annotations

import re
from typing import Any

from racecast.accuracy.metrics import Context, Result, _mismatches, metric


def _doc(ctx: Context) -> dict[str, Any] | None:
    doc = ctx.race.event.get("results")
    return dict(doc) if doc else None


def _order(doc: dict[str, Any]) -> list[str]:
    return [str(r["code"]) for r in doc.get("rows", ())]


@metric
def official_classification(ctx: Context) -> Result | None:
    if not ctx.is_race or "official_order" not in ctx.truth:
        return None
    doc = _doc(ctx)
    if doc is None:
        return Result("official_classification", "results view = official classification", "**none**", False, ("no event.results",))
    if not doc.get("official"):
        # no official result in this source: the view must say so and show the order at the line
        line = list(ctx.truth["line_order"])
        got = _order(doc)
        ok = got == line and "unofficial" in str(doc.get("note", ""))
        return Result("official_classification", "results view = official classification",
                      "n/a: order at the line, marked unofficial" if ok else "**no**: unofficial view != order at the line", ok,
                      (f"results view {' '.join(got)}",), {"official": False, "order": got})
    want = list(ctx.truth["official_order"])
    got = _order(doc)
    bad = _mismatches(got, want)
    return Result("official_classification", "results view = official classification", "yes" if not bad else f"**no** ({len(bad)} wrong)",
                  not bad and len(got) == len(want), (f"results view {' '.join(got)}", *bad), {"official": True, "order": got, "wrong": len(bad)})


@metric
def official_notes(ctx: Context) -> Result | None:
    """Disqualifications and time penalties in truth's official_vs_line, each noted on its row."""
    if not ctx.is_race or "official_vs_line" not in ctx.truth:
        return None
    doc = _doc(ctx)
    if not doc or not doc.get("official"):
        return None
    notes = {str(r["code"]): str(r.get("note", "")) for r in doc.get("rows", ())}
    want: list[tuple[str, str]] = []
    for diff in ctx.truth["official_vs_line"]:
        if m := re.match(r"(\w+): disqualified", diff):
            want.append((m[1], "disqualified"))
        elif m := re.match(r"(\w+): official gap .*: \+([\d.]+) s \(time penalty\)", diff):
            want.append((m[1], f"+{float(m[2]):.1f} s"))
    missed = [f"{c}: want '{w}', got '{notes.get(c, '')}'" for c, w in want if w not in notes.get(c, "")]
    extra = [f"{c}: {n}" for c, n in notes.items() if n and c not in {c for c, _ in want}]
    value = f"{len(want) - len(missed)} / {len(want)}" + (f" (+{len(extra)} extra)" if extra else "")
    return Result("official_notes", "DSQ / penalties noted vs official", value, not missed and not extra, tuple(missed + extra),
                  {"noted": len(want) - len(missed), "want": len(want), "extra": len(extra)})


def _official_eliminated(truth: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"Q1": [], "Q2": []}
    for r in truth.get("classification_official", ()):
        if not r.get("q2"):
            out["Q1"].append(r["driver"])
        elif not r.get("q3"):
            out["Q2"].append(r["driver"])
    return out


@metric
def knockout_order(ctx: Context) -> Result | None:
    if ctx.is_race or "official_order" not in ctx.truth:
        return None
    want = list(ctx.truth["official_order"])
    got = [c for c in ctx.order_at(ctx.race.n_frames - 1) if c in want]
    bad = _mismatches(got, want)
    return Result("knockout_order", "final order = official knockout order", "yes" if not bad else f"**no** ({len(bad)} wrong)",
                  not bad, (f"final order {' '.join(got)}", *bad[:6]), {"order": got, "wrong": len(bad)})


@metric
def knockout_segments(ctx: Context) -> Result | None:
    if ctx.is_race or "classification_official" not in ctx.truth:
        return None
    q = ctx.race.event.get("qualifying")
    if not q:
        return Result("knockout_segments", "segments and who is knocked out in each", "**none**", False, ("no event.qualifying",))
    want = _official_eliminated(ctx.truth)
    names = [s["name"] for s in q.get("segments", ())]
    got = {k: sorted(v) for k, v in q.get("eliminated", {}).items()}
    wrong = [f"{k}: out {' '.join(got.get(k, []))} (want {' '.join(sorted(v))})" for k, v in want.items() if sorted(v) != got.get(k, [])]
    ok = names == ["Q1", "Q2", "Q3"] and not wrong
    spans = ", ".join(f"{s['name']} {s['start']:.0f}-{s['end']:.0f} s" for s in q.get("segments", ()))
    return Result("knockout_segments", "segments and who is knocked out in each", f"{len(names)} segments, " + ("eliminations right" if not wrong else f"**{len(wrong)} wrong**"),
                  ok, (spans, f"source: {q.get('source')}", *wrong), {"segments": names, "wrong": len(wrong)})
