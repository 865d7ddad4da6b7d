"""FastF1-shaped session data built by hand (no FastF1, no network), with its ground truth.

Cars drive a stadium-shaped track (two 400 m straights, two 80 m-radius turns) under
a tiny kinematic model. From their true along-track distance we emit what FastF1's
``Session`` would hold -- ``laps`` (Laps columns and dtypes: Timedelta times, NaT,
float lap numbers, FastF1Generated rows for retirements, Position by crossing order),
``pos_data``/``car_data`` (Telemetry frames: Date, SessionTime, X/Y/Z in 1/10 m at
~4 Hz with jittered timestamps), results, track status, race-control messages
(UTC datetimes), weather -- with FastF1's quirks: duplicate samples at lap boundaries,
gaps, all-zero filler rows for missing position data, lap 1 without a lap time, a
car crashing on lap 1, a retirement, a pit stop, a lapped car, a launch overtake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from racecast.sources.fastf1 import FastF1Frames

STRAIGHT = 400.0
RADIUS = 80.0
L = 2 * STRAIGHT + 2 * math.pi * RADIUS  # 1302.65 m
OFFSET = (1000.0, -500.0)  # metres: keep the track away from the (0, 0) of filler rows
PIT_ENTRY, PIT_EXIT, PIT_BOX = 150.0, 150.0, 40.0  # before / after / after the line
PIT_LATERAL = 15.0
PIT_SPEED = 22.0
T0_DATE = pd.Timestamp("2023-05-07 19:00:00")
DT = 0.02


def centerline(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point and left normal at along-track distance ``s`` (m, from the line)."""
    s = np.mod(np.asarray(s, dtype=float), L)
    x, y, nx, ny = (np.zeros_like(s) for _ in range(4))
    half = STRAIGHT / 2
    t1, top, t2 = half, half + math.pi * RADIUS, half + math.pi * RADIUS + STRAIGHT
    end2 = t2 + math.pi * RADIUS
    a = s < t1
    x[a], y[a], nx[a], ny[a] = s[a], 0.0, 0.0, 1.0
    b = (s >= t1) & (s < top)
    ang = -math.pi / 2 + (s[b] - t1) / RADIUS
    x[b], y[b] = half + RADIUS * np.cos(ang), RADIUS + RADIUS * np.sin(ang)
    nx[b], ny[b] = -np.cos(ang), -np.sin(ang)
    c = (s >= top) & (s < t2)
    x[c], y[c], nx[c], ny[c] = half - (s[c] - top), 2 * RADIUS, 0.0, -1.0
    d = (s >= t2) & (s < end2)
    ang = math.pi / 2 + (s[d] - t2) / RADIUS
    x[d], y[d] = -half + RADIUS * np.cos(ang), RADIUS + RADIUS * np.sin(ang)
    nx[d], ny[d] = -np.cos(ang), -np.sin(ang)
    e = s >= end2
    x[e], y[e], nx[e], ny[e] = -half + (s[e] - end2), 0.0, 0.0, 1.0
    return x + OFFSET[0], y + OFFSET[1], nx, ny


def in_turn(s: float) -> bool:
    m = s % L
    half = STRAIGHT / 2
    return half <= m < half + math.pi * RADIUS or half + math.pi * RADIUS + STRAIGHT <= m < L - half


@dataclass
class Spec:
    code: str
    number: str
    team: str
    color: str
    grid: int  # 1-based slot (0: starts in the garage, qualifying)
    pace: float = 45.0  # m/s on straights
    accel: float = 6.0
    factor: dict[int, float] = field(default_factory=dict)  # lap -> pace factor
    pit_laps: tuple[int, ...] = ()  # pit at the end of these laps
    stop_s: float | None = None  # retire: stop for good at this distance
    stop_time: float = 3.0  # s stationary in the box
    runs: tuple[tuple[float, int], ...] = ()  # qualifying: (leave garage at t, laps before the in-lap)
    compounds: tuple[str, ...] = ("MEDIUM", "HARD")


