"""What each component's step gets besides its payload (rendering layer, pure): its mounts as runtime
options, its rendezvous and job-group variables, its own log.

Rendezvous (every task, see also `payload.RENDEZVOUS`): the job script sets MASTER_ADDR to the first node
of the component (its name when it resolves, else the NodeAddr Slurm knows it by) and MASTER_PORT to
`MASTER_PORT_BASE + job id % MASTER_PORT_SPAN` (the component's own job id in a job group), so two jobs
that share a node get different ports; on the first node the script moves on from a port something
already listens on (a job whose id is a multiple of MASTER_PORT_SPAN away, or a service). The range
10000-19999 is unprivileged, below Linux's ephemeral ports (32768-60999) and below the SOCKS proxy's
ports (20000-39999, proxy.sh.j2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.errors import ValidationError
from xm_slurm.mounts import MountSpec

MASTER_PORT_BASE = 10000
MASTER_PORT_SPAN = 10000
# SLURMD_NODENAME: which Slurm node a task runs on (the host name may not say: a node can be one of
# several slurmd on a machine); not a SLURM_* name, so forwarded by name.
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT", "SLURMD_NODENAME")
DEBUG_VAR = "XM_SLURM_DEBUG"


#: Backslash, double quote and backquote escaped: inside double quotes only `$` stays special.
_DOUBLE_QUOTED: dict[str, str | int | None] = {"\\": "\\\\", '"': '\\"', "`": "\\`"}


def expandable(value: str) -> str:
    """Double-quoted for the job's bash: `$VARS` expand (a site's `/scratch/$USER`), nothing else does."""
    return '"' + value.translate(str.maketrans(_DOUBLE_QUOTED)) + '"'


def mount_options(mounts: Sequence[MountSpec], requirements: Any, runtime: ContainerRuntime) -> list[str]:
    """The runtime options for the mounts a job with `requirements` gets (a mount's selector decides).

    Podman: a folder under /dev (e.g. /dev/infiniband) is a `--device` (a bind mount of device nodes is not
    enough for rootful podman's device cgroup); anything else a `--volume=src:dst:ro|rw`. Apptainer and
    Singularity: `--bind=src:dst:ro|rw`.
    """
    out = []
    for mount in mounts:
        if not mount.applies_to(requirements):
            continue
        mode = "ro" if mount.read_only else "rw"
        if runtime is ContainerRuntime.PODMAN:
            if mount.source.startswith("/dev/"):
                perms = "r" if mount.read_only else "rw"
                out.append(f"--device={expandable(f'{mount.source}:{mount.target}:{perms}')}")
            else:
                out.append(f"--volume={expandable(f'{mount.source}:{mount.target}:{mode}')}")
        else:
            out.append(f"--bind={expandable(f'{mount.source}:{mount.target}:{mode}')}")
    return out


_ENV_UNSAFE = re.compile(r"[^A-Z0-9_]")


def group_env_names(names: Sequence[str]) -> list[str]:
    """`XM_SLURM_JOB_GROUP_<NAME>_NODELIST` spellings of the members' names (upper case, other characters
    as `_`); two names that spell the same are refused."""
    out: dict[str, str] = {}
    for name in names:
        key = _ENV_UNSAFE.sub("_", name.upper())
        if key in out:
            raise ValidationError(
                f"job group members {out[key]!r} and {name!r} both give XM_SLURM_JOB_GROUP_{key}_NODELIST; "
                "rename one"
            )
        out[key] = name
    return list(out)


def group_variables(names: Sequence[str]) -> list[str]:
    """The names of the job-group variables every component's tasks get."""
    keys = group_env_names(names)
    return [
        "XM_SLURM_JOB_GROUP_INDEX",
        "XM_SLURM_JOB_GROUP_NAME",
        *(f"XM_SLURM_JOB_GROUP_{k}_NODELIST" for k in keys),
    ]


def group_environment(names: Sequence[str]) -> list[tuple[str, str]]:
    """(variable, bash expression) of each member's node list (host names, comma-separated)."""
    return [
        (
            f"XM_SLURM_JOB_GROUP_{key}_NODELIST",
            f'"$(scontrol show hostnames "${{SLURM_JOB_NODELIST_HET_GROUP_{i}}}" | paste -sd, -)"',
        )
        for i, key in enumerate(group_env_names(names))
    ]


def rendezvous_sources(index: int, group: bool) -> tuple[str, str]:
    """The Slurm variables holding a component's node list and job id (in the batch script)."""
    if group:
        return f"SLURM_JOB_NODELIST_HET_GROUP_{index}", f"SLURM_JOB_ID_HET_GROUP_{index}"
    return "SLURM_JOB_NODELIST", "SLURM_JOB_ID"


def needs_setup_step(cluster: SlurmClusterConfig, replicas: int, group: bool) -> bool:
    """Whether a Podman component pulls its image in a set-up step on each of its nodes (its tasks may run
    on nodes other than the batch script's) rather than in the batch script."""
    return cluster.runtime is ContainerRuntime.PODMAN and (group or replicas > 1)
