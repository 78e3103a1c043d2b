"""`ResourceType`: the countable resources a job asks for (model layer, pure data).

Its own module because both the cluster config (which maps accelerators to gres types and node features)
and `JobRequirements` (which takes a cluster config) name resources; `xm_slurm.resources` re-exports it.
"""

from __future__ import annotations

import enum
from typing import Any

from xm_slurm.errors import ValidationError


class _CaseInsensitiveMeta(enum.EnumMeta):
    """`ResourceType["gpu"]` works like `ResourceType["GPU"]`, as in XManager."""

    def __getitem__(cls, name: str) -> Any:
        try:
            return super().__getitem__(name.upper())
        except KeyError:
            known = ", ".join(cls.__members__)
            raise ValidationError(f"unknown resource {name!r}; known resources: {known}") from None


class ResourceType(enum.Enum, metaclass=_CaseInsensitiveMeta):
    """A countable resource. MEMORY/RAM and EPHEMERAL_STORAGE/DISK are aliases (amounts in bytes)."""

    CPU = "cpu"
    MEMORY = "memory"
    RAM = "memory"
    EPHEMERAL_STORAGE = "ephemeral_storage"
    DISK = "ephemeral_storage"
    GPU = "gpu"
    # Named accelerators (NVIDIA unless said otherwise).
    RTX8000 = "rtx8000"
    P4 = "p4"
    P100 = "p100"
    T4 = "t4"
    V100 = "v100"
    V100_32GIB = "v100_32gib"
    A10 = "a10"
    A40 = "a40"
    A100 = "a100"
    A100_80GIB = "a100_80gib"
    A5000 = "a5000"
    A6000 = "a6000"
    L4 = "l4"
    L40 = "l40"
    L40S = "l40s"
    H100 = "h100"
    H100_80GIB = "h100_80gib"
    H200 = "h200"
    GH200 = "gh200"
    B200 = "b200"
    MI100 = "mi100"  # AMD
    MI250 = "mi250"  # AMD
    MI300X = "mi300x"  # AMD

    def __str__(self) -> str:
        return self.name

    @property
    def is_accelerator(self) -> bool:
        return self not in (ResourceType.CPU, ResourceType.MEMORY, ResourceType.EPHEMERAL_STORAGE)
