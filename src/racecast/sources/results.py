"""The end-of-session results: the official classification when the source has one, else the order at the line.

A replay shows what happened on track; the result can differ afterwards (time
penalties, disqualifications). :func:`official_results` reads FastF1's results frame
(``Position``, ``ClassifiedPosition``, ``Status``, ``GridPosition``, ``Time``, ``Laps``,
``Points``) and sets it beside the order the replay ends with, with a note per
difference (a disqualification, a time penalty seen as a gap that grew after the
flag). :func:`line_results` is the same document for sources without results: the
order at the line, marked unofficial. Both are small JSON-able dicts, stored as
``Race.event["results"]`` (see docs/protocol.md, "results").

Results that disagree with the replay (a driver the data never saw, a position given
twice, drivers missing) never produce a silent wrong order: they become ingest
warnings, and positions given twice make the results unusable (the order at the line
is shown, marked unofficial).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from racecast.race import Race, Status

#: A gap that grew by more than this (s) after the flag is reported as a time penalty.
PENALTY_MIN_S = 0.5
#: ClassifiedPosition letters (Ergast/FastF1) -> what they mean.
CLASSIFIED_LETTERS = {"R": "retired", "D": "disqualified", "E": "excluded", "W": "withdrawn", "F": "failed to qualify", "N": "not classified"}


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    s = str(v).strip()
    return "" if s in ("nan", "NaN", "NaT", "None", "<NA>") else s


def _seconds(v: Any) -> float:
    if v is None:
        return math.nan
    if hasattr(v, "total_seconds"):
        try:
            f = float(v.total_seconds())
        except (TypeError, ValueError):
            return math.nan
        return f
    return _num(v)


def line_order(race: Race) -> list[dict[str, Any]]:
    """Every driver at the replay's last frame: position, status, laps, gap (s, NaN if unknown)."""
    last = race.n_frames - 1
    pos = race["position"][last]
    st = race["status"][last]
    lap = race["lap"][last]
    gap = race["gap"][last]
    rows = []
    for j in np.argsort(pos, kind="stable"):
        status = Status(int(st[j]))
        laps = int(lap[j]) if status == Status.FINISHED else max(int(lap[j]) - 1, 0)
        rows.append({"code": race.drivers[j].code, "position": int(pos[j]), "status": status.label, "laps": laps, "gap": float(gap[j])})
    return rows


def line_results(race: Race, *, why: str = "") -> dict[str, Any]:
    """The order at the line as the results document, marked unofficial."""
    rows = [
        {
            "position": r["position"],
            "code": r["code"],
            "classified": str(r["position"]) if r["status"] == "finished" else ("R" if r["status"] == "out" else ""),
            "status": r["status"],
            "line_position": r["position"],
            "note": "",
        }
        for r in line_order(race)
    ]
    return {
        "official": False,
        "source": "order at the line",
        "note": why or "no official classification in the source: this is the order at the line, unofficial",
        "rows": rows,
        "notes": [],
    }


