"""The presets by name, read from the table of sites: `PRESETS`, `names` and `by_name`, the lookup launch
scripts and the CLI use."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from immutabledict import immutabledict

from xm_slurm.config import SlurmClusterConfig
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
from xm_slurm.contrib.clusters.sites import SITES, Site
from xm_slurm.errors import ValidationError

__all__ = ["PRESETS", "ClusterPreset", "by_name", "names"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterPreset:
    """One site preset: its public function and its record in the table of sites.

    compute_internet: True/False as the site documents it for compute nodes, None when partial (a proxy).
    """

    name: str
    factory: Callable[..., SlurmClusterConfig]
    site: Site

    @property
    def family(self) -> str:
        return self.site.family

    @property
    def source(self) -> str:
        return self.site.source

    @property
    def retired(self) -> bool:
        return self.site.retired is not None

    @property
    def compute_internet(self) -> bool | None:
        return self.site.compute_internet


# The public name of each site ("trillium-gpu" is `trillium_gpu`).
_FUNCTIONS: Mapping[str, Callable[..., SlurmClusterConfig]] = {
    function.__name__.replace("_", "-"): function
    for function in (
        mila,
        narval,
        beluga,
        cedar,
        graham,
        fir,
        nibi,
        rorqual,
        trillium,
        trillium_gpu,
        killarney,
        vulcan,
        tamia,
    )
}

PRESETS: Mapping[str, ClusterPreset] = immutabledict(
    {name: ClusterPreset(name=name, factory=_FUNCTIONS[name], site=site) for name, site in SITES.items()}
)


def names() -> list[str]:
    """The preset names `by_name` accepts, sorted."""
    return sorted(PRESETS)


def _key(name: str) -> str:
    # "Béluga", "tamIA", "trillium_gpu" and " Narval " all find their preset.
    ascii_only = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return ascii_only.strip().lower().replace("_", "-")


def by_name(name: str, /, user: str | None = None, **options: Any) -> SlurmClusterConfig:
    """The preset called `name` (case-insensitive), built with `user` and the preset's keyword `options`.

    Raises ValidationError naming the bad value and listing the known names, or the options the preset takes.
    """
    if not isinstance(name, str):
        raise ValidationError(
            f"cluster preset name {name!r} must be a str; known presets: {', '.join(names())}"
        )
    entry = PRESETS.get(_key(name))
    if entry is None:
        raise ValidationError(f"unknown cluster preset {name!r}; known presets: {', '.join(names())}")
    return build(entry.site, user, **options)
