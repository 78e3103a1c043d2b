"""Fixtures of the example tests: see examples_helpers (a unique module name, safe to import from tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from examples_helpers import example_env

__all__ = ["example_env"]
