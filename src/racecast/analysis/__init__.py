"""Race analysis computed from the race model: the event index and the lap-by-lap chart data."""

from .events import KINDS, Event, compute_events, filter_events

__all__ = ["KINDS", "Event", "compute_events", "filter_events"]
