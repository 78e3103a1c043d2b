"""General-purpose clusters of the Digital Research Alliance of Canada (DRAC); `cc` is an alias of this module.

Shared by every preset here (https://docs.alliancecan.ca/wiki/Apptainer/en; as in xmanager-slurm 0.4.7 and
0.5.0's presets): runtime Apptainer, prolog `module load apptainer` (plus `httpproxy` on narval and rorqual,
whose compute nodes have no internet, unless `proxy="submission-host"`), Apptainer's caches on `$SCRATCH` and
`$SLURM_TMPDIR`, your `/scratch/$USER` at `/scratch` (`SCRATCH=/scratch` in the container), your xm-slurm
state folder at `/xm-slurm-state` (`XM_SLURM_STATE_DIR`) and `~/.ssh` mounted; GPU jobs also get
`/dev/infiniband`. Logins try the automation node `robot.<cluster>.alliancecan.ca` first, then the login
node `<cluster>.alliancecan.ca:22`, with the site's ssh-ed25519 host key pinned for both
(https://docs.alliancecan.ca/wiki/Automation_in_the_context_of_multifactor_authentication). GPU
specifiers (MIG slices too) and the recommended CPUs and memory per GPU are from each cluster's page and
https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en; a job that sets no CPU or memory gets the
recommendation, one that sets another value keeps it (logged once).

The facts are records of `xm_slurm.contrib.clusters.sites.SITES`; each function here is a name over
`factory.build`, which documents the options: `user` (None: `~/.ssh/config` or the local user decides),
`account` (e.g. `def-<pi>` or `rrg-...`; None sends no `--account`), `partition`, `qos`, `host` (replaces
the endpoints, e.g. with an `~/.ssh/config` alias), `mounts` (added to the preset's), `validate` (your own
hook, run after the site's checks) and, on narval, rorqual, beluga and graham, `proxy` (None,
"submission-host" or "[user@]host"). beluga, cedar and graham are retired: calling them warns.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

from xm_slurm.config import MountSpec, SlurmClusterConfig
from xm_slurm.contrib.clusters.factory import RetiredSiteWarning, Validator, build
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
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Narval (École de technologie supérieure, Montreal).

    Source: https://docs.alliancecan.ca/wiki/Narval/en - robot `robot.narval.alliancecan.ca`, login
    `narval.alliancecan.ca`; GPU nodes with 4 x A100-SXM4 40 GB, specifier `a100` (12 CPUs, 128 GiB per GPU);
    MIG slices `a100_1g.5gb`, `a100_2g.10gb`, `a100_3g.20gb`, `a100_4g.20gb`; maximum job duration 7 days
    (168 h, checked by `validate`); compute nodes have no internet access (prolog loads `httpproxy`).
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
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Béluga (École de technologie supérieure, Montreal). RETIRED: its compute nodes closed on
    July 31 2025 (replaced by Rorqual); login nodes and storage remained reachable.

    Source: https://docs.alliancecan.ca/wiki/B%C3%A9luga/en. As in 0.4.7: robot `robot.beluga.alliancecan.ca` (port 22) with its pinned key; GPU nodes with 4 x V100-SXM2
    16 GB, specifier `tesla_v100-sxm2-16gb`; maximum job duration 7 days; no internet on compute nodes.
    Calling it warns (RetiredSiteWarning).
    """
    return build(SITES["beluga"], **locals())


