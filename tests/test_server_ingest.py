"""Server-side ingest (POST /api/sessions for a session not on disk), over a real uvicorn and real WebSockets.

The ingest runs in a real child process with loaders from tests/ingest_loaders.py
(FastF1-shaped data, no network); they count their calls in a file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from racecast.bundle import DataDir
from racecast.server import create_app
from racecast.server.ingest import FAILED, IngestManager, IngestRequest
from racecast.sources.fastf1 import MISSING_FASTF1
from tests.serverutil import DIRECT, PLAIN, Running, ViewerClient, frames_only, running, write_race

SID = "2023_5_R"
BODY = {"year": 2023, "round_num": 5, "session_type": "R", "refresh": False}
LOADERS = "tests.ingest_loaders"


@pytest.fixture
def ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory the test loaders talk through (inherited by the ingest child)."""
    d = tmp_path / "ctl"
    d.mkdir()
    monkeypatch.setenv("RACECAST_TEST_INGEST", str(d))
    return d


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def calls(ctl: Path) -> list[str]:
    p = ctl / "calls"
    return p.read_text().splitlines() if p.exists() else []


def app(data: Path, loader: str, **kw: Any) -> Any:
    return create_app(data, ingest_loader=f"{LOADERS}:{loader}", **kw)


def seed_failure(srv: Running, sid: str) -> tuple[dict, int]:
    """What the seed's client hears on the WebSocket after a failed ``POST /api/sessions``:
    the ``loading_error`` message and the close code."""

    async def go() -> tuple[dict, int]:
        v = await ViewerClient.open(srv.ws_url(sid, ""))
        err = await v.until("loading_error")
        try:
            await v.next()
        except websockets.ConnectionClosed as e:
            return err, e.rcvd.code if e.rcvd else -1
        raise AssertionError("the connection stayed open after loading_error")

    return asyncio.run(go())


def assert_seed_failure(srv: Running, r: httpx.Response, sid: str, fragment: str) -> None:
    """The seed's contract for a session that cannot be had: 200 with the id, the reason on the socket."""
    assert r.status_code == 200, r.text
    assert r.json()["session_id"] == sid and r.json()["loading"] is False and fragment in r.json()["error"]
    err, code = seed_failure(srv, sid)
    assert fragment in err["message"] and code == 4404


