"""`python -m xm_slurm.cli ...`, the same as the `xm-slurm` command."""

from __future__ import annotations

import sys

from xm_slurm.cli import main

sys.exit(main())
