"""The real-session pack (../shared/realdata) for the officials' tests, and real FastF1 objects built from it.

Skip with the reason when the pack is missing, except under CI=true, where a missing
pack fails the test. Test data only: nothing of it is copied into the project.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.realdata import require_pack


def session_dir(name: str) -> Path:
    """The pack's session folder; skip (fail under CI=true) when it is missing (tests/realdata.py)."""
    return require_pack(name)


def truth(d: Path) -> dict[str, Any]:
    return json.loads((d / "truth.json").read_text())


class NetworkGuard:
    """Every socket connect fails, loudly: it raises and is recorded (a test asserts none happened)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[Any] = []
        guard = self

        def connect(sock: socket.socket, address: Any, *a: Any) -> None:
            guard.attempts.append(address)
            raise OSError(f"test forbids network access (tried {address!r})")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect)
        monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: connect(None, address))  # type: ignore[arg-type]


def real_fastf1_session(d: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real ``fastf1.core.Session`` whose ``load()`` fills it OFFLINE from the pack's FastF1 frames.

    Everything the loader reads is FastF1's own: ``Event``, ``Session``, ``Laps``,
    ``Telemetry``, ``SessionResults``, ``CircuitInfo``; only the download is replaced
    (by reading the Parquet files into FastF1's own attributes), so a change in FastF1's
    API breaks the test that uses it. ``fastf1.get_session`` returns it.
    """
    import fastf1
    import fastf1.core as core
    import fastf1.events as events
    import fastf1.mvapi as mvapi
    import pandas as pd

    meta = json.loads((d / "fastf1" / "frames.json").read_text())
    sc = meta["scalars"]
    name = sc["session_name"]
    date = pd.Timestamp(sc["date"])
    event = events.Event(
        {
            "RoundNumber": int(sc["round"]), "Country": sc["country"], "Location": sc["circuit"],
            "OfficialEventName": sc["event_name"], "EventDate": date, "EventName": sc["event_name"],
            "EventFormat": "conventional", "F1ApiSupport": True,
            **{f"Session{i}": (name if i == 5 else f"Practice {i}" if i <= 3 else "Other") for i in range(1, 6)},
            **{f"Session{i}Date": date for i in range(1, 6)},
            **{f"Session{i}DateUtc": date for i in range(1, 6)},
        },
        year=int(sc["year"]),
    )
    ses = core.Session(event, name, f1_api_support=True)
    t0 = pd.Timestamp(sc["t0_date"])

    def per_driver(file: str, source: str) -> dict[str, Any]:
        df = pd.read_parquet(d / "fastf1" / file)
        out = {}
        for num, g in df.groupby("Driver", observed=True):
            g = g.drop(columns="Driver").reset_index(drop=True)
            g["Time"] = g["SessionTime"]
            g["Date"] = t0 + g["SessionTime"]
            g["Source"] = source
            if source == "pos":
                g["Status"] = "OnTrack"
            out[str(num)] = core.Telemetry(g, session=ses, driver=str(num))
        return out

    def load(*, laps: bool = True, telemetry: bool = True, weather: bool = True, messages: bool = True, livedata: Any = None) -> None:
        res = pd.read_parquet(d / "fastf1" / "results.parquet")
        res.index = res["DriverNumber"]
        ses._results = core.SessionResults(res, _force_default_cols=True)
        laps_df = pd.read_parquet(d / "fastf1" / "laps.parquet")
        if not laps_df["IsPersonalBest"].any():  # some exports lost the flag; FastF1 sets it from the lap times
            valid = laps_df["LapTime"].notna() & ~laps_df["Deleted"].fillna(False).astype(bool)
            best_so_far = laps_df["LapTime"].where(valid).groupby(laps_df["Driver"]).cummin()
            laps_df["IsPersonalBest"] = valid & (laps_df["LapTime"] == best_so_far)
        ses._laps = core.Laps(laps_df, session=ses, _force_default_cols=True)
        ses._pos_data = per_driver("pos_data.parquet", "pos")
        ses._car_data = per_driver("car_data.parquet", "car")
        ses._t0_date = t0
        ses._session_start_time = pd.Timedelta(seconds=float(sc["session_start_time_s"]))
        ses._total_laps = sc.get("total_laps")
        ts = d / "fastf1" / "track_status.parquet"
        ses._track_status = pd.read_parquet(ts) if ts.is_file() else pd.DataFrame(columns=["Time", "Status", "Message"])
        ses._race_control_messages = pd.DataFrame(columns=["Time", "Category", "Message", "Status", "Flag", "Scope", "Sector", "RacingNumber", "Lap"])
        ses._weather_data = pd.DataFrame(columns=["Time", "AirTemp", "Humidity", "Pressure", "Rainfall", "TrackTemp", "WindDirection", "WindSpeed"])
        ses._session_info = {"Meeting": {"Circuit": {"Key": 0, "ShortName": sc["circuit"]}}}

    corners = pd.read_parquet(d / "fastf1" / "corners.parquet")
    empty = corners.iloc[0:0]
    monkeypatch.setattr(core, "get_circuit_info", lambda **kw: mvapi.CircuitInfo(corners=corners.copy(), marshal_lights=empty, marshal_sectors=empty, rotation=float(sc["rotation"])))
    # the pack's corners already carry their Distance; FastF1 would recompute it from the fastest
    # lap's merged telemetry, which the exported (lap-sliced) samples cannot rebuild
    monkeypatch.setattr(mvapi.CircuitInfo, "add_marker_distance", lambda self, reference_lap: None)
    monkeypatch.setattr(ses, "load", load)
    monkeypatch.setattr(fastf1, "get_session", lambda year, ev, code, **kw: ses)
    return ses


def prime_schedule(cache_dir: Path, year: int = 2025, round_number: int = 2, event_name: str = "Chinese Grand Prix") -> None:
    """Put one season schedule (one event, FastF1's own schedule format) into a FastF1 HTTP cache, as if
    it had been downloaded: a cache that knows the event but holds none of its sessions."""
    import io

    import fastf1
    import requests
    import urllib3
    from fastf1 import events

    fastf1.Cache.configure(cache_dir=str(cache_dir))
    url = events._SCHEDULE_BASE_URL + f"schedule_{year}.json"
    day = f"{year}-03-2"
    cols = {"round_number": round_number, "country": "China", "location": "Shanghai", "official_event_name": event_name.upper(),
            "event_date": f"{day}3T00:00:00", "event_name": event_name, "event_format": "conventional",
            "session1": "Practice 1", "session1_date": f"{day}1T11:30:00", "session2": "Practice 2", "session2_date": f"{day}1T15:30:00",
            "session3": "Practice 3", "session3_date": f"{day}2T11:00:00", "session4": "Qualifying", "session4_date": f"{day}2T15:00:00",
            "session5": "Race", "session5_date": f"{day}3T15:00:00", "f1_api_support": True, "gmt_offset": "08:00"}
    body = json.dumps({k: {"0": v} for k, v in cols.items()}).encode()
    resp = requests.Response()
    resp.status_code, resp._content, resp.url, resp.reason, resp.encoding = 200, body, url, "OK", "utf-8"
    resp.request = requests.Request("GET", url, headers=events._HEADERS).prepare()
    resp.headers["Content-Type"] = "application/json"
    resp.raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers={"Content-Type": "application/json"}, status=200,
                                    preload_content=False, request_url=url)
    fastf1.Cache._requests_session_cached.cache.save_response(resp)
