"""The Mila cluster (Mila - Quebec AI Institute, Montreal); its facts are `SITES["mila"]`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xm_slurm.config import ContainerRuntime, MountSpec, SlurmClusterConfig
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
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """The Mila cluster.

    Facts and their sources (https://docs.mila.quebec; as in xmanager-slurm 0.4.7 and 0.5.0's preset):
      * login `login.server.mila.quebec`, port 2222, host key pinned (ssh-ed25519), public-key
        authentication (https://docs.mila.quebec/Userguide_login.html).
      * runtime Singularity, prolog `module load singularity`; its caches on `$SCRATCH` and `$SLURM_TMPDIR`.
      * mounts: your scratch `/network/scratch/<u>/<user>` at `/scratch` (and `SCRATCH=/scratch` in the
        container), your xm-slurm state folder at `/xm-slurm-state` (`XM_SLURM_STATE_DIR`), your `~/.ssh`;
        GPU jobs also get the node's NVIDIA tools and `/dev/infiniband`.
      * GPUs: RTX8000 -> `rtx8000`, V100 -> `v100`, A100 (40 GB) -> `a100`, A100_80GIB -> `a100l`,
        A6000 -> `a6000`, L40S -> `l40s`, H100 -> `h100`; no recommended CPU or memory per GPU.
      * compute nodes have unrestricted internet access (https://docs.mila.quebec/Information.html).

    user: your Mila user name; None lets `~/.ssh/config` (e.g. the `mila` entry written by `mila init`)
    or the local user name decide. partition: None sends no `--partition`. host: override the login host,
    e.g. with an `~/.ssh/config` alias; port: None lets the OpenSSH config files decide.
    mounts: added to the preset's (see `factory.build`).
    """
    # As its first statement, locals() is exactly the parameters: the signature is the list of options.
    return build(SITES["mila"], **locals())
