"""Prometheus metrics of one app, in its own registry (so tests can build many apps).

The engine counts frames in plain integers and flushes them here once per tick:
a prometheus ``Counter.inc`` takes a lock, too dear to pay per frame per viewer.
Gauges that describe current state are computed when scraped.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..bundle import warming

_TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.5)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

#: Error kinds counted by ``racecast_errors_total{kind=...}``.
ERROR_KINDS = (
    "bad_command",  # malformed JSON, unknown action, wrong field, out of range (error message, stays open)
    "too_large",  # control message over the size limit (close 1009)
    "flood",  # a connection closed for going over the command budget
    "unknown_replay",  # close 4404
    "invalid_id",  # close 4400
    "bad_encoding",  # close 4400
    "damaged_replay",  # bundle failed to open (close 1011)
    "origin",  # close 1008
    "capacity",  # close 1013
    "send_failed",  # a write to a viewer raised; the viewer is dropped
    "ingest_failed",  # a viewer waited for a server-side ingest that failed (close 4500)
    "not_in_control",  # a room member without control sent play/pause/seek/speed (error message, stays open)
    "room_refused",  # a room join refused: bad or unknown room, other replay, wrong token, full (close 4400/4403/4404/1013)
)
#: Outcomes counted by ``racecast_ingests_total{outcome=...}``.
INGEST_OUTCOMES = ("started", "done", "failed", "busy")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections_total = Counter("racecast_connections", "WebSocket connections accepted", registry=r)
        self.connections_open = Gauge("racecast_connections_open", "Open WebSocket connections", registry=r)
        self.viewers_playing = Gauge("racecast_viewers_playing", "Viewers currently playing", registry=r)
        self.frames_sent = Counter("racecast_frames_sent", "Binary frames written to viewers", registry=r)
        self.frames_skipped = Counter(
            "racecast_frames_skipped", "Frames not sent because the viewer's socket was not draining (latest wins)", registry=r
        )
        self.bytes_sent = Counter("racecast_bytes_sent", "Payload bytes of binary frames written to viewers", registry=r)
        self.ticks = Counter("racecast_ticks", "Engine ticks run", registry=r)
        self.ticks_missed = Counter("racecast_ticks_missed", "Ticks skipped because the loop was late by a whole period", registry=r)
        self.tick_duration = Histogram("racecast_tick_duration_seconds", "Time to serve every playing viewer once", buckets=_TICK_BUCKETS, registry=r)
        self.tick_lateness = Histogram("racecast_tick_lateness_seconds", "How late a tick started against its schedule", buckets=_TICK_BUCKETS, registry=r)
        self.send_latency = Histogram(
            "racecast_send_latency_seconds",
            "From a tick's scheduled time to its last frame written (the worst viewer of the tick)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.command_latency = Histogram(
            "racecast_command_latency_seconds",
            "From a command's arrival to its acknowledgement and first frame written",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commands = Counter("racecast_commands", "Commands applied", ["action"], registry=r)
        self.errors = Counter("racecast_errors", "Errors by kind", ["kind"], registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.ingests = Counter("racecast_ingests", "Server-side ingests by outcome (busy: refused, queue full)", ["outcome"], registry=r)
        for outcome in INGEST_OUTCOMES:
            self.ingests.labels(outcome)
        self.ingests_active = Gauge("racecast_ingests_active", "Server-side ingests running or queued", registry=r)
        self.replays_open = Gauge("racecast_replays_open", "Replay bundles opened (mapped) by this process", registry=r)
        self.buffer_max = Gauge("racecast_viewer_buffer_max_bytes", "Largest per-viewer send buffer right now", registry=r)
        self.buffer_total = Gauge("racecast_viewer_buffer_bytes", "Bytes buffered for all viewers right now", registry=r)
        # The process's background warm (bundle/warming.py): read from its warmer when scraped.
        self.warm_blocks = Gauge("racecast_warm_blocks_built", "Msgpack blocks built into the disk cache in the background", registry=r)
        self.warm_cpu = Gauge("racecast_warm_cpu_seconds", "CPU time the background warm of msgpack blocks has taken", registry=r)
        self.warm_wall = Gauge("racecast_warm_seconds", "Wall time the background warm of msgpack blocks has taken", registry=r)
        self.warm_blocks.set_function(lambda: float(warming.WARMER.blocks_built))
        self.warm_cpu.set_function(lambda: float(warming.WARMER.cpu_s))
        self.warm_wall.set_function(lambda: float(warming.WARMER.wall_s))

    def bind(
        self,
        *,
        connections: Callable[[], int],
        playing: Callable[[], int],
        replays: Callable[[], int],
        buffers: Callable[[], list[int]],
        ingests: Callable[[], int] = lambda: 0,
    ) -> None:
        """Compute state gauges at scrape time from the live objects."""
        self.ingests_active.set_function(lambda: float(ingests()))
        self.connections_open.set_function(lambda: float(connections()))
        self.viewers_playing.set_function(lambda: float(playing()))
        self.replays_open.set_function(lambda: float(replays()))
        self.buffer_max.set_function(lambda: float(max(buffers(), default=0)))
        self.buffer_total.set_function(lambda: float(sum(buffers())))

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
