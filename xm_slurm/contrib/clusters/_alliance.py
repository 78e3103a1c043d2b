"""What every Digital Research Alliance of Canada (DRAC) cluster shares: Apptainer, its module, binds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.contrib.clusters._common import Validator, preset, ssh
from xm_slurm.resources import ResourceType

APPTAINER_SOURCE = "https://docs.alliancecan.ca/wiki/Apptainer/en"
GPUS_SOURCE = "https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en"

# The Apptainer page: `module load apptainer`; bind `/project` and `/scratch`; keep APPTAINER_CACHEDIR off
# networked file systems. $SLURM_TMPDIR is the node-local job directory on these clusters (and on Trillium,
# where $HOME is read-only from compute nodes, the default cache under $HOME would fail).
PROLOG = "module load apptainer"
HOST_ENVIRONMENT = {"APPTAINER_CACHEDIR": "${SLURM_TMPDIR:-/tmp}/apptainer-cache"}
MOUNTS = {"/project": "/project", "/scratch": "/scratch"}


def chain(site: Validator | None, extra: Validator | None) -> Validator | None:
    """Run the site's checks, then the caller's own `validate` hook."""
    if site is None or extra is None:
        return site or extra

    def validate(job: Any) -> None:
        site(job)
        extra(job)

    validate.__name__ = getattr(site, "__name__", "validate")
    return validate


def alliance_cluster(
    name: str,
    login: str,
    *,
    user: str | None,
    account: str | None,
    partition: str | None,
    qos: str | None,
    host: str | None,
    resources: Mapping[ResourceType, str],
    site_validate: Validator | None,
    validate: Validator | None,
) -> SlurmClusterConfig:
    return preset(
        name=name,
        ssh_config=ssh(login, user=user, host=host),
        runtime=ContainerRuntime.APPTAINER,
        account=account,
        partition=partition,
        qos=qos,
        prolog=PROLOG,
        host_environment=HOST_ENVIRONMENT,
        mounts=MOUNTS,
        resources=resources,
        validate=chain(site_validate, validate),
    )
