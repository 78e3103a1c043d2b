"""`cc` (Compute Canada, the Alliance's former name): the same presets as `drac`, as 0.4.7 scripts import them."""

from __future__ import annotations

from xm_slurm.contrib.clusters import drac
from xm_slurm.contrib.clusters.drac import *  # noqa: F403 - the same names, one list (drac.__all__)

__all__ = drac.__all__
