"""The GPU tests use the rendering tests' helpers (tests/rendering) and the experiment tests' cluster config."""

from __future__ import annotations

import sys
from pathlib import Path

for folder in ("rendering", "experiment"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / folder))
