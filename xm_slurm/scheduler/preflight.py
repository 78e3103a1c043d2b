"""Pre-flight questions a launch asks the cluster before anything is written there (read-only queries).

Why: Slurm accepts some requests it cannot honour. A dependency on a job id it does not know is ignored
(`afterok:99999999` runs the job at once), and an unknown partition or gres is refused only by sbatch, after
the launch has written its scripts. So a launch asks first, with one query per cluster:

* `unknown_job_ids`: which of a launch's dependency ids neither `squeue` (jobs slurmctld still holds) nor
  `sacct` (finished jobs, asked only for the ids squeue lacks) knows;
* `partition_problems`: the requested partitions, gres and node features against the partitions read
  with the cluster's limits (`scheduler.limits`, cached per machine and hour), and the gres a job needs on
  ONE node (`GresNeed`) against the most any node holds: sbatch refuses more ("Requested node configuration
  is not available"), yet Slurm 22.05 still records a FAILED job for it.

Each answers "cannot tell" (None / nothing) when the cluster cannot answer (no accounting, a failed
command): a pre-flight check only refuses what the cluster itself says is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.resources import JobRequirements
from xm_slurm.scheduler.limits import ClusterLimits
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)


def _known_numbers(text: str) -> set[int]:
    """Every job number named in squeue/sacct output (`123_4`, `123+1`, raw ids, `123_[5-9]`...)."""
    known: set[int] = set()
    for line in text.splitlines():
        for field in line.split("|"):
            try:
                job = SlurmJobId.parse(field.strip())
            except ValueError:
                continue
            known.add(job.job_id)
    return known


async def _ask(transport: Transport, command: list[str], absent: str) -> set[int] | None:
    """The job numbers a query prints; an error that only says an id is absent counts as none found."""
    result = await transport.run(command, check=False, idempotent=True)
    if result.exit_status == 0:
        return _known_numbers(result.stdout)
    if absent in result.stderr:
        return set()
    log.warning(
        "pre-flight: %s failed (%s); the dependencies are not checked",
        command[0],
        result.stderr.strip()[-300:] or f"exit status {result.exit_status}",
    )
    return None


async def unknown_job_ids(transport: Transport, job_ids: Iterable[SlurmJobId]) -> list[SlurmJobId] | None:
    """The ids among `job_ids` whose job Slurm does not know (in squeue nor sacct); None if it cannot tell.

    Jobs are looked up by job number: an array task or a hetjob component counts as known when its job is.
    """
    wanted = sorted(set(job_ids), key=str)
    numbers = sorted({j.job_id for j in wanted})
    if not numbers:
        return []
    ids = ",".join(map(str, numbers))
    # squeue says "Invalid job id specified" (exit 1) when the only id it is given is unknown.
    known = await _ask(transport, ["squeue", "-h", "-j", ids, "-o", "%i|%A|%F"], "Invalid job id")
    if known is None:
        return None
    missing = [n for n in numbers if n not in known]
    if missing:
        sacct = ["sacct", "-n", "-X", "-P", "-j", ",".join(map(str, missing)), "-o", "JobID,JobIDRaw"]
        found = await _ask(transport, sacct, "Invalid job id")
        if found is None:
            return None
        known |= found
    return [j for j in wanted if j.job_id not in known]


@dataclasses.dataclass(frozen=True)
class GresNeed:
    """How much of its gres a job needs on one node: `per_task` for each task (all of a task's GPUs are on
    its node) times `tasks`, the tasks that share a node (1 where Slurm places the tasks freely).
    `asked`: the request as the job gave it (`GPU=9`)."""

    per_task: int
    tasks: int = 1
    asked: str = ""

    @property
    def count(self) -> int:
        return self.per_task * self.tasks


def gres_need(requirements: JobRequirements) -> GresNeed | None:
    """What `requirements` needs of its accelerator's gres on one node, or None (no accelerator).

    Per task (`--gpus-per-task`, XManager's per-replica amount); tasks share a node as tasks_per_node says,
    else at least ceil(tasks / nodes) share one when nodes is given, else Slurm may spread them."""
    if requirements.accelerator is None:
        return None
    per_task = requirements.accelerator_count
    if requirements.tasks_per_node is not None:
        tasks = requirements.tasks_per_node
    elif requirements.nodes is not None:
        tasks = math.ceil(requirements.replicas / requirements.nodes)
    else:
        tasks = 1
    return GresNeed(per_task, tasks, f"{requirements.accelerator}={per_task}")


def partition_problems(
    limits: ClusterLimits,
    cluster: str,
    partition: str | None,
    gres: tuple[str, str | None, str | None] | None,
    need: GresNeed | None = None,
) -> list[str]:
    """Why a job asking for `partition` (None: the cluster's default; `a,b`: any of them) and `gres`
    (`JobRequirements.gres`: name, type, feature), `need` of it on one node (`gres_need`), cannot run on
    `cluster`; [] if it can or nobody can tell."""
    if limits.partitions is None:
        return []
    names = [p for p in partition.split(",") if p] if partition else []
    if not names:
        if limits.default_partition is None:
            return []  # Slurm picks; nothing to check the gres against
        names = [limits.default_partition]
    known = ", ".join(p.name for p in limits.partitions)
    missing = [n for n in names if limits.partition(n) is None]
    if missing:
        return [
            f"partition {n!r} does not exist on cluster {cluster!r} (its partitions: {known}); "
            "use one of those, e.g. Slurm(partition=...) or SlurmClusterConfig(partition=...)"
            for n in missing
        ]
    if gres is None:
        return []
    problems = _gres_problems(limits, cluster, names, gres)
    if need is not None and not problems:
        problems = _count_problems(limits, cluster, names, gres, need)
    return problems


def _gres_problems(
    limits: ClusterLimits, cluster: str, names: Sequence[str], gres: tuple[str, str | None, str | None]
) -> list[str]:
    name, gres_type, feature = gres
    wanted = f"{name}:{gres_type}" if gres_type else name
    partitions = [p for p in limits.partitions or () if p.name in names]
    where = f"partition {names[0]!r}" if len(names) == 1 else f"partitions {', '.join(names)}"
    problems = []
    if not any(wanted in p.gres for p in partitions):
        offered = ", ".join(sorted({g for p in partitions for g in p.gres})) or "none"
        problems.append(
            f"no node of {where} on cluster {cluster!r} has the gres {wanted!r} (gres there: {offered}); "
            "request an accelerator those nodes have, another partition, or fix the cluster's "
            "resources map (SlurmClusterConfig(resources=...))"
        )
    if feature and not any(feature in p.features for p in partitions):
        offered = ", ".join(sorted({f for p in partitions for f in p.features})) or "none"
        problems.append(
            f"no node of {where} on cluster {cluster!r} has the feature {feature!r} (features there: "
            f"{offered}); fix the cluster's features map (SlurmClusterConfig(features=...))"
        )
    return problems


def _count_problems(
    limits: ClusterLimits,
    cluster: str,
    names: Sequence[str],
    gres: tuple[str, str | None, str | None],
    need: GresNeed,
) -> list[str]:
    """`need` against the most of the gres one node of the partitions holds; a node's features are not
    weighed (the most over all nodes is at least the most over those with the feature: never too strict)."""
    name, gres_type, _ = gres
    wanted = f"{name}:{gres_type}" if gres_type else name
    counts = [p.most(wanted) for p in limits.partitions or () if p.name in names]
    if not counts or None in counts:
        return []  # a count the cluster did not tell (an older cache): nothing to refuse
    most = max(c for c in counts if c is not None)
    if need.count <= most:
        return []
    where = f"partition {names[0]!r}" if len(names) == 1 else f"partitions {', '.join(names)}"
    offered = f"the most one node of {where} on cluster {cluster!r} has is {most}"
    asked = need.asked or f"{need.per_task} per task"
    if need.per_task > most:
        return [
            f"{asked} asks for {need.per_task} {wanted!r} per task, all on the task's node, but {offered}; "
            f"ask for at most {most} per task and more replicas{_split_hint(need, most)}"
        ]
    fit = most // need.per_task
    return [
        f"{asked} per task x {need.tasks} tasks on one node (tasks_per_node, or tasks over nodes) needs "
        f"{need.count} {wanted!r} on one node, but {offered}; put at most {fit} of these tasks on one node "
        "(tasks_per_node, or more nodes) or ask for fewer per task"
    ]


def _split_hint(need: GresNeed, most: int) -> str:
    """`, e.g. GPU=3 with 3 times the replicas`: the same total in tasks a node can hold."""
    if most < 1 or not need.asked:
        return ""
    smaller = max(d for d in range(1, most + 1) if need.per_task % d == 0)
    resource = need.asked.partition("=")[0]
    return f", e.g. {resource}={smaller} with {need.per_task // smaller} times the replicas"


__all__ = ["GresNeed", "gres_need", "partition_problems", "unknown_job_ids"]
