"""The Mila cluster (Mila - Quebec AI Institute, Montreal)."""

from __future__ import annotations

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.contrib.clusters._common import Validator, preset, ssh
from xm_slurm.resources import ResourceType

__all__ = ["mila"]

LOGIN_SOURCE = "https://docs.mila.quebec/Userguide_login.html"
NODES_SOURCE = "https://mila-docs.readthedocs.io/en/latest/technical_reference/clusters/mila/nodes/"
STORAGE_SOURCE = "https://mila-docs.readthedocs.io/en/latest/technical_reference/clusters/mila/storage/"
CONTAINERS_SOURCE = "https://docs.mila.quebec/Userguide_singularity_on_clusters.html"


def mila(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    port: int | None = 2222,
    runtime: ContainerRuntime = ContainerRuntime.SINGULARITY,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """The Mila cluster.

    Facts and their sources:
      * login `login.server.mila.quebec`, port 2222, public-key authentication
        (https://docs.mila.quebec/Userguide_login.html).
      * runtime: Singularity (`singularity exec --nv ...`, as in
        https://docs.mila.quebec/Userguide_singularity_on_clusters.html). Whether a `module load` is needed
        on Mila is unverified, so there is no prolog; pass `runtime=ContainerRuntime.APPTAINER` if your
        account uses Apptainer.
      * GPUs (https://mila-docs.readthedocs.io/en/latest/technical_reference/clusters/mila/nodes/):
        the documented GRES types are `a100` (A100 40 GB) and `a100l` (A100 80 GB). The other GPU models are
        selected through their documented, model-unique node features: RTX8000 -> `turing`,
        V100 (32 GB) -> `volta`, L40S -> `lovelace`, H100 (80 GB) -> `hopper`
        (renders `--gres=gpu:N --constraint=<feature>`). A6000 is left out: its nodes share their
        features (`ampere,48gb`) with no single-word constraint, and its GRES name is unverified.
      * mounts: `/network/scratch`, `/network/projects`, `/network/datasets`, `/network/weights`
        (https://mila-docs.readthedocs.io/en/latest/technical_reference/clusters/mila/storage/).
      * compute nodes have unrestricted internet access (https://docs.mila.quebec/Information.html).
      * No SSH host key is pinned: none is published in full; `known_hosts` verification applies.

    user: your Mila user name; None lets `~/.ssh/config` (e.g. the `mila` entry written by `mila init`)
    or the local user name decide. host: override the login host, e.g. with an `~/.ssh/config` alias;
    port: None lets the OpenSSH config files decide.
    """
    return preset(
        name="mila",
        ssh_config=ssh("login.server.mila.quebec", user=user, host=host, port=port),
        runtime=runtime,
        account=account,
        partition=partition,
        qos=qos,
        mounts={
            path: path
            for path in ("/network/scratch", "/network/projects", "/network/datasets", "/network/weights")
        },
        resources={ResourceType.A100: "a100", ResourceType.A100_80GIB: "a100l"},
        features={
            ResourceType.RTX8000: "turing",
            ResourceType.V100: "volta",
            ResourceType.V100_32GIB: "volta",
            ResourceType.L40S: "lovelace",
            ResourceType.H100: "hopper",
            ResourceType.H100_80GIB: "hopper",
        },
        validate=validate,
    )
