"""Race analysis computed from the race model (lap comparison: :mod:`racecast.analysis.compare`)."""
