"""Chart specifications from the lap data: what to draw, independent of how.

:func:`chart_spec` turns the stored lap data (:mod:`racecast.analysis.laps`) into a plain
description — axes, one series per driver, or stint bars — that matplotlib draws for
``racecast chart`` (:mod:`racecast.analysis.plot`) and tests check by structure.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from ..errors import BadRequest

#: The charts drawn from lap data; ``compare`` (two laps' telemetry) is :func:`compare_spec`.
CHART_KINDS = ("gaps", "positions", "strategy", "laptimes")
#: Panels of a lap comparison: channel, axis label (top to bottom), then the running time delta.
COMPARE_PANELS = (("speed", "speed (km/h)"), ("throttle", "throttle (%)"), ("brake", "brake (%)"), ("gear", "gear"))
#: Tyre colours as the broadcasts draw them.
COMPOUND_COLORS = {
    "SOFT": "#DA291C",
    "MEDIUM": "#FFD12E",
    "HARD": "#F0F0EC",
    "INTERMEDIATE": "#43B02A",
    "WET": "#0067AD",
    "UNKNOWN": "#888888",
}


class ChartError(BadRequest, ValueError):
    """A chart that cannot be drawn as asked (unknown kind or driver)."""


def _order(laps: Mapping[str, Any]) -> list[str]:
    """Drivers in finishing order: most laps, then place at their last crossing."""

    def key(code: str) -> tuple[int, int]:
        pos = [p for p in laps["positions"].get(code, []) if p is not None]
        n = len([c for c in laps["crossing_t"].get(code, []) if c is not None])
        return (-n, pos[-1] if pos else 99)

    return sorted(laps["drivers"], key=key)


def chart_spec(laps: Mapping[str, Any], drivers: Sequence[Mapping[str, Any]], kind: str, selected: Sequence[str] = ()) -> dict[str, Any]:
    """The chart ``kind`` of the race whose lap data is ``laps`` (``drivers``: code/color/team dicts).

    ``selected`` drivers are highlighted (the others drawn faint); none selected: all in colour.
    """
    if kind not in CHART_KINDS:
        raise ChartError(f"unknown chart kind {kind!r}; kinds are {list(CHART_KINDS)}")
    codes = list(laps["drivers"])
    bad = [c for c in selected if c not in codes]
    if bad:
        raise ChartError(f"unknown driver(s) {bad}; drivers are {codes}")
    meta = {d["code"]: d for d in drivers}
    teams_seen: dict[str, int] = {}
    style: dict[str, dict[str, Any]] = {}
    for code in _order(laps):
        team = meta.get(code, {}).get("team", code)
        k = teams_seen.get(team, 0)
        teams_seen[team] = k + 1
        style[code] = {
            "color": meta.get(code, {}).get("color", "#888888"),
            "dashed": k > 0,  # the second car of a team
            "highlight": not selected or code in selected,
        }
    spec: dict[str, Any] = {"kind": kind, "selected": list(selected), "total_laps": laps.get("laps", 0)}
    order = _order(laps)
    if kind == "strategy":
        bars = []
        for row, code in enumerate(order):
            for s in laps["stints"]:
                if s["driver"] == code:
                    bars.append(
                        {
                            "driver": code,
                            "row": row,
                            "start": s["start_lap"] - 1,
                            "end": s["end_lap"],
                            "compound": s["compound"],
                            "color": COMPOUND_COLORS.get(s["compound"], COMPOUND_COLORS["UNKNOWN"]),
                            "highlight": style[code]["highlight"],
                        }
                    )
        spec.update(title="Tyre strategy", x_label="lap", y_label="", rows=order, bars=bars, series=[])
        return spec
    series = []
    for code in order:
        if kind == "positions":
            ys = laps["positions"][code]
            xs = list(range(len(ys)))
        elif kind == "gaps":
            ys = laps["gaps"][code]
            xs = list(range(1, len(ys) + 1))
        else:
            ys = laps["lap_times"][code]
            xs = list(range(1, len(ys) + 1))
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if not pts:
            continue
        series.append({"driver": code, "x": [p[0] for p in pts], "y": [p[1] for p in pts], **style[code]})
    if kind == "positions":
        spec.update(title="Lap chart", x_label="lap", y_label="position", invert_y=True, y_range=[0.5, len(codes) + 0.5])
    elif kind == "gaps":
        spec.update(title="Gap to the leader", x_label="lap", y_label="gap to leader (s)", invert_y=True)
        spec["y_range"] = [0.0, _robust_max([y for s in series for y in s["y"]])]
    else:
        spec.update(title="Lap times", x_label="lap", y_label="lap time (s)", invert_y=False)
        ys = [y for s in series for y in s["y"][1:]]  # lap 1 (standing start) would squash the axis
        if ys:
            best = min(ys)
            spec["y_range"] = [best - 0.5, min(max(ys), statistics.median(ys) * 1.08)]
    spec["series"] = series
    return spec


def _robust_max(values: Sequence[float]) -> float:
    """An axis limit that keeps lapped cars' huge gaps from flattening the leaders' fight."""
    v = sorted(x for x in values if math.isfinite(x))
    if not v:
        return 1.0
    return max(1.0, v[min(len(v) - 1, int(len(v) * 0.95))] * 1.05)


def compare_spec(comparison: Mapping[str, Any], drivers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Panels for a two-lap comparison (:func:`racecast.analysis.compare.compare_laps`'s result):
    speed, throttle, brake and gear along the lap distance, then b's time minus a's."""
    meta = {d["code"]: d for d in drivers}
    a, b = comparison["a"], comparison["b"]
    colors = [meta.get(a["driver"], {}).get("color", "#3671C6"), meta.get(b["driver"], {}).get("color", "#E8002D")]
    if colors[0].lower() == colors[1].lower():  # team-mates: keep them apart
        colors[1] = "#FFFFFF" if colors[0].lower() != "#ffffff" else "#FF8000"
    x = comparison["distance"]

    def label(side: Mapping[str, Any]) -> str:
        lt = side.get("lap_time")
        return f"{side['driver']} lap {side['lap']}" + (f" ({lt:.3f} s)" if lt else "")

    panels = []
    for ch, y_label in COMPARE_PANELS:
        panels.append({"y_label": y_label, "series": [
            {"driver": a["driver"], "label": label(a), "color": colors[0], "x": x, "y": a[ch]},
            {"driver": b["driver"], "label": label(b), "color": colors[1], "x": x, "y": b[ch]},
        ]})
    panels.append({"y_label": f"Δ {b['driver']} − {a['driver']} (s)", "series": [
        {"driver": b["driver"], "label": "time delta", "color": colors[1], "x": x, "y": comparison["delta"]},
    ]})
    return {"kind": "compare", "title": f"{label(a)} vs {label(b)}", "x_label": "distance (m)", "panels": panels}
