"""``racecast accuracy``: ingest every real session every way, score each replay, write docs/accuracy.md.

Each ingest runs in its own child process (so its peak RSS is its own): the child
loads the session, writes the bundle to a temporary directory (its size is reported,
then it is deleted), scores the race and prints one JSON line. Every figure in the
report comes from the run that writes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from racecast.accuracy import realdata

START = "<!-- accuracy:start -->"
END = "<!-- accuracy:end -->"


def _child(job: dict[str, Any]) -> dict[str, Any]:
    from racecast.ingest_memory import tune_for_ingest  # noqa: PLC0415

    tune_for_ingest()  # as `racecast ingest` does, before pandas/pyarrow load
    from racecast.accuracy.metrics import score  # noqa: PLC0415
    from racecast.bundle import write_bundle  # noqa: PLC0415

    session = Path(job["session"])
    path = job["path"]
    truth = realdata.load_truth(session)
    w0, c0 = time.perf_counter(), time.process_time()
    race = realdata.load_race(session, path)
    ingest_wall, ingest_cpu = time.perf_counter() - w0, time.process_time() - c0
    out: dict[str, Any] = {"session": session.name, "path": path, "frames": race.n_frames,
                           "ingest_wall_s": round(ingest_wall, 2), "ingest_cpu_s": round(ingest_cpu, 2),
                           "warnings": list(race.event.get("warnings", [])), "order_margin_m": race.event.get("order_margin_m") if "crossings" in truth else None}
    if job.get("bundle", True):
        tmp = Path(tempfile.mkdtemp(prefix="racecast-accuracy-"))
        try:
            w1 = time.perf_counter()
            write_bundle(race, tmp / "b")
            out["bundle_write_s"] = round(time.perf_counter() - w1, 2)
            out["bundle_bytes"] = sum(f.stat().st_size for f in (tmp / "b").rglob("*") if f.is_file())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
    res = score(race, truth, path, realdata.clock_shift(truth, path))
    out["results"] = [{"key": r.key, "label": r.label, "value": r.value, "ok": r.ok, "details": list(r.details), "data": r.data} for r in res]
    return out


def run_one(session: Path, path: str, bundle: bool = True) -> dict[str, Any]:
    """Ingest and score one session one way in a child process."""
    job = json.dumps({"session": str(session), "path": path, "bundle": bundle})
    p = subprocess.run([sys.executable, "-m", "racecast.accuracy.run", "--child", job], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"session": session.name, "path": path, "error": err}
    return json.loads(lines[-1])


def _gated(r: dict[str, Any]) -> list[str]:
    return [x["label"] for x in r.get("results", []) if x["ok"] is False]


def render(runs: list[dict[str, Any]], *, command: str, commit: str, date: str, load: str) -> str:
    """The report: one table per session (rows: metrics, columns: ingest paths), then details."""
    lines = [
        START,
        "",
        f"Command: `{command}` · date {date} · commit `{commit}` · load average at start {load} "
        "(2 shared cores: timings are noisy; compare ratios within one run).",
        "",
        "Paths: `table` = table.parquet as is; `table-nostatus` = without its status column and each car's extra "
        "finish row (finishes inferred); `fastf1` = `race_from_fastf1_frames` on the FastF1-shaped frames. "
        "Targets (issue 11) are checked where a row shows **no**/a wrong value; the verdict lists the targets missed.",
        "",
    ]
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_session.setdefault(r["session"], []).append(r)
    for sname, rs in by_session.items():
        lines += [f"### {sname}", ""]
        paths = [r["path"] for r in rs]
        lines.append("| metric | " + " | ".join(paths) + " |")
        lines.append("|---|" + "---|" * len(paths))
        labels: list[tuple[str, str]] = []
        for r in rs:
            for x in r.get("results", []):
                if (x["key"], x["label"]) not in labels:
                    labels.append((x["key"], x["label"]))
        for key, label in labels:
            cells = []
            for r in rs:
                x = next((x for x in r.get("results", []) if x["key"] == key), None)
                cells.append("–" if x is None else x["value"])
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

        def row(label: str, fn: Any) -> None:
            lines.append(f"| {label} | " + " | ".join(fn(r) if "error" not in r else "–" for r in rs) + " |")

        if any(r.get("order_margin_m") is not None for r in rs):
            row("order margin between lines (m): twice the feed's offset at the line that 99% of crossings stay within",
                lambda r: "–" if r.get("order_margin_m") is None else f"{r['order_margin_m']:.1f}")
        row("frames", lambda r: str(r["frames"]))
        row("bundle size on disk", lambda r: f"{r['bundle_bytes'] / 1e6:.1f} MB" if "bundle_bytes" in r else "not written")
        row("ingest wall / CPU (s); bundle write (s)", lambda r: f"{r['ingest_wall_s']} / {r['ingest_cpu_s']}; {r.get('bundle_write_s', '–')}")
        row("ingest + bundle peak RSS", lambda r: f"{r['peak_rss_mb']:.0f} MB")
        row("ingest warnings", lambda r: str(len(r.get("warnings", []))))
        lines.append("| verdict | " + " | ".join(
            f"ERROR: {r['error']}" if "error" in r else ("PASS" if not _gated(r) else "FAIL: " + "; ".join(_gated(r)))
            for r in rs) + " |")
        lines.append("")
        for r in rs:
            det = [d for x in r.get("results", []) for d in x["details"]] + [f"warning: {w}" for w in r.get("warnings", [])]
            if det:
                lines.append(f"* `{r['path']}`:")
                lines += [f"  * {d}" for d in det]
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


HEADER = """# Accuracy on real sessions

