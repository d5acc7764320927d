"""Benchmarks: `python -m ops.bench` (make bench) and the simulator's own throughput."""
