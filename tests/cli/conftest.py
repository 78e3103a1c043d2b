"""Fixtures of the CLI tests: the experiment tests' private store per test and local-cluster helpers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))

from experiment_fixtures import cluster, store

__all__ = ["cluster", "store"]
