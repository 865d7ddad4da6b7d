"""The streaming benchmark's results document as a summary, a Markdown section and a plot.

``docs/performance.md`` is shared with other benchmarks: this one owns only the
section between ``<!-- bench:start -->`` and ``<!-- bench:end -->``
(:func:`write_section`, via :func:`benchmarks.report.replace_section`).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable

from .report import replace_section
from .stats import TOLERANCE_PERIODS

SECTION = "bench"
LABELS = {"racecast": "racecast", "seed": "seed design", "floor": "floor",
          "racecast-v2": "racecast, format-2 bundle", "racecast-before": "racecast before format 3",
          "racecast-warm": "racecast, disk block cache warm"}
TARGET_VIEWERS = 2500  # racecast at 1x on one core with >= 99% on time
TARGET_FLOOR_RATIO = 2.0  # racecast CPU per frame <= 2x the floor
ON_TIME_TARGET = 99.0
MAX_SERVER_CPU = 90.0  # % of one core: a CPU-bound point's per-frame cost is not comparable
RATIO_MIN_N = 100  # CPU-per-frame ratios are taken over points with at least this many viewers
LOADGEN_CAUTION = 75.0  # % of a core: the client is near saturation, read that point with care
BUSY_WAIT_PCT = 5.0  # % of the window the server waited for its CPU: other work on the machine
MAX_LOADGEN_CPU = 85.0  # % of one core: beyond this the client, not the server, is measured (the sweep stops)
FPS = 25  # every design streams at 25 frames a second
HANDSHAKES_IN_FLIGHT = 200  # the load generator's --concurrency: connections opening at once


def _points(doc: dict[str, Any], design: str, speed: float) -> list[dict[str, Any]]:
    d = doc["designs"].get(design) or {}
    pts = [p for p in d.get("points", []) if "error" not in p and float(p["speed"]) == speed]
    return sorted(pts, key=lambda p: p["n"])


def max_on_time(points: Iterable[dict[str, Any]]) -> int:
    """Largest N such that it and every smaller N measured had >= 99% of its frame slots on time (0: none)."""
    best = 0
    for p in sorted(points, key=lambda p: p["n"]):
        if (p.get("on_time_pct") or 0) >= ON_TIME_TARGET and p["failed"] == 0:
            best = p["n"]
        else:
            break
    return best


def _client_bound(doc: dict[str, Any], design: str, speed: float) -> bool:
    why = ((doc["designs"].get(design) or {}).get("stopped") or {}).get(str(speed), "")
    return "client" in why


def _common_ns(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[int]:
    """Viewer counts measured by both with neither server CPU-bound there, for like-for-like ratios."""
    ok = lambda pts: {  # noqa: E731
        p["n"] for p in pts if p.get("server_cpu_us_per_frame") and (p.get("server_cpu_pct") or 0) < MAX_SERVER_CPU
    }
    return sorted(ok(a) & ok(b))


def _cpu_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], ns: list[int]) -> dict[str, Any] | None:
    """Median and range of the CPU-per-frame ratio over ``ns`` from RATIO_MIN_N viewers up (one point is noisy
    on a shared machine; below RATIO_MIN_N fixed per-tick costs dominate the per-frame figure)."""
    use = [n for n in ns if n >= RATIO_MIN_N] or ns[-1:]
    rs = [_ratio(_at(a, n)["server_cpu_us_per_frame"], _at(b, n)["server_cpu_us_per_frame"]) for n in use]  # type: ignore[index]
    rs = [r for r in rs if r is not None]
    if not rs:
        return None
    return {"median": round(statistics.median(rs), 3), "min": min(rs), "max": max(rs), "viewers": use}


def _at(points: list[dict[str, Any]], n: int | None) -> dict[str, Any] | None:
    return next((p for p in points if p["n"] == n), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b not in (None, 0) else None


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """Per-design key numbers, the racecast-vs-seed / racecast-vs-floor ratios and the targets."""
    out: dict[str, Any] = {"designs": {}, "ratios": {}, "targets": {}}
    speeds = sorted({float(s) for d in doc["designs"].values() for s in (p["speed"] for p in d.get("points", []))})
    for design, d in doc["designs"].items():
        s: dict[str, Any] = {"available": "error" not in d}
        if "error" in d:
            s["error"] = d["error"]
        for speed in speeds:
            pts = _points(doc, design, speed)
            key = f"{speed:g}x"
            s[f"max_on_time_{key}"] = max_on_time(pts)
            s[f"max_on_time_{key}_client_bound"] = _client_bound(doc, design, speed)
            s[f"max_viewers_{key}"] = max((p["n"] for p in pts), default=0)
        all_pts = [p for p in d.get("points", []) if "error" not in p]
        s["stale_frames"] = sum(p.get("stale_frames") or 0 for p in all_pts)
        s["seeks"] = sum(p.get("seeks") or 0 for p in all_pts)
        s["seek_p99_ms_worst"] = max((p["seek_p99_ms"] for p in all_pts if p.get("seek_p99_ms") is not None), default=None)
        s["paused_cpu_pct"] = {str(p["n"]): p.get("server_cpu_pct") for p in d.get("paused", []) if "error" not in p}
        s["rss_mb_max"] = max((p["server_rss_mb"] for p in all_pts if p.get("server_rss_mb")), default=None)
        s["viewers_per_core_1x"] = viewers_per_core(_points(doc, design, 1.0))
        out["designs"][design] = s
    one = {d: _points(doc, d, 1.0) for d in doc["designs"]}
    for other in ("seed", "floor", "racecast-v2", "racecast-before", "racecast-warm"):
        if "racecast" not in one or other not in one:
            continue
        ns = _common_ns(one["racecast"], one[other])
        if not ns:
            continue
        n = ns[-1]
        r, o = _at(one["racecast"], n), _at(one[other], n)
        assert r is not None and o is not None
        cpu = _cpu_ratio(one["racecast"], one[other], ns)
        out["ratios"][f"racecast_vs_{other}"] = {
            "at_viewers": n,
            "cpu_us_per_frame": cpu["median"] if cpu else None,
            "cpu_us_per_frame_range": [cpu["min"], cpu["max"]] if cpu else None,
            "cpu_us_per_frame_over_viewers": cpu["viewers"] if cpu else [],
            "server_cpu_pct": _ratio(r["server_cpu_pct"], o["server_cpu_pct"]),
            "bytes_per_frame": _ratio(r.get("bytes_per_frame"), o.get("bytes_per_frame")),
            "bytes_per_viewer_s": _ratio(r.get("bytes_per_viewer_s"), o.get("bytes_per_viewer_s")),
            "max_on_time_1x": _ratio(float(out["designs"]["racecast"]["max_on_time_1x"]),
                                     float(out["designs"][other]["max_on_time_1x"]) or None),
        }  # fmt: skip
    rc = out["designs"].get("racecast")
    if rc and rc["available"]:
        vs_floor = out["ratios"].get("racecast_vs_floor", {}).get("cpu_us_per_frame")
        out["targets"] = {
            "viewers_1x_on_time": {"target": TARGET_VIEWERS, "measured": rc.get("max_on_time_1x", 0),
                                   "met": _viewers_met(doc, rc)},
            "cpu_per_frame_vs_floor": {"target": TARGET_FLOOR_RATIO, "measured": vs_floor,
                                       "met": vs_floor is not None and vs_floor <= TARGET_FLOOR_RATIO},
            "stale_frames": {"target": 0, "measured": rc["stale_frames"], "met": rc["stale_frames"] == 0 and rc["seeks"] > 0},
        }  # fmt: skip
    return out


def viewers_per_core(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Viewers one core would serve by CPU: N / (share of a core) at the largest N measured.

    An estimate for when the load generator saturates first; it assumes CPU grows linearly
    with viewers, which the points below it show (CPU µs per frame is flat from ~250 viewers)."""
    ok = [p for p in points if "error" not in p and (p.get("server_cpu_pct") or 0) > 0]
    if not ok:
        return None
    p = max(ok, key=lambda p: p["n"])
    return {"viewers": round(p["n"] * 100 / p["server_cpu_pct"]), "at_n": p["n"], "cpu_pct": p["server_cpu_pct"]}


