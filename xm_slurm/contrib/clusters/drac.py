"""General-purpose clusters of the Digital Research Alliance of Canada (DRAC).

Shared by every preset here (source: https://docs.alliancecan.ca/wiki/Apptainer/en): runtime Apptainer,
prolog `module load apptainer`, binds `/project` and `/scratch` (same paths in the container), and
`APPTAINER_CACHEDIR` on node-local storage. GPU specifiers come from the cluster's page and from
https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en (the `--gres=gpu:<type>:N` form is accepted
there; the Alliance recommends `--gpus-per-node` for new scripts). No SSH host key is pinned: none is
published in full (only fingerprints); `known_hosts` verification applies. Logins need the Alliance's
multifactor authentication; unattended use goes through an automation node (`host="robot.<cluster>..."`,
see https://docs.alliancecan.ca/wiki/Automation_in_the_context_of_multifactor_authentication).

Every preset takes `user` (None: `~/.ssh/config` or the local user decides), `account` (e.g.
`def-<pi>` or `rrg-...`), `partition`, `qos`, `host` (override the login host, e.g. an `~/.ssh/config`
alias or the automation node) and `validate` (your own hook, run after the site's checks).
"""

from __future__ import annotations

import datetime as dt

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.contrib.clusters._alliance import alliance_cluster
from xm_slurm.contrib.clusters._common import Validator, site_limits
from xm_slurm.resources import ResourceType

__all__ = ["beluga", "cedar", "fir", "graham", "narval", "nibi", "rorqual", "trillium", "trillium_gpu"]

_SEVEN_DAYS = dt.timedelta(hours=168)
_H100 = {ResourceType.H100: "h100", ResourceType.H100_80GIB: "h100"}


