"""`cc` (Compute Canada, the Alliance's former name): the same presets as `drac`, as 0.4.7 scripts import them."""

from __future__ import annotations

from xm_slurm.contrib.clusters.drac import (
    ALL_047,
    all,
    beluga,
    cedar,
    fir,
    graham,
    narval,
    nibi,
    rorqual,
    trillium,
    trillium_gpu,
)

__all__ = [
    "ALL_047",
    "all",
    "beluga",
    "cedar",
    "fir",
    "graham",
    "narval",
    "nibi",
    "rorqual",
    "trillium",
    "trillium_gpu",
]