def _viewers_met(doc: dict[str, Any], rc: dict[str, Any]) -> bool | None:
    """True/False for the viewers target; None when the run never tried enough viewers to tell
    (e.g. --quick, or a sweep still on time at its last point)."""
    if rc.get("max_on_time_1x", 0) >= TARGET_VIEWERS:
        return True
    stopped = ((doc["designs"].get("racecast") or {}).get("stopped") or {}).get("1.0", "")
    if not stopped or "client" in stopped or "capped" in stopped:  # the sweep ended before racecast did
        return None
    return False


def point_line(p: dict[str, Any]) -> str:
    """One progress line for a point."""
    if "error" in p:
        return "ERROR " + p["error"].splitlines()[0][:160]
    return (
        f"cpu {p.get('server_cpu_pct')}% ({p.get('server_cpu_us_per_frame')} us/frame), "
        f"fps min/med {p.get('fps_per_viewer_min')}/{p.get('fps_per_viewer_median')}, on time {p.get('on_time_pct')}%, "
        f"jitter p99 {p.get('jitter_p99_ms')} ms, seek p99 {p.get('seek_p99_ms')} ms, stale {p.get('stale_frames')}, "
        f"loadgen {p.get('loadgen_cpu_pct')}%, server wait {p.get('server_wait_pct')}%"
    )


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


