"""Multi-node and 0.5.0-surface tests: the rendering helpers and the experiment/CLI fixtures on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
for folder in ("rendering", "experiment", "cli"):
    sys.path.insert(0, str(TESTS / folder))

from experiment_fixtures import cluster, store  # noqa: E402  (a private store per test; the local cluster)

__all__ = ["cluster", "store"]
