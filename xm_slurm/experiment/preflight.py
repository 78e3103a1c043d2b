"""The launch pre-flight: what the cluster itself must confirm before a launch writes anything there.

`Launcher.submit` calls `preflight` once per batch, after planning and before rendering (which creates
folders on the cluster) and before any store row or sbatch. It raises one `ValidationError` naming every
problem it found, per cluster:

* size: a launch of more jobs than the cluster's `MaxJobCount` (the most job records slurmctld holds; each
  array task becomes one when it starts) cannot fit, whatever else runs there (checked when the limits
  were read from the cluster, not against Slurm's default);
* partitions, gres and node features: checked against the partitions read with the cluster's limits (one
  SSH command, cached per machine and hour); a problem found in a cached read is checked again against a
  fresh read before refusing (an administrator may have added the partition since);
* dependencies: every job id the launch's dependencies name must be known to Slurm (`squeue`, else
  `sacct`), since Slurm ignores a dependency on an unknown id and starts the job at once. The ids come
  from jobs launched earlier; jobs this launch submits are not named by its own dependencies.

Whatever the cluster cannot answer (no accounting, a failed query, `xm-slurm preview` without a cluster)
is not refused: only what the cluster says is missing.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

from xm_slurm.dependencies import SlurmDependency
from xm_slurm.errors import ValidationError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.dry_run import DryRunTransport
from xm_slurm.experiment.planning import Submission
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.limits import ClusterLimits, cached_limits
from xm_slurm.scheduler.preflight import partition_problems, unknown_job_ids
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)

#: Unknown dependency ids named in one message (the rest are counted).
_MAX_NAMED = 5


#: The ids among some dependency ids that a cluster does not know (None: it cannot tell).
UnknownIds = Callable[[SlurmSSHConfig, Sequence[SlurmJobId]], Awaitable["list[SlurmJobId] | None"]]


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
            gres = executor.requirements.gres
            for problem in partition_problems(limits, s.cluster.name, partition, gres):
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


__all__ = ["dependency_ids", "ids_of", "placement_problems", "preflight", "size_problems"]