@dataclass
class Drive:
    """One car's simulated truth."""

    spec: Spec
    t: np.ndarray
    s: np.ndarray  # along-track distance (unwrapped, from the line; negative on the grid)
    lateral: np.ndarray
    speed: np.ndarray  # m/s
    in_pit: np.ndarray  # bool


def quali_in_laps(runs: tuple[tuple[float, int], ...]) -> list[int]:
    """Lap numbers that end in the pits: out-lap, ``n`` flying laps, in-lap per run."""
    out, k = [], 0
    for _, n_laps in runs:
        k += n_laps + 2
        out.append(k)
    return out


def drive(spec: Spec, t_end: float, start: float, finish_after: float | None = None, s_start: float | None = None) -> Drive:
    """Integrate one car: ``s`` from the line, pit lane around lines it pits at, box stops."""
    n = int(round(t_end / DT)) + 1
    t = np.arange(n) * DT
    s, lat, v = np.zeros(n), np.zeros(n), np.zeros(n)
    pit = np.zeros(n, dtype=bool)
    pos = s_start if s_start is not None else -(6.0 + 8.0 * (spec.grid - 1))
    speed = 0.0
    in_laps = quali_in_laps(spec.runs)
    park = {m: (spec.runs[r + 1][0] if r + 1 < len(spec.runs) else math.inf) for r, m in enumerate(in_laps)}
    pit_lines = set(spec.pit_laps) | set(in_laps) | ({0} if spec.runs else set())
    box_done: set[int] = set()
    box_until = -math.inf
    if spec.runs:  # qualifying: parked in the box on line 0 until the first run
        box_done.add(0)
        box_until = spec.runs[0][0]
    finished = False
    for i in range(n):
        ti = t[i]
        m = int(round(pos / L))
        rel = pos - m * L
        in_pit = m in pit_lines and -PIT_ENTRY <= rel <= PIT_EXIT
        target = spec.pace * spec.factor.get(int(math.floor(pos / L)) + 1, 1.0) * (0.75 if in_turn(pos) else 1.0)
        if finished:
            target *= 0.5
        if in_pit:
            target = min(target, PIT_SPEED)
            if m not in box_done and rel >= PIT_BOX - 1e-9:
                box_done.add(m)
                box_until = park.get(m, ti + spec.stop_time)
                pos, rel, speed = m * L + PIT_BOX, PIT_BOX, 0.0
        if ti < box_until or ti < start:
            target, speed = 0.0, 0.0
        if spec.stop_s is not None and pos >= spec.stop_s:
            target, speed = 0.0, 0.0
        speed = min(target, speed + spec.accel * DT)
        step = speed * DT
        if spec.stop_s is not None:
            step = min(step, max(spec.stop_s - pos, 0.0))
        if in_pit and m not in box_done and rel < PIT_BOX:
            step = min(step, PIT_BOX - rel)
        s[i], v[i], pit[i] = pos, speed, in_pit
        if in_pit:
            lat[i] = PIT_LATERAL * max(0.0, min(1.0, (rel + PIT_ENTRY) / 50.0, (PIT_EXIT - rel) / 50.0))
        new = pos + step
        if finish_after is not None and not finished and new >= L and math.floor(new / L) > math.floor(pos / L):
            finished = ti + DT >= finish_after - 1e-9
        pos = new
    return Drive(spec, t, s, lat, v, pit)


def crossing_times(d: Drive, value: float) -> float:
    """First time the car reaches along-track distance ``value`` (NaN if never)."""
    idx = np.flatnonzero(d.s >= value)
    if idx.size == 0:
        return math.nan
    i = int(idx[0])
    if i == 0:
        return float(d.t[0])
    s0, s1 = d.s[i - 1], d.s[i]
    w = (value - s0) / (s1 - s0) if s1 > s0 else 0.0
    return float(d.t[i - 1] + w * DT)


