"""racecast: stream race replays to many browser viewers from pre-encoded bundles."""

__version__ = "0.1.0"
