"""Accuracy of replays of real sessions: the real-data pack, metrics against its truth, the report.

* :mod:`racecast.accuracy.realdata` -- find the pack, load a session every way (table, table
  without status, FastF1 frames).
* :mod:`racecast.accuracy.metrics` -- pure scoring of a Race against a truth dict; metrics are
  a registered list (:data:`~racecast.accuracy.metrics.METRICS`), extend it with ``@metric``.
* :mod:`racecast.accuracy.officials` -- metrics of the results view (official classification,
  DSQ/penalty notes) and of the qualifying knockout (order, segments).
* :mod:`racecast.accuracy.run` -- ``racecast accuracy`` / ``make accuracy``: a child process per
  ingest (peak RSS), docs/accuracy.md.
"""

from racecast.accuracy.metrics import METRICS, Context, Result, metric, score
from racecast.accuracy import officials as _officials  # noqa: E402,F401 -- registers the results/qualifying metrics

__all__ = ["METRICS", "Context", "Result", "metric", "score"]