def xy(d: Drive, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.interp(t, d.t, d.s)
    lat = np.interp(t, d.t, d.lateral)
    x, y, nx, ny = centerline(s)
    return x + lat * nx, y + lat * ny


def _td(seconds) -> pd.Series:
    return pd.to_timedelta(pd.Series(seconds, dtype="float64"), unit="s")


def sample_times(rng: np.random.Generator, t_end: float, period: float) -> np.ndarray:
    steps = period + rng.uniform(-0.03, 0.03, size=int(t_end / period) + 10)
    t = np.cumsum(steps) + rng.uniform(0, period)
    t = t[t < t_end]
    return np.round(t, 3)  # FastF1 rounds Date to ms


def telemetry_pos(rng: np.random.Generator, d: Drive, t_end: float) -> pd.DataFrame:
    t = sample_times(rng, t_end, 0.22)
    x, y = xy(d, t)
    df = pd.DataFrame(
        {
            "Date": T0_DATE + _td(t),
            "Status": np.where(np.ones(t.size, dtype=bool), "OnTrack", "OffTrack").astype(object),
            "X": np.round(x * 10.0).astype("float64"),
            "Y": np.round(y * 10.0).astype("float64"),
            "Z": np.full(t.size, 1234.0),
            "Source": np.full(t.size, "pos", dtype=object),
            "Time": _td(t),
            "SessionTime": _td(t),
        }
    )
    return df


def telemetry_car(rng: np.random.Generator, d: Drive, t_end: float) -> pd.DataFrame:
    t = sample_times(rng, t_end, 0.24)
    v = np.interp(t, d.t, d.speed) * 3.6
    s = np.interp(t, d.t, d.s)
    stationary = v < 1
    throttle = np.where(stationary, 104.0, np.where([in_turn(si) for si in s], 40.0, 100.0))
    drs = np.where([(si % L) < 150 or (si % L) > L - 120 for si in s], 12, 1)
    drs = np.where(stationary, 0, drs)
    return pd.DataFrame(
        {
            "Date": T0_DATE + _td(t),
            "RPM": np.round(v * 40 + 4000).astype("float64"),
            "Speed": np.round(v).astype("float64"),
            "nGear": np.clip((v / 45).astype(int) + 1, 0, 8).astype("int64"),
            "Throttle": throttle.astype("float64"),
            "Brake": np.array([in_turn(si) and vi > 1 for si, vi in zip(s, v)], dtype=bool),
            "DRS": drs.astype("int64"),
            "Source": np.full(t.size, "car", dtype=object),
            "Time": _td(t),
            "SessionTime": _td(t),
        }
    )


LAP_COLUMNS = {
    "Time": "timedelta64[ns]", "Driver": object, "DriverNumber": object, "LapTime": "timedelta64[ns]",
    "LapNumber": "float64", "Stint": "float64", "PitOutTime": "timedelta64[ns]", "PitInTime": "timedelta64[ns]",
    "Sector1Time": "timedelta64[ns]", "Sector2Time": "timedelta64[ns]", "Sector3Time": "timedelta64[ns]",
    "Sector1SessionTime": "timedelta64[ns]", "Sector2SessionTime": "timedelta64[ns]",
    "Sector3SessionTime": "timedelta64[ns]", "SpeedI1": "float64", "SpeedI2": "float64", "SpeedFL": "float64",
    "SpeedST": "float64", "IsPersonalBest": bool, "Compound": object, "TyreLife": "float64", "FreshTyre": bool,
    "Team": object, "LapStartTime": "timedelta64[ns]", "LapStartDate": "datetime64[ns]", "TrackStatus": object,
    "Position": "float64", "Deleted": object, "DeletedReason": object, "FastF1Generated": bool, "IsAccurate": bool,
}  # fmt: skip


def _lap_rows(d: Drive, k_max: int, race: bool, session_start: float, lap1_time: float | None) -> list[dict]:
    spec = d.spec
    rows = []
    stint, life = 1, 1.0
    prev_end = session_start if race else math.nan
    compound_i = 0
    pit_laps = set(spec.pit_laps)
    for k in range(1, k_max + 1):
        end = crossing_times(d, k * L)
        s1 = crossing_times(d, (k - 1) * L + L / 3)
        s2 = crossing_times(d, (k - 1) * L + 2 * L / 3)
        start = prev_end
        pit_in = crossing_times(d, k * L - PIT_ENTRY) if (k in pit_laps) else math.nan
        pit_out = crossing_times(d, (k - 1) * L + PIT_EXIT) if (k - 1) in pit_laps else math.nan
        if not race and math.isnan(start):
            start = pit_out
        lap_time = end - start if math.isfinite(start) else math.nan
        if race and k == 1:
            lap_time = math.nan  # the API gives no lap-1 time (Ergast may add it; here it didn't)
        sec1 = s1 - start if (math.isfinite(start) and not (race and k == 1)) else math.nan
        rows.append(
            {
                "Time": end, "Driver": spec.code, "DriverNumber": spec.number, "LapTime": lap_time,
                "LapNumber": float(k), "Stint": float(stint), "PitOutTime": pit_out, "PitInTime": pit_in,
                "Sector1Time": sec1, "Sector2Time": s2 - s1, "Sector3Time": end - s2,
                "Sector1SessionTime": s1 if math.isfinite(sec1) else math.nan, "Sector2SessionTime": s2,
                "Sector3SessionTime": end, "SpeedI1": 250.0, "SpeedI2": 260.0, "SpeedFL": 270.0, "SpeedST": 300.0,
                "IsPersonalBest": False, "Compound": spec.compounds[min(compound_i, len(spec.compounds) - 1)],
                "TyreLife": life, "FreshTyre": True, "Team": spec.team, "LapStartTime": start,
                "TrackStatus": "1", "Position": math.nan, "Deleted": False, "DeletedReason": "",
                "FastF1Generated": False, "IsAccurate": bool(math.isnan(pit_in) and math.isnan(pit_out) and k > 1),
            }
        )  # fmt: skip
        prev_end = end
        life += 1
        if k in pit_laps and race:
            stint += 1
            compound_i += 1
            life = 1.0
    return rows


def _laps_frame(rows: list[dict], race: bool) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(LAP_COLUMNS))
    for c, dt in LAP_COLUMNS.items():
        if dt == "timedelta64[ns]":
            df[c] = pd.to_timedelta(df[c].astype("float64"), unit="s")
    df["LapStartDate"] = T0_DATE + df["LapStartTime"]
    if race:  # FastF1: Position = order of crossing within each lap number, generated laps NaN
        for k in df["LapNumber"].unique():
            m = (df["LapNumber"] == k) & ~df["FastF1Generated"].astype(bool)
            order = df.loc[m, "Time"].rank(method="first")
            df.loc[m, "Position"] = order.astype("float64")
    df = df.sort_values(["DriverNumber", "LapNumber"], key=lambda c: c.astype(float) if c.name == "DriverNumber" else c)
    df = df.reset_index(drop=True)
    for c, dt in LAP_COLUMNS.items():
        if dt in ("float64", bool):
            df[c] = df[c].astype(dt)
    return df


