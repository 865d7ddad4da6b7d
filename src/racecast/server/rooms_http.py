"""``POST /api/rooms`` and ``GET /api/rooms/{room}``: create a watch-party room, read its state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..rooms import CONTROLS, InvalidRoomId, RoomError, TooManyRooms, UnknownRoom
from .rooms import RoomHub, RoomsUnavailable

if TYPE_CHECKING:
    from .replays import Replay


class RoomRequest(BaseModel):
    replay: str = Field(min_length=1, max_length=64)
    control: str = Field("host", max_length=16, description="who may play/pause/seek/speed: " + " or ".join(CONTROLS))


def _http_error(e: RoomError) -> HTTPException:
    if isinstance(e, RoomsUnavailable):
        return HTTPException(501, str(e))
    if isinstance(e, InvalidRoomId):
        return HTTPException(400, str(e))
    if isinstance(e, UnknownRoom):
        return HTTPException(404, str(e))
    if isinstance(e, TooManyRooms):
        return HTTPException(503, str(e), headers={"Retry-After": "60"})
    return HTTPException(422, str(e))


def add_room_routes(app: FastAPI, hub: RoomHub, replay_or_error: Callable[[str], "Replay"]) -> None:
    @app.post("/api/rooms", status_code=201, summary="Create a watch-party room (201: room id and host token)")
    async def create_room(req: RoomRequest) -> Any:
        if req.control not in CONTROLS:
            raise HTTPException(422, f"control must be one of {', '.join(CONTROLS)}, got {req.control!r}")
        b = replay_or_error(req.replay).bundle
        try:
            state, token = await hub.create(req.replay, b.n_frames, b.fps, req.control)
        except RoomError as e:
            raise _http_error(e) from None
        return JSONResponse({"room": state.room, "host_token": token, "replay": state.replay, "control": state.control}, status_code=201)

    @app.get("/api/rooms/{room_id}", summary="A room: replay, playing, speed, frame now, members")
    async def get_room(room_id: str) -> Any:
        try:
            return JSONResponse(await hub.info(room_id), headers={"Cache-Control": "no-store"})
        except RoomError as e:
            raise _http_error(e) from None