def official_results(
    race: Race, results: Any, *, code_of_number: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The official classification from a FastF1 results frame, compared with the order at the line.

    Returns ``(document, warnings)``; the document is :func:`line_results` (unofficial)
    when the results can't be used (none, no positions, positions given twice).
    """
    warnings: list[str] = []
    if results is None or len(results) == 0:
        return line_results(race), warnings
    df = results.reset_index(drop=True)
    codes = set(race.codes)
    numbers = {str(d.number): d.code for d in race.drivers}
    numbers.update(code_of_number or {})

    def code_of(i: int) -> str:
        abbr = _text(df["Abbreviation"][i]) if "Abbreviation" in df.columns else ""
        if abbr in codes:
            return abbr
        num = _text(df["DriverNumber"][i]) if "DriverNumber" in df.columns else ""
        if num.endswith(".0"):
            num = num[:-2]
        return numbers.get(num, abbr or num or f"row {i + 1}")

    if "Position" not in df.columns or not np.isfinite(pd_numbers(df["Position"])).any():
        warnings.append("the official results have no positions: the results view shows the order at the line (unofficial)")
        return line_results(race, why="the source's results have no positions; this is the order at the line, unofficial"), warnings
    posn = pd_numbers(df["Position"])
    seen: dict[int, list[str]] = {}
    for i in range(len(df)):
        if np.isfinite(posn[i]):
            seen.setdefault(int(posn[i]), []).append(code_of(i))
    dups = {p: cs for p, cs in seen.items() if len(cs) > 1}
    if dups:
        what = "; ".join(f"P{p}: {', '.join(cs)}" for p, cs in sorted(dups.items()))
        warnings.append(f"the official results give one position to several drivers ({what}): not used; the results view shows the order at the line (unofficial)")
        return line_results(race, why="the source's results are inconsistent (a position given twice); this is the order at the line, unofficial"), warnings

    line = {r["code"]: r for r in line_order(race)}
    winner_line = next((r for r in line.values() if r["position"] == 1), None)
    order = sorted(range(len(df)), key=lambda i: (posn[i] if np.isfinite(posn[i]) else math.inf, i))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    listed: set[str] = set()
    for rank, i in enumerate(order):
        code = code_of(i)
        if code in listed:
            warnings.append(f"the official results list {code} twice: the second entry is ignored")
            continue
        listed.add(code)
        classified = _text(df["ClassifiedPosition"][i]) if "ClassifiedPosition" in df.columns else ""
        status = _text(df["Status"][i]) if "Status" in df.columns else ""
        grid = _num(df["GridPosition"][i]) if "GridPosition" in df.columns else math.nan
        laps = _num(df["Laps"][i]) if "Laps" in df.columns else math.nan
        points = _num(df["Points"][i]) if "Points" in df.columns else math.nan
        t = _seconds(df["Time"][i]) if "Time" in df.columns else math.nan
        position = int(posn[i]) if np.isfinite(posn[i]) else None
        gap = 0.0 if rank == 0 and math.isfinite(t) else t  # FastF1: the winner's Time is the race time, the others' their gap
        ln = line.get(code)
        row: dict[str, Any] = {
            "position": position,
            "code": code,
            "classified": classified or (str(position) if position is not None else ""),
            "status": status,
            "grid": None if not math.isfinite(grid) else ("pit lane" if grid == 0 else int(grid)),
            "laps": int(laps) if math.isfinite(laps) else None,
            "points": points if math.isfinite(points) else None,
            "time": round(t, 3) if rank == 0 and math.isfinite(t) else None,
            "gap": round(gap, 3) if rank > 0 and math.isfinite(gap) else None,
            "line_position": ln["position"] if ln else None,
            "note": "",
        }
        if all(q in df.columns for q in ("Q1", "Q2", "Q3")):  # qualifying: the official time of each segment reached
            qs = [_seconds(df[q][i]) for q in ("Q1", "Q2", "Q3")]
            row["segment_times"] = {q: round(v, 3) for q, v in zip(("Q1", "Q2", "Q3"), qs) if math.isfinite(v)}
        letter = classified.upper()[:1] if classified and not classified.isdigit() else ""
        if code not in codes:
            row["note"] = "not in the replay's data"
            warnings.append(f"the official results list {code} (P{position}), who has no laps or positions in the data: listed in the results only")
        elif letter in ("D", "E") or "disqualif" in status.lower():
            row["note"] = f"disqualified{f' ({status})' if status and 'disqualif' not in status.lower() else ''}; P{ln['position']} at the line"
            notes.append(f"{code}: {row['note']}")
        elif ln and ln["status"] == "finished" and winner_line and rank > 0 and math.isfinite(gap) and math.isfinite(ln["gap"]) and ln["laps"] == winner_line["laps"]:
            extra = gap - ln["gap"]
            if extra > PENALTY_MIN_S:
                row["note"] = f"+{extra:.1f} s after the flag (time penalty); P{ln['position']} at the line"
                notes.append(f"{code}: {row['note']}")
        if ln and ln["status"] == "finished" and row["laps"] is not None and letter not in ("D", "E") and abs(row["laps"] - ln["laps"]) > 0:
            warnings.append(f"the official results give {code} {row['laps']} laps, the data {ln['laps']}")
        rows.append(row)
    missing = [c for c in race.codes if c not in listed]
    for c in sorted(missing, key=lambda c: line[c]["position"]):
        warnings.append(f"{c} is in the data but not in the official results: listed last, unclassified")
        rows.append({"position": None, "code": c, "classified": "", "status": "not in the official results", "grid": None,
                     "laps": line[c]["laps"], "points": None, "time": None, "gap": None, "line_position": line[c]["position"],
                     "note": "not in the official results"})
    # the order of the cars still classified, at the line and officially (disqualified cars removed)
    kept = [r for r in rows if r["position"] is not None and r["line_position"] is not None and not r["note"].startswith("disqualified")]
    at_line = {r["code"]: i + 1 for i, r in enumerate(sorted(kept, key=lambda r: r["line_position"]))}
    moved = [(r["code"], at_line[r["code"]], i + 1) for i, r in enumerate(kept) if at_line[r["code"]] != i + 1]
    if moved:
        notes.append("order differs from the line (disqualified cars removed): " + ", ".join(f"{c} P{a}->P{b}" for c, a, b in moved))
    return {"official": True, "source": "FastF1 results", "note": "", "rows": rows, "notes": notes}, warnings


def pd_numbers(col: Any) -> np.ndarray:
    """A column as floats (NaN where not a number)."""
    return np.array([_num(v) for v in col], dtype=np.float64)


def final_order(doc: Mapping[str, Any]) -> list[str]:
    """Driver codes in the document's order (classified first, as listed)."""
    return [str(r["code"]) for r in doc.get("rows", ())]


__all__ = ["PENALTY_MIN_S", "final_order", "line_order", "line_results", "official_results"]
