"""Retrying the failed jobs of work units: their scripts resubmitted, recorded like any submission.

Each failed array task runs again under its index from its original script (one sbatch per script,
`--array=<failed ids>`, see `scheduler.resubmit`); a failed job or job group is resubmitted whole. The new
jobs are recorded on the same work units under the same names, with the Slurm id of the job each one
retries as data (`api.SlurmJob.retry_of`), and replace the old ones in the units' status (`current_jobs`).

A retry follows the launcher's order of effects (docs/reliability.md): pending rows holding a fresh
submission token are recorded first, then the script is resubmitted with that token, then the pending rows
are swapped for the real ids. A process killed in between leaves rows that the next open of the experiment
resolves (`recovery.resolve_pending`), so no retry job runs unrecorded.

Dependencies: a retried job keeps the dependency its script was submitted with, re-pointed at the current
attempts of the jobs it names (`retry_dependencies`): a job cancelled because its dependency failed
(`DependencyNeverSatisfied`) never ran, and must still wait, now for the retries. One call retries the
jobs a dependency names before the jobs that wait on them (their new ids are needed), and checks first,
before submitting anything, that every re-pointed dependency can still be met: a job waiting (`afterok`,
`aftercorr`) for a job that failed and is not retried by the same call is refused, naming both, since
Slurm would cancel it again at once (or, for a job it no longer knows, drop the dependency and run it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from xm_slurm.api import XManagerAPI
from xm_slurm.errors import ValidationError, XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.handles import SlurmLaunchedJob, is_pending
from xm_slurm.experiment.retry_dependencies import (
    NEEDS_SUCCESS,
    Dependency,
    Lineage,
    script_dependency,
    with_dependency,
)
from xm_slurm.experiment.submission import Member, submit_recorded
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering.run_identity import generation_of, with_run_generation
from xm_slurm.scheduler.resubmit import resubmit, submitted_scripts
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmJobState, SlurmJobStatus, SlurmWorkUnitStatusEnum

log = logging.getLogger(__name__)


class RetryHost(Protocol):
    """What a retry needs of the launcher."""

    client: XManagerAPI
    connections: ClusterConnections
    experiment_id: int


#: Target states a dependency needing success can no longer get (UNKNOWN: Slurm would drop the dependency).
_NEVER_MET = (SlurmWorkUnitStatusEnum.FAILED, SlurmWorkUnitStatusEnum.CANCELLED)


@dataclasses.dataclass
class _Resubmission:
    """The failed jobs that one script runs again, and the dependency that script was submitted with."""

    script: str
    members: list[tuple[Any, SlurmLaunchedJob]]
    dependency: Dependency | None = None

    @property
    def array_tasks(self) -> list[int] | None:
        tasks = [j.job_id.array_task for _, j in self.members]
        return [t for t in tasks if t is not None] if all(t is not None for t in tasks) else None

    def split(self, lineage: Lineage) -> dict[str, _Resubmission]:
        """The members by their re-pointed dependency ("" for none): one sbatch each (`aftercorr` tasks
        whose partners were retried into different arrays wait on different arrays)."""
        out: dict[str, _Resubmission] = {}
        for unit, job in self.members:
            text = (
                "" if self.dependency is None else self.dependency.per_task(lineage, job.job_id.array_task)[0]
            )
            out.setdefault(text, _Resubmission(self.script, [], self.dependency)).members.append((unit, job))
        return out


@dataclasses.dataclass(frozen=True)
class _Wait:
    """One member of a resubmission waiting (`kind`) for job `target`, as the store's lineage stands."""

    index: int  # of the resubmission, in the cluster's plan
    unit: Any
    job: SlurmLaunchedJob
    kind: str
    target: SlurmJobId


@dataclasses.dataclass
class _Plan:
    """One cluster's retries, in submission order, and the lineage that re-points their dependencies."""

    ssh: SlurmSSHConfig
    resubmissions: list[_Resubmission]
    lineage: Lineage


def current_jobs(jobs: Sequence[SlurmLaunchedJob]) -> list[SlurmLaunchedJob]:
    """A unit's jobs without those a retry replaced: those another job of the unit, on the same cluster,
    names in its `retry_of`. Along a chain (a retry of a retry) only the newest attempt is left."""
    replaced = {(job.ssh, str(job.retry_of)) for job in jobs if job.retry_of is not None}
    return [j for j in jobs if (j.ssh, str(j.job_id)) not in replaced]


