"""The accuracy harness: metrics against real truth, the report, the pack helper."""

from __future__ import annotations

import copy

import pytest

from racecast.accuracy import realdata, score
from racecast.accuracy.run import END, START, render, write_report
from tests.realdata import real_race, require_pack, truth


def test_missing_pack_skips_with_a_reason_but_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("RACECAST_REALDATA", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real-data pack not found"):
        require_pack()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        require_pack()


def test_nostatus_table_drops_the_status_column_and_only_the_extra_finish_rows():
    s = require_pack("2025_2_R")
    full = realdata.table_frame(s, "table")
    bare = realdata.table_frame(s, "table-nostatus")
    assert "status" not in bare.columns
    finishers = [r["driver"] for r in truth("2025_2_R")["classification_at_line"] if r["status"] == "finished"]
    assert len(full) - len(bare) == len(finishers)


def test_metrics_notice_a_wrong_order_and_wrong_laps():
    race = real_race("2025_2_R", "fastf1")
    t = truth("2025_2_R")
    good = {r.key: r for r in score(race, t, "fastf1", realdata.clock_shift(t, "fastf1"))}
    assert good["final_order"].ok and good["total_laps"].ok
    bad = copy.deepcopy(t)
    bad["line_order"][0], bad["line_order"][1] = bad["line_order"][1], bad["line_order"][0]
    bad["total_laps"] += 1
    worse = {r.key: r for r in score(race, bad, "fastf1", realdata.clock_shift(t, "fastf1"))}
    assert worse["final_order"].ok is False and "2 wrong" in worse["final_order"].value
    assert worse["total_laps"].ok is False


def test_report_has_a_table_per_session_and_replaces_only_its_section(tmp_path):
    runs = [
        {"session": "S1", "path": "table", "frames": 10, "ingest_wall_s": 1.0, "ingest_cpu_s": 0.5, "peak_rss_mb": 100.0,
         "bundle_bytes": 2_000_000, "results": [{"key": "k", "label": "a metric", "value": "yes", "ok": True, "details": [], "data": {}}]},
        {"session": "S1", "path": "fastf1", "error": "boom"},
    ]
    body = render(runs, command="racecast accuracy", commit="abc", date="today", load="1.0")
    assert "### S1" in body and "| a metric | yes | – |" in body and "ERROR: boom" in body and "2.0 MB" in body
    out = tmp_path / "acc.md"
    out.write_text(f"# Title\n\nintro\n\n{START}\nold\n{END}\n\ntail\n")
    write_report(out, body)
    text = out.read_text()
    assert text.startswith("# Title\n\nintro") and text.rstrip().endswith("tail") and "old" not in text and "### S1" in text
