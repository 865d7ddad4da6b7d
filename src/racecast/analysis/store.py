"""The analysis as stored in a bundle: one self-contained JSON file beside the arrays.

``analysis.json`` = ``{"version": 1, "events": [...], "laps": {...}}``; the manifest's
``analysis`` key names it. A bundle without it (written before analysis existed) gets
the same document derived from its arrays on first request (:func:`analysis_of_bundle`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import Damaged
from ..race import Race
from .events import compute_events
from .laps import lap_data

ANALYSIS_FILE = "analysis.json"
ANALYSIS_VERSION = 1
#: Largest analysis file a bundle may hold (a 70-lap race with 20 cars writes ~200 KB).
MAX_ANALYSIS_BYTES = 16 * 1024 * 1024


class AnalysisError(Damaged, ValueError):
    """A stored analysis that cannot be read (damaged, or from a newer racecast)."""


def analyse(race: Race) -> dict[str, Any]:
    """The whole analysis document of a race (events + lap data), JSON-ready."""
    events = compute_events(race)
    return {"version": ANALYSIS_VERSION, "events": [e.to_dict() for e in events], "laps": lap_data(race, events)}


def write_analysis(root: Path, race: Race) -> dict[str, Any]:
    """Write ``analysis.json`` into a bundle directory being built; return its manifest entry."""
    doc = analyse(race)
    with open(root / ANALYSIS_FILE, "wb") as f:
        f.write(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode())
        f.flush()
        os.fsync(f.fileno())
    return {"file": ANALYSIS_FILE, "version": ANALYSIS_VERSION, "events": len(doc["events"])}


def read_analysis(bundle_path: Path, entry: Any) -> dict[str, Any]:
    """Load the stored analysis named by the manifest entry ``entry``."""
    if not isinstance(entry, dict) or entry.get("file") != ANALYSIS_FILE:
        raise AnalysisError(f"{bundle_path}: manifest 'analysis' entry is malformed: {entry!r}")
    version = entry.get("version")
    if not isinstance(version, int) or version > ANALYSIS_VERSION or version < 1:
        raise AnalysisError(f"{bundle_path}: analysis version {version!r} is not one this racecast reads ({ANALYSIS_VERSION})")
    p = bundle_path / ANALYSIS_FILE
    try:
        if p.stat().st_size > MAX_ANALYSIS_BYTES:
            raise AnalysisError(f"{p}: larger than any analysis racecast writes")
        doc = json.loads(p.read_bytes())
    except FileNotFoundError:
        raise AnalysisError(f"{p}: missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise AnalysisError(f"{p}: not valid JSON ({e}); the bundle is damaged") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list) or not isinstance(doc.get("laps"), dict):
        raise AnalysisError(f"{p}: not an analysis document")
    return doc


def analysis_of_bundle(bundle: Any) -> tuple[dict[str, Any], bool]:
    """The bundle's analysis and whether it was derived now (an older bundle without one stored)."""
    entry = bundle.manifest.get("analysis")
    if entry is not None:
        return read_analysis(Path(bundle.path), entry), False
    return analyse(bundle.race()), True
