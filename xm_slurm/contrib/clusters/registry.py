"""The table of known presets and `by_name`, the lookup launch scripts and the CLI use."""

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
from xm_slurm.contrib.clusters.mila import NODES_SOURCE, mila
from xm_slurm.contrib.clusters.paice import killarney, tamia, vulcan
from xm_slurm.errors import ValidationError

__all__ = ["PRESETS", "ClusterPreset", "by_name", "names"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterPreset:
    """One site preset: its factory, where its facts come from, and a few facts worth knowing up front.

    compute_internet: True/False as the site documents it for compute nodes, None when partial (a proxy).
    """

    name: str
    factory: Callable[..., SlurmClusterConfig]
    family: str
    source: str
    retired: bool = False
    compute_internet: bool | None = False


_GPUS = "https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en"

PRESETS: Mapping[str, ClusterPreset] = immutabledict(
    {
        p.name: p
        for p in (
            ClusterPreset(
                name="mila",
                factory=mila,
                family="Mila",
                source=NODES_SOURCE,
                compute_internet=True,
            ),
            ClusterPreset(
                name="narval",
                factory=narval,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Narval/en",
            ),
            ClusterPreset(
                name="beluga",
                factory=beluga,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/B%C3%A9luga/en",
                retired=True,
            ),
            ClusterPreset(
                name="cedar",
                factory=cedar,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Cedar/en",
                retired=True,
                compute_internet=True,
            ),
            ClusterPreset(
                name="graham",
                factory=graham,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Graham/en",
                retired=True,
            ),
            ClusterPreset(
                name="fir",
                factory=fir,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Fir/en",
                compute_internet=True,
            ),
            ClusterPreset(
                name="nibi",
                factory=nibi,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Nibi/en",
                compute_internet=True,
            ),
            ClusterPreset(
                name="rorqual",
                factory=rorqual,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Rorqual/en",
            ),
            ClusterPreset(
                name="trillium",
                factory=trillium,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Trillium/en",
            ),
            ClusterPreset(
                name="trillium-gpu",
                factory=trillium_gpu,
                family="DRAC",
                source="https://docs.alliancecan.ca/wiki/Trillium/en",
            ),
            ClusterPreset(
                name="killarney",
                factory=killarney,
                family="DRAC PAICE",
                source="https://docs.alliancecan.ca/wiki/Killarney/en",
                compute_internet=True,
            ),
            ClusterPreset(
                name="vulcan",
                factory=vulcan,
                family="DRAC PAICE",
                source="https://docs.alliancecan.ca/wiki/Vulcan/en",
                compute_internet=None,
            ),
            ClusterPreset(
                name="tamia",
                factory=tamia,
                family="DRAC PAICE",
                source="https://docs.alliancecan.ca/wiki/TamIA/en",
            ),
        )
    }
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

    Raises ValidationError naming the bad value and listing the known names.
    """
    if not isinstance(name, str):
        raise ValidationError(
            f"cluster preset name {name!r} must be a str; known presets: {', '.join(names())}"
        )
    entry = PRESETS.get(_key(name))
    if entry is None:
        raise ValidationError(f"unknown cluster preset {name!r}; known presets: {', '.join(names())}")
    try:
        return entry.factory(user, **options)
    except TypeError as e:  # an option this preset does not take
        raise ValidationError(f"cluster preset {entry.name!r}: {e}") from None
