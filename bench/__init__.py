"""Speed benchmark of the lab against the tutorial's pipeline: `python -m bench` (see docs/benchmarks.md)."""
