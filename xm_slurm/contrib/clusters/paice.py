"""Pan-Canadian AI Compute Environment (PAICE) clusters of the Alliance: Killarney, Vulcan, tamIA.

They run the Alliance software stack, so they share the DRAC set-up (Apptainer, `module load apptainer`,
`/project` and `/scratch` binds; see `xm_slurm.contrib.clusters.drac`). Jobs run under an AIP allocation:
pass `account="aip-<pi>"`. GPU specifiers: https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en.
No SSH host key is pinned; `known_hosts` verification applies.
"""

from __future__ import annotations

import datetime as dt

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.contrib.clusters._alliance import alliance_cluster
from xm_slurm.contrib.clusters._common import Validator, site_limits
from xm_slurm.resources import ResourceType

__all__ = ["killarney", "tamia", "vulcan"]


def killarney(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Killarney (Vector Institute and SciNet, University of Toronto).

    Source: https://docs.alliancecan.ca/wiki/Killarney/en - login `killarney.alliancecan.ca`; nodes with
    4 x L40S 48 GB and nodes with 8 x H100-SXM 80 GB; specifiers `l40s` and `h100`
    (https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en). Access is geo-blocked from some countries.
    """
    return alliance_cluster(
        "killarney",
        "killarney.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={
            ResourceType.L40S: "l40s",
            ResourceType.H100: "h100",
            ResourceType.H100_80GIB: "h100",
        },
        site_validate=None,
        validate=validate,
    )


def vulcan(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Vulcan (University of Alberta and Amii).

    Source: https://docs.alliancecan.ca/wiki/Vulcan/en - login `vulcan.alliancecan.ca`; 252 nodes with
    4 x L40S 48 GB, specifier `l40s`; maximum job duration 7 days (checked by `validate`); compute nodes
    reach the internet only through a Squid proxy with whitelisted domains.
    """
    source = "https://docs.alliancecan.ca/wiki/Vulcan/en"
    return alliance_cluster(
        "vulcan",
        "vulcan.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={ResourceType.L40S: "l40s"},
        site_validate=site_limits("vulcan", max_time=dt.timedelta(days=7), source=source),
        validate=validate,
    )


def tamia(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """tamIA (Université Laval, co-managed by Mila and Calcul Québec).

    Source: https://docs.alliancecan.ca/wiki/TamIA/en - login `tamia.alliancecan.ca` (automation node
    `robot.tamia.ecpia.ca`); nodes with 4 x H100-SXM 80 GB (`h100`) and 8 x H200 141 GB (`h200`);
    jobs get whole nodes and must use all of a node's GPUs, so each task asks for exactly H100=4 or
    H200=8 (checked by `validate`); maximum job duration 24 hours (checked); no internet on compute
    nodes; reachable only from Canada.
    """
    source = "https://docs.alliancecan.ca/wiki/TamIA/en"
    return alliance_cluster(
        "tamia",
        "tamia.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={
            ResourceType.H100: "h100",
            ResourceType.H100_80GIB: "h100",
            ResourceType.H200: "h200",
        },
        site_validate=site_limits(
            "tamia",
            max_time=dt.timedelta(hours=24),
            gpus_per_task={ResourceType.H100: 4, ResourceType.H100_80GIB: 4, ResourceType.H200: 8},
            source=source,
        ),
        validate=validate,
    )
