"""Small hand-built races for tests that must not depend on the simulator.

They live in benchmarks/race.py, the one place the tests and the benchmarks take them from.
"""

from __future__ import annotations

from benchmarks.race import TEAM_COLORS, circle_geometry, tiny_race

__all__ = ["TEAM_COLORS", "circle_geometry", "tiny_race"]
