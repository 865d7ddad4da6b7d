"""Real sessions from ../shared/realdata as FastF1Frames (test data only: never committed).

``pack_dir()`` finds the pack relative to the repository root; a missing pack skips the
calling test with a reason, except under ``CI=true`` where it fails (a CI run must judge
the real sessions, never silently pass without them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _find_pack() -> Path:
    """``../shared/realdata`` from the repository root (from a git worktree nested deeper, the
    nearest ancestor that has one); ``RACECAST_REALDATA`` overrides."""
    env = os.environ.get("RACECAST_REALDATA")
    if env:
        return Path(env)
    for parent in REPO.parents:
        if (parent / "shared" / "realdata").is_dir():
            return parent / "shared" / "realdata"
    return REPO.parent / "shared" / "realdata"


REALDATA = _find_pack()
RACES = ("2025_2_R", "2025_15_R")


def pack_dir(session: str) -> Path:
    """The session's folder, or skip (fail under CI=true) when the pack is missing."""
    d = REALDATA / session
    if not (d / "truth.json").is_file():
        msg = f"real-data pack missing: {d} (see ../shared/realdata/README.md)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI must run the real-session checks")
        pytest.skip(msg)
    return d


def truth(session: str) -> dict[str, Any]:
    return json.loads((pack_dir(session) / "truth.json").read_text())


def fastf1_frames(session: str) -> Any:
    """Rebuild the session's :class:`~racecast.sources.fastf1.FastF1Frames` from its Parquet files."""
    import pandas as pd

    from racecast.sources.fastf1 import FastF1Frames

    d = pack_dir(session) / "fastf1"
    meta = json.loads((d / "frames.json").read_text())
    sc = meta["scalars"]

    def frame(name: str) -> Any:
        f = meta["fields"].get(name)
        return pd.read_parquet(d / meta["files"][f]["file"]) if f else None

    def per_driver(name: str) -> dict[str, Any]:
        df = frame(name)
        return {str(k): g.drop(columns="Driver").reset_index(drop=True) for k, g in df.groupby("Driver", observed=True)}

    results = frame("results")
    if results is not None:
        results.index = results["DriverNumber"]
    return FastF1Frames(
        year=int(sc["year"]),
        round=int(sc["round"]),
        session=str(sc["session"]),
        laps=frame("laps"),
        pos_data=per_driver("pos_data"),
        car_data=per_driver("car_data"),
        results=results,
        session_name=str(sc.get("session_name", "")),
        race_like=bool(sc.get("race_like", True)),
        total_laps=sc.get("total_laps"),
        session_start_time=pd.Timedelta(seconds=float(sc["session_start_time_s"])),
        t0_date=pd.Timestamp(sc["t0_date"]),
        track_status=frame("track_status"),
        race_control_messages=frame("race_control_messages"),
        weather=frame("weather"),
        rotation=float(sc.get("rotation", 0.0)),
        corners=frame("corners"),
        event_name=str(sc.get("event_name", "")),
        circuit=str(sc.get("circuit", "")),
        country=str(sc.get("country", "")),
        date=str(sc.get("date", "")),
    )
