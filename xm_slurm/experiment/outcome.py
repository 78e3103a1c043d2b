"""How units ended, and why those that did not complete did not: exit code, reason, the last lines of the log,
or, for a job that never started, that it did not and why (squeue's or sacct's reason).

`xm-slurm wait`, `xm-slurm logs` and `experiment.wait(progress=True)` print these.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmJobStatus, SlurmWorkUnitStatus, SlurmWorkUnitStatusEnum

if TYPE_CHECKING:
    from xm_slurm.experiment.connections import ClusterConnections
    from xm_slurm.experiment.handles import SlurmLaunchedJob
    from xm_slurm.experiment.units import SlurmExperimentUnit

JobKey = tuple[SlurmSSHConfig, SlurmJobId]
MAX_EXPLAINED = 20  # units explained in full (each costs a log tail); the rest are counted


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A unit's final status (`has_jobs` False: a unit that launched nothing, e.g. an empty generator)."""

    unit: SlurmExperimentUnit
    label: str
    status: SlurmWorkUnitStatus
    has_jobs: bool

    @property
    def ok(self) -> bool:
        return self.unit.launch_error is None and (self.status.is_completed or not self.has_jobs)


def outcomes(units: Sequence[SlurmExperimentUnit], final: Mapping[JobKey, SlurmJobStatus]) -> list[Outcome]:
    from xm_slurm.experiment.units import SlurmAuxiliaryUnit

    out = []
    for unit in units:
        label = f"{'aux' if isinstance(unit, SlurmAuxiliaryUnit) else 'wid'} {unit.unit_id}"
        found = [s for j in unit.slurm_jobs if (s := final.get((j.ssh, j.job_id))) is not None]
        if unit.launch_error is not None:
            status = SlurmWorkUnitStatus.from_state(
                SlurmWorkUnitStatusEnum.FAILED, message=f"launch failed: {unit.launch_error}"
            )
        else:
            status = SlurmWorkUnitStatus(found)
        out.append(Outcome(unit, label, status, bool(found)))
    return out


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why a unit did not complete: its jobs' states, exit codes and reasons, and its log's last lines."""

    label: str
    status: str
    jobs: tuple[str, ...]
    log: tuple[str, ...]
    notes: tuple[str, ...]  # e.g. "job 12 ended before it started: CANCELLED (DependencyNeverSatisfied)"


def describe_job(status: SlurmJobStatus) -> str:
    """`1234_3 FAILED, exit code 3, signal 9: reason`."""
    text = f"{status.job_id} {status.state.value}"
    if status.exit_code is not None and (status.exit_code or status.signal):
        text += f", exit code {status.exit_code}"
    if status.signal:
        text += f", signal {status.signal}"
    return text + (f": {status.reason}" if status.reason else "")


async def job_notes(
    connections: ClusterConnections,
    unit: SlurmExperimentUnit,
    statuses: Mapping[JobKey, SlurmJobStatus] | None = None,
) -> list[str]:
    """For each job of `unit` without a log file: that it has not started (or ended before it did) and why.

    `statuses`: states already known; otherwise asked now (one round per cluster, shared)."""
    missing = await _without_log(connections, unit.slurm_jobs)
    if not missing:
        return []
    known = dict(statuses or {})
    asked = [j for j in missing if (j.ssh, j.job_id) not in known]
    by_cluster: dict[SlurmSSHConfig, list[SlurmJobId]] = {}
    for job in asked:
        by_cluster.setdefault(job.ssh, []).append(job.job_id)
    for ssh, ids in by_cluster.items():
        known.update({(ssh, j): s for j, s in (await connections.statuses(ssh, ids)).items()})
    return [_note(job.job_id, known.get((job.ssh, job.job_id))) for job in missing]


def _note(job_id: SlurmJobId, status: SlurmJobStatus | None) -> str:
    if status is None:
        return f"job {job_id} has no log yet and Slurm gave no state for it"
    why = f" ({status.reason})" if status.reason else ""
    if status.work_unit_status is SlurmWorkUnitStatusEnum.PENDING:
        return f"job {job_id} has not started: {status.state.value}{why}"
    if status.is_terminal:
        return f"job {job_id} ended before it started: {status.state.value}{why}"
    return f"job {job_id} is {status.state.value} but has written no log yet"


async def _without_log(
    connections: ClusterConnections, jobs: Sequence[SlurmLaunchedJob]
) -> list[SlurmLaunchedJob]:
    """The jobs whose log file does not exist (Slurm creates it when the job starts)."""

    async def exists(job: SlurmLaunchedJob) -> bool:
        root = await connections.state_root(job.ssh)
        path = job.log_path(root, await connections.store_id_for(job.experiment_id))  # as `unit.logs` reads
        return await connections.transport(job.ssh).exists(path)

    found = await asyncio.gather(*(exists(j) for j in jobs))
    return [j for j, ok in zip(jobs, found, strict=True) if not ok]


async def explain_one(
    connections: ClusterConnections, outcome: Outcome, final: Mapping[JobKey, SlurmJobStatus], num_lines: int
) -> Explanation:
    unit = outcome.unit
    statuses = [s for j in unit.slurm_jobs if (s := final.get((j.ssh, j.job_id))) is not None]
    bad = [s for s in statuses if s.work_unit_status is not SlurmWorkUnitStatusEnum.COMPLETED] or statuses
    log: list[str] = []
    notes: list[str] = []
    if unit.launch_error is not None:
        notes.append(outcome.status.message)
    elif num_lines:
        log = [line async for line in unit.logs(num_lines=num_lines, wait=False)]
    if unit.slurm_jobs and not log:
        notes += await job_notes(connections, unit, final)
    return Explanation(
        outcome.label,
        outcome.status.status.label,
        tuple(describe_job(s) for s in bad),
        tuple(log),
        tuple(notes),
    )


async def explain(
    connections: ClusterConnections,
    results: Sequence[Outcome],
    final: Mapping[JobKey, SlurmJobStatus],
    *,
    num_lines: int = 10,
    limit: int = MAX_EXPLAINED,
) -> tuple[list[Explanation], int]:
    """Explanations of the first `limit` units that did not complete, and how many more did not."""
    bad = [r for r in results if not r.ok]
    found = await asyncio.gather(*(explain_one(connections, r, final, num_lines) for r in bad[:limit]))
    return list(found), max(len(bad) - limit, 0)


def report_lines(explanations: Sequence[Explanation], more: int = 0, *, more_hint: str = "") -> list[str]:
    """The explanations as text for people: a heading per unit, its jobs, its log's last lines indented."""
    lines: list[str] = []
    for e in explanations:
        lines.append(f"{e.label} {e.status}: {'; '.join(e.jobs) or 'no job'}")
        lines += [f"  {note}" for note in e.notes]
        if e.log:
            lines.append(f"  last {len(e.log)} lines of its log:")
            lines += [f"  | {line}" for line in e.log]
    if more:
        lines.append(f"... and {more} more units that did not complete{more_hint}")
    return lines
