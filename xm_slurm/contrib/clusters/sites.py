"""The site facts behind every preset, as plain frozen data: one `Site` record per cluster in `SITES`.

`xm_slurm.contrib.clusters.factory.build` turns a record and the caller's options into a `SlurmClusterConfig`;
the preset functions (`drac.narval`, `mila`, ...) and `by_name` are thin names over it. Each preset function's
docstring gives the source of every fact; `Site.source` is the main page. Logins, host keys, modules,
environments, mounts, GPU names and recommended resources of Mila and the current Alliance sites are those
the sites publish (as collected in xmanager-slurm 0.5.0's presets, checked against the sites' pages where
they were reachable); the retired sites keep 0.4.7's. Model data: no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

from immutabledict import immutabledict

from xm_slurm.config import ContainerRuntime, Endpoint, MountSpec, infiniband_mounts, nvidia_mounts
from xm_slurm.ssh_config import PublicKey

__all__ = [
    "ALIASES",
    "MILA_OPTIONS",
    "OPTIONS",
    "PROXY_OPTIONS",
    "SITES",
    "Endpoint",
    "PerUnit",
    "Site",
]

#: The keyword options every preset takes besides `user` (see `factory.build` for their meaning).
OPTIONS = frozenset({"account", "partition", "qos", "host", "mounts", "validate"})
#: The DRAC presets that took `proxy=` in 0.4.7 (narval, beluga, graham) or take it upstream (narval, rorqual).
PROXY_OPTIONS = OPTIONS | {"proxy"}
MILA_OPTIONS = OPTIONS | {"port", "runtime"}


class PerUnit(NamedTuple):
    """The CPUs and memory (GiB) a site recommends per accelerator unit (one GPU or one MIG slice)."""

    cpus: int
    memory_gib: int


#: Other `ResourceType` names for the same full GPU; a site's entry for the first name applies to each
#: that `ResourceType` has (MIG and size-suffixed members come with the GPU work, see `factory.resource`).
ALIASES: Mapping[str, tuple[str, ...]] = immutabledict(
    {
        "A100": ("A100_40GIB", "A100_7G_40GIB"),
        "A100_80GIB": ("A100_80GIB_7G_80GIB",),
        "H100": ("H100_80GIB", "H100_80GIB_7G_80GIB"),
        "L40S": ("L40S_48GIB",),
    }
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Site:
    """What one cluster is: how to reach it, how its jobs run containers, and what its scheduler accepts.

    name: the preset's registry key and `SlurmClusterConfig.name`.
    endpoints: login addresses in the order tried (the automation "robot" node first, then the login node);
      `host=` replaces them. host_public_key: the site's one pinned key, for every endpoint, or None
      (known_hosts decides).
    modules: loaded by the job's prolog (`module load ...`); proxy_module: added to them unless the
      job's proxy is "submission-host" (compute nodes without internet); default_proxy: the proxy when the
      caller gives none.
    mounts: the site's binds (paths may hold `$USER`, expanded on the node; NVIDIA and InfiniBand ones are
      for GPU jobs only); user mounts are added, and win at the same container path.
    gres: accelerator (`ResourceType` name) -> GRES type; per_unit: the recommended CPUs and memory per unit
      of an accelerator; the generic GPU takes `full_gpu`'s.
    max_time, gpus_per_task: limits the preset's `validate` hook checks (None / empty: no check).
    options: the keyword options the preset accepts besides `user`.
    compute_internet: True/False as the site documents it for compute nodes, None when partial (a proxy).
    """

    name: str
    family: str
    source: str
    endpoints: tuple[Endpoint, ...]
    host_public_key: PublicKey | None = None
    runtime: ContainerRuntime
    modules: tuple[str, ...] = ()
    proxy_module: str | None = None
    default_proxy: str | None = None
    host_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    container_environment: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    mounts: tuple[MountSpec, ...] = ()
    gres: Mapping[str, str] = dataclasses.field(default_factory=immutabledict)
    per_unit: Mapping[str, PerUnit] = dataclasses.field(default_factory=immutabledict)
    full_gpu: str | None = None
    max_time: dt.timedelta | None = None
    gpus_per_task: Mapping[str, int] = dataclasses.field(default_factory=immutabledict)
    options: frozenset[str] = OPTIONS
    retired: str | None = None
    compute_internet: bool | None = False

    def __post_init__(self) -> None:
        # The mappings are frozen too: nothing built from a record can change the table.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Mapping):
                object.__setattr__(self, field.name, immutabledict(value))

    @property
    def login(self) -> str:
        """The login node (the last endpoint: the one every account may use)."""
        return self.endpoints[-1].hostname

    @property
    def port(self) -> int | None:
        return self.endpoints[-1].port


def _ed25519(key: str) -> PublicKey:
    return PublicKey("ssh-ed25519", key)


# --- Mila (https://docs.mila.quebec) -----------------------------------------------------------------------

_MILA_HOME = "/home/mila/${USER:0:1}/$USER"

MILA = Site(
    name="mila",
    family="Mila",
    source="https://docs.mila.quebec/Userguide_login.html",
    endpoints=(Endpoint("login.server.mila.quebec", 2222),),
    host_public_key=_ed25519("AAAAC3NzaC1lZDI1NTE5AAAAIBTPCzWRkwYDr/cFb4d2uR6rFlUtqfH3MoLMXPpJHK0n"),
    runtime=ContainerRuntime.SINGULARITY,
    modules=("singularity",),
    host_environment={
        "SINGULARITY_CACHEDIR": "$SCRATCH/.apptainer",
        "SINGULARITY_TMPDIR": "$SLURM_TMPDIR",
        "SINGULARITY_LOCALCACHEDIR": "$SLURM_TMPDIR",
    },
    container_environment={"SCRATCH": "/scratch", "XM_SLURM_STATE_DIR": "/xm-slurm-state"},
    mounts=(
        MountSpec("/network/scratch/${USER:0:1}/$USER", "/scratch"),
        MountSpec(f"{_MILA_HOME}/.local/state/xm-slurm", "/xm-slurm-state"),
        MountSpec(f"{_MILA_HOME}/.ssh"),
        *nvidia_mounts(),
        *infiniband_mounts(),
    ),
    gres={
        "RTX8000": "rtx8000",
        "V100": "v100",
        "A100": "a100",
        "A100_80GIB": "a100l",
        "A6000": "a6000",
        "L40S": "l40s",
        "H100": "h100",
    },
    options=MILA_OPTIONS,
    compute_internet=True,
)

# --- The Alliance (DRAC) -----------------------------------------------------------------------------------

_WIKI = "https://docs.alliancecan.ca/wiki/"
_SEVEN_DAYS = dt.timedelta(hours=168)

# What every Alliance cluster shares (https://docs.alliancecan.ca/wiki/Apptainer/en): Apptainer from its
# module, its caches off the networked file systems, the user's scratch at /scratch.
_ALLIANCE: dict[str, Any] = {
    "runtime": ContainerRuntime.APPTAINER,
    "modules": ("apptainer",),
    "host_environment": {
        "XDG_DATA_HOME": "$SLURM_TMPDIR/.local",
        "APPTAINER_CACHEDIR": "$SCRATCH/.apptainer",
        "APPTAINER_TMPDIR": "$SLURM_TMPDIR",
        "APPTAINER_LOCALCACHEDIR": "$SLURM_TMPDIR",
    },
    "container_environment": {"SCRATCH": "/scratch", "XM_SLURM_STATE_DIR": "/xm-slurm-state"},
    "mounts": (
        MountSpec("/scratch/$USER", "/scratch"),
        MountSpec("/home/$USER/.ssh"),
        MountSpec("/home/$USER/.local/state/xm-slurm", "/xm-slurm-state"),
        *infiniband_mounts(),
    ),
}


def _alliance(
    name: str,
    page: str,
    *,
    key: str | None,
    robot: str | None = "",
    family: str = "DRAC",
    **facts: Any,
) -> Site:
    """An Alliance site: robot node (robot="" means robot.<name>.alliancecan.ca; None: none) then login:22."""
    login = Endpoint(f"{name}.alliancecan.ca", 22)
    robot_host = f"robot.{name}.alliancecan.ca" if robot == "" else robot
    endpoints = (login,) if robot_host is None else (Endpoint(robot_host), login)
    return Site(
        name=name,
        family=family,
        source=_WIKI + page,
        endpoints=endpoints,
        host_public_key=None if key is None else _ed25519(key),
        **{**_ALLIANCE, **facts},
    )


def _mig(*slices: tuple[str, str, int, int]) -> tuple[dict[str, str], dict[str, PerUnit]]:
    """(ResourceType name, gres, CPUs, GiB) rows -> the gres and per-unit maps."""
    return {t: g for t, g, _, _ in slices}, {t: PerUnit(c, m) for t, _, c, m in slices}


_NARVAL_GRES, _NARVAL_PER_UNIT = _mig(
    ("A100", "a100", 12, 128),
    ("A100_40GIB_1G_5GIB", "a100_1g.5gb", 1, 15),
    ("A100_40GIB_2G_10GIB", "a100_2g.10gb", 3, 31),
    ("A100_40GIB_3G_20GIB", "a100_3g.20gb", 6, 62),
    ("A100_40GIB_4G_20GIB", "a100_4g.20gb", 6, 62),
)
_RORQUAL_GRES, _RORQUAL_PER_UNIT = _mig(
    ("H100", "h100", 16, 124),
    ("H100_80GIB_1G_10GIB", "h100_1g.10gb", 2, 15),
    ("H100_80GIB_2G_20GIB", "h100_2g.20gb", 4, 31),
    ("H100_80GIB_3G_40GIB", "h100_3g.40gb", 8, 62),
)
_FULL_H100_MIG = "nvidia_h100_80gb_hbm3_"
_FIR_GRES, _FIR_PER_UNIT = _mig(
    ("H100", "h100", 12, 280),
    ("H100_80GIB_1G_10GIB", _FULL_H100_MIG + "1g.10gb", 1, 35),
    ("H100_80GIB_2G_20GIB", _FULL_H100_MIG + "2g.20gb", 3, 70),
    ("H100_80GIB_3G_40GIB", _FULL_H100_MIG + "3g.40gb", 6, 140),
)
_NIBI_GRES, _NIBI_PER_UNIT = _mig(
    ("H100", "h100", 14, 250),
    ("H100_80GIB_1G_10GIB", _FULL_H100_MIG + "1g.10gb", 2, 31),
    ("H100_80GIB_2G_20GIB", _FULL_H100_MIG + "2g.20gb", 4, 62),
    ("H100_80GIB_3G_40GIB", _FULL_H100_MIG + "3g.40gb", 6, 124),
)

DRAC = (
    _alliance(
        "fir",
        "Fir/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIJtenyJz+inwobvlJntWYFNu+ANcVWNcOHRKcEN6zmDo",
        gres=_FIR_GRES,
        per_unit=_FIR_PER_UNIT,
        full_gpu="H100",
        max_time=_SEVEN_DAYS,
        compute_internet=True,
    ),
    _alliance(
        "narval",
        "Narval/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAILFxB0spH5RApc43sBx0zOxo1ARVH0ezU+FbQH95FW+h",
        proxy_module="httpproxy",
        gres=_NARVAL_GRES,
        per_unit=_NARVAL_PER_UNIT,
        full_gpu="A100",
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
    ),
    _alliance(
        "nibi",
        "Nibi/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIEcmFoQZr6+KUHm/zm/BJpnNIlME7GytMxbHgfAUfoQX",
        gres=_NIBI_GRES,
        per_unit=_NIBI_PER_UNIT,
        full_gpu="H100",
        compute_internet=True,
    ),
    _alliance(
        "rorqual",
        "Rorqual/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAINME5e9bifKZbuKKOQSpe3xrvC4g1b0QLMYj+AXBQGJe",
        proxy_module="httpproxy",
        gres=_RORQUAL_GRES,
        per_unit=_RORQUAL_PER_UNIT,
        full_gpu="H100",
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
    ),
    # Trillium is not among upstream's presets: its login nodes, no pinned key (none published in full).
    _alliance("trillium", "Trillium/en", key=None, robot=None),
    _alliance("trillium-gpu", "Trillium/en", key=None, robot=None, gres={"H100": "h100"}),
)

PAICE = (
    _alliance(
        "killarney",
        "Killarney/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIGlzaBBtvhJsSr23rMoY41gy8Svv1IOct8TBRH9CGuJf",
        robot=None,
        family="DRAC PAICE",
        gres={"L40S": "l40s", "H100": "h100"},
        compute_internet=True,
    ),
    _alliance(
        "vulcan",
        "Vulcan/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIMuIj6T45HqVeJgRotH9Qq46FzidekS2lXkD7FOTltnC",
        robot=None,
        family="DRAC PAICE",
        gres={"L40S": "l40s"},
        max_time=dt.timedelta(days=7),
        compute_internet=None,  # only through a whitelisting Squid proxy
    ),
    _alliance(
        "tamia",
        "TamIA/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIN2wL9wOa0VveA/2l2ky/OhPsQfYtKuX99dyNnUTSYeU",
        # The site documents an automation node in its own domain (upstream's preset has none).
        robot="robot.tamia.ecpia.ca",
        family="DRAC PAICE",
        gres={"H100": "h100", "H200": "h200"},
        per_unit={"H100": PerUnit(12, 124)},
        full_gpu="H100",
        max_time=dt.timedelta(hours=24),
        # Whole nodes only, and every GPU of the node.
        gpus_per_task={"H100": 4, "H200": 8},
    ),
)

# --- Retired: 0.4.7's presets, kept so that its launch scripts still import (and are told) ------------------

_RETIRED_PAGES = (
    _alliance(
        "beluga",
        "B%C3%A9luga/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIOAzTHRerKjcFhDqqgRss7Sj4xePWVn1f1QvBfUmX6Pe",
        proxy_module="httpproxy",
        gres={"V100": "tesla_v100-sxm2-16gb"},
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
        retired="its compute nodes closed on July 31 2025; use drac.rorqual",
    ),
    _alliance(
        "cedar",
        "Cedar/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIEsmR+vxeKYEDFIFj+nxlgp3ACs64VwVD5qBifQ2I5VS",
        gres={"V100": "v100l", "V100_32GIB": "v100l", "P100": "p100", "P100_16GIB": "p100l"},
        retired="it closed on September 12 2025; use drac.fir",
        compute_internet=True,
    ),
    _alliance(
        "graham",
        "Graham/en",
        key="AAAAC3NzaC1lZDI1NTE5AAAAIDPcZ+yKur5GvPoisN2KjtEbrem/0j+JviMfAk7GVlL9",
        # 0.4.7 tunnelled through the submission host by default; another proxy loads httpproxy too.
        proxy_module="httpproxy",
        default_proxy="submission-host",
        gres={
            "V100": "v100",
            "V100_32GIB": "v100",
            "P100": "p100",
            "T4": "t4",
            "A100": "a100",
            "A5000": "a5000",
        },
        max_time=_SEVEN_DAYS,
        options=PROXY_OPTIONS,
        retired="it was replaced by Nibi; use drac.nibi",
    ),
)

# Retired sites logged in to the robot node only, on port 22, in 0.4.7.
RETIRED = tuple(
    dataclasses.replace(site, endpoints=(Endpoint(f"robot.{site.name}.alliancecan.ca", 22),))
    for site in _RETIRED_PAGES
)

#: Every known site, by preset name.
SITES: Mapping[str, Site] = immutabledict({site.name: site for site in (MILA, *DRAC, *PAICE, *RETIRED)})
