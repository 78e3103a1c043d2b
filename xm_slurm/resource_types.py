"""`ResourceType`: the countable resources a job asks for (model layer, pure data).

Its own module because both the cluster config (which maps accelerators to gres types and node features)
and `JobRequirements` (which takes a cluster config) name resources; `xm_slurm.resources` re-exports it.

MIG slices are members too, spelled GPU_MEMORY_<n>G_<m>GIB as in 0.5.0: `A100_40GIB_1G_5GIB` is NVIDIA's MIG
profile `1g.5gb` of an A100 40 GB (`ResourceType.A100_40GIB_1G_5GIB.mig_profile == "1g.5gb"`). The slice
that holds a whole GPU (7g) is an alias of that GPU (`A100_40GIB_7G_40GIB is A100`), as are the memory
spellings of the full GPUs (`A100_40GIB is A100`, `H100_80GIB is H100`, `L40S_48GIB is L40S`). A site names
its MIG gres types itself (`1g.10gb`, `nvidia_h100_80gb_hbm3_1g.10gb`, ...), so a MIG member is requested only
where `SlurmClusterConfig.resources` maps it.
"""

from __future__ import annotations

import enum
import re
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
    A100_40GIB = "a100"
    A100_80GIB = "a100_80gib"
    A5000 = "a5000"
    A6000 = "a6000"
    L4 = "l4"
    L40 = "l40"
    L40S = "l40s"
    L40S_48GIB = "l40s"
    H100 = "h100"
    H100_80GIB = "h100"
    H200 = "h200"
    GH200 = "gh200"
    B200 = "b200"
    MI100 = "mi100"  # AMD
    MI250 = "mi250"  # AMD
    MI300X = "mi300x"  # AMD
    # NVIDIA MIG slices (GPU_MEMORY_<n>G_<m>GIB = profile <n>g.<m>gb); the 7g slice is the whole GPU.
    A100_40GIB_1G_5GIB = "a100_40gib_1g.5gb"
    A100_40GIB_1G_10GIB = "a100_40gib_1g.10gb"
    A100_40GIB_2G_10GIB = "a100_40gib_2g.10gb"
    A100_40GIB_3G_20GIB = "a100_40gib_3g.20gb"
    A100_40GIB_4G_20GIB = "a100_40gib_4g.20gb"
    A100_40GIB_7G_40GIB = "a100"
    A100_80GIB_1G_10GIB = "a100_80gib_1g.10gb"
    A100_80GIB_1G_20GIB = "a100_80gib_1g.20gb"
    A100_80GIB_2G_20GIB = "a100_80gib_2g.20gb"
    A100_80GIB_3G_40GIB = "a100_80gib_3g.40gb"
    A100_80GIB_4G_40GIB = "a100_80gib_4g.40gb"
    A100_80GIB_7G_80GIB = "a100_80gib"
    H100_80GIB_1G_10GIB = "h100_80gib_1g.10gb"
    H100_80GIB_1G_20GIB = "h100_80gib_1g.20gb"
    H100_80GIB_2G_20GIB = "h100_80gib_2g.20gb"
    H100_80GIB_3G_40GIB = "h100_80gib_3g.40gb"
    H100_80GIB_4G_40GIB = "h100_80gib_4g.40gb"
    H100_80GIB_7G_80GIB = "h100"
    H200_141GIB_1G_18GIB = "h200_141gib_1g.18gb"
    H200_141GIB_1G_35GIB = "h200_141gib_1g.35gb"
    H200_141GIB_2G_35GIB = "h200_141gib_2g.35gb"
    H200_141GIB_3G_71GIB = "h200_141gib_3g.71gb"
    H200_141GIB_4G_71GIB = "h200_141gib_4g.71gb"
    H200_141GIB_7G_141GIB = "h200"
    B200_180GIB_1G_23GIB = "b200_180gib_1g.23gb"
    B200_180GIB_1G_45GIB = "b200_180gib_1g.45gb"
    B200_180GIB_2G_45GIB = "b200_180gib_2g.45gb"
    B200_180GIB_3G_90GIB = "b200_180gib_3g.90gb"
    B200_180GIB_4G_90GIB = "b200_180gib_4g.90gb"
    B200_180GIB_7G_180GIB = "b200"

    def __str__(self) -> str:
        return self.name

    @property
    def is_accelerator(self) -> bool:
        return self not in (ResourceType.CPU, ResourceType.MEMORY, ResourceType.EPHEMERAL_STORAGE)

    @property
    def mig_profile(self) -> str | None:
        """NVIDIA's name of this MIG slice (`"1g.10gb"`), or None for a whole GPU or another resource."""
        match = _MIG_VALUE.fullmatch(self.value)
        return match.group(1) if match else None

    @property
    def is_mig(self) -> bool:
        return self.mig_profile is not None


_MIG_VALUE = re.compile(r"[a-z0-9]+_\d+gib_(\d+g\.\d+gb)")