def _results(specs: list[Spec], order: list[str], status: dict[str, str], laps_done: dict[str, int]) -> pd.DataFrame:
    by = {s.code: s for s in specs}
    rows = []
    for i, code in enumerate(order):
        s = by[code]
        rows.append(
            {
                "DriverNumber": s.number, "BroadcastName": code, "Abbreviation": code, "DriverId": code.lower(),
                "TeamName": s.team, "TeamColor": s.color, "TeamId": s.team.lower(), "FirstName": code.title(),
                "LastName": code, "FullName": f"{code.title()} {code}", "HeadshotUrl": "", "CountryCode": "",
                "Position": float(i + 1), "ClassifiedPosition": str(i + 1) if status[code] == "Finished" or status[code].startswith("+") else "R",
                "GridPosition": float(s.grid),
                "Status": status[code], "Points": 0.0, "Laps": float(laps_done.get(code, 0)),
            }
        )  # fmt: skip
    df = pd.DataFrame(rows)
    for c in ("Q1", "Q2", "Q3", "Time"):
        df[c] = pd.Series(pd.NaT, index=df.index, dtype="timedelta64[ns]")
    df.index = df["DriverNumber"].to_numpy()
    return df


@dataclass
class Truth:
    drives: dict[str, Drive]
    crossings: dict[str, list[tuple[int, float]]]  # code -> [(lap, session time)]
    start: float  # race start (session seconds)
    flag: float  # time the winner took the flag
    finish: dict[str, tuple[int, float]]  # code -> (laps, time) for finishers
    retired: dict[str, float]  # code -> time it stopped for good
    pit: dict[str, list[tuple[float, float]]]  # code -> [(pit in, pit out)]
    classification: list[str]
    grid_order: list[str]
    gap_driver: str = ""
    gap: tuple[float, float] = (math.nan, math.nan)
    scheduled_laps: int = 0


