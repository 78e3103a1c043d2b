"""The pre-flight checks: what can fail in seconds, checked before what takes minutes or writes anything.

Before a build (`experiment.package`, via `package_checked`): each registry a build pushes to must answer
(`GET /v2/`, the request code the registry reads use; answering is enough, credentials are podman's
business), and each cluster passed as `clusters=` must accept our login (one SSH connection: host key
and credentials). A problem there is raised before any build starts, saying that nothing was built.

Before a submission: `Launcher.submit` calls `preflight` once per batch, after planning and before rendering (which creates
folders on the cluster) and before any store row or sbatch. It raises one `ValidationError` naming every
problem it found, per cluster:

* size: a launch of more jobs than the cluster's `MaxJobCount` (the most job records slurmctld holds; each
  array task becomes one when it starts) cannot fit, whatever else runs there (checked when the limits
  were read from the cluster, not against Slurm's default);
* partitions, gres (and how many of a gres one node needs: GPUs per task x tasks sharing a node) and
  node features: checked against the partitions read with the cluster's limits (one SSH command, cached
  per machine and hour); a problem found in a cached read is checked again against a
  fresh read before refusing (an administrator may have added the partition since);
* dependencies: every job id the launch's dependencies name must be known to Slurm (`squeue`, else
  `sacct`), since Slurm ignores a dependency on an unknown id and starts the job at once. The ids come
  from jobs launched earlier; jobs this launch submits are not named by its own dependencies.

Whatever the cluster cannot answer (no accounting, a failed query, `xm-slurm preview` without a cluster)
is not refused: only what the cluster says is missing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from xmanager import xm

from xm_slurm.config import SlurmClusterConfig
from xm_slurm.dependencies import SlurmDependency
from xm_slurm.errors import ValidationError, XmSlurmError
from xm_slurm.experiment import provenance_git
from xm_slurm.experiment.connections import ClusterConnections, launch_transport_factory
from xm_slurm.experiment.dry_run import DryRunTransport
from xm_slurm.experiment.planning import Submission
from xm_slurm.experiment.script_errors import for_script
from xm_slurm.job_ids import SlurmJobId

if TYPE_CHECKING:
    from xm_slurm.packaging.image_ref import ImageReference
from xm_slurm.scheduler.limits import ClusterLimits, cached_limits
from xm_slurm.scheduler.preflight import gres_need, partition_problems, unknown_job_ids
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)

#: Unknown dependency ids named in one message (the rest are counted).
_MAX_NAMED = 5
#: Seconds a registry or a cluster's login gets to answer before a build.
BEFORE_BUILD_TIMEOUT_S = 20.0


#: The ids among some dependency ids that a cluster does not know (None: it cannot tell).
UnknownIds = Callable[[SlurmSSHConfig, Sequence[SlurmJobId]], Awaitable["list[SlurmJobId] | None"]]


def package_checked(
    packageables: Sequence[xm.Packageable], clusters: Sequence[SlurmClusterConfig] = ()
) -> Sequence[xm.Executable]:
    """`experiment.package`: the checks before a build, then the build (errors shaped for the script)."""
    try:
        _run_sync(before_build(_push_targets(packageables), clusters))
        return provenance_git.package(list(packageables))
    except XmSlurmError as e:
        raise for_script(e) from None


async def package_one_checked(packageable: xm.Packageable) -> xm.Executable:
    """`experiment.package_async` of one packageable, with the same checks first."""
    try:
        await before_build(_push_targets([packageable]), ())
        return await provenance_git.package_one(packageable)
    except XmSlurmError as e:
        raise for_script(e) from None


def _push_targets(packageables: Sequence[xm.Packageable]) -> list[ImageReference]:
    from xm_slurm.packaging.router import push_targets  # packaging (httpx) loads only for a package call

    return push_targets(packageables)


async def before_build(targets: Sequence[ImageReference], clusters: Sequence[SlurmClusterConfig]) -> None:
    """Raise the first problem (of its own kind: `PackagingError`, `HostKeyError`, ...) that a registry
    or a cluster has, each checked at once, before anything is built."""
    if not targets and not clusters:
        return
    started = time.monotonic()
    connections = ClusterConnections(launch_transport_factory())
    try:
        checks = [_registry_answers(t) for t in targets] + [_cluster_login(c, connections) for c in clusters]
        results = await asyncio.gather(*checks, return_exceptions=True)
    finally:
        await connections.aclose()
    for result in results:
        if isinstance(result, XmSlurmError):
            raise type(result)(f"before building (nothing was built): {result}") from result
        if isinstance(result, BaseException):
            raise result
    # Said on stderr, as packaging's own progress lines are: the reader sees what was ruled out.
    what = [f"registry {t.domain} answers" for t in targets] + [
        f"cluster {c.name!r} logs in" for c in clusters
    ]
    sys.stderr.write(f"xm-slurm: before building: {', '.join(what)} ({time.monotonic() - started:.1f} s)\n")


async def _registry_answers(ref: ImageReference) -> None:
    from xm_slurm.packaging import registry
    from xm_slurm.packaging.credentials import find_credentials

    creds = await asyncio.to_thread(find_credentials, ref.domain, ref.repository)
    status = await registry.ping(ref, credentials=creds, timeout=BEFORE_BUILD_TIMEOUT_S)
    if status in (401, 403):
        log.info("registry %s answers but wants credentials we did not find; podman's may do", ref.domain)


async def _cluster_login(cluster: SlurmClusterConfig, connections: ClusterConnections) -> None:
    transport = connections.transport(cluster.ssh)
    if isinstance(transport, DryRunTransport):  # a preview does not log in
        return
    await transport.run(["true"], timeout=BEFORE_BUILD_TIMEOUT_S, idempotent=True)


def _run_sync(coroutine: Awaitable[None]) -> None:
    """Run `coroutine` to the end from synchronous code, inside a running event loop too (in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xm-slurm-preflight") as pool:
        pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]