How truthful a replay of a real session is: every session of the real-data pack
(`../shared/realdata`, kept outside the project) ingested every way racecast can, each
replay scored against the session's official facts (`truth.json`) by
`racecast.accuracy.metrics`. Regenerate with `make accuracy` (or `racecast accuracy`);
every figure below comes from the run named in its header.

## What each row measures

| row | how |
|---|---|
| final order = order at the line | the replay's order on its last frame vs the timing order at the flag (finishers by laps, then by when they took the flag; then the cars that did not finish) |
| final status wrong | each car's status on the last frame vs finished / out (DNF) / dns |
| total laps | `Race.total_laps` vs the race's laps |
| order right after each line crossing | on the first frame at or after every official line crossing, the car's place vs its timing place (1 + the cars that completed that lap before it and had not retired); a crossing a car rolls over after it stopped is not judged |
| crossing registered | the first frame on which the car's `race_progress` reaches the lap, minus the official instant, in frames (25 fps); "in [0,1)" = registered on the first frame at or after the instant |
| leader correct | share of frames whose P1 is the timing leader, judged where timing shows the same leader at the lap ends before and after (where the lap leader changed, timing does not say when the pass happened) |
| start order at lights out + 2 s | the order 2 s after the start vs the official grid with pit-lane starters last |
| non-starters | a car that did not start must be `dns` on every frame |
| retirements | first frame of the car's final OUT stretch minus the official stop time (the first sample within 5 m of where it came to rest) |
| pit stops found / official | the replay's pit stops matching an official stop (driver, lap); the table without status has no pit information |
| bundle size, ingest, peak RSS | bundle written to a temporary directory; wall and CPU seconds of the ingest (read + convert); peak RSS of the child process that ingested and wrote the bundle |

The qualifying session is scored on what applies: laps, the best-lap order (shown, not gated), the
official knockout order and its segments.

## The order between timing lines

Timing knows the order only where the cars cross a timing line; between lines the replay has
the position feed, whose own error is measured on every session: where the feed puts each car at
the exact instant it crosses the line. Those offsets are typically a few metres, but the worst
reach tens of metres (the "order margin" row: twice the offset that 99% of the session's crossings
stay within, so two cars each that far off). Nose to tail (lap 1 into the first corners, safety-car
restarts) cars run closer than that, and ranking them by the feed alone showed the wrong leader.
So between lines a replay shows the timing order (laps completed, then who completed the last one
first; the grid before the first crossing, pit-lane starters last) and moves a car up past the car
before it only where the feed puts it further ahead than the margin: a real pass shows once the
passer is clear by the margin, a stopped or pitting car is
passed as soon as the others are that far past it, and the feed's noise never reorders the field.
The rule and its margin come from the data of each session (`sources/_common.py`:
`anchored_order_key`); nothing is keyed to a race, track or driver.