RACE_SPECS = [
    Spec("VER", "1", "Red Bull Racing", "3671C6", 1, pace=45.0, accel=5.0),
    Spec("LEC", "16", "Ferrari", "E8002D", 2, pace=44.5, accel=7.5),  # better launch: leads into turn 1
    Spec("HAM", "44", "Mercedes", "27F4D2", 3, pace=44.6, accel=6.0, pit_laps=(2,), factor={3: 1.02, 4: 1.02, 5: 1.02, 6: 1.02}),
    Spec("NOR", "4", "McLaren", "FF8000", 4, pace=44.0, accel=6.0),
    Spec("ALO", "14", "Aston Martin", "229971", 5, pace=43.8, accel=6.0, stop_s=3 * L + 500.0),
    Spec("SAR", "2", "Williams", "", 6, pace=36.0, accel=6.0),  # no team colour in the data; gets lapped
    Spec("STR", "18", "Aston Martin", "229971", 7, pace=43.0, accel=6.0, stop_s=300.0),  # crashes on lap 1
]


def race_frames(total_laps: int = 6, seed: int = 7, dup_boundaries: bool = True) -> tuple[FastF1Frames, Truth]:
    """A 7-car sprint-length race with FastF1's shapes and quirks, plus its truth."""
    rng = np.random.default_rng(seed)
    start = 60.0  # session time of the start (session_start_time)
    horizon = start + total_laps * 50.0 + 60.0
    pre = {s.code: drive(s, horizon, start) for s in RACE_SPECS}
    # the winner takes the flag completing `total_laps`; everyone finishes at their next crossing
    flag = min(crossing_times(d, total_laps * L) for d in pre.values())
    drives = {s.code: drive(s, horizon, start, finish_after=flag) for s in RACE_SPECS}
    crossings: dict[str, list[tuple[int, float]]] = {}
    finish: dict[str, tuple[int, float]] = {}
    retired: dict[str, float] = {}
    for code, d in drives.items():
        cr = []
        k = 1
        while True:
            tk = crossing_times(d, k * L)
            if math.isnan(tk):
                break
            cr.append((k, tk))
            if tk >= flag:
                finish[code] = (k, tk)
                break
            k += 1
        crossings[code] = cr
        if code not in finish:
            moving = np.flatnonzero(np.diff(d.s) > 0)
            retired[code] = float(d.t[moving[-1] + 1]) if moving.size else start
    t_end = max(t for _, t in finish.values()) + 25.0
    first_lap_end = min(cr[0][1] for cr in crossings.values() if cr)
    rows: list[dict] = []
    for s in RACE_SPECS:
        d = drives[s.code]
        k_max = len(crossings[s.code])
        if k_max == 0:  # crashed on lap 1: FastF1 adds one generated lap
            rows.append(
                {**{c: math.nan for c in LAP_COLUMNS}, "Time": first_lap_end, "Driver": s.code, "DriverNumber": s.number,
                 "LapNumber": 1.0, "Stint": 1.0, "Compound": "MEDIUM", "TyreLife": 1.0, "FreshTyre": True, "Team": s.team,
                 "LapStartTime": start, "TrackStatus": "1", "IsPersonalBest": False, "Deleted": None, "DeletedReason": "",
                 "FastF1Generated": True, "IsAccurate": False}
            )  # fmt: skip
            continue
        rows.extend(_lap_rows(d, k_max, True, start, None))
        if s.code in retired:  # retired on track: FastF1 adds a last lap ending when the car stopped
            last = rows[-1]
            rows.append(
                {**{c: math.nan for c in LAP_COLUMNS}, "Time": retired[s.code], "Driver": s.code, "DriverNumber": s.number,
                 "LapNumber": float(k_max + 1), "Stint": last["Stint"], "Compound": last["Compound"],
                 "TyreLife": last["TyreLife"] + 1, "FreshTyre": True, "Team": s.team, "LapStartTime": last["Time"],
                 "TrackStatus": "1", "IsPersonalBest": False, "Deleted": None, "DeletedReason": "",
                 "FastF1Generated": True, "IsAccurate": False}
            )  # fmt: skip
    laps = _laps_frame(rows, race=True)
    pos_data, car_data = {}, {}
    gap_driver, gap = "NOR", (start + 70.0, start + 73.0)
    for s in RACE_SPECS:
        d = drives[s.code]
        pos = telemetry_pos(rng, d, t_end)
        if s.code == gap_driver:  # a 3 s hole in the position feed while the car is moving
            t = pos["SessionTime"].dt.total_seconds()
            pos = pos[(t < gap[0]) | (t > gap[1])]
            # and two all-zero filler rows, as FastF1 writes for missing samples
            filler = pos.iloc[[100, 101]].index
            pos.loc[filler, ["X", "Y", "Z"]] = 0.0
            pos.loc[filler, "Status"] = "OffTrack"
        if s.code in retired and retired[s.code] + 20 < t_end:  # the parked car's feed ends in zeros
            t = pos["SessionTime"].dt.total_seconds()
            late = t > retired[s.code] + 20
            pos.loc[late, ["X", "Y", "Z"]] = 0.0
            pos.loc[late, "Status"] = "OffTrack"
        if dup_boundaries:  # lap slices concatenated: the sample at each lap boundary twice
            t = pos["SessionTime"].dt.total_seconds().to_numpy()
            extra = [int(np.argmin(np.abs(t - tk))) for _, tk in crossings[s.code]]
            pos = pd.concat([pos, pos.iloc[extra]]).sort_values("Date", kind="stable")
        pos_data[s.number] = pos.reset_index(drop=True)
        car_data[s.number] = telemetry_car(rng, d, t_end)
    pit = {}
    for s in RACE_SPECS:
        pit[s.code] = [
            (crossing_times(drives[s.code], p * L - PIT_ENTRY), crossing_times(drives[s.code], p * L + PIT_EXIT)) for p in s.pit_laps
        ]
    finishers = sorted(finish, key=lambda c: (-finish[c][0], finish[c][1]))
    dnf = sorted(retired, key=lambda c: (-len(crossings[c]), crossings[c][-1][1] if crossings[c] else math.inf))
    classification = finishers + dnf
    status = {c: "Finished" if finish[c][0] == total_laps else f"+{total_laps - finish[c][0]} Lap" for c in finishers}
    status.update({c: "Retired" for c in dnf})
    results = _results(RACE_SPECS, classification, status, {c: len(cr) for c, cr in crossings.items()})
    track_status = pd.DataFrame(
        {
            "Time": _td([0.0, start + 40.0, start + 48.0, start + 120.0, start + 135.0]),
            "Status": ["1", "2", "1", "6", "1"],
            "Message": ["AllClear", "Yellow", "AllClear", "VSCDeployed", "AllClear"],
        }
    )
    rcm = pd.DataFrame(
        {
            "Time": [T0_DATE + pd.Timedelta(seconds=v) for v in (5.0, start - 1.0, retired.get("ALO", start) + 2.0, flag + 0.5)],
            "Category": ["Other", "Flag", "CarEvent", "Flag"],
            "Message": ["RISK OF RAIN IS 0%", "GREEN LIGHT - PIT EXIT OPEN", "CAR 14 (ALO) STOPPED", "CHEQUERED FLAG"],
            "Status": [None, None, None, None],
            "Flag": [None, "GREEN", None, "CHEQUERED"],
            "Scope": [None, "Track", None, "Track"],
            "Sector": [np.nan, np.nan, np.nan, np.nan],
            "RacingNumber": [None, None, "14", None],
            "Lap": [1.0, 1.0, 4.0, 6.0],
        }
    )
    weather = pd.DataFrame(
        {
            "Time": _td(np.arange(0.0, t_end, 60.0)),
            "AirTemp": 24.0 + np.arange(len(np.arange(0.0, t_end, 60.0))) * 0.1,
            "Humidity": 50.0,
            "Pressure": 1012.0,
            "Rainfall": False,
            "TrackTemp": 40.0,
            "WindDirection": np.int64(180),
            "WindSpeed": 1.5,
        }
    )
    corners = pd.DataFrame(
        {
            "X": [(OFFSET[0] + STRAIGHT / 2 + RADIUS) * 10, (OFFSET[0] - STRAIGHT / 2 - RADIUS) * 10],
            "Y": [(OFFSET[1] + RADIUS) * 10, (OFFSET[1] + RADIUS) * 10],
            "Number": [1, 2],
            "Letter": ["", ""],
            "Angle": [0.0, 180.0],
            "Distance": [np.nan, np.nan],
        }
    )
    frames = FastF1Frames(
        year=2023,
        round=5,
        session="R",
        session_name="Race",
        race_like=True,
        laps=laps,
        pos_data=pos_data,
        car_data=car_data,
        results=results,
        total_laps=total_laps,
        session_start_time=pd.Timedelta(seconds=start),
        t0_date=T0_DATE,
        track_status=track_status,
        race_control_messages=rcm,
        weather=weather,
        rotation=92.0,
        corners=corners,
        event_name="Test Grand Prix",
        circuit="Stadium",
        country="Nowhere",
        date="2023-05-07T19:00:00",
    )
    truth = Truth(
        drives=drives, crossings=crossings, start=start, flag=flag, finish=finish, retired=retired, pit=pit,
        classification=classification, grid_order=[s.code for s in sorted(RACE_SPECS, key=lambda s: s.grid)],
        gap_driver=gap_driver, gap=gap, scheduled_laps=total_laps,
    )  # fmt: skip
    return frames, truth


