"""The GPU tests build and run job scripts with the rendering tests' helpers (tests/rendering)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rendering"))
