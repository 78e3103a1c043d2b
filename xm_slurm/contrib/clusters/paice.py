"""Pan-Canadian AI Compute Environment (PAICE) clusters of the Alliance: Killarney, Vulcan, tamIA.

They run the Alliance software stack, so they share the DRAC set-up (Apptainer, `module load apptainer`,
the same environment and mounts; see `xm_slurm.contrib.clusters.drac`, whose options they take, except
`proxy`). Jobs run under an AIP allocation: pass `account="aip-<pi>"`. GPU specifiers:
https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en. Each site's ssh-ed25519 host key is pinned.
Killarney and Vulcan: login node only. tamIA: its automation node `robot.tamia.ecpia.ca` (documented on
the site's page; upstream's preset has none) first, then `tamia.alliancecan.ca:22`. The facts are records of
`xm_slurm.contrib.clusters.sites.SITES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xm_slurm.config import MountSpec, SlurmClusterConfig
from xm_slurm.contrib.clusters.factory import Validator, build
from xm_slurm.contrib.clusters.sites import SITES

__all__ = ["killarney", "tamia", "vulcan"]

# As in drac.py: as the first statement, locals() is exactly the parameters.


def killarney(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Killarney (Vector Institute and SciNet, University of Toronto).

    Source: https://docs.alliancecan.ca/wiki/Killarney/en - login `killarney.alliancecan.ca`; nodes with
    4 x L40S 48 GB and nodes with 8 x H100-SXM 80 GB; specifiers `l40s` and `h100`
    (https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en). Access is geo-blocked from some countries.
    """
    return build(SITES["killarney"], **locals())


def vulcan(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Vulcan (University of Alberta and Amii).

    Source: https://docs.alliancecan.ca/wiki/Vulcan/en - login `vulcan.alliancecan.ca`; 252 nodes with
    4 x L40S 48 GB, specifier `l40s`; maximum job duration 7 days (checked by `validate`); compute nodes
    reach the internet only through a Squid proxy with whitelisted domains.
    """
    return build(SITES["vulcan"], **locals())


def tamia(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """tamIA (Université Laval, co-managed by Mila and Calcul Québec).

    Source: https://docs.alliancecan.ca/wiki/TamIA/en - login `tamia.alliancecan.ca` (automation node
    `robot.tamia.ecpia.ca`); nodes with 4 x H100-SXM 80 GB (`h100`) and 8 x H200 141 GB (`h200`);
    jobs get whole nodes and must use all of a node's GPUs, so each task asks for exactly H100=4 or
    H200=8 (checked by `validate`); recommended 12 CPUs and 124 GiB per H100; maximum job duration 24 hours
    (checked); no internet on compute nodes; reachable only from Canada.
    """
    return build(SITES["tamia"], **locals())
