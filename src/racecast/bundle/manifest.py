"""Everything read from a bundle's manifest is checked here, once, before anything uses it.

A manifest is JSON written by racecast, but the data directory is outside the
server's control (a half-copied bundle, a hand edit, another version's writer),
so :func:`validate_manifest` checks each field the reader, the server and the
viewer rely on: its type, its range, its shape. A manifest that fails gets one
clear :class:`~racecast.bundle.format.BundleError` naming the field; code after
it can index the manifest without guarding every access. One function on
purpose: a new format version extends it here.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from ..race import MAX_DRIVERS
from .format import FORMAT_NAME, FORMAT_VERSION, BundleError

__all__ = ["validate_manifest"]
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}\Z")
_MAX_LIST = 10_000_000  # geometry/weather points: far above any real track or session


def _fail(where: str, field: str, want: str, got: Any) -> BundleError:
    shown = type(got).__name__ if isinstance(got, (dict, list)) else repr(got)[:60]
    return BundleError(f"{where}: manifest field {field!r} must be {want}, got {shown}")


def _num(where: str, field: str, v: Any, *, lo: float = -math.inf, hi: float = math.inf, integer: bool = False, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _fail(where, field, "an integer" if integer else "a number", v)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        rng = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi != math.inf else "")
        raise _fail(where, field, f"a finite number {rng}", v)
    return v


def _str(where: str, field: str, v: Any, max_len: int = 10_000) -> str:
    if not isinstance(v, str) or len(v) > max_len:
        raise _fail(where, field, f"a string of at most {max_len} characters", v)
    return v


def _dict(where: str, field: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(where, field, "an object", v)
    return v


def _list(where: str, field: str, v: Any, item: Callable[[str, Any], Any] | None = None, max_len: int = _MAX_LIST) -> list[Any]:
    if not isinstance(v, list) or len(v) > max_len:
        raise _fail(where, field, f"a list of at most {max_len} items", v)
    if item is not None:
        for i, x in enumerate(v):
            item(f"{field}[{i}]", x)
    return v


def _numbers(where: str, field: str, v: Any) -> None:
    if not isinstance(v, list) or len(v) > _MAX_LIST:
        raise _fail(where, field, "a list of numbers", v)
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise _fail(where, f"{field}[{i}]", "a finite number", x)


def _driver(where: str, field: str, d: Any) -> None:
    d = _dict(where, field, d)
    code = _str(where, f"{field}.code", d.get("code"), 16)
    if not code:
        raise _fail(where, f"{field}.code", "a non-empty string", code)
    _num(where, f"{field}.number", d.get("number"), lo=0, hi=999_999, integer=True)
    _str(where, f"{field}.name", d.get("name"), 200)
    _str(where, f"{field}.team", d.get("team"), 200)
    color = d.get("color")
    if not isinstance(color, str) or not _COLOR.match(color):
        raise _fail(where, f"{field}.color", 'a colour "#RRGGBB"', color)


def _geometry(where: str, g: Any) -> None:
    g = _dict(where, "geometry", g)
    for k in ("centerline_x", "centerline_y"):
        if k not in g:
            raise BundleError(f"{where}: manifest field 'geometry.{k}' is missing")
    for k in ("centerline_x", "centerline_y", "inner_x", "inner_y", "outer_x", "outer_y", "pit_lane_x", "pit_lane_y", "sectors", "start_finish"):
        if k in g:
            _numbers(where, f"geometry.{k}", g[k])
    if len(g["centerline_x"]) != len(g["centerline_y"]):
        raise BundleError(f"{where}: manifest field 'geometry': centerline_x and centerline_y differ in length")
    _num(where, "geometry.length", g.get("length"), lo=0)
    for k in ("x_min", "x_max", "y_min", "y_max", "rotation"):
        if k in g:
            _num(where, f"geometry.{k}", g[k])
    for i, z in enumerate(_list(where, "geometry.drs_zones", g.get("drs_zones", []), max_len=1000)):
        _numbers(where, f"geometry.drs_zones[{i}]", z)
        if len(z) != 2:
            raise _fail(where, f"geometry.drs_zones[{i}]", "a [start, end] pair", z)


def _stream(where: str, field: str, s: Any, files: dict[str, Any]) -> None:
    s = _dict(where, field, s)
    _num(where, f"{field}.count", s.get("count"), lo=0, integer=True)
    _num(where, f"{field}.frames_per_item", s.get("frames_per_item", 1), lo=1, hi=1_000_000, integer=True)
    _str(where, f"{field}.media_type", s.get("media_type", ""), 200)
    if "derived_from" in s:  # format 3: built from another stream's blocks, no files of its own
        _str(where, f"{field}.derived_from", s["derived_from"], 200)
        return
    for k in ("data", "index"):
        name = _str(where, f"{field}.{k}", s.get(k), 500)
        if name not in files:
            raise BundleError(f"{where}: manifest field '{field}.{k}' names {name!r}, a file the manifest does not list")


def _array(where: str, field: str, a: Any, files: dict[str, Any]) -> None:
    a = _dict(where, field, a)
    name = _str(where, f"{field}.file", a.get("file"), 500)
    if name not in files:
        raise BundleError(f"{where}: manifest field '{field}.file' names {name!r}, a file the manifest does not list")
    _str(where, f"{field}.dtype", a.get("dtype"), 20)
    shape = _list(where, f"{field}.shape", a.get("shape"), max_len=4)
    for i, n in enumerate(shape):
        _num(where, f"{field}.shape[{i}]", n, lo=0, integer=True)


def validate_manifest(m: Any, where: str = "bundle") -> dict[str, Any]:
    """Return ``m`` if it is a manifest this racecast can use, else raise :class:`BundleError`.

    ``where`` (the bundle's path or id) prefixes the message. Checks the format and
    version, then every field readers index: ids and titles, ``fps`` > 0,
    ``n_frames`` >= 1, drivers (at most :data:`MAX_DRIVERS`, colours ``#RRGGBB``),
    geometry, files/arrays/streams, events, track status, messages, pit stops, weather.
    """
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise BundleError(f"{where}: manifest.json is not a racecast bundle manifest")
    v = m.get("format_version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise BundleError(f"{where}: bundle has no format version")
    if v > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {v} is newer than this racecast supports ({FORMAT_VERSION}); upgrade racecast")
    if v < 1:
        raise BundleError(f"{where}: bundle format version {v} is not valid")
    for k in ("id", "title", "fps", "n_frames", "drivers", "files", "arrays", "streams", "geometry"):
        if k not in m:
            raise BundleError(f"{where}: manifest field {k!r} is missing")
    _str(where, "id", m["id"], 64)
    _str(where, "title", m["title"], 500)
    _num(where, "fps", m["fps"], lo=0, hi=1000, lo_open=True)
    _num(where, "n_frames", m["n_frames"], lo=1, hi=1 << 40, integer=True)
    for k in ("t0", "duration"):
        if k in m:
            _num(where, k, m[k])
    for k in ("total_laps", "laps_completed"):
        if k in m:
            _num(where, k, m[k], lo=0, hi=100_000, integer=True)
    drivers = _list(where, "drivers", m["drivers"], max_len=MAX_DRIVERS)
    for i, d in enumerate(drivers):
        _driver(where, f"drivers[{i}]", d)
    if len({d["code"] for d in drivers}) != len(drivers):
        raise BundleError(f"{where}: manifest field 'drivers' has a driver code twice")
    files = _dict(where, "files", m["files"])
    for name, size in files.items():
        _num(where, f"files[{name[:60]!r}]", size, lo=0, integer=True)
    for name, a in _dict(where, "arrays", m["arrays"]).items():
        _array(where, f"arrays.{name}", a, files)
    streams = _dict(where, "streams", m["streams"])
    for name, s in streams.items():
        _stream(where, f"streams.{name}", s, files)
        if "derived_from" in s and s["derived_from"] not in streams:
            raise BundleError(f"{where}: manifest field 'streams.{name}.derived_from' names a stream the manifest does not have")
    if "channels" in m:
        _dict(where, "channels", m["channels"])
    _geometry(where, m["geometry"])
    if "event" in m:
        _dict(where, "event", m["event"])
    for i, p in enumerate(_list(where, "track_status", m.get("track_status", []), max_len=100_000)):
        p = _dict(where, f"track_status[{i}]", p)
        _num(where, f"track_status[{i}].start", p.get("start"))
        _num(where, f"track_status[{i}].end", p.get("end"))
        _str(where, f"track_status[{i}].status", p.get("status"), 40)
    for i, msg in enumerate(_list(where, "messages", m.get("messages", []), max_len=100_000)):
        msg = _dict(where, f"messages[{i}]", msg)
        _num(where, f"messages[{i}].t", msg.get("t"))
        _str(where, f"messages[{i}].message", msg.get("message"), 10_000)
    for i, p in enumerate(_list(where, "pit_stops", m.get("pit_stops", []), max_len=100_000)):
        p = _dict(where, f"pit_stops[{i}]", p)
        _str(where, f"pit_stops[{i}].driver", p.get("driver"), 16)
    for k, series in _dict(where, "weather", m.get("weather", {})).items():
        _numbers(where, f"weather.{k}", series)
    if "content_hash" in m and m["content_hash"] is not None:
        _str(where, "content_hash", m["content_hash"], 200)
    return m
