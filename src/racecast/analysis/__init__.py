"""Race analysis computed from the race model: the event index and lap-by-lap chart data
(:mod:`~racecast.analysis.events`, :mod:`~racecast.analysis.laps`), charts, and lap comparison
(:mod:`racecast.analysis.compare`)."""

from .events import KINDS, Event, compute_events, filter_events

__all__ = ["KINDS", "Event", "compute_events", "filter_events"]