async def retry_failed(
    host: RetryHost,
    units: Sequence[Any],
    *,
    include_cancelled: bool = False,
    resume: bool = False,
    left_out: list[tuple[Any, SlurmJobStatus]] | None = None,
) -> list[Any]:
    """Resubmit the failed jobs of these units (and only those); returns the units that were retried.

    Each retried job starts a new run identity (`XM_SLURM_RUN_ID` ending in `-r<n>`); with `resume`, it
    keeps the one of the job it retries (W&B / MLflow continue that run). A retried job keeps its
    dependency, re-pointed at the retries (module docstring); nothing is submitted when one cannot be.
    `left_out`, if given, receives the cancelled jobs not retried (without `include_cancelled`)."""
    wanted = {SlurmWorkUnitStatusEnum.FAILED}
    if include_cancelled:
        wanted.add(SlurmWorkUnitStatusEnum.CANCELLED)
    by_cluster: dict[SlurmSSHConfig, list[tuple[Any, SlurmLaunchedJob]]] = collections.defaultdict(list)
    for unit in units:
        for job in current_jobs(unit.slurm_jobs):
            by_cluster[job.ssh].append((unit, job))
    plans = []  # every cluster planned and checked before the first sbatch
    for ssh, pairs in by_cluster.items():
        plan = await _plan(host, ssh, pairs, wanted, left_out)
        if plan is not None:
            plans.append(plan)
    retried: list[Any] = []
    for plan in plans:
        for r in plan.resubmissions:
            for dependency, part in r.split(plan.lineage).items():
                for unit in await _retry_one(host, plan, part, dependency, resume):
                    if unit not in retried:
                        retried.append(unit)
    return retried


async def _plan(
    host: RetryHost,
    ssh: SlurmSSHConfig,
    pairs: list[tuple[Any, SlurmLaunchedJob]],
    wanted: set[SlurmWorkUnitStatusEnum],
    left_out: list[tuple[Any, SlurmJobStatus]] | None,
) -> _Plan | None:
    """What to resubmit on one cluster, in order, each dependency checked; None if nothing failed."""
    statuses = await host.connections.statuses(ssh, [job.job_id for _, job in pairs])
    failed = [
        (u, j) for u, j in pairs if j.job_id in statuses and statuses[j.job_id].work_unit_status in wanted
    ]
    if left_out is not None:
        left_out += [
            (u, statuses[j.job_id])
            for u, j in pairs
            if j.job_id in statuses
            and statuses[j.job_id].work_unit_status is SlurmWorkUnitStatusEnum.CANCELLED
            and SlurmWorkUnitStatusEnum.CANCELLED not in wanted
        ]
    if not failed:
        return None
    transport = host.connections.transport(ssh)
    scripts = await submitted_scripts(transport, [j.job_id for _, j in failed])
    groups: dict[str, list[tuple[Any, SlurmLaunchedJob]]] = collections.defaultdict(list)
    for unit, job in failed:
        script = scripts.get(job.job_id.job_id)
        if script is None:
            raise XmSlurmError(
                f"cannot retry job {job.job_id} of {unit}: accounting does not show the script it "
                "was submitted with"
            )
        groups[script].append((unit, job))
    resubmissions = []
    for script, members in groups.items():
        text = script_dependency(await transport.read_text(script))
        resubmissions.append(_Resubmission(script, members, _parsed(text, members)))
    if all(r.dependency is None for r in resubmissions):
        return _Plan(ssh, resubmissions, Lineage())  # nothing to re-point: no store read, any order
    lineage, wids = await _lineage(host, ssh)
    waits = [
        _Wait(i, unit, job, kind, target)
        for i, r in enumerate(resubmissions)
        if r.dependency is not None
        for unit, job in r.members
        for kind, target in r.dependency.per_task(lineage, job.job_id.array_task)[1]
    ]
    await _check_waits(host, ssh, resubmissions, waits, lineage, wids)
    order = _ordered(resubmissions, waits, lineage)
    return _Plan(ssh, [resubmissions[i] for i in order], lineage)


def _parsed(text: str | None, members: list[tuple[Any, SlurmLaunchedJob]]) -> Dependency | None:
    if text is None:
        return None
    try:
        return Dependency.parse(text)
    except ValidationError as e:
        unit, job = members[0]
        raise ValidationError(
            f"cannot retry job {job.job_id} of {unit} with its dependency: {e}; nothing was retried. Cancel "
            "it and add the work unit again with the dependency you want"
        ) from e


async def _lineage(host: RetryHost, ssh: SlurmSSHConfig) -> tuple[Lineage, dict[SlurmJobId, int]]:
    """The experiment's recorded jobs on this cluster, from the store (units not being retried too), as a
    `Lineage`, and the work unit of each job."""
    experiment = await host.client.aget_experiment(host.experiment_id)
    key = ssh.to_json()
    rows: list[tuple[SlurmJobId, SlurmJobId | None]] = []
    wids: dict[SlurmJobId, int] = {}
    for wu in experiment.work_units:
        for row in wu.jobs:
            if is_pending(row) or not _same_cluster(row.slurm_ssh_config, key, ssh):
                continue
            job = SlurmLaunchedJob.from_record(row, host.experiment_id)
            rows.append((job.job_id, job.retry_of))
            wids[job.job_id.without_cluster()] = wu.wid
    return Lineage(rows), wids


