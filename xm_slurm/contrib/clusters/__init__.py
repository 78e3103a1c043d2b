"""Ready-made `SlurmClusterConfig`s for real Slurm sites, each documented with the source of its facts.

    from xm_slurm.contrib import clusters

    cluster = clusters.narval("me", account="def-mypi")    # or clusters.by_name("narval", "me", ...)
    requirements = xm_slurm.JobRequirements(A100=1, cluster=cluster)   # --gpus-per-task=a100:1

Presets: Mila (`mila`); DRAC general-purpose clusters (`narval`, `fir`, `nibi`, `rorqual`, `trillium`,
`trillium_gpu`, and the retired `beluga`, `cedar`, `graham`; also as `drac.<name>` and its 0.4.7 alias
`cc.<name>`); DRAC PAICE AI clusters (`killarney`, `vulcan`, `tamia`). The site facts are one table,
`SITES` (`sites.py`), and one factory, `build` (`factory.py`), turns a record and your options into a
config; the functions above and `by_name` are names over it. A preset is an ordinary frozen config: adjust
it with `dataclasses.replace`, which validates again. See docs/clusters.md for the table of presets and how
to write your own.
"""

from __future__ import annotations

from xm_slurm.contrib.clusters import cc, drac
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
from xm_slurm.contrib.clusters.factory import build
from xm_slurm.contrib.clusters.mila import mila
from xm_slurm.contrib.clusters.paice import killarney, tamia, vulcan
from xm_slurm.contrib.clusters.registry import PRESETS, ClusterPreset, by_name, names
from xm_slurm.contrib.clusters.sites import SITES, Site

__all__ = [
    "PRESETS",
    "SITES",
    "ClusterPreset",
    "Site",
    "beluga",
    "build",
    "by_name",
    "cc",
    "cedar",
    "drac",
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
