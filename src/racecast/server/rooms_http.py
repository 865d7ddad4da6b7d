"""``POST /api/rooms`` and ``GET /api/rooms/{room}``: create a watch-party room, read its state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..errors import BadRequest
from ..rooms import CONTROLS
from .rooms import RoomHub

if TYPE_CHECKING:
    from .replays import Replay


class RoomRequest(BaseModel):
    replay: str = Field(min_length=1, max_length=64)
    control: str = Field("host", max_length=16, description="who may play/pause/seek/speed: " + " or ".join(CONTROLS))


def add_room_routes(app: FastAPI, hub: RoomHub, replay_or_error: Callable[[str], "Replay"]) -> None:
    @app.post("/api/rooms", status_code=201, summary="Create a watch-party room (201: room id and host token)")
    async def create_room(req: RoomRequest) -> Any:
        if req.control not in CONTROLS:
            raise BadRequest(f"control must be one of {', '.join(CONTROLS)}, got {req.control[:20]!r}", http_status=422)
        b = replay_or_error(req.replay).bundle
        state, token = await hub.create(req.replay, b.n_frames, b.fps, req.control)  # RoomError: its JSON error
        return JSONResponse({"room": state.room, "host_token": token, "replay": state.replay, "control": state.control}, status_code=201)

    @app.get("/api/rooms/{room_id}", summary="A room: replay, playing, speed, frame now, members")
    async def get_room(room_id: str) -> Any:
        return JSONResponse(await hub.info(room_id), headers={"Cache-Control": "no-store"})  # RoomError: its JSON error