## What the table path cannot know

A table is positions and whatever columns it has; what is not in it is not in the replay:

* **Deleted laps.** A table has no "deleted" flag, so a lap deleted for track limits still counts
  as the car's best lap in a table-ingested qualifying; FastF1's `Deleted` column is honoured in
  the FastF1 path. (In the qualifying of the pack no deleted lap was a driver's best, so the
  knockout order is right either way.)
* **The official classification.** Penalties and disqualifications are in FastF1's results only:
  a table's results view is the order at the line, marked unofficial.
* **Pit stops without a status column**: no `pit` status, no stops listed (not gated).
* **The session kind.** A table does not say whether it is a race. `racecast ingest table`
  reads it as a race when the cars start together (most cars' data begins within 10 s of the
  first car's) and, on a circuit, as a knockout qualifying otherwise, and says so in its
  warnings; `--session R|Q` overrides (a kind that contradicts the data is kept, with a warning).

## Not gated

* **Qualifying: the best-lap row.** A qualifying replay is ordered by the official knockout order
  (Q1/Q2/Q3, cars knocked out frozen in their segment), which is what the knockout row gates; the
  best-lap-over-the-session row differs from it by design (a car's best Q2 lap can beat a Q3
  runner's best Q3 lap) and is shown, not gated. The table path finds the segments and who went
  out in each from the data alone.
* **Pit stops without a status column** (above).

"""


def write_report(out: Path, body: str) -> None:
    text = out.read_text() if out.exists() else HEADER
    if START in text and END in text:
        a, rest = text.split(START, 1)
        _, b = rest.split(END, 1)
        text = a + body.rstrip("\n") + b
    else:
        text = text.rstrip("\n") + "\n\n## Latest run\n\n" + body
    out.write_text(text)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=realdata.repo_root()).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="racecast accuracy", description=__doc__)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pack", help="real-data pack directory [default: ../shared/realdata beside the checkout]")
    ap.add_argument("--sessions", help="comma-separated session folder names [default: all]")
    ap.add_argument("--paths", default=",".join(realdata.PATHS), help="comma-separated subset of " + ",".join(realdata.PATHS))
    ap.add_argument("--out", help="markdown file to write [default: docs/accuracy.md of the checkout]")
    ap.add_argument("--no-bundle", action="store_true", help="skip writing bundles (no bundle size; faster)")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(json.loads(a.child))), flush=True)
        return 0
    pack = realdata.find_pack(a.pack)
    sessions = realdata.sessions(pack)
    if a.sessions:
        want = set(a.sessions.split(","))
        sessions = [s for s in sessions if s.name in want]
    if not sessions:
        print(f"no sessions found in {pack} (a folder per session with truth.json)", file=sys.stderr)
        return 2
    paths = [p for p in a.paths.split(",") if p]
    bad = [p for p in paths if p not in realdata.PATHS]
    if bad:
        print(f"unknown path(s) {bad}: use {', '.join(realdata.PATHS)}", file=sys.stderr)
        return 2
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = []
    for s in sessions:
        for p in paths:
            print(f"{s.name} {p} ...", file=sys.stderr, flush=True)
            r = run_one(s, p, bundle=not a.no_bundle)
            print("   " + (f"error: {r['error']}" if "error" in r else ("PASS" if not _gated(r) else "FAIL: " + "; ".join(_gated(r)))),
                  file=sys.stderr, flush=True)
            runs.append(r)
    command = "racecast accuracy" + ("" if argv is None else (" " + " ".join(argv) if argv else ""))
    body = render(runs, command=command.strip(), commit=_commit(), date=date, load=load)
    out = Path(a.out) if a.out else realdata.repo_root() / "docs" / "accuracy.md"
    write_report(out, body)
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