def wait_for(pred: Any, what: str, timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def session(srv: Running, sid: str = SID) -> dict:
    with srv.http() as c:
        return c.get(f"/api/sessions/{sid}").json()


def leftovers(data: Path) -> list[str]:
    """Anything in the data dir but the lock files."""
    return sorted(p.name for p in data.iterdir() if not p.name.startswith(".ingest-"))


async def progress_seen(v: ViewerClient, n: int = 1) -> None:
    while sum(m.get("type") == "loading_progress" for m in v.texts) < n:
        await v.next(10)


def progress_values(v: ViewerClient) -> list[float]:
    return [m["progress"] for m in v.texts if m.get("type") == "loading_progress"]


def close_code(exc: BaseException) -> int:
    assert isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None
    return exc.rcvd.code


@pytest.mark.parametrize("ws", [DIRECT, PLAIN], ids=["direct", "asgi"])
def test_one_ingest_for_many_clients_progress_then_complete_then_playback(data: Path, ctl: Path, ws: str) -> None:
    with running(app(data, "tiny_race"), ws=ws) as srv:

        async def go() -> None:
            async with httpx.AsyncClient(base_url=srv.base, trust_env=False, timeout=10) as c:
                r1, r2 = await asyncio.gather(c.post("/api/sessions", json=BODY), c.post("/api/sessions", json=BODY))
            for r in (r1, r2):
                assert r.status_code == 200, r.text
                assert r.json()["session_id"] == SID and r.json()["loading"] is True
            viewers = [await ViewerClient.open(srv.ws_url(SID)) for _ in range(4)]
            for v in viewers:
                await progress_seen(v)
            st = session(srv)
            assert st["loading"] is True and st["status"] in ("queued", "loading") and 0 <= st["progress"] < 1
            (ctl / "go").touch()
            for v in viewers:
                lc = await v.until("loading_complete", 30)
                assert lc["frames"] > 0 and lc["metadata"]["id"] == SID and len(lc["metadata"]["drivers"]) == 7
                st = await v.until("state")
                assert await v.next() == st["frame"] == 0
                p = progress_values(v)
                assert len(p) >= 1 and p == sorted(p) and all(0 <= x <= 1 for x in p)
                assert not any(m.get("type") == "loading_error" for m in v.texts)
            await viewers[0].command(action="play", speed=4)
            got = frames_only(await viewers[0].collect(1.0))
            assert len(got) >= 5 and got == sorted(got)
            for v in viewers:
                await v.close()

        asyncio.run(go())
        assert len(calls(ctl)) == 1, calls(ctl)
        assert srv.app.state.racecast.ingest.ingests_started == 1
        assert srv.metric('racecast_ingests_total{outcome="started"}') == srv.metric('racecast_ingests_total{outcome="done"}') == 1
        assert srv.metric("racecast_ingests_active") == 0
        st = session(srv)
        assert st["loading"] is False and st["metadata"]["id"] == SID and st["metadata"]["session_type"] == "R"
        with srv.http() as c:
            r = c.post("/api/sessions", json=BODY)  # on disk now: no new ingest
            assert r.json() == {"session_id": SID, "loading": False}
            assert SID in [x["id"] for x in c.get("/api/replays").json()]
    assert len(calls(ctl)) == 1
    assert DataDir(data).ids() == [SID]


def test_two_servers_sharing_a_data_dir_ingest_once(data: Path, ctl: Path) -> None:
    with running(app(data, "tiny_race")) as a, running(app(data, "tiny_race")) as b:

        async def go() -> None:
            for s in (a, b):
                with s.http() as c:
                    assert c.post("/api/sessions", json=BODY).json()["loading"] is True
            va, vb = await ViewerClient.open(a.ws_url(SID)), await ViewerClient.open(b.ws_url(SID))
            await progress_seen(va)
            await progress_seen(vb)
            (ctl / "go").touch()
            for v in (va, vb):
                assert (await v.until("loading_complete", 30))["frames"] > 0
                await v.close()

        asyncio.run(go())
    assert len(calls(ctl)) == 1, calls(ctl)


def test_loader_failure_reaches_waiting_clients_and_get_and_leaves_nothing(data: Path, ctl: Path) -> None:
    with running(app(data, "fails")) as srv:

        async def go() -> None:
            with srv.http() as c:
                assert c.post("/api/sessions", json=BODY).json()["loading"] is True
            v = await ViewerClient.open(srv.ws_url(SID))
            await progress_seen(v)
            (ctl / "go").touch()
            err = await v.until("loading_error", 30)
            assert "FastF1 cannot find 2023 event 5 session R: test failure" in err["message"]
            with pytest.raises(websockets.ConnectionClosed) as e:
                await v.next()
            assert close_code(e.value) == 4500
            # a client arriving after the failure hears about it too
            late = await ViewerClient.open(srv.ws_url(SID))
            assert "test failure" in (await late.until("loading_error"))["message"]
            with pytest.raises(websockets.ConnectionClosed) as e:
                await late.next()
            assert close_code(e.value) == 4500

        asyncio.run(go())
        st = session(srv)
        assert st["loading"] is False and st["status"] == "failed" and "test failure" in st["error"]
        assert leftovers(data) == []
        assert srv.metric('racecast_ingests_total{outcome="failed"}') == 1
        assert srv.metric('racecast_errors_total{kind="ingest_failed"}') == 2
        with srv.http() as c:  # asking again retries
            assert c.post("/api/sessions", json=BODY).json()["loading"] is True
        wait_for(lambda: session(srv)["status"] == "failed", "the retry to fail")
    assert len(calls(ctl)) == 2


def test_killed_child_fails_the_job_with_a_clear_error(data: Path, ctl: Path) -> None:
    with running(app(data, "hangs")) as srv:
        mgr = srv.app.state.racecast.ingest

        async def go() -> None:
            with srv.http() as c:
                assert c.post("/api/sessions", json=BODY).json()["loading"] is True
            v = await ViewerClient.open(srv.ws_url(SID))
            leaver = await ViewerClient.open(srv.ws_url(SID))
            await progress_seen(v)
            await progress_seen(leaver)
            await leaver.close()  # a viewer leaving while it waits is let go at once

            def connections() -> int:
                with srv.http() as c:
                    return c.get("/healthz").json()["connections"]

            await asyncio.to_thread(wait_for, lambda: connections() == 1, "the leaver to be dropped")
            pid = await asyncio.to_thread(wait_for, lambda: calls(ctl) and mgr.job(SID).pid, "the child")
            os.kill(pid, signal.SIGKILL)
            err = await v.until("loading_error", 30)
            assert "killed by signal SIGKILL" in err["message"] and SID in err["message"]
            with pytest.raises(websockets.ConnectionClosed) as e:
                await v.next()
            assert close_code(e.value) == 4500

        asyncio.run(go())
        st = session(srv)
        assert st["status"] == "failed" and "no replay was written" in st["error"]
        assert leftovers(data) == []


def test_an_ingest_over_its_time_limit_is_stopped(data: Path, ctl: Path) -> None:
    with running(app(data, "hangs", ingest_timeout=1.5)) as srv:
        with srv.http() as c:
            assert c.post("/api/sessions", json=BODY).json()["loading"] is True
        st = wait_for(lambda: (s := session(srv))["status"] == "failed" and s, "the timeout")
        assert "took longer than 1.5 s" in st["error"]
        pid = srv.app.state.racecast.ingest.job(SID).pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert leftovers(data) == []


def test_queue_limit_is_reported_over_the_socket_and_shutdown_stops_the_children(data: Path, ctl: Path) -> None:
    with running(app(data, "hangs", max_queued_ingests=1)) as srv:
        with srv.http() as c:
            a = c.post("/api/sessions", json={**BODY, "round_num": 1})
            b = c.post("/api/sessions", json={**BODY, "round_num": 2})
            assert a.status_code == b.status_code == 200
            assert c.post("/api/sessions", json={**BODY, "round_num": 2}).status_code == 200  # joining is free
            full = c.post("/api/sessions", json={**BODY, "round_num": 3})
            assert full.headers["retry-after"] == "60"
            assert_seed_failure(srv, full, "2023_3_R", "already ingesting 1 session(s) with 1 waiting")
            assert c.get("/api/sessions/2023_3_R").json()["status"] == "failed"
        assert session(srv, "2023_2_R")["status"] == "queued"
        assert srv.metric('racecast_ingests_total{outcome="busy"}') == 1 and srv.metric("racecast_ingests_active") == 2
        pid = wait_for(lambda: calls(ctl) and srv.app.state.racecast.ingest.job("2023_1_R").pid, "the first child")
    with pytest.raises(ProcessLookupError):  # the server's shutdown killed it
        os.kill(pid, 0)
    assert len(calls(ctl)) == 1


def test_progress_is_coalesced_not_queued(data: Path, ctl: Path) -> None:
    with running(app(data, "flood")) as srv:

        async def go() -> ViewerClient:
            with srv.http() as c:
                c.post("/api/sessions", json=BODY)
            v = await ViewerClient.open(srv.ws_url(SID))
            await v.until("loading_complete", 30)
            await v.close()
            return v

        v = asyncio.run(go())
    p = progress_values(v)
    assert 1 <= len(p) <= 100, len(p)  # the loader reported 20,000 times
    assert p == sorted(p)


def test_refresh_reingests_an_existing_session(data: Path, ctl: Path) -> None:
    write_race(data, SID, 100)
    with running(app(data, "tiny_race_now")) as srv:
        assert session(srv)["metadata"]["total_frames"] == 100
        with srv.http() as c:
            assert c.post("/api/sessions", json=BODY).json() == {"session_id": SID, "loading": False}
            r = c.post("/api/sessions", json={**BODY, "refresh": True})
            assert r.status_code == 200 and r.json()["loading"] is True
        st = wait_for(lambda: (s := session(srv))["loading"] is False and s, "the refresh")
        assert st["metadata"]["total_frames"] != 100 and len(st["metadata"]["drivers"]) == 7
    assert len(calls(ctl)) == 1
    assert leftovers(data) == [SID]


def test_missing_fastf1_is_a_clear_error(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastf1", None)  # not importable, whether installed or not
    with running(create_app(data)) as srv, srv.http() as c:
        r = c.post("/api/sessions", json=BODY)
        assert_seed_failure(srv, r, SID, MISSING_FASTF1)
    assert leftovers(data) == []


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({**BODY, "session_type": "FP4"}, "session_type must be one of R, S, Q, SQ, SS, FP1, FP2, FP3"),
        ({**BODY, "year": 2099}, "2099 is in the future"),
        ({**BODY, "year": 2017}, "2017 is too early"),
        ({**BODY, "round_num": 0}, "round_num must be 1 or more"),
    ],
)
def test_sessions_that_cannot_be_ingested_are_reported_over_the_socket(data: Path, ctl: Path, body: dict, fragment: str) -> None:
    with running(app(data, "tiny_race_now")) as srv, srv.http() as c:
        r = c.post("/api/sessions", json=body)
        sid = f"{body['year']}_{body['round_num']}_{body['session_type']}"
        assert_seed_failure(srv, r, sid, fragment)
    assert calls(ctl) == []


