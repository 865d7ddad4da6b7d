"""The WebSocket adapter: ``/ws/replay/{id}`` between a socket and the sans-I/O core.

It checks the Origin and the connection limit, opens the replay, sends the
loading messages, registers a :class:`~racecast.server.engine.Viewer` with the
engine and then only reads: each text message is size-checked, rate-limited,
parsed (:mod:`racecast.protocol`) and handed to :meth:`Engine.command`.
Playback itself never runs here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Iterable

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..bundle import BundleError, warming
from ..errors import (
    CLOSE_GOING_AWAY,
    CLOSE_INGEST_FAILED,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    Busy,
    RacecastError,
)
from ..feeds import make_feed
from ..sources import IngestError
from ..playback import Playback
from ..protocol import (
    MAX_COMMAND_BYTES,
    Command,
    ProtocolError,
    Play,
    RateLimiter,
    Seek,
    SeekPacer,
    is_extension,
    error_message,
    loading_complete,
    loading_error,
    loading_progress,
    parse_command,
)
from .engine import Viewer
from .hosts import OriginRefused, origin_allowed
from .ingest import DONE, Job
from .replays import Replay, UnknownReplay
from .rooms import Admission, RoomsUnavailable
from .sink import Sink
from .state import ServerState
from .transport import EXTENSION, AsgiSink, DirectSink, RacecastWSProtocol

log = logging.getLogger("racecast.ws")

# Close codes: racecast.errors defines them (docs/protocol.md lists them all).

class ServerFull(Busy):
    kind = "capacity"


#: Query parameters only racecast's clients send; a connection without any speaks the seed protocol.
RACECAST_QUERY = frozenset({"encoding", "mode", "compression", "lookahead", "room", "token"})


def speaks_seed(query_keys: Iterable[str]) -> bool:
    """True for a connection that asked for nothing racecast-specific (the seed's client asks for nothing).

    Such a connection gets only what the seed's client understands: ``loading_progress``
    (0-100), ``loading_complete``, ``loading_error`` and binary frames; no ``state``
    acknowledgements, no JSON ``ping``, until it sends a racecast-only command
    (:func:`racecast.protocol.is_extension`). Error replies to invalid commands are
    still sent (the seed's client never sends one)."""
    return not (RACECAST_QUERY & set(query_keys))


@dataclass(eq=False)
class Connection:
    """A live socket, kept so a graceful shutdown can close it with 1001."""

    ws: WebSocket
    viewer: Viewer | None = None


def _detach(state: ServerState, viewer: Viewer) -> None:
    """Stop serving ``viewer``: out of the engine (and its room), its writer (if any) stopped. Idempotent."""
    if viewer.room is not None and state.rooms is not None:
        state.rooms.leave(viewer)
    state.engine.remove(viewer)
    if isinstance(viewer.sink, AsgiSink):
        viewer.sink.close()


def make_sink(ws: WebSocket, buffer_limit: int, socket_send_buffer: int | None) -> Sink:
    """The direct sink when uvicorn runs :class:`RacecastWSProtocol`, else plain ASGI sends."""
    proto = (ws.scope.get("extensions") or {}).get(EXTENSION)
    if isinstance(proto, RacecastWSProtocol) and proto.transport is not None:
        if socket_send_buffer:
            # Bound the kernel's share of a stalled viewer too (Linux doubles the value).
            sock = proto.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_send_buffer)
                except OSError:
                    pass
        return DirectSink(proto, buffer_limit)
    return AsgiSink(ws.send)


async def _refuse(ws: WebSocket, code: int, reason: str, message: str | None = None) -> None:
    """Close an accepted socket with ``code`` (after a ``loading_error`` when ``message`` is given)."""
    try:
        if message is not None:
            await ws.send_text(loading_error(message))
        await ws.close(code, reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def refuse(ws: WebSocket, state: ServerState, e: RacecastError) -> None:
    """The WebSocket side of the error model: count ``e``, send it as ``loading_error``, close with its code."""
    state.metrics.error(e.kind)
    state.faults.note(e.kind, e.message)
    await _refuse(ws, e.close_code, e.kind.replace("_", " ")[:60], e.message)


async def replay_socket(ws: WebSocket, state: ServerState) -> None:
    """Serve one viewer of ``/ws/replay/{replay_id}`` until it leaves."""
    mono = state.engine.clock.monotonic
    t_connect = mono()
    metrics = state.metrics
    replay_id = ws.path_params.get("replay_id", "")
    if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), state.allowed_origins):
        await ws.accept()
        await refuse(ws, state, OriginRefused(f"origin {str(ws.headers.get('origin'))[:100]!r} not allowed"))
        return
    if len(state.connections) >= state.max_connections:
        await ws.accept()
        await refuse(ws, state, ServerFull(f"server full ({state.max_connections} connections)"))
        return
    conn = Connection(ws)
    state.connections.add(conn)
    viewer: Viewer | None = None
    seed = speaks_seed(ws.query_params.keys())
    try:
        await ws.accept()
        metrics.connections_total.inc()
        cached = state.replays.cached(replay_id)
        if cached is None:
            await ws.send_text(loading_progress(0.0, f"opening replay {replay_id[:64]}", percent=seed))
        try:
            replay = cached or await state.replays.aget(replay_id)
        except UnknownReplay as e:
            job = state.ingest.job(replay_id) if state.ingest is not None else None
            # (an ingest that ended while we looked leaves no job but a bundle)
            if job is None and not (state.ingest is not None and state.replays.data.exists(replay_id)):
                why = state.session_errors.get(replay_id)  # what POST /api/sessions could not do
                raise (UnknownReplay(replay_id, why) if why else e) from None
            if job is not None and not await _await_ingest(ws, state, job, seed):
                return
            try:
                replay = await state.replays.aget(replay_id)
            except (UnknownReplay, BundleError) as e:
                raise IngestError(f"replay {replay_id!r} was ingested but cannot be opened: {e}") from None
        bundle = replay.bundle
        playback = Playback(bundle.n_frames, bundle.fps)
        feed = make_feed(bundle, playback, dict(ws.query_params))
        admission = None
        if "room" in ws.query_params:
            admission = await _admit(ws, state, replay_id)
            if admission is None:
                return
        await ws.send_text(loading_complete(bundle.n_frames, replay.load_time, mono() - t_connect, replay.metadata_json))
        sink = make_sink(ws, state.buffer_limit, state.socket_send_buffer)
        viewer = conn.viewer = Viewer(replay_id, playback, feed.stream, sink, feed)
        viewer.acks = not seed
        if admission is not None:
            state.rooms.attach(admission, viewer)  # type: ignore[union-attr]  # at the room's position now
        state.engine.add(viewer)
        await _read_commands(ws, state, viewer, replay)
    except RacecastError as e:  # every refusal: a loading_error, then its documented close code
        if viewer is not None:
            _detach(state, viewer)  # no frame may follow the close frame
            viewer = None
        await refuse(ws, state, e)
    except WebSocketDisconnect:
        pass
    finally:
        if viewer is not None:
            _detach(state, viewer)
        state.connections.discard(conn)