def narval(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Narval (École de technologie supérieure, Montreal).

    Source: https://docs.alliancecan.ca/wiki/Narval/en - login `narval.alliancecan.ca`; GPU nodes with
    4 x A100-SXM4 40 GB, specifier `a100` (MIG slices such as `a100_3g.20gb` are not mapped); maximum job
    duration 7 days (168 h, checked by `validate`); compute nodes have no internet access.
    """
    source = "https://docs.alliancecan.ca/wiki/Narval/en"
    return alliance_cluster(
        "narval",
        "narval.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={ResourceType.A100: "a100"},
        site_validate=site_limits("narval", max_time=_SEVEN_DAYS, source=source),
        validate=validate,
    )


def beluga(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Béluga (École de technologie supérieure, Montreal). RETIRED: its compute nodes closed on
    July 31 2025 (replaced by Rorqual); login nodes and storage remained reachable.

    Source: https://docs.alliancecan.ca/wiki/B%C3%A9luga/en - login `beluga.alliancecan.ca`; GPU nodes with
    4 x V100-SXM2 16 GB; maximum job duration 7 days; no internet on compute nodes. The specifier `v100`
    is from Mila's 2022 DRAC allocation table (https://github.com/mila-iqia/mila-docs, file
    docs/Extra_compute_drac.rst, "SLURM type specifier" column).
    """
    source = "https://docs.alliancecan.ca/wiki/B%C3%A9luga/en"
    return alliance_cluster(
        "beluga",
        "beluga.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={ResourceType.V100: "v100"},
        site_validate=site_limits("beluga", max_time=_SEVEN_DAYS, source=source),
        validate=validate,
    )


def cedar(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Cedar (Simon Fraser University). RETIRED: service ended September 12 2025 (replaced by Fir).

    Source: https://docs.alliancecan.ca/wiki/Cedar/en - login `cedar.alliancecan.ca`; GPU nodes with
    4 x V100 32 GB and 4 x P100 (12 or 16 GB). The V100 specifier `v100l` is from Mila's 2022 DRAC
    allocation table (https://github.com/mila-iqia/mila-docs, docs/Extra_compute_drac.rst). P100 is NOT mapped: its
    specifiers are unverified (add them with `dataclasses.replace(cfg, resources=...)` if you know them).
    """
    return alliance_cluster(
        "cedar",
        "cedar.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={ResourceType.V100: "v100l", ResourceType.V100_32GIB: "v100l"},
        site_validate=None,  # no maximum job duration is stated on the Cedar page
        validate=validate,
    )


def graham(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Graham (University of Waterloo). RETIRED: replaced by Nibi.

    Source: https://docs.alliancecan.ca/wiki/Graham/en - login `graham.alliancecan.ca`; GPU specifiers as
    given in its job examples: `v100` (V100 32 GB), `t4`, `a100`, `a5000`; jobs last at most 168 hours
    (checked by `validate`); no internet on compute nodes.
    """
    source = "https://docs.alliancecan.ca/wiki/Graham/en"
    return alliance_cluster(
        "graham",
        "graham.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={
            ResourceType.V100: "v100",
            ResourceType.V100_32GIB: "v100",
            ResourceType.T4: "t4",
            ResourceType.A100: "a100",
            ResourceType.A5000: "a5000",
        },
        site_validate=site_limits("graham", max_time=_SEVEN_DAYS, source=source),
        validate=validate,
    )


def fir(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Fir (Simon Fraser University), Cedar's successor.

    Source: https://docs.alliancecan.ca/wiki/Fir/en - login `fir.alliancecan.ca` (automation node
    `robot.fir.alliancecan.ca`); GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100` (MIG slices not
    mapped); maximum job duration 7 days (checked by `validate`); compute nodes have full internet access.
    """
    source = "https://docs.alliancecan.ca/wiki/Fir/en"
    return alliance_cluster(
        "fir",
        "fir.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources=_H100,
        site_validate=site_limits("fir", max_time=_SEVEN_DAYS, source=source),
        validate=validate,
    )


def nibi(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Nibi (SHARCNET, University of Waterloo), Graham's successor.

    Source: https://docs.alliancecan.ca/wiki/Nibi/en - login `nibi.alliancecan.ca` (automation node
    `robot.nibi.alliancecan.ca`); GPU nodes with 8 x H100-SXM 80 GB, specifier `h100`; AMD MI300A nodes
    (specifier `mi300a`) are not mapped because `ResourceType` has no MI300A member; `/home`, `/project`
    and `/scratch` on VAST; all nodes have internet access. No maximum job duration is stated on the page.
    """
    return alliance_cluster(
        "nibi",
        "nibi.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources=_H100,
        site_validate=None,
        validate=validate,
    )


def rorqual(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Rorqual (École de technologie supérieure, Montreal), Béluga's successor.

    Source: https://docs.alliancecan.ca/wiki/Rorqual/en - login `rorqual.alliancecan.ca` (automation
    node `robot.rorqual.alliancecan.ca`); GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100`; maximum
    job duration 7 days (checked by `validate`); compute nodes have no internet access.
    """
    source = "https://docs.alliancecan.ca/wiki/Rorqual/en"
    return alliance_cluster(
        "rorqual",
        "rorqual.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources=_H100,
        site_validate=site_limits("rorqual", max_time=_SEVEN_DAYS, source=source),
        validate=validate,
    )


def trillium(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium CPU subcluster (SciNet, University of Toronto), Niagara's successor.

    Source: https://docs.alliancecan.ca/wiki/Trillium/en and https://docs.alliancecan.ca/wiki/Trillium_Quickstart
    - login `trillium.alliancecan.ca`; CPU jobs only (GPU jobs go through `trillium_gpu`), scheduled by
    whole 192-core node; `$HOME` and `$PROJECT` are read-only on compute nodes and jobs must be submitted
    from `$SCRATCH`: point the experiment's state directory there; no internet on compute nodes.
    """
    return alliance_cluster(
        "trillium",
        "trillium.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources={},
        site_validate=None,
        validate=validate,
    )


def trillium_gpu(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium GPU subcluster (SciNet, University of Toronto).

    Source: https://docs.alliancecan.ca/wiki/Trillium/en - login `trillium-gpu.alliancecan.ca`; 63 nodes
    with 4 x H100-SXM 80 GB, specifier `h100` (https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en);
    scheduled by whole GPU or whole node (no MIG); same file-system restrictions as `trillium`.
    """
    return alliance_cluster(
        "trillium-gpu",
        "trillium-gpu.alliancecan.ca",
        user=user,
        account=account,
        partition=partition,
        qos=qos,
        host=host,
        resources=_H100,
        site_validate=None,
        validate=validate,
    )
