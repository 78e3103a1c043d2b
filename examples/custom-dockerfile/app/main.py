"""The program baked into the custom image."""

from __future__ import annotations

import os
import sys
from pathlib import Path

build_info = Path(__file__).with_name("BUILD_INFO").read_text().strip()
print(f"custom image ({build_info}); args {sys.argv[1:]}; MODE={os.environ.get('MODE')}")