async def _admit(ws: WebSocket, state: ServerState, replay_id: str) -> Admission | None:
    """Check ``?room=ROOM[&token=TOKEN]``; a refusal raises its ``RoomError`` (each carries its close code)."""
    hub = state.rooms
    if hub is None:
        raise RoomsUnavailable("rooms are off on this server")
    return await hub.admit(ws.query_params["room"], replay_id, ws.query_params.get("token"))


async def _await_ingest(ws: WebSocket, state: ServerState, job: Job, seed: bool = False) -> bool:
    """Relay ``job``'s progress to a waiting viewer until it ends; True when the replay is ready.

    The viewer sleeps on the job's change event and sends the newest progress when
    woken (latest wins, nothing queues per viewer). It keeps reading meanwhile, only
    to notice a disconnect: commands before ``loading_complete`` are dropped
    (counted against the command budget like any other).
    """
    metrics = state.metrics
    mono = state.engine.clock.monotonic
    limiter = RateLimiter(state.command_rate, state.command_burst, mono())
    recv: asyncio.Future = asyncio.ensure_future(ws.receive())
    seen = -1
    try:
        while True:
            if job.version != seen:
                seen = job.version
                if not job.active:
                    break
                await ws.send_text(loading_progress(round(job.progress, 4), job.message, percent=seed))
            changed = asyncio.ensure_future(job.changed(seen))
            try:
                await asyncio.wait((recv, changed), return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            if recv.done():
                msg = recv.result()
                if msg["type"] == "websocket.disconnect":
                    return False
                if len(msg.get("text") or msg.get("bytes") or b"") > MAX_COMMAND_BYTES:
                    metrics.error("too_large")
                    await _refuse(ws, CLOSE_TOO_BIG, f"message over {MAX_COMMAND_BYTES} bytes")
                    return False
                if _budget_exceeded(state, limiter, mono()):
                    await _refuse(ws, CLOSE_POLICY, f"command flood (over {state.command_rate:g}/s)")
                    return False
                recv = asyncio.ensure_future(ws.receive())
    finally:
        if not recv.done():
            recv.cancel()
    if recv.done() and not recv.cancelled() and recv.result()["type"] == "websocket.disconnect":
        return False
    if job.state == DONE:
        return True
    metrics.error("ingest_failed")
    await _refuse(ws, CLOSE_INGEST_FAILED, "ingest failed", job.error or "ingest failed")
    return False


def _budget_exceeded(state: ServerState, limiter: RateLimiter, now: float) -> bool:
    if limiter.delay(now) > 0:
        state.metrics.error("flood")
        return True
    return False


async def _read_commands(ws: WebSocket, state: ServerState, viewer: Viewer, replay: Replay) -> None:
    """Read every message as it arrives and apply it; never stop reading while the client is there.

    Reading without pause keeps the connection's keepalive answered whatever the client
    sends. Real seeks are paced (:class:`~racecast.protocol.SeekPacer`, latest wins) and
    every other command is applied at once; a client over the command budget is closed
    with 1008, so a flood costs bounded work and nothing of it outlives the connection.
    """
    engine = state.engine
    metrics = state.metrics
    mono = engine.clock.monotonic
    limiter = RateLimiter(state.command_rate, state.command_burst, mono())
    pacer = SeekPacer(1.0 / engine.fps)
    sink = viewer.sink
    pb = viewer.playback
    bounds = replay.bounds
    bundle = replay.bundle
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None
    seeks_counter = metrics.commands.labels("seek")
    # A msgpack viewer that plays has the replay warmed (once per replay: its later seeks, and other
    # viewers', read blocks instead of building them). One that only connects, or only positions itself
    # while paused, is not watching yet: it builds the blocks it shows, and costs no warm.
    warm = viewer.stream.name == "msgpack" and viewer.stream.derived

    def apply(cmd: Command, arrival: float, merged: int = 0) -> None:
        if isinstance(cmd, Seek) and not pb.already_at(cmd.frame, arrival):
            pacer.applied(arrival)
        engine.command(viewer, cmd, merged=merged)
        metrics.commands.labels(cmd.action).inc(1 + merged)
        metrics.command_latency.observe(mono() - arrival)

    def flush() -> None:
        nonlocal timer
        timer = None
        held = pacer.take()
        if held is not None and not viewer.closed:
            apply(held[0], mono(), held[1])

    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            arrival = mono()
            text = msg.get("text")
            size = len(msg.get("bytes") or b"") if text is None else len(text.encode())
            if size > MAX_COMMAND_BYTES:
                metrics.error("too_large")
                _detach(state, viewer)  # no frame may follow the close frame
                await _refuse(ws, CLOSE_TOO_BIG, f"message over {MAX_COMMAND_BYTES} bytes")
                return
            if _budget_exceeded(state, limiter, arrival):
                _detach(state, viewer)
                await _refuse(ws, CLOSE_POLICY, f"command flood (over {state.command_rate:g}/s)")
                return
            if text is None:
                metrics.error("bad_command")
                sink.post(error_message("commands are JSON text messages, not binary"))
                await sink.drain()
                continue
            try:
                cmd = parse_command(text, bounds, bundle)
            except ProtocolError as e:
                metrics.error("bad_command")
                sink.post(error_message(str(e)))
                await sink.drain()
                continue
            if not viewer.acks and is_extension(cmd):
                viewer.acks = True  # the client speaks racecast's protocol: it gets its replies from now on
            if warm and type(cmd) is Play:
                warm = False  # asked once per connection (the warmer itself warms a replay once)
                warming.WARMER.request(bundle)
            if viewer.room is not None and state.rooms is not None:
                # A room member: the command moves the whole room (not paced per connection: every
                # member gets each acknowledgement), or is refused with an error to this member only.
                if await state.rooms.command(viewer, cmd):
                    metrics.commands.labels(cmd.action).inc()
                    metrics.command_latency.observe(mono() - arrival)
                await sink.drain()
                continue
            if not viewer.acks and type(cmd) is Seek and pacer.pending is None and pb.already_at(cmd.frame, arrival):
                pb.seq += 1  # where the viewer already is, and no reply to write: nothing else to do
                seeks_counter.inc()
                continue
            if isinstance(cmd, Seek):
                if not pacer.offer(cmd, arrival, not pb.already_at(cmd.frame, arrival)):
                    if timer is None:
                        timer = loop.call_at(loop.time() + max(0.0, (pacer.due or arrival) - arrival), flush)
                    continue
            elif pacer.pending is not None:  # nothing overtakes a held seek
                if timer is not None:
                    timer.cancel()
                flush()
            apply(cmd, arrival)
            await sink.drain()
    finally:
        if timer is not None:
            timer.cancel()


async def close_all(state: ServerState, code: int = CLOSE_GOING_AWAY) -> None:
    """Close every open viewer (graceful shutdown)."""
    for conn in list(state.connections):
        if conn.viewer is not None:
            _detach(state, conn.viewer)
        try:
            await conn.ws.close(code, "server shutting down")
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