QUALI_SPECS = [
    # VER improves on his second run (laps 6-7) and ends fastest.
    Spec("VER", "1", "Red Bull Racing", "3671C6", 0, pace=44.6, runs=((40.0, 2), (200.0, 2)), factor={6: 1.03, 7: 1.03}, compounds=("SOFT",)),
    # LEC's quickest lap (lap 2) is deleted for track limits: it must never count.
    Spec("LEC", "16", "Ferrari", "E8002D", 0, pace=44.4, runs=((20.0, 2), (190.0, 2)), factor={2: 1.05}, compounds=("SOFT",)),
    # HAM goes out last and tops the times until VER's second run.
    Spec("HAM", "44", "Mercedes", "27F4D2", 0, pace=45.2, runs=((60.0, 3),), compounds=("SOFT",)),
]


def quali_frames(seed: int = 3) -> tuple[FastF1Frames, dict]:
    """Three cars doing runs from the garage: out-lap, flying laps, in-lap, garage."""
    rng = np.random.default_rng(seed)
    session_start = 10.0
    horizon = 420.0
    drives = {s.code: drive(s, horizon, session_start, s_start=PIT_BOX) for s in QUALI_SPECS}
    rows: list[dict] = []
    crossings = {}
    for s in QUALI_SPECS:
        d = drives[s.code]
        k_max = int(math.floor(d.s.max() / L))
        crossings[s.code] = [(k, crossing_times(d, k * L)) for k in range(1, k_max + 1)]
        in_laps = quali_in_laps(s.runs)
        spec_rows = []
        prev_end = math.nan
        for k in range(1, k_max + 1):
            end = crossing_times(d, k * L)
            s1 = crossing_times(d, (k - 1) * L + L / 3)
            s2 = crossing_times(d, (k - 1) * L + 2 * L / 3)
            out_lap = k == 1 or (k - 1) in in_laps
            pit_out = crossing_times(d, (k - 1) * L + PIT_EXIT) if out_lap else math.nan
            pit_in = crossing_times(d, k * L - PIT_ENTRY) if k in in_laps else math.nan
            start = prev_end if math.isfinite(prev_end) else pit_out
            flying = not out_lap and k not in in_laps
            spec_rows.append(
                {
                    "Time": end, "Driver": s.code, "DriverNumber": s.number,
                    "LapTime": end - start if flying else math.nan, "LapNumber": float(k), "Stint": 1.0,
                    "PitOutTime": pit_out, "PitInTime": pit_in, "Sector1Time": s1 - start if flying else math.nan,
                    "Sector2Time": s2 - s1, "Sector3Time": end - s2, "Sector1SessionTime": s1,
                    "Sector2SessionTime": s2, "Sector3SessionTime": end, "SpeedI1": 250.0, "SpeedI2": 260.0,
                    "SpeedFL": 270.0, "SpeedST": 300.0, "IsPersonalBest": False, "Compound": "SOFT",
                    "TyreLife": float(k), "FreshTyre": True, "Team": s.team, "LapStartTime": start,
                    "TrackStatus": "1", "Position": math.nan, "Deleted": False, "DeletedReason": "",
                    "FastF1Generated": False, "IsAccurate": flying,
                }
            )  # fmt: skip
            prev_end = end
        rows.extend(spec_rows)
    laps = _laps_frame(rows, race=False)
    # LEC's fastest lap is deleted for track limits
    best_i = laps[(laps["Driver"] == "LEC") & (laps["LapNumber"] == 2)].index[0]
    laps.loc[best_i, "Deleted"] = True
    laps.loc[best_i, "DeletedReason"] = "TRACK LIMITS AT TURN 1"
    t_end = max(cr[-1][1] for cr in crossings.values()) + 40.0
    pos_data = {s.number: telemetry_pos(rng, drives[s.code], t_end) for s in QUALI_SPECS}
    car_data = {s.number: telemetry_car(rng, drives[s.code], t_end) for s in QUALI_SPECS}
    results = _results(QUALI_SPECS, [s.code for s in QUALI_SPECS], {s.code: "" for s in QUALI_SPECS}, {})
    frames = FastF1Frames(
        year=2023,
        round=5,
        session="Q",
        session_name="Qualifying",
        race_like=False,
        laps=laps,
        pos_data=pos_data,
        car_data=car_data,
        results=results,
        session_start_time=pd.Timedelta(seconds=session_start),
        t0_date=T0_DATE,
        event_name="Test Grand Prix",
    )
    return frames, {"drives": drives, "crossings": crossings, "session_start": session_start, "laps": laps}
