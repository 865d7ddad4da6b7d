"""The seed system's streaming design, re-implemented as the benchmark's reference.

Exactly the design the seed documents describe, kept deliberately as it was:

- the whole race is materialised at startup into Python per-frame, per-driver dicts
  (the "large-session path"; this is why the seed needs GBs of RAM for a full race);
- FastAPI WebSocket endpoint under uvicorn, one loop per connection;
- each pass waits for a command with a 10 ms timeout
  (``asyncio.wait_for(ws.receive_text(), 0.01)``), advances
  ``frame += speed * (1/60) * 25`` while playing, and when the integer frame changed
  builds the frame dict from the per-driver dicts and ``msgpack.packb``s it;
- then ``asyncio.sleep(1/60)``.

Each pass therefore takes 10 ms + 1/60 s + work, so playback drifts: ~37 passes a
second advance the replay ~15 frames a second at "1x". Paused viewers still poll.

Same wire protocol as racecast so one load generator drives both: JSON
``loading_complete`` on connect, JSON commands (play / pause / seek), a JSON
``state`` reply to each command, binary msgpack frames ``{frame_index, t, lap, drivers}``.
The state reply is the one addition (the load generator times seeks from it); it
costs one small message per command.

Run: ``python -m benchmarks.seed_server --data DIR --port P`` (serves every bundle in DIR).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from racecast.bundle import DataDir
from racecast.bundle.msgpack_frames import DRIVER_FIELDS, STATUS_LABELS
from racecast.race import CHANNELS

from .common import reference_server_args

FPS = 25


def materialise(race: Any, b0: int, b1: int) -> list[dict[str, dict[str, Any]]]:
    """Frames ``b0:b1`` of ``race`` as the seed holds them: ``[{code: {field: value}}]``."""
    cols = []
    for name in DRIVER_FIELDS:
        a = np.asarray(race.channels[name][b0:b1])
        if name == "status":
            cols.append([[STATUS_LABELS[v] for v in row] for row in a.tolist()])
        elif name in ("throttle", "brake"):
            cols.append(np.rint(a).astype(int).tolist())
        elif CHANNELS[name][2]:
            obj = a.astype(object)
            obj[np.isnan(a)] = None
            cols.append(obj.tolist())
        else:
            cols.append(a.tolist())
    codes = race.codes
    return [
        {code: {f: cols[j][k][d] for j, f in enumerate(DRIVER_FIELDS)} for d, code in enumerate(codes)}
        for k in range(b1 - b0)
    ]


def seed_bytes_per_frame(race: Any, sample: int = 2000) -> float:
    """Mean size of the seed's packed frame over ``sample`` frames spread across ``race`` (the bandwidth reference)."""
    step = max(1, race.n_frames // sample)
    sizes = []
    for i in range(0, race.n_frames, step):
        (frame,) = materialise(race, i, i + 1)
        sizes.append(len(msgpack.packb(frame_dict(frame, i, float(race.t[i]), int(race.leader_lap[i])))))
    return sum(sizes) / len(sizes)


def frame_dict(timeline_i: dict[str, dict[str, Any]], i: int, t: float, lap: int) -> dict[str, Any]:
    """The per-send frame dict, built from the per-driver dicts (as the seed does on every send)."""
    drivers = {}
    for code, d in timeline_i.items():
        drivers[code] = {f: d[f] for f in DRIVER_FIELDS}
    return {"frame_index": i, "t": t, "lap": lap, "drivers": drivers}


class Session:
    """A race materialised as Python objects: ``timeline[i][code] -> {field: value}``."""

    def __init__(self, bundle: Any) -> None:
        race = bundle.race()
        self.n_frames = race.n_frames
        self.t: list[float] = race.t.tolist()
        self.lap: list[int] = race.leader_lap.tolist()
        self.timeline: list[dict[str, dict[str, Any]]] = []
        block = 1024
        for b0 in range(0, race.n_frames, block):
            self.timeline += materialise(race, b0, min(b0 + block, race.n_frames))

    def build_frame(self, i: int) -> dict[str, Any]:
        """The per-send frame dict (as the seed builds it on every send)."""
        return frame_dict(self.timeline[i], i, self.t[i], self.lap[i])


def create_app(data_dir: str) -> FastAPI:
    """The seed-design app; every bundle in ``data_dir`` is materialised before serving."""
    store = DataDir(data_dir)
    sessions = {rid: Session(store.open(rid)) for rid in store.ids()}
    app = FastAPI()

    @app.websocket("/ws/replay/{replay_id}")
    async def replay(ws: WebSocket, replay_id: str) -> None:
        session = sessions.get(replay_id)
        await ws.accept()
        if session is None:
            await ws.close(code=4404)
            return
        await ws.send_text(json.dumps({"type": "loading_complete", "frames": session.n_frames}))
        frame = 0.0
        speed = 1.0
        playing = False
        last_sent = -1
        seq = 0
        last = session.n_frames - 1
        try:
            while True:
                try:
                    text = await asyncio.wait_for(ws.receive_text(), 0.01)
                except asyncio.TimeoutError:
                    text = None
                if text is not None:
                    try:
                        cmd = json.loads(text)
                        action = cmd.get("action")
                        if action == "play":
                            playing = True
                            speed = float(cmd.get("speed", speed))
                        elif action == "pause":
                            playing = False
                        elif action == "seek":
                            frame = float(min(max(int(cmd["frame"]), 0), last))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        pass
                    seq += 1
                    await ws.send_text(
                        json.dumps({"type": "state", "playing": playing, "speed": speed, "frame": int(frame), "seq": seq})
                    )
                if playing:
                    frame += speed * (1 / 60) * FPS
                    if frame >= last:
                        frame = float(last)
                        playing = False
                i = int(frame)
                if i != last_sent:
                    await ws.send_bytes(msgpack.packb(session.build_frame(i)))
                    last_sent = i
                await asyncio.sleep(1 / 60)
        except (WebSocketDisconnect, RuntimeError):
            return

    return app


def main(argv: list[str] | None = None) -> None:
    a = reference_server_args(argv, __doc__.splitlines()[0], 8766)
    uvicorn.run(create_app(a.data), host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
