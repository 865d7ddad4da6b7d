"""Benchmarks: racecast, the seed's design and the floor, served and loaded side by side.

Run from a source checkout: ``racecast bench [--quick]`` or ``python -m benchmarks.harness``.
"""
