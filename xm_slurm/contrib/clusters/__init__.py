"""Ready-made `SlurmClusterConfig`s for real Slurm sites, each documented with the source of its facts.

    from xm_slurm.contrib import clusters

    cluster = clusters.narval("me", account="def-mypi")    # or clusters.by_name("narval", "me", ...)
    requirements = xm_slurm.JobRequirements(A100=1, cluster=cluster)   # --gres=gpu:a100:1

Presets: Mila (`mila`); DRAC general-purpose clusters (`narval`, `fir`, `nibi`, `rorqual`, `trillium`,
`trillium_gpu`, and the retired `beluga`, `cedar`, `graham`); DRAC PAICE AI clusters (`killarney`,
`vulcan`, `tamia`). A preset is an ordinary frozen config: adjust it with `dataclasses.replace`, which
validates again. See docs/clusters.md for the table of presets and how to write your own.
"""

from __future__ import annotations

from xm_slurm.contrib.clusters.drac import (
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
from xm_slurm.contrib.clusters.mila import mila
from xm_slurm.contrib.clusters.paice import killarney, tamia, vulcan
from xm_slurm.contrib.clusters.registry import PRESETS, ClusterPreset, by_name, names

__all__ = [
    "PRESETS",
    "ClusterPreset",
    "beluga",
    "by_name",
    "cedar",
    "fir",
    "graham",
    "killarney",
    "mila",
    "names",
    "narval",
    "nibi",
    "rorqual",
    "tamia",
    "trillium",
    "trillium_gpu",
    "vulcan",
]
