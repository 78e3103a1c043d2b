"""General-purpose clusters of the Digital Research Alliance of Canada (DRAC); `cc` is an alias of this module.

Shared by every preset here (source: https://docs.alliancecan.ca/wiki/Apptainer/en): runtime Apptainer,
prolog `module load apptainer`, binds `/project` and `/scratch` (same paths in the container), and
`APPTAINER_CACHEDIR` on node-local storage. GPU specifiers come from the cluster's page and from
https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en (the `--gres=gpu:<type>:N` form is accepted
there; the Alliance recommends `--gpus-per-node` for new scripts). No SSH host key is pinned: none is
published in full (only fingerprints); `known_hosts` verification applies. Logins need the Alliance's
multifactor authentication; unattended use goes through an automation node (`host="robot.<cluster>..."`,
see https://docs.alliancecan.ca/wiki/Automation_in_the_context_of_multifactor_authentication).

The facts are records of `xm_slurm.contrib.clusters.sites.SITES`; each function here is a name over
`factory.build`, which documents the options: `user` (None: `~/.ssh/config` or the local user decides),
`account` (e.g. `def-<pi>` or `rrg-...`), `partition`, `qos`, `host` (e.g. an `~/.ssh/config` alias or the
automation node), `mounts` (added to the preset's), `validate` (your own hook, run after the site's checks) and,
on narval, rorqual, beluga and graham, `proxy` (None, "submission-host" or "[user@]host").
"""

from __future__ import annotations

from collections.abc import Mapping

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.contrib.clusters.factory import Validator, build
from xm_slurm.contrib.clusters.sites import SITES

__all__ = [
    "ALL_047",
    "all",
    "beluga",
    "cedar",
    "fir",
    "graham",
    "narval",
    "nibi",
    "rorqual",
    "trillium",
    "trillium_gpu",
]

# Each function body is `build(site, **locals())`: as its first statement, locals() is exactly the
# parameters, so the signature is the one list of options (tests check it against `Site.options`).


def narval(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    proxy: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Narval (École de technologie supérieure, Montreal).

    Source: https://docs.alliancecan.ca/wiki/Narval/en - login `narval.alliancecan.ca`; GPU nodes with
    4 x A100-SXM4 40 GB, specifier `a100` (MIG slices such as `a100_3g.20gb` are not mapped); maximum job
    duration 7 days (168 h, checked by `validate`); compute nodes have no internet access.
    """
    return build(SITES["narval"], **locals())


def beluga(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    proxy: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Béluga (École de technologie supérieure, Montreal). RETIRED: its compute nodes closed on
    July 31 2025 (replaced by Rorqual); login nodes and storage remained reachable.

    Source: https://docs.alliancecan.ca/wiki/B%C3%A9luga/en - login `beluga.alliancecan.ca`; GPU nodes with
    4 x V100-SXM2 16 GB; maximum job duration 7 days; no internet on compute nodes. The specifier `v100`
    is from Mila's 2022 DRAC allocation table (https://github.com/mila-iqia/mila-docs, file
    docs/Extra_compute_drac.rst, "SLURM type specifier" column).
    """
    return build(SITES["beluga"], **locals())


def cedar(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Cedar (Simon Fraser University). RETIRED: service ended September 12 2025 (replaced by Fir).

    Source: https://docs.alliancecan.ca/wiki/Cedar/en - login `cedar.alliancecan.ca`; GPU nodes with
    4 x V100 32 GB and 4 x P100 (12 or 16 GB). The V100 specifier `v100l` is from Mila's 2022 DRAC
    allocation table (https://github.com/mila-iqia/mila-docs, docs/Extra_compute_drac.rst). P100 is NOT mapped:
    its specifiers are unverified (add them with `dataclasses.replace(cfg, resources=...)` if you know them).
    No maximum job duration is stated on the Cedar page.
    """
    return build(SITES["cedar"], **locals())


def graham(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    proxy: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Graham (University of Waterloo). RETIRED: replaced by Nibi.

    Source: https://docs.alliancecan.ca/wiki/Graham/en - login `graham.alliancecan.ca`; GPU specifiers as
    given in its job examples: `v100` (V100 32 GB), `t4`, `a100`, `a5000`; jobs last at most 168 hours
    (checked by `validate`); no internet on compute nodes.
    """
    return build(SITES["graham"], **locals())


def fir(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Fir (Simon Fraser University), Cedar's successor.

    Source: https://docs.alliancecan.ca/wiki/Fir/en - login `fir.alliancecan.ca` (automation node
    `robot.fir.alliancecan.ca`); GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100` (MIG slices not
    mapped); maximum job duration 7 days (checked by `validate`); compute nodes have full internet access.
    """
    return build(SITES["fir"], **locals())


def nibi(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Nibi (SHARCNET, University of Waterloo), Graham's successor.

    Source: https://docs.alliancecan.ca/wiki/Nibi/en - login `nibi.alliancecan.ca` (automation node
    `robot.nibi.alliancecan.ca`); GPU nodes with 8 x H100-SXM 80 GB, specifier `h100`; AMD MI300A nodes
    (specifier `mi300a`) are not mapped because `ResourceType` has no MI300A member; `/home`, `/project`
    and `/scratch` on VAST; all nodes have internet access. No maximum job duration is stated on the page.
    """
    return build(SITES["nibi"], **locals())


def rorqual(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    proxy: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Rorqual (École de technologie supérieure, Montreal), Béluga's successor.

    Source: https://docs.alliancecan.ca/wiki/Rorqual/en - login `rorqual.alliancecan.ca` (automation
    node `robot.rorqual.alliancecan.ca`); GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100`; maximum
    job duration 7 days (checked by `validate`); compute nodes have no internet access.
    """
    return build(SITES["rorqual"], **locals())


def trillium(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium CPU subcluster (SciNet, University of Toronto), Niagara's successor.

    Source: https://docs.alliancecan.ca/wiki/Trillium/en and https://docs.alliancecan.ca/wiki/Trillium_Quickstart
    - login `trillium.alliancecan.ca`; CPU jobs only (GPU jobs go through `trillium_gpu`), scheduled by
    whole 192-core node; `$HOME` and `$PROJECT` are read-only on compute nodes and jobs must be submitted
    from `$SCRATCH`: point the experiment's state directory there; no internet on compute nodes.
    """
    return build(SITES["trillium"], **locals())


def trillium_gpu(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium GPU subcluster (SciNet, University of Toronto).

    Source: https://docs.alliancecan.ca/wiki/Trillium/en - login `trillium-gpu.alliancecan.ca`; 63 nodes
    with 4 x H100-SXM 80 GB, specifier `h100` (https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en);
    scheduled by whole GPU or whole node (no MIG); same file-system restrictions as `trillium`.
    """
    return build(SITES["trillium-gpu"], **locals())


#: What `all()` returns, as in 0.4.7 (its DRAC module then held these four clusters).
ALL_047 = ("narval", "beluga", "cedar", "graham")


def all(  # 0.4.7's name (shadows the builtin here), kept for its launch scripts
    user: str | None = None,
    *,
    account: str | None = None,
    mounts: Mapping[str, str] | None = None,
) -> list[SlurmClusterConfig]:
    """The configs of 0.4.7's `drac.all()`: narval, beluga, cedar and graham (the last three are retired).

    Kept for 0.4.7 launch scripts; new scripts name the cluster they want (e.g. `drac.rorqual`).
    """
    return [build(SITES[name], user, account=account, mounts=mounts) for name in ALL_047]