async def preflight(
    submissions: Sequence[Submission],
    limits: Callable[[SlurmSSHConfig], Awaitable[ClusterLimits]],
    connections: ClusterConnections,
    unknown_ids: UnknownIds | None = None,
) -> None:
    """Refuse the batch (`ValidationError`) if a cluster cannot run it as asked; see the module docstring.
    `unknown_ids` answers the dependency check (the launcher's, started when the adds were made)."""
    by_cluster: dict[SlurmSSHConfig, list[Submission]] = collections.defaultdict(list)
    for s in submissions:
        by_cluster[s.cluster.ssh].append(s)
    problems: list[str] = []
    for ssh, batch in by_cluster.items():
        problems += await _cluster_problems(batch, await limits(ssh), connections, unknown_ids)
    if problems:
        raise ValidationError("; ".join(problems) + "; nothing was submitted")


async def _cluster_problems(
    batch: list[Submission],
    limits: ClusterLimits,
    connections: ClusterConnections,
    unknown_ids: UnknownIds | None,
) -> list[str]:
    transport = connections.transport(batch[0].cluster.ssh)
    problems = size_problems(batch, limits)
    found = placement_problems(batch, limits)
    if found and limits.source == "cache":  # confirm against what the cluster says now
        found = placement_problems(batch, await cached_limits(transport, max_age=0))
    problems += found
    ids = dependency_ids(batch)
    if ids and isinstance(transport, DryRunTransport):
        log.info("preview: the dependencies on jobs %s are not checked", ", ".join(map(str, ids)))
    elif ids:
        ssh = batch[0].cluster.ssh
        unknown = await (unknown_ids(ssh, ids) if unknown_ids else unknown_job_ids(transport, ids))
        if unknown:
            problems.append(_unknown_message(unknown, batch[0].cluster.name))
    return problems


def size_problems(batch: Sequence[Submission], limits: ClusterLimits) -> list[str]:
    """The batch as job records (an array task, a hetjob component: one each) against MaxJobCount, when
    the cluster told it (Slurm's default is no reason to refuse: a site may allow far more)."""
    records = sum(len(s.trials) if s.array else len(s.components) for s in batch)
    if records <= limits.max_job_count or limits.source == "default":
        return []
    trials = sum(len(s.adds) for s in batch)
    name = batch[0].cluster.name
    return [
        f"this launch submits {records:,} jobs ({trials:,} work units) to cluster {name!r}, more than its "
        f"MaxJobCount of {limits.max_job_count:,} (the most jobs Slurm holds at once, each array task "
        f"counting once it starts); launch at most {limits.max_job_count:,} at a time"
    ]


def placement_problems(batch: Sequence[Submission], limits: ClusterLimits) -> list[str]:
    """Each distinct partition/gres/feature problem of the batch's components, once."""
    out: list[str] = []
    for s in batch:
        for component in s.components:
            executor = component.executor
            partition = executor.partition or s.cluster.partition
            requirements = executor.requirements
            need = gres_need(requirements)
            for problem in partition_problems(limits, s.cluster.name, partition, requirements.gres, need):
                if problem not in out:
                    out.append(problem)
    return out


def dependency_ids(batch: Sequence[Submission]) -> list[SlurmJobId]:
    """Every job id the batch's dependencies name, once each, in order."""
    ids: dict[SlurmJobId, None] = {}
    for s in batch:
        ids.update(dict.fromkeys(ids_of(s.dependency)))
    return list(ids)


def ids_of(dependency: SlurmDependency | None) -> list[SlurmJobId]:
    """The job ids one dependency names, once each, in order."""
    ids: dict[str, SlurmJobId] = {}
    for term in dependency.flatten() if dependency is not None else ():
        for job_id in getattr(term, "job_ids", ()):
            ids.setdefault(job_id, SlurmJobId.parse(job_id))
    return list(ids.values())


def _unknown_message(unknown: Sequence[SlurmJobId], cluster: str) -> str:
    named = ", ".join(str(j) for j in unknown[:_MAX_NAMED])
    more = f" and {len(unknown) - _MAX_NAMED} more" if len(unknown) > _MAX_NAMED else ""
    noun = "job" if len(unknown) == 1 else "jobs"
    return (
        f"the dependency names {noun} {named}{more}, which cluster {cluster!r} does not know (neither "
        "squeue nor sacct lists it); Slurm would ignore the dependency and start at once. Depend on jobs "
        "that exist, e.g. wu.after_completed() of a launched work unit"
    )


__all__ = [
    "before_build",
    "dependency_ids",
    "ids_of",
    "package_checked",
    "package_one_checked",
    "placement_problems",
    "preflight",
    "size_problems",
]
