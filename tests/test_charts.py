"""Chart data and ``racecast chart``: compared by structure (axes, series, bars), never by pixels."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from racecast.analysis.charts import CHART_KINDS, ChartError, chart_spec
from racecast.analysis.store import analyse
from racecast.bundle import write_bundle
from racecast.cli import app
from racecast.sources.simulate import simulate_race

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("charts")
    write_bundle(simulate_race(laps=5, n_drivers=8, seed=2, fps=10, id="c"), root / "c")
    return root


@pytest.fixture(scope="module")
def doc(bundle: Path) -> dict:
    return json.loads((bundle / "c" / "analysis.json").read_text())


@pytest.fixture(scope="module")
def drivers(bundle: Path) -> list[dict]:
    return json.loads((bundle / "c" / "manifest.json").read_text())["drivers"]


def test_line_charts_have_one_series_per_driver(doc: dict, drivers: list[dict]) -> None:
    laps = doc["laps"]
    for kind in ("gaps", "positions", "laptimes"):
        spec = chart_spec(laps, drivers, kind)
        assert {s["driver"] for s in spec["series"]} == set(laps["drivers"]), kind
        for s in spec["series"]:
            assert len(s["x"]) == len(s["y"]) > 0 and s["highlight"]
    pos = chart_spec(laps, drivers, "positions")
    assert pos["invert_y"] and pos["series"][0]["x"][0] == 0  # the start order is "lap 0"
    winner = pos["series"][0]  # finishing order: the winner first, P1 at the end
    assert winner["y"][-1] == 1
    gaps = chart_spec(laps, drivers, "gaps")
    assert gaps["series"][0]["y"][-1] == 0.0


def test_selected_drivers_are_highlighted(doc: dict, drivers: list[dict]) -> None:
    codes = doc["laps"]["drivers"][:2]
    spec = chart_spec(doc["laps"], drivers, "laptimes", codes)
    assert {s["driver"] for s in spec["series"] if s["highlight"]} == set(codes)
    with pytest.raises(ChartError, match="unknown driver"):
        chart_spec(doc["laps"], drivers, "gaps", ["ZZZ"])
    with pytest.raises(ChartError, match="unknown chart kind"):
        chart_spec(doc["laps"], drivers, "pie")


def test_strategy_bars_cover_each_drivers_race(doc: dict, drivers: list[dict]) -> None:
    spec = chart_spec(doc["laps"], drivers, "strategy")
    assert spec["rows"] and set(spec["rows"]) <= set(doc["laps"]["drivers"])
    for code in spec["rows"]:
        bars = sorted((b for b in spec["bars"] if b["driver"] == code), key=lambda b: b["start"])
        assert bars[0]["start"] == 0
        assert all(a["end"] == b["start"] for a, b in zip(bars, bars[1:]))  # stints meet at the pit lap
        stops = doc["laps"]["pit_laps"][code]
        assert [b["end"] for b in bars[:-1]] == stops


def test_the_analysis_is_the_same_from_the_race(doc: dict) -> None:
    assert json.loads(json.dumps(analyse(simulate_race(laps=5, n_drivers=8, seed=2, fps=10, id="c")))) == doc


@pytest.mark.parametrize("kind", CHART_KINDS)
def test_cli_draws_svg_with_one_line_per_series(bundle: Path, doc: dict, drivers: list[dict], kind: str, tmp_path: Path) -> None:
    out = tmp_path / f"{kind}.svg"
    r = CliRunner().invoke(app, ["chart", "c", "--kind", kind, "--out", str(out), "--data", str(bundle)])
    assert r.exit_code == 0, r.output
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    groups = [g.get("id", "") for g in root.iter(f"{ns}g")]
    spec = chart_spec(doc["laps"], drivers, kind)
    assert sum(1 for g in groups if g.startswith("axes_")) == 1
    if kind == "strategy":
        assert sum(1 for g in groups if g.startswith("patch_")) >= len(spec["bars"])
    else:
        assert sum(1 for g in groups if g.startswith("line2d_")) >= len(spec["series"])
        lines = [g for g in root.iter(f"{ns}g") if g.get("id", "").startswith("line2d_") and g.find(f"{ns}path") is not None]
        assert len(lines) >= len(spec["series"])


def test_cli_png_and_highlight(bundle: Path, doc: dict, tmp_path: Path) -> None:
    out = tmp_path / "gaps.png"
    codes = ",".join(doc["laps"]["drivers"][:2])
    r = CliRunner().invoke(app, ["chart", "c", "--kind", "gaps", "--drivers", codes, "--out", str(out), "--data", str(bundle)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(out)
    assert img.shape[0] == 620 and img.shape[1] == 1100


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--kind", "pie"], 2, "unknown chart kind"),
        (["--drivers", "ZZZ"], 2, "unknown driver"),
        (["--out", "x.jpg"], 2, ".png or .svg"),
    ],
)
def test_cli_bad_input(bundle: Path, tmp_path: Path, args: list[str], code: int, words: str) -> None:
    argv = ["chart", "c", "--data", str(bundle)] + args
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "x.png")]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == code and words in r.output, r.output


def test_cli_unknown_replay(bundle: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["chart", "nope", "--out", str(tmp_path / "x.png"), "--data", str(bundle)])
    assert r.exit_code != 0 and "nope" in r.output


def test_cli_compare_draws_five_panels_from_the_telemetry_comparison(bundle: Path, doc: dict, drivers: list[dict], tmp_path: Path) -> None:
    from racecast.analysis.charts import compare_spec
    from racecast.analysis.compare import compare_laps, fastest_lap, lap_trace, source_of
    from racecast.bundle import open_bundle

    a, b = doc["laps"]["drivers"][:2]
    out = tmp_path / "cmp.svg"
    r = CliRunner().invoke(app, ["chart", "c", "--kind", "compare", "--drivers", f"{a},{b}", "--laps", "3,3", "--out", str(out), "--data", str(bundle)])
    assert r.exit_code == 0, r.output
    ns = "{http://www.w3.org/2000/svg}"
    groups = [g.get("id", "") for g in ET.parse(out).getroot().iter(f"{ns}g")]
    assert sum(1 for g in groups if g.startswith("axes_")) == 5  # speed, throttle, brake, gear, delta
    with open_bundle(bundle / "c") as bd:
        codes = [d["code"] for d in bd.drivers]
        cmp = compare_laps(lap_trace(source_of(bd), codes, a, 3), lap_trace(source_of(bd), codes, b, 3))
    spec = compare_spec(cmp, drivers)
    assert [len(p["series"]) for p in spec["panels"]] == [2, 2, 2, 2, 1]
    assert spec["panels"][-1]["series"][0]["y"] == cmp["delta"] and len(cmp["delta"]) == len(cmp["distance"]) > 100
    # default laps: each driver's fastest (compare.fastest_lap, as GET /compare's CODE:fastest)
    r = CliRunner().invoke(app, ["chart", "c", "--kind", "compare", "--drivers", f"{a},{b}", "--out", str(tmp_path / "f.png"), "--data", str(bundle)])
    assert r.exit_code == 0, r.output
    with open_bundle(bundle / "c") as bd:
        fa, fb = (fastest_lap(source_of(bd), codes, c) for c in (a, b))
    assert fa is not None and fb is not None
    assert f"{a} lap {fa[0]}" in r.output.replace("\n", "") and f"{b} lap {fb[0]}" in r.output.replace("\n", "")
    # "same": the first lap's number for the second driver
    r = CliRunner().invoke(app, ["chart", "c", "--kind", "compare", "--drivers", f"{a},{b}", "--laps", "fastest,same", "--out", str(tmp_path / "s.png"), "--data", str(bundle)])
    assert r.exit_code == 0, r.output
    assert f"{b} lap {fa[0]}" in r.output.replace("\n", "")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--kind", "compare", "--drivers", "X"], "two drivers"),
        (["--kind", "compare", "--drivers", "A,B,C"], "two drivers"),
        (["--kind", "compare", "--laps", "3,x"], "--laps must be two laps"),
        (["--kind", "compare", "--laps", "3"], "--laps must be two laps"),
        (["--kind", "compare", "--laps", "3,99"], "no lap 99"),
        (["--kind", "compare", "--laps", "0,1"], "no lap 0"),
        (["--kind", "compare", "--laps", "same,3"], "'same' means the first lap's number"),
        (["--kind", "compare", "--laps", "fastest,slowest"], "--laps must be two laps"),
        (["--kind", "compare", "--laps", "99999,1"], "--laps must be two laps"),
        (["--kind", "gaps", "--laps", "3,3"], "--laps is for --kind compare"),
    ],
)
def test_cli_compare_bad_input(bundle: Path, doc: dict, tmp_path: Path, args: list[str], words: str) -> None:
    a, b = doc["laps"]["drivers"][:2]
    if "--drivers" not in args:
        args = args + ["--drivers", f"{a},{b}"]
    r = CliRunner().invoke(app, ["chart", "c", "--data", str(bundle), "--out", str(tmp_path / "x.png"), *args])
    assert r.exit_code == 2 and words in r.output.replace("\n", ""), r.output