COLUMNS = [
    ("viewers", "n", 0),
    ("server CPU %", "server_cpu_pct", 1),
    ("CPU µs/frame", "server_cpu_us_per_frame", 1),
    ("frames/s per viewer min / med", None, 1),
    ("jitter p50 / p99 ms", None, 1),
    ("on time %", "on_time_pct", 2),
    ("B/frame", "bytes_per_frame", 0),
    ("kB/viewer-s", None, 1),
    ("RSS MB", "server_rss_mb", 0),
    ("connect→frame p50 / p99 ms", None, 0),
    ("seek→frame p50 / p99 ms", None, 1),
    ("stale", "stale_frames", 0),
    ("loadgen CPU % / read lag p99 ms", None, 0),
    ("server wait %", "server_wait_pct", 0),
]


def _span(lo: Any, hi: Any, nd: int) -> str:
    """``lo–hi``, or one number when they are equal."""
    a, b = _f(lo, nd), _f(hi, nd)
    return a if a == b else f"{a}–{b}"


def _row(p: dict[str, Any]) -> list[str]:
    if "error" in p:
        return [_f(p["n"])] + ["error: " + p["error"].splitlines()[0][:80]] + [""] * (len(COLUMNS) - 2)
    pair = lambda a, b, nd=1: f"{_f(p.get(a), nd)} / {_f(p.get(b), nd)}"  # noqa: E731
    bvs = p.get("bytes_per_viewer_s")
    cells = {
        "frames/s per viewer min / med": pair("fps_per_viewer_min", "fps_per_viewer_median"),
        "jitter p50 / p99 ms": pair("jitter_p50_ms", "jitter_p99_ms"),
        "kB/viewer-s": _f(None if bvs is None else bvs / 1000, 1),
        "connect→frame p50 / p99 ms": pair("connect_first_p50_ms", "connect_first_p99_ms", 0),
        "seek→frame p50 / p99 ms": pair("seek_p50_ms", "seek_p99_ms"),
        "loadgen CPU % / read lag p99 ms": pair("loadgen_cpu_pct", "loadgen_read_lag_p99_ms", 0),
    }
    row = []
    for title, key, nd in COLUMNS:
        if key is None:
            row.append(cells[title])
        else:
            v = p.get(key)
            row.append(_f(round(v) if nd == 0 and isinstance(v, float) else v, nd))
    if p.get("saturated"):
        row[0] += " ⚑"
    if (p.get("loadgen_cpu_pct") or 0) >= LOADGEN_CAUTION:
        row[0] += " †"
    if (p.get("server_wait_pct") or 0) >= BUSY_WAIT_PCT:
        row[0] += " ‡"
    return row