def _same_cluster(stored: str, key: str, ssh: SlurmSSHConfig) -> bool:
    if stored == key:
        return True
    try:
        return SlurmSSHConfig.from_json(stored) == ssh
    except ValidationError:
        return False


def _expanded(target: SlurmJobId, lineage: Lineage) -> list[SlurmJobId]:
    """A whole recorded job as its members; any other id as itself."""
    whole = target.array_task is None and target.het_offset is None
    return lineage.members(target) if whole and lineage.knows(target) else [target]


async def _check_waits(
    host: RetryHost,
    ssh: SlurmSSHConfig,
    resubmissions: list[_Resubmission],
    waits: list[_Wait],
    lineage: Lineage,
    wids: dict[SlurmJobId, int],
) -> None:
    """Refuse (before any sbatch) a dependency that needs success from a job that failed, was cancelled or
    is unknown, unless that job is retried by this call too."""
    planned = {job.job_id.without_cluster() for r in resubmissions for _, job in r.members}
    checked = [
        (w, t)
        for w in waits
        if w.kind in NEEDS_SUCCESS
        for t in _expanded(w.target, lineage)
        if t not in planned
    ]
    if not checked:
        return
    statuses = await host.connections.statuses(ssh, list(dict.fromkeys(t for _, t in checked)))
    for w, t in checked:
        status = statuses.get(t)
        if status is None or not (
            status.work_unit_status in _NEVER_MET or status.state is SlurmJobState.UNKNOWN
        ):
            continue
        wid = wids.get(t)
        owner = f"work unit {wid}" if wid is not None else f"no work unit of experiment {host.experiment_id}"
        todo = (
            f"retry work unit {wid} in the same call (e.g. `xm-slurm retry {host.experiment_id} "
            f"--cancelled`, selecting both work units if you select any)"
            if wid is not None
            else "resubmit that job yourself, or cancel this work unit and add it again with a dependency "
            "on jobs that can still succeed"
        )
        raise XmSlurmError(
            f"cannot retry job {w.job.job_id} of {w.unit} with its dependency: it waits ({w.kind}) for job "
            f"{t} ({owner}), which is {status.describe()} and is not retried by this call, so Slurm would "
            f"never start it; nothing was retried. To retry it, {todo}"
        )


def _ordered(resubmissions: list[_Resubmission], waits: list[_Wait], lineage: Lineage) -> list[int]:
    """Indices of the resubmissions, each after those that retry a job it waits for (input order kept)."""
    owner = {job.job_id.without_cluster(): i for i, r in enumerate(resubmissions) for _, job in r.members}
    needs: list[set[int]] = [set() for _ in resubmissions]
    for w in waits:
        for t in _expanded(w.target, lineage):
            j = owner.get(t)
            if j is not None and j != w.index:
                needs[w.index].add(j)
    order: list[int] = []
    while len(order) < len(resubmissions):
        ready = [i for i in range(len(resubmissions)) if i not in order and needs[i] <= set(order)]
        if not ready:
            raise XmSlurmError(
                "cannot retry: the failed jobs' dependencies wait on each other in a cycle "
                f"(scripts {[resubmissions[i].script for i in range(len(resubmissions)) if i not in order]})"
            )
        order.append(ready[0])
    return order


def _fresh_run(script: str) -> str:
    return with_run_generation(script, generation_of(script) + 1)


async def _retry_one(
    host: RetryHost, plan: _Plan, r: _Resubmission, dependency: str, resume: bool
) -> list[Any]:
    """Resubmit one script's failed jobs, waiting on `dependency` (re-pointed; "" for none), through the
    one submission path; returns their units. The copy's own directive says the same `dependency`."""
    ssh = plan.ssh
    transport = host.connections.transport(ssh)

    def edit(text: str) -> str:
        return with_dependency(text if resume else _fresh_run(text), dependency or None)

    async def sbatch(token: str) -> SlurmJobId:
        return await resubmit(
            transport, r.script, array_tasks=r.array_tasks, token=token, edit=edit, dependency=dependency
        )

    members = [Member(unit.unit_id, job.name, job.job_id, retry_of=job.job_id) for unit, job in r.members]
    new_id = await submit_recorded(host.client, host.experiment_id, host.connections, ssh, members, sbatch)
    watcher = host.connections.watcher(ssh)
    now = time.time()
    units: list[Any] = []
    for unit, old in r.members:
        new = SlurmLaunchedJob(
            name=old.name,
            job_id=old.job_id.same_member_in(new_id),
            ssh=ssh,
            experiment_id=host.experiment_id,
            retry_of=old.job_id,
        )
        plan.lineage.add(old.job_id, new.job_id)  # the next resubmissions wait on it
        watcher.register(new.job_id, submitted_at=now)
        unit.retried(old, new)
        if unit not in units:
            units.append(unit)
    return units
