"""Benchmarks against the local test cluster: `uv run python -m benchmarks` (see run.py)."""