@pytest.mark.parametrize("body", [{**BODY, "year": 1900}, {**BODY, "year": "x"}, {**BODY, "session_type": "../x"}, {"year": 2023}])
def test_malformed_session_requests_get_422(data: Path, ctl: Path, body: dict) -> None:
    with running(app(data, "tiny_race_now")) as srv, srv.http() as c:
        r = c.post("/api/sessions", json=body)
    assert r.status_code == 422 and r.json()["detail"]
    assert calls(ctl) == []


def test_oversized_bodies_get_413(data: Path, ctl: Path) -> None:
    big = {**BODY, "pad": "x" * 5000}
    with running(app(data, "tiny_race_now")) as srv, srv.http() as c:
        r = c.post("/api/sessions", json=big)
        assert r.status_code == 413 and "over 4096 bytes" in r.json()["detail"]
        chunked = c.post("/api/sessions", content=iter([b'{"year": 2023, "pad": "', b"x" * 5000, b'"}']),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        assert c.post("/api/sessions", json={**BODY, "session_type": "q"}).json()["session_id"] == "2023_5_Q"
        assert srv.app.state.racecast.ingest.job("2023_5_Q").request.session == "Q"  # codes are case-insensitive


def test_ingest_disabled_is_reported_over_the_socket(data: Path, ctl: Path) -> None:
    with running(app(data, "tiny_race_now", ingest=False)) as srv, srv.http() as c:
        assert c.get(f"/api/sessions/{SID}").status_code == 404
        r = c.post("/api/sessions", json=BODY)
        assert_seed_failure(srv, r, SID, "server-side ingest is disabled")
        assert "server-side ingest is disabled" in c.get(f"/api/sessions/{SID}").json()["error"]
    assert calls(ctl) == [] and leftovers(data) == []


def test_failures_remembered_are_bounded(data: Path, ctl: Path) -> None:
    (ctl / "go").touch()

    async def go() -> IngestManager:
        mgr = IngestManager(DataDir(data), f"{LOADERS}:fails", max_failures=2)
        jobs = [mgr.submit(IngestRequest(f"2023_{k}_R", 2023, k, "R")) for k in (1, 2, 3)]
        await asyncio.gather(*(j.task for j in jobs if j.task))
        assert all(j.state == FAILED for j in jobs)
        return mgr

    mgr = asyncio.run(go())
    assert mgr.job("2023_1_R") is None  # the oldest failure is forgotten
    assert "test failure" in mgr.job("2023_3_R").error and mgr.job("2023_2_R") is not None


def test_a_bundle_written_meanwhile_by_someone_else_is_kept(data: Path, ctl: Path) -> None:
    (ctl / "data_dir").write_text(str(data))
    with running(app(data, "written_meanwhile")) as srv:
        with srv.http() as c:
            assert c.post("/api/sessions", json=BODY).json()["loading"] is True
        st = wait_for(lambda: (s := session(srv))["loading"] is False and s, "the job to end")
        assert "error" not in st and st["metadata"]["total_frames"] == 50
        assert srv.metric('racecast_ingests_total{outcome="done"}') == 1
        assert srv.metric('racecast_ingests_total{outcome="failed"}') == 0
    assert leftovers(data) == [SID]


def test_the_default_fastf1_loader_offline_fails_with_fastf1s_reason(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real loader path, end to end in the child, with a stand-in ``fastf1`` package that is offline."""
    pkg = tmp_path / "fake_site" / "fastf1"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "levels = []\n"
        "def set_log_level(level):\n    levels.append(level)\n"
        "def get_session(year, event, session):\n    raise ValueError('Failed to load any schedule data.')\n"
    )
    monkeypatch.syspath_prepend(str(pkg.parent))  # the child imports what the server can
    with running(create_app(data)) as srv:
        with srv.http() as c:
            assert c.post("/api/sessions", json=BODY).json()["loading"] is True
        st = wait_for(lambda: (s := session(srv))["status"] == "failed" and s, "the ingest to fail")
    assert "FastF1 cannot find 2023 event 5 session R: Failed to load any schedule data." in st["error"]
    assert "network" in st["error"] and leftovers(data) == []


def test_the_seed_client_follows_an_ingest_in_percent_and_sees_only_its_messages(data: Path, ctl: Path) -> None:
    """useReplayWebSocket.ts shows ``progress`` as a percentage and knows only the loading_* messages."""
    with running(app(data, "flood")) as srv:

        async def go() -> ViewerClient:
            with srv.http() as c:
                assert c.post("/api/sessions", json=BODY).json()["loading"] is True
            v = await ViewerClient.open(srv.ws_url(SID, ""))  # the seed's URL: no query
            await v.until("loading_complete", 30)
            assert isinstance(await v.next(), int)  # then frame 0, and no state message before it
            await v.close()
            return v

        v = asyncio.run(go())
    p = progress_values(v)
    assert p == sorted(p) and all(0 <= x <= 100 for x in p)
    assert max(p) > 1  # percent, not a 0-1 fraction
    assert {m["type"] for m in v.texts} <= {"loading_progress", "loading_complete"}
