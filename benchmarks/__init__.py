"""Benchmarks: one harness (harness.py), peers (peers.py) and suites; `python -m benchmarks models`."""
