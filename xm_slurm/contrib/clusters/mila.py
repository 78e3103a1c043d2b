"""The Mila cluster (Mila - Quebec AI Institute, Montreal); its facts are `SITES["mila"]`."""

from __future__ import annotations

from collections.abc import Mapping

from xm_slurm.config import ContainerRuntime, SlurmClusterConfig
from xm_slurm.contrib.clusters.factory import Validator, build
from xm_slurm.contrib.clusters.sites import SITES

__all__ = ["mila"]


def mila(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    port: int | None = 2222,
    runtime: ContainerRuntime = ContainerRuntime.SINGULARITY,
    mounts: Mapping[str, str] | None = None,
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
    port: None lets the OpenSSH config files decide. mounts: added to the preset's (see `factory.build`).
    """
    # As its first statement, locals() is exactly the parameters: the signature is the list of options.
    return build(SITES["mila"], **locals())