def table(points: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(t for t, _, _ in COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    return "\n".join([head, sep] + ["| " + " | ".join(_row(p)) + " |" for p in points])


def _yes(m: bool | None) -> str:
    return "**not measured** (the sweep ended before racecast saturated)" if m is None else ("**met**" if m else "**missed**")


def headline_text(doc: dict[str, Any]) -> str:
    """The few numbers that matter, as plain lines (printed at the end of a run)."""
    s = doc["summary"]
    lines = []
    for d, v in s["designs"].items():
        if not v["available"]:
            lines.append(f"{LABELS.get(d, d)}: not run ({v.get('error', '')[:120]})")
            continue
        bound = " (client-bound: at least)" if v.get("max_on_time_1x_client_bound") else ""
        lines.append(
            f"{LABELS.get(d, d)}: {v.get('max_on_time_1x', 0)} viewers at 1x with >= 99% on time{bound}; "
            f"stale frames {v['stale_frames']} over {v['seeks']} seeks; paused CPU {v['paused_cpu_pct']}"
        )
    for k, r in s["ratios"].items():
        lines.append(f"{k.replace('_', ' ')}, 1x: CPU/frame x{r['cpu_us_per_frame']} (median, range {r['cpu_us_per_frame_range']}); "
                     f"at {r['at_viewers']} viewers bytes/frame x{r['bytes_per_frame']}, bytes/viewer-s x{r['bytes_per_viewer_s']}")  # fmt: skip
    for k, t in s.get("targets", {}).items():
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "MISSED")
        lines.append(f"target {k}: {t['measured']} (target {t['target']}) {verdict}")
    return "\n".join(lines)


def markdown(doc: dict[str, Any], png_name: str, json_name: str) -> str:
    """The "Streaming benchmark" section (between the markers)."""
    s = doc["summary"]
    m = doc["machine"]
    race = doc["race"]
    prof = doc["profile"]
    pin = doc["pinning"]
    out = [
        "## Streaming benchmark",
        "",
        f"Command: `{doc['command']}` (or `make bench{'-quick' if prof['name'] == 'quick' else ''}`) — "
        f"{doc['date']}, took {doc['elapsed_s']:.0f} s. Raw results: [`{json_name}`]({json_name}).",
        "",
        f"Machine: {m['cpus']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, {m['event_loop']}, "
        f"uvicorn {m['uvicorn']}, websockets {m['websockets']}. Load average {m['load_avg_start'][0]} at start, "
        f"{m.get('load_avg_end', ['?'])[0]} at end "
        "(the machine is shared: absolute numbers drift, ratios are the headline; the *server wait* column is the "
        "share of the window the server was runnable but waiting for its CPU).",
        "",
        f"Race: {race['laps']} laps ({race['source']}), {race['frames']:,} frames, {race['drivers']} cars, "
        f"{race['payload_bytes_per_frame']:.0f} B per pre-encoded frame. Server pinned to CPU {pin['server_cpu']}, "
        f"load generator to CPU {pin['loadgen_cpu']}. Per point: {prof['warmup']} s warm-up, {prof['window']} s "
        f"measured window; {prof['seekers']} of the viewers seek {prof['seeks']} times each inside the window; "
        "viewers start at spread-out positions.",
        "",
        "### Headline",
        "",
        "| | " + " | ".join(LABELS.get(d, d) for d in s["designs"]) + " |",
        "|---|" + "---:|" * len(s["designs"]),
    ]
    def row(title: str, fn: Any) -> None:
        out.append(f"| {title} | " + " | ".join(fn(d, v) for d, v in s["designs"].items()) + " |")

    def on_time(d: str, v: dict[str, Any], key: str) -> str:
        if not v["available"]:
            return "not run"
        n = v.get(f"max_on_time_{key}", 0)
        return (f"≥ {n:,} (client-bound)" if v.get(f"max_on_time_{key}_client_bound") and n else f"{n:,}")

    for key in sorted({k[len("max_on_time_"):] for v in s["designs"].values() for k in v
                       if k.startswith("max_on_time_") and not k.endswith("client_bound")}):  # fmt: skip
        row(f"largest N with ≥ 99% on time, {key}", lambda d, v, key=key: on_time(d, v, key))
    ref = {k: r["at_viewers"] for k, r in s["ratios"].items()}
    pts1 = {d: _points(doc, d, 1.0) for d in s["designs"]}
    if ref:
        n_ref = min(ref.values())
        row(f"CPU µs per delivered frame, 1x, {n_ref} viewers",
            lambda d, v: _f((_at(pts1[d], n_ref) or {}).get("server_cpu_us_per_frame")))  # fmt: skip
        row(f"server CPU %, 1x, {n_ref} viewers", lambda d, v: _f((_at(pts1[d], n_ref) or {}).get("server_cpu_pct")))
        row(f"frames/s per viewer (median), 1x, {n_ref} viewers",
            lambda d, v: _f((_at(pts1[d], n_ref) or {}).get("fps_per_viewer_median")))  # fmt: skip
        row(f"kB per viewer-second, 1x, {n_ref} viewers",
            lambda d, v: _f(((_at(pts1[d], n_ref) or {}).get("bytes_per_viewer_s") or 0) / 1000 or None))  # fmt: skip
    for n in sorted({n for v in s["designs"].values() for n in v.get("paused_cpu_pct", {})}, key=int):
        row(f"server CPU % with {n} paused viewers", lambda d, v, n=n: _f(v.get("paused_cpu_pct", {}).get(n)))
    row("viewers per core at 1x by CPU (N ÷ share of a core, largest N)",
        lambda d, v: (f"{v['viewers_per_core_1x']['viewers']:,} ({v['viewers_per_core_1x']['at_n']:,} at "
                      f"{v['viewers_per_core_1x']['cpu_pct']:.0f}%)") if v.get("viewers_per_core_1x") else "–")  # fmt: skip
    row("stale frames after seeks (all points)", lambda d, v: f"{v['stale_frames']} / {v['seeks']} seeks" if v["available"] else "–")
    row("worst seek→frame p99 ms", lambda d, v: _f(v.get("seek_p99_ms_worst")))
    row("peak server RSS MB", lambda d, v: _f(v.get("rss_mb_max"), 0))
    out.append("")
    for k, r in s["ratios"].items():
        other = LABELS[k.split("_vs_")[1]]
        lo, hi = r.get("cpu_us_per_frame_range") or [None, None]
        over = r.get("cpu_us_per_frame_over_viewers") or [r["at_viewers"]]
        how = (f"median over 1x points with {_span(over[0], over[-1], 0)} viewers, range ×{_span(lo, hi, 2)}"
               if len(over) > 1 else f"1x, {over[0]:,} viewers")  # fmt: skip
        out.append(
            f"- **racecast vs {other}**: CPU per delivered frame ×{_f(r['cpu_us_per_frame'], 2)} ({how}); "
            f"at {r['at_viewers']:,} viewers: server "
            f"CPU ×{_f(r['server_cpu_pct'], 2)}, bytes per frame ×{_f(r['bytes_per_frame'], 2)}, bytes per viewer-second "
            f"×{_f(r['bytes_per_viewer_s'], 2)}; viewers on time at 1x ×{_f(r['max_on_time_1x'], 1) if r['max_on_time_1x'] else 'n/a'}."
        )
    seed_check = _seed_check(doc)
    if seed_check:
        out += ["", seed_check]
    if s.get("targets"):
        t = s["targets"]
        out += [
            "",
            "Targets for racecast: "
            f"≥ {t['viewers_1x_on_time']['target']:,} viewers at 1x on one core with ≥ 99% on time — measured "
            f"{t['viewers_1x_on_time']['measured']:,}, {_yes(t['viewers_1x_on_time']['met'])}; "
            f"CPU per frame ≤ {t['cpu_per_frame_vs_floor']['target']:g}× the floor — measured "
            f"×{_f(t['cpu_per_frame_vs_floor']['measured'], 2)}, {_yes(t['cpu_per_frame_vs_floor']['met'])}; "
            f"0 stale frames — measured {t['stale_frames']['measured']}, {_yes(t['stale_frames']['met'])}.",
        ]
        est = {d: v.get("viewers_per_core_1x") for d, v in s["designs"].items() if v.get("viewers_per_core_1x")}
        if t["viewers_1x_on_time"]["met"] is None and "racecast" in est:
            out[-1] += (
                f" By CPU, one core serves about {est['racecast']['viewers']:,} racecast viewers at 1x"
                + "".join(f", {LABELS.get(d, d)} {e['viewers']:,}" for d, e in est.items() if d != "racecast")
                + f" (N ÷ share of a core at the largest N; target {t['viewers_1x_on_time']['target']:,})."
            )
    out += ["", f"![Server CPU vs viewers]({png_name})", ""]
    out += profile_markdown((doc["designs"].get("racecast") or {}).get("profile"))
    out += ["### All points", ""]
    for design, d in doc["designs"].items():
        label = LABELS.get(design, design)
        if "error" in d:
            out += [f"**{label}**: not run — {d['error'][:300]}", ""]
            continue
        speeds = sorted({float(p["speed"]) for p in d["points"]})
        for speed in speeds:
            pts = [p for p in d["points"] if float(p["speed"]) == speed]
            why = d.get("stopped", {}).get(str(speed))
            out += [f"**{label}, {speed:g}x**" + (f" — stopped: {why}" if why else ""), "", table(pts), ""]
    out += [
        f"⚑ marks the point where a design's sweep stopped; † a point where the load generator used ≥ {LOADGEN_CAUTION:g}% "
        f"of its core (near its own limit: read with care); ‡ a point where the server waited ≥ {BUSY_WAIT_PCT:g}% of the "
        "window for its CPU (other work on the machine; such points are measured twice and the quieter kept). "
        "Definitions (see `benchmarks/stats.py`):",
        "",
        "- *CPU µs/frame*: the server's user+system CPU over the window (from `/proc/<pid>/stat`) divided by the "
        "binary frames the clients received in it; *server CPU %* is of one core.",
        "- *On time*: each viewer's schedule is anchored on its best frame (frame *f* is due at "
        f"`anchor + f / ({FPS} × speed)`); every {1000 / FPS:g} ms display period is a slot (1 frame at 1x, 4 consecutive frames at "
        f"4x), on time if one of its frames arrives within {TOLERANCE_PERIODS} frame periods ({TOLERANCE_PERIODS * 1000 / FPS:g} ms) of being due. *On time %* is the "
        "share of the viewers' slots due in the window that were on time: skipped frames, starved viewers and a replay "
        "clock that drifts (the seed's advances per loop pass, not per wall time) all miss slots.",
        "- *Jitter*: |inter-arrival gap − the viewer's median gap|. *Seek→frame*: from sending a seek to the first "
        "frame at/after the target. *Stale*: frames arriving after the seek's `state` reply that are not from the new "
        f"position. *Connect→frame*: TCP connect start to first binary frame (handshakes {HANDSHAKES_IN_FLIGHT} at a time).",
        "- Arrival times are the kernel's receive timestamps (`SO_TIMESTAMPNS`), so the load generator's own queueing "
        "does not count against a server; *read lag* is how long after the kernel it read the data. *Loadgen CPU* is "
        f"its own CPU: points where it reaches {MAX_LOADGEN_CPU:g}% are client-bound and stop the sweep.",
    ]
    return "\n".join(out)


def _seed_check(doc: dict[str, Any]) -> str | None:
    """How the seed-design reference compares with the seed system's documented behaviour."""
    d = doc["designs"].get("seed") or {}
    pts = [p for p in _points(doc, "seed", 1.0) if (p.get("server_cpu_pct") or 0) < MAX_SERVER_CPU]
    if "error" in d or not pts:
        return None
    fps = statistics.median(p["fps_per_viewer_median"] for p in pts if p.get("fps_per_viewer_median"))
    busy = [p for p in pts if p["n"] >= RATIO_MIN_N] or pts[-1:]
    us = [p["server_cpu_us_per_frame"] for p in busy if p.get("server_cpu_us_per_frame")]
    paused = [p for p in d.get("paused", []) if p.get("server_cpu_pct") is not None]
    poll = ", ".join(f"{p['n']} paused viewers {_f(p['server_cpu_pct'])}% of a core" for p in paused)
    return (
        f"Seed-design reference vs the seed's documented behaviour (~15 frames/s at 1x, ~165 µs of CPU per delivered "
        f"frame, CPU growing with viewers and with polling): it delivers {fps:.1f} frames/s per viewer at 1x (median), "
        f"costs {_span(min(us), max(us), 0)} µs per delivered frame with {_span(busy[0]['n'], busy[-1]['n'], 0)} viewers"
        + (f", and polling alone costs {poll}" if poll else "")
        + ". The per-frame figure includes ~2.4 polling passes per delivered frame (each a `wait_for` task "
        "created and cancelled)."
    )


def profile_markdown(prof: dict[str, Any] | None) -> list[str]:
    """The "where racecast's time goes" part: the top of a py-spy profile under load."""
    if not prof:
        return []
    title = "### Where racecast's time goes"
    if prof.get("error"):
        return [title, "", f"No profile: {prof['error']}", ""]
    pt = prof.get("point", {})
    lines = [
        title,
        "",
        f"py-spy, {prof['samples']:,} samples of the racecast server under {prof['n']:,} viewers at 1x "
        f"(a separate point, since sampling costs CPU: server CPU {_f(pt.get('server_cpu_pct'))}%, "
        f"{_f(pt.get('server_cpu_us_per_frame'))} µs/frame, on time {_f(pt.get('on_time_pct'), 2)}%). "
        "Self time (the line running when sampled; time in the kernel shows on the line that made the system call):",
        "",
        "```",
        *[f"{pct:5.1f}%  {frame}" for pct, frame in prof["self"][:12]],
        "```",
        "",
        "Inclusive (racecast frames on the stack):",
        "",
        "```",
        *[f"{pct:5.1f}%  {frame}" for pct, frame in prof["inclusive"][:10]],
        "```",
        "",
    ]
    return lines


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path``, keeping every other section."""
    replace_section(Path(path), SECTION, section)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Server CPU (% of one core) and CPU per frame vs viewers, per design and speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"racecast": "#d62728", "seed": "#1f77b4", "floor": "#2ca02c"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for design in doc["designs"]:
        for speed, style in ((1.0, "-"), (4.0, "--")):
            pts = _points(doc, design, speed)
            if not pts:
                continue
            n = [p["n"] for p in pts]
            label = f"{LABELS.get(design, design)} {speed:g}x"
            c = colors.get(design)
            ax1.plot(n, [p.get("server_cpu_pct") or 0 for p in pts], style, marker="o", ms=3, color=c, label=label)
            ax2.plot(n, [p.get("server_cpu_us_per_frame") or float("nan") for p in pts], style, marker="o", ms=3, color=c, label=label)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("viewers")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("server CPU (% of one core)")
    ax1.axhline(100, color="grey", lw=0.8)
    ax2.set_ylabel("CPU µs per delivered frame")
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    fig.suptitle(f"Streaming benchmark ({doc['date']}, {doc['machine']['cpu_model']})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
