"""Draw a chart specification (:mod:`racecast.analysis.charts`) with matplotlib to PNG or SVG.

matplotlib is an optional extra (``pip install 'racecast[charts]'``): imported only here,
only when a chart is drawn, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import Unavailable

FORMATS = (".png", ".svg")


class PlotUnavailable(Unavailable, RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("drawing charts needs matplotlib: pip install 'racecast[charts]'") from None
    return plt


def draw(spec: Mapping[str, Any], out: str | Path, title: str = "") -> Any:
    """Draw ``spec`` into ``out`` (``.png`` or ``.svg``); return the matplotlib Figure (closed)."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"chart output must end in {' or '.join(FORMATS)}, got {out.name!r}")
    plt = _pyplot()
    dark = {"figure.facecolor": "#15151e", "axes.facecolor": "#15151e", "axes.edgecolor": "#888",
            "axes.labelcolor": "#ddd", "xtick.color": "#bbb", "ytick.color": "#bbb", "text.color": "#eee",
            "grid.color": "#333"}
    with plt.rc_context(dark):
        if spec["kind"] == "compare":
            return _compare(plt, spec, out, title)
        fig, ax = plt.subplots(figsize=(11, 6.2), dpi=100)
        try:
            if spec["kind"] == "strategy":
                _strategy(ax, spec)
            else:
                _lines(ax, spec)
            ax.set_title(f"{title} — {spec['title']}" if title else spec["title"])
            ax.set_xlabel(spec["x_label"])
            ax.set_ylabel(spec["y_label"])
            ax.grid(True, linewidth=0.5)
            fig.tight_layout()
            fig.savefig(out, format=out.suffix.lower()[1:], facecolor=fig.get_facecolor())
        finally:
            plt.close(fig)
    return fig


def _lines(ax: Any, spec: Mapping[str, Any]) -> None:
    for s in spec["series"]:
        hi = s["highlight"]
        ax.plot(
            s["x"],
            s["y"],
            color=s["color"] if hi else "#666666",
            linestyle="--" if s["dashed"] else "-",
            linewidth=2.2 if hi and spec["selected"] else 1.4,
            alpha=1.0 if hi else 0.35,
            label=s["driver"],
            zorder=3 if hi else 2,
        )
        if hi and s["x"]:
            ax.annotate(s["driver"], (s["x"][-1], s["y"][-1]), xytext=(4, 0), textcoords="offset points",
                        fontsize=7, color=s["color"], va="center")
    if "y_range" in spec:
        lo, hi_ = spec["y_range"]
        ax.set_ylim((hi_, lo) if spec.get("invert_y") else (lo, hi_))
    elif spec.get("invert_y"):
        ax.invert_yaxis()
    ax.set_xlim(0 if spec["kind"] == "positions" else 1, max(1, spec["total_laps"]) + 1)


def _strategy(ax: Any, spec: Mapping[str, Any]) -> None:
    rows = spec["rows"]
    for b in spec["bars"]:
        ax.barh(b["row"], b["end"] - b["start"], left=b["start"], height=0.72, color=b["color"],
                edgecolor="#15151e", linewidth=1.2, alpha=1.0 if b["highlight"] else 0.3)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1, spec["total_laps"]))
    seen = {}
    for b in spec["bars"]:
        seen.setdefault(b["compound"], b["color"])
    import matplotlib.patches as mpatches

    ax.legend(handles=[mpatches.Patch(color=c, label=k.lower()) for k, c in seen.items()], loc="lower right",
              fontsize=8, facecolor="#222", edgecolor="#444")


def _compare(plt: Any, spec: Mapping[str, Any], out: Path, title: str) -> Any:
    panels = spec["panels"]
    heights = [3, 1.4, 1.4, 1.4, 2][: len(panels)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8), dpi=100, sharex=True, gridspec_kw={"height_ratios": heights})
    try:
        for ax, p in zip(axes, panels):
            for s in p["series"]:
                ax.plot(s["x"], s["y"], color=s["color"], linewidth=1.3, label=s["label"],
                        drawstyle="steps-post" if p["y_label"] == "gear" else "default")
            ax.set_ylabel(p["y_label"], fontsize=8)
            ax.grid(True, linewidth=0.5)
        axes[-1].axhline(0.0, color="#888", linewidth=0.8)
        axes[0].legend(loc="lower right", fontsize=8, facecolor="#222", edgecolor="#444")
        axes[-1].set_xlabel(spec["x_label"])
        axes[0].set_title(f"{title} — {spec['title']}" if title else spec["title"])
        fig.tight_layout()
        fig.savefig(out, format=out.suffix.lower()[1:], facecolor=fig.get_facecolor())
    finally:
        plt.close(fig)
    return fig
