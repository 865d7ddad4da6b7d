"""The real-session pack (``../shared/realdata``): find it, and load a session every way racecast can.

A pack holds one folder per session with ``table.parquet`` (racecast's long table),
``fastf1/`` (FastF1-shaped frames as Parquet + ``frames.json``) and ``truth.json`` (the
official facts). The pack is test data kept outside the project: nothing here is
bundled; this only knows how to read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Ways a session is ingested: the table as is, the table without its status column
#: (and without the extra finish row, so finishes must be inferred), FastF1 frames.
PATHS = ("table", "table-nostatus", "fastf1")

#: Where the pack lives, relative to the repository root.
DEFAULT_PACK = Path("..") / "shared" / "realdata"


def repo_root() -> Path:
    """The source checkout this module runs from (src/racecast/accuracy -> repo)."""
    return Path(__file__).resolve().parents[3]


def find_pack(root: str | os.PathLike[str] | None = None) -> Path:
    """The pack directory: ``root`` if given, else ``$RACECAST_REALDATA``, else ``<repo>/../shared/realdata``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("RACECAST_REALDATA")
    if env:
        return Path(env)
    roots = [repo_root()]
    main = _main_checkout(roots[0])
    if main is not None:
        roots.append(main)
    for r in roots:
        if (r / DEFAULT_PACK).is_dir():
            return (r / DEFAULT_PACK).resolve()
    return (roots[0] / DEFAULT_PACK).resolve()


def _main_checkout(root: Path) -> Path | None:
    """For a ``git worktree`` checkout, the main checkout (whose ``..`` holds the pack)."""
    dotgit = root / ".git"
    if not dotgit.is_file():
        return None
    try:
        text = dotgit.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = (root / text.split(":", 1)[1].strip()).resolve()
    common = gitdir / "commondir"
    try:
        common_dir = (gitdir / common.read_text().strip()).resolve() if common.is_file() else gitdir
    except OSError:
        return None
    return common_dir.parent


def sessions(pack: Path) -> list[Path]:
    """Session folders of the pack (those with a truth.json), sorted by name."""
    if not pack.is_dir():
        return []
    return sorted(p for p in pack.iterdir() if (p / "truth.json").is_file())


def load_truth(session: Path) -> dict[str, Any]:
    with open(session / "truth.json") as f:
        return json.load(f)


def table_frame(session: Path, path: str = "table") -> Any:
    """The session's long table as a DataFrame; ``table-nostatus`` drops the status column and
    each car's extra finish row (the duplicated last sample with lap + 1, status finished)."""
    import pandas as pd  # noqa: PLC0415 -- the table extra

    df = pd.read_parquet(session / "table.parquet")
    if path == "table":
        return df
    if path != "table-nostatus":
        raise ValueError(f"not a table path: {path!r}")
    same_driver = df["driver"].astype(str).eq(df["driver"].astype(str).shift())
    dup = same_driver & df["time"].eq(df["time"].shift()) & df["lap"].eq(df["lap"].shift() + 1)
    extra = dup & df["status"].astype(str).eq("finished")
    return df.loc[~extra].drop(columns="status").reset_index(drop=True)


def fastf1_frames(session: Path) -> Any:
    """The session's FastF1-shaped frames rebuilt as :class:`~racecast.sources.fastf1.FastF1Frames`."""
    import pandas as pd  # noqa: PLC0415

    from racecast.sources.fastf1 import FastF1Frames  # noqa: PLC0415

    d = session / "fastf1"
    meta = json.loads((d / "frames.json").read_text())
    sc = meta["scalars"]
    t0 = pd.Timestamp(sc["t0_date"]) if sc.get("t0_date") else None

    def per_driver(name: str) -> dict[str, Any]:
        df = pd.read_parquet(d / f"{name}.parquet")
        out = {}
        for num, g in df.groupby("Driver", observed=True):
            g = g.drop(columns="Driver").reset_index(drop=True)
            g["Time"] = g["SessionTime"]
            if t0 is not None:
                g["Date"] = t0 + g["SessionTime"]
            out[str(num)] = g
        return out

    def opt(name: str) -> Any:
        f = meta["fields"].get(name)
        return pd.read_parquet(d / f"{f}.parquet") if f else None

    results = opt("results")
    if results is not None:
        results.index = results["DriverNumber"]
    sst = sc.get("session_start_time_s")
    return FastF1Frames(
        year=int(sc["year"]),
        round=int(sc["round"]),
        session=str(sc["session"]),
        session_name=str(sc.get("session_name", "")),
        race_like=bool(sc.get("race_like", True)),
        laps=pd.read_parquet(d / "laps.parquet"),
        pos_data=per_driver("pos_data"),
        car_data=per_driver("car_data"),
        results=results,
        total_laps=sc.get("total_laps"),
        session_start_time=None if sst is None else pd.Timedelta(seconds=float(sst)),
        t0_date=t0,
        track_status=opt("track_status"),
        race_control_messages=opt("race_control_messages"),
        weather=opt("weather"),
        rotation=float(sc.get("rotation", 0.0)),
        corners=opt("corners"),
        event_name=str(sc.get("event_name", "")),
        circuit=str(sc.get("circuit", "")),
        country=str(sc.get("country", "")),
        date=str(sc.get("date", "")),
    )


def clock_shift(truth: dict[str, Any], path: str) -> float:
    """Seconds to add to a truth time to get the source's own clock (FastF1 session time or table time)."""
    if path == "fastf1":
        return float(truth.get("fastf1", {}).get("session_time_offset_s", 0.0))
    return 0.0


def load_race(session: Path, path: str, *, fps: int | None = None) -> Any:
    """Ingest one session one way into a :class:`~racecast.race.Race` (no bundle written)."""
    from racecast.race import DEFAULT_FPS  # noqa: PLC0415

    fps = fps or DEFAULT_FPS
    if path == "fastf1":
        from racecast.sources.fastf1 import race_from_fastf1_frames  # noqa: PLC0415

        return race_from_fastf1_frames(fastf1_frames(session), fps=fps)
    from racecast.sources.table import race_from_dataframe  # noqa: PLC0415

    # the table says nothing of the session type: told, as `racecast ingest table --session Q` is
    kind = str(load_truth(session).get("session", {}).get("type", "R"))
    return race_from_dataframe(table_frame(session, path), race_id=f"{session.name}-{path}", title=f"{session.name} ({path})", fps=fps,
                               session="Q" if kind in ("Q", "SQ", "SS") else "R")
