"""The site facts behind every preset, as plain frozen data: one `Site` record per cluster in `SITES`.

`xm_slurm.contrib.clusters.factory.build` turns a record and the caller's options into a `SlurmClusterConfig`;
the preset functions (`drac.narval`, `mila`, ...) and `by_name` are thin names over it. Each preset function's
docstring gives the source of every fact; `Site.source` is the main page. Model layer: no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from immutabledict import immutabledict

from xm_slurm.config import ContainerRuntime
from xm_slurm.resources import ResourceType
from xm_slurm.ssh_config import PublicKey

__all__ = ["MILA_OPTIONS", "OPTIONS", "PROXY_OPTIONS", "SITES", "Site"]

R = ResourceType

#: The keyword options every preset takes besides `user` (see `factory.build` for their meaning).
OPTIONS = frozenset({"account", "partition", "qos", "host", "mounts", "validate"})
#: The DRAC presets that took `proxy=` in 0.4.7 (narval, beluga, graham) or take it upstream (narval, rorqual).
PROXY_OPTIONS = OPTIONS | {"proxy"}
MILA_OPTIONS = OPTIONS | {"port", "runtime"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Site:
    """What one cluster is: how to reach it, how its jobs run containers, and what its scheduler accepts.

    name: the preset's registry key and `SlurmClusterConfig.name`.
    login, port: the login node (`host=` overrides it) and its SSH port (None: OpenSSH config, else 22).
    host_public_key: a pinned host key, or None (known_hosts decides).
    resources, features: accelerator -> GRES type / node feature.
    max_time, gpus_per_task: limits the preset's `validate` hook checks (None / empty: no check).
    options: the keyword options the preset accepts besides `user`.
    compute_internet: True/False as the site documents it for compute nodes, None when partial (a proxy).
    """

    name: str
    family: str
    source: str
    login: str
    port: int | None = None
    host_public_key: PublicKey | None = None
    runtime: ContainerRuntime
    prolog: str | None = None
    host_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    container_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    mounts: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    resources: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    features: Mapping[ResourceType, str] = dataclasses.field(default_factory=immutabledict)
    max_time: dt.timedelta | None = None
    gpus_per_task: Mapping[ResourceType, int] = dataclasses.field(default_factory=immutabledict)
    options: frozenset[str] = OPTIONS
    retired: bool = False
    compute_internet: bool | None = False

    def __post_init__(self) -> None:
        # The mappings are frozen too: nothing built from a record can change the table.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Mapping):
                object.__setattr__(self, field.name, immutabledict(value))


_MILA_MOUNTS = ("/network/scratch", "/network/projects", "/network/datasets", "/network/weights")

MILA = Site(
    name="mila",
    family="Mila",
    source="https://mila-docs.readthedocs.io/en/latest/technical_reference/clusters/mila/nodes/",
    login="login.server.mila.quebec",
    port=2222,
    runtime=ContainerRuntime.SINGULARITY,
    mounts={path: path for path in _MILA_MOUNTS},
    resources={R.A100: "a100", R.A100_80GIB: "a100l"},
    # Models without a documented GRES type, selected by their model-unique node feature.
    features={
        R.RTX8000: "turing",
        R.V100: "volta",
        R.V100_32GIB: "volta",
        R.L40S: "lovelace",
        R.H100: "hopper",
        R.H100_80GIB: "hopper",
    },
    options=MILA_OPTIONS,
    compute_internet=True,
)

# What every Alliance cluster shares (https://docs.alliancecan.ca/wiki/Apptainer/en): `module load apptainer`,
# binds of /project and /scratch, and the image cache off networked file systems ($SLURM_TMPDIR is the
# node-local job directory; on Trillium $HOME is read-only from compute nodes).
_ALLIANCE: dict[str, Any] = {
    "runtime": ContainerRuntime.APPTAINER,
    "prolog": "module load apptainer",
    "host_environment": {"APPTAINER_CACHEDIR": "${SLURM_TMPDIR:-/tmp}/apptainer-cache"},
    "mounts": {"/project": "/project", "/scratch": "/scratch"},
}
_WIKI = "https://docs.alliancecan.ca/wiki/"
_SEVEN_DAYS = dt.timedelta(hours=168)
_H100 = {R.H100: "h100", R.H100_80GIB: "h100"}


def _alliance(name: str, page: str, family: str = "DRAC", **facts: Any) -> Site:
    login = f"{name}.alliancecan.ca"
    return Site(name=name, family=family, source=_WIKI + page, login=login, **_ALLIANCE, **facts)


DRAC = (
    _alliance(
        "narval",
        "Narval/en",
        resources={R.A100: "a100"},
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
    ),
    _alliance(
        "beluga",
        "B%C3%A9luga/en",
        resources={R.V100: "v100"},
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
        retired=True,
    ),
    _alliance(
        "cedar",
        "Cedar/en",
        resources={R.V100: "v100l", R.V100_32GIB: "v100l"},
        retired=True,
        compute_internet=True,
    ),
    _alliance(
        "graham",
        "Graham/en",
        resources={R.V100: "v100", R.V100_32GIB: "v100", R.T4: "t4", R.A100: "a100", R.A5000: "a5000"},
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
        retired=True,
    ),
    _alliance(
        "fir",
        "Fir/en",
        resources=_H100,
        max_time=_SEVEN_DAYS,
        compute_internet=True,
    ),
    _alliance(
        "nibi",
        "Nibi/en",
        resources=_H100,
        compute_internet=True,
    ),
    _alliance(
        "rorqual",
        "Rorqual/en",
        resources=_H100,
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
    ),
    _alliance(
        "trillium",
        "Trillium/en",
    ),
    _alliance(
        "trillium-gpu",
        "Trillium/en",
        resources=_H100,
    ),
)

PAICE = (
    _alliance(
        "killarney",
        "Killarney/en",
        family="DRAC PAICE",
        resources={R.L40S: "l40s", **_H100},
        compute_internet=True,
    ),
    _alliance(
        "vulcan",
        "Vulcan/en",
        family="DRAC PAICE",
        resources={R.L40S: "l40s"},
        max_time=dt.timedelta(days=7),
        compute_internet=None,  # only through a whitelisting Squid proxy
    ),
    _alliance(
        "tamia",
        "TamIA/en",
        family="DRAC PAICE",
        resources={**_H100, R.H200: "h200"},
        max_time=dt.timedelta(hours=24),
        # Whole nodes only, and every GPU of the node.
        gpus_per_task={R.H100: 4, R.H100_80GIB: 4, R.H200: 8},
    ),
)

#: Every known site, by preset name.
SITES: Mapping[str, Site] = immutabledict({site.name: site for site in (MILA, *DRAC, *PAICE)})
