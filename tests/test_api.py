"""REST endpoints, health, metrics and the static viewer, over a real uvicorn server."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

import msgpack
import pytest

from racecast.bundle import open_bundle
from racecast.server import create_app
from racecast.server.app import MAX_FRAMES_PER_REQUEST
from tests.serverutil import Running, running, write_race


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_race(root, "race", 500, n_drivers=4)
    write_race(root, "2023_5_R", 100, n_drivers=3)
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[Running]:
    with running(create_app(data)) as r:
        yield r


def test_list_replays(srv: Running) -> None:
    with srv.http() as c:
        rows = c.get("/api/replays").json()
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"race", "2023_5_R", "broken"}
    race = by_id["race"]
    assert race["frames"] == 500 and race["fps"] == 25 and race["drivers"] == 4 and race["laps"] == 3
    assert race["duration"] == pytest.approx(499 / 25) and race["title"] == "Tiny test race"
    assert "error" in by_id["broken"]


def test_replay_metadata(srv: Running, data: Path) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/race")
    assert r.status_code == 200
    md = r.json()
    assert md["year"] == 2026 and md["round"] == 0 and md["session_type"] == "R"
    assert md["total_frames"] == 500 and md["fps"] == 25 and md["total_laps"] == 3
    assert md["driver_colors"]["D00"] == [0x36, 0x71, 0xC6]
    assert md["driver_numbers"] == {"D00": 1, "D01": 2, "D02": 3, "D03": 4}
    assert md["driver_teams"]["D03"] == "Team 1"
    g = md["track_geometry"]
    for k in ("centerline_x", "centerline_y", "inner_x", "inner_y", "outer_x", "outer_y", "x_min", "x_max", "y_min", "y_max"):
        assert k in g
    assert len(g["sector"]) == len(g["centerline_x"]) and set(g["sector"]) == {1, 2, 3}
    assert g["sector"] == sorted(g["sector"])
    assert md["track_status"][0]["status"] == "GREEN"  # racecast's periods
    assert md["track_statuses"][0] == {"status": "1", "start_time": md["track_status"][0]["start"], "end_time": md["track_status"][0]["end"]}
    assert md["geometry"]["centerline_x"][5] * 10 == pytest.approx(g["centerline_x"][5], abs=0.05)  # the seed's 1/10 m
    assert md["race_control_messages"][0]["message"].startswith("GREEN LIGHT")
    assert md["pit_stops"][0]["driver"] == "D03"
    assert md["streams"]["msgpack"]["count"] == 500
    assert md["content_hash"] == open_bundle(data / "race").manifest["content_hash"]


def test_metadata_etag_cache_control_and_304(srv: Running) -> None:
    with srv.http() as c:
        plain = c.get("/api/replays/race", headers={"Accept-Encoding": "identity"})
        etag = plain.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert "max-age" in plain.headers["cache-control"]
        again = c.get("/api/replays/race", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        # Weak comparison and lists, as RFC 9110 says for If-None-Match.
        assert c.get("/api/replays/race", headers={"If-None-Match": f'"nope", W/{etag}'}).status_code == 304
        assert c.get("/api/replays/race", headers={"If-None-Match": '"nope"'}).status_code == 200
        gz = c.get("/api/replays/race", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip" and gz.headers["etag"] != etag
        assert gz.json() == plain.json()
        assert int(gz.headers["content-length"]) < len(plain.content)
        assert c.get("/api/replays/race", headers={"If-None-Match": gz.headers["etag"]}).status_code == 304


def test_metadata_errors(srv: Running) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/nope")
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        r = c.get("/api/replays/..hidden")
        assert r.status_code == 400 and "invalid replay id" in r.json()["detail"]
        assert c.get("/api/replays/..%2F..%2Fetc").status_code == 404  # never a route
        r = c.get("/api/replays/broken")
        assert r.status_code == 500 and "cannot be opened" in r.json()["detail"]


def test_frames_are_the_pre_encoded_payloads(srv: Running, data: Path) -> None:
    b = open_bundle(data / "race")
    with srv.http() as c:
        r = c.get("/api/replays/race/frames", params={"start": 10, "count": 20})
    assert r.status_code == 200 and r.headers["content-type"] == "application/msgpack"
    assert r.headers["x-racecast-start"] == "10" and r.headers["x-racecast-count"] == "20"
    frames = msgpack.unpackb(r.content, raw=False)
    assert [f["frame_index"] for f in frames] == list(range(10, 30))
    # Byte-identical to the bundle: no re-encoding.
    assert r.content[3:] == bytes(b.streams["msgpack"].span(10, 30))
    assert msgpack.packb(frames[0], use_single_float=True) == bytes(b.frame(10))


@pytest.mark.parametrize("count, header", [(1, b"\x91"), (15, b"\x9f"), (16, b"\xdc\x00\x10"), (MAX_FRAMES_PER_REQUEST, b"\xdc\x01\xf4")])
def test_frames_array_headers(srv: Running, data: Path, count: int, header: bytes) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/race/frames", params={"start": 0, "count": count})
    n = min(count, 500)
    assert r.content == header + bytes(open_bundle(data / "race").streams["msgpack"].span(0, n))
    assert len(msgpack.unpackb(r.content)) == n


def test_frames_clamped_at_the_end_and_cached(srv: Running) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/race/frames", params={"start": 490, "count": 100})
        assert [f["frame_index"] for f in msgpack.unpackb(r.content)] == list(range(490, 500))
        assert r.headers["x-racecast-count"] == "10" and r.headers["x-racecast-total-frames"] == "500"
        assert c.get("/api/replays/race/frames", params={"start": 490, "count": 100}, headers={"If-None-Match": r.headers["etag"]}).status_code == 304


@pytest.mark.parametrize(
    "params, status, fragment",
    [
        ({"start": 500}, 400, "outside the replay"),
        ({"start": -1}, 400, "outside the replay"),  # as docs/protocol.md says: any start outside it is 400
        ({"count": 0}, 422, "count"),
        ({"count": MAX_FRAMES_PER_REQUEST + 1}, 422, "count"),
        ({"start": "x"}, 422, "start"),
        ({"encoding": "zip"}, 400, "zip"),
    ],
)
def test_frames_bad_requests(srv: Running, params: dict, status: int, fragment: str) -> None:
    with srv.http() as c:
        r = c.get("/api/replays/race/frames", params=params)
    assert r.status_code == status and fragment in json.dumps(r.json())


def test_frames_unknown_replay(srv: Running) -> None:
    with srv.http() as c:
        assert c.get("/api/replays/nope/frames").status_code == 404


def test_sessions(srv: Running) -> None:
    with srv.http() as c:
        r = c.post("/api/sessions", json={"year": 2023, "round_num": 5, "session_type": "R", "refresh": False})
        assert r.status_code == 200 and r.json() == {"session_id": "2023_5_R", "loading": False}
        s = c.get("/api/sessions/2023_5_R").json()
        assert s["session_id"] == "2023_5_R" and s["loading"] is False and s["metadata"]["total_frames"] == 100
        assert c.get("/api/sessions/2024_1_Q").status_code == 404  # (ingesting: tests/test_server_ingest.py)


@pytest.mark.parametrize(
    "body",
    [
        {"year": "twenty", "round_num": 5, "session_type": "R"},
        {"year": 2023, "session_type": "R"},
        {"year": 2023, "round_num": 5, "session_type": "../x"},
        {"year": 2023, "round_num": -1, "session_type": "R"},
        {"year": 1800, "round_num": 1, "session_type": "R"},
        {"year": 2023, "round_num": 1, "session_type": ""},
    ],
)
def test_session_bad_requests(srv: Running, body: dict) -> None:
    with srv.http() as c:
        r = c.post("/api/sessions", json=body)
    assert r.status_code == 422 and r.json()["detail"]


def test_health_and_metrics(srv: Running) -> None:
    with srv.http() as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and "connections" in h and "playing" in h
        m = c.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    for name in (
        "racecast_connections_open",
        "racecast_viewers_playing",
        "racecast_frames_sent_total",
        "racecast_frames_skipped_total",
        "racecast_bytes_sent_total",
        "racecast_tick_duration_seconds_bucket",
        "racecast_tick_lateness_seconds_bucket",
        "racecast_send_latency_seconds_bucket",
        "racecast_replays_open",
        'racecast_errors_total{kind="origin"}',
    ):
        assert name in m.text


def test_placeholder_page_without_viewer(data: Path, tmp_path: Path) -> None:
    with running(create_app(data, viewer_dir=tmp_path / "none")) as srv, srv.http() as c:
        r = c.get("/")
        assert r.status_code == 200 and "/api/replays" in r.text


def test_static_viewer_is_served_and_api_routes_win(data: Path, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>viewer</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    with running(create_app(data, viewer_dir=tmp_path)) as srv, srv.http() as c:
        assert "viewer" in c.get("/").text
        assert "viewer" in c.get("/?replay=race").text
        assert c.get("/app.js").text == "console.log(1)"
        assert isinstance(c.get("/api/replays").json(), list)
        assert c.get("/healthz").json()["status"] == "ok"
        assert c.get("/nothing.js").status_code == 404


def test_many_apps_in_one_process(data: Path) -> None:
    # Each app has its own metrics registry: building several must not collide.
    apps = [create_app(data) for _ in range(3)]
    assert len({id(a.state.racecast.metrics.registry) for a in apps}) == 3