def cedar(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Cedar (Simon Fraser University). RETIRED: service ended September 12 2025 (replaced by Fir).

    Source: https://docs.alliancecan.ca/wiki/Cedar/en. As in 0.4.7: robot `robot.cedar.alliancecan.ca` (port 22) with its pinned key; V100 32 GB -> `v100l`,
    P100 -> `p100` (P100 16 GB -> `p100l`); no `proxy`. Calling it warns (RetiredSiteWarning).
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
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Graham (University of Waterloo). RETIRED: replaced by Nibi.

    Source: https://docs.alliancecan.ca/wiki/Graham/en. As in 0.4.7: robot `robot.graham.alliancecan.ca` (port 22) with its pinned key; `proxy` defaults to
    "submission-host" (another proxy host loads `httpproxy` too); GPU specifiers `v100`, `p100`, `t4`,
    `a100`, `a5000`; jobs last at most 168 hours (checked by `validate`). Calling it warns
    (RetiredSiteWarning).
    """
    return build(SITES["graham"], **locals())


def fir(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Fir (Simon Fraser University), Cedar's successor.

    Source: https://docs.alliancecan.ca/wiki/Fir/en - robot `robot.fir.alliancecan.ca`, login
    `fir.alliancecan.ca`; GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100` (12 CPUs, 280 GiB per GPU),
    MIG slices `nvidia_h100_80gb_hbm3_{1g.10gb,2g.20gb,3g.40gb}`; maximum job duration 7 days (checked by
    `validate`); compute nodes have full internet access.
    """
    return build(SITES["fir"], **locals())


def nibi(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Nibi (SHARCNET, University of Waterloo), Graham's successor.

    Source: https://docs.alliancecan.ca/wiki/Nibi/en - robot `robot.nibi.alliancecan.ca`, login
    `nibi.alliancecan.ca`; GPU nodes with 8 x H100-SXM 80 GB, specifier `h100` (14 CPUs, 250 GiB per GPU),
    MIG slices `nvidia_h100_80gb_hbm3_{1g.10gb,2g.20gb,3g.40gb}`; AMD MI300A nodes
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
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Rorqual (École de technologie supérieure, Montreal), Béluga's successor.

    Source: https://docs.alliancecan.ca/wiki/Rorqual/en - robot `robot.rorqual.alliancecan.ca`, login
    `rorqual.alliancecan.ca`; GPU nodes with 4 x H100-SXM5 80 GB, specifier `h100` (16 CPUs, 124 GiB per
    GPU), MIG slices `h100_1g.10gb`, `h100_2g.20gb`, `h100_3g.40gb`; maximum job duration 7 days (checked by
    `validate`); compute nodes have no internet access (prolog loads `httpproxy`).
    """
    return build(SITES["rorqual"], **locals())


def trillium(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium CPU subcluster (SciNet, University of Toronto), Niagara's successor.

    Source: https://docs.alliancecan.ca/wiki/Trillium/en and https://docs.alliancecan.ca/wiki/Trillium_Quickstart
    - login `trillium.alliancecan.ca`; CPU jobs only (GPU jobs go through `trillium_gpu`), scheduled by
    whole 192-core node; `$HOME` and `$PROJECT` are read-only on compute nodes and jobs must be submitted
    from `$SCRATCH`: point the experiment's state directory there; no internet on compute nodes. Not
    among upstream's presets: login node only, no pinned host key (known_hosts decides).
    """
    return build(SITES["trillium"], **locals())


def trillium_gpu(
    user: str | None = None,
    *,
    account: str | None = None,
    partition: str | None = None,
    qos: str | None = None,
    host: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
    validate: Validator | None = None,
) -> SlurmClusterConfig:
    """Trillium GPU subcluster (SciNet, University of Toronto).

    Source: https://docs.alliancecan.ca/wiki/Trillium/en - login `trillium-gpu.alliancecan.ca`; 63 nodes
    with 4 x H100-SXM 80 GB, specifier `h100` (https://docs.alliancecan.ca/wiki/Using_GPUs_with_Slurm/en);
    scheduled by whole GPU or whole node (no MIG); same file-system restrictions as `trillium`; login
    node only, no pinned host key.
    """
    return build(SITES["trillium-gpu"], **locals())


#: What `all()` returns, as in 0.4.7 (its DRAC module then held these four clusters).
ALL_047 = ("narval", "beluga", "cedar", "graham")


def all(  # 0.4.7's name (shadows the builtin here), kept for its launch scripts
    user: str | None = None,
    *,
    account: str | None = None,
    mounts: Mapping[str, str] | Sequence[MountSpec] | None = None,
) -> list[SlurmClusterConfig]:
    """The configs of 0.4.7's `drac.all()`: narval, beluga, cedar and graham (the last three are retired).

    Kept for 0.4.7 launch scripts; it warns (one RetiredSiteWarning, at the caller's line) that three of them
    are retired. New scripts name the cluster they want (e.g. `drac.rorqual`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RetiredSiteWarning)  # said once below, for all three
        configs = [build(SITES[name], user, account=account, mounts=mounts) for name in ALL_047]
    retired = [name for name in ALL_047 if SITES[name].retired]
    warnings.warn(
        f"drac.all() (0.4.7's list) includes the retired clusters {', '.join(retired)}: "
        + "; ".join(f"{name}: {SITES[name].retired}" for name in retired),
        RetiredSiteWarning,
        stacklevel=2,
    )
    return configs
