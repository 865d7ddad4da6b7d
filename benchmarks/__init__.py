"""Benchmarks: numbers for docs/performance.md. Never imported by racecast itself."""
