"""Fixtures of the experiment tests: a private metadata store per test and the local cluster's config."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from experiment_fixtures import (
    cluster,
    counting,
    python_executor,
    store,
)

__all__ = ["cluster", "counting", "python_executor", "store"]
