"""Resolving pending submissions: job rows recorded before their sbatch by a launch that did not finish.

The launcher records every submission before it runs sbatch, as pending rows holding the submission token
(`handles.PendingJob`), and swaps them for the real ids afterwards. A launch process killed in between leaves
the pending rows; whoever opens the experiment next resolves them here:

* the token is in squeue or sacct (`scheduler.submit.find_submission`): the job exists, its real ids replace
  the pending rows (adopted);
* the cluster answers that no job has the token, and the row is older than `SUBMISSION_GRACE_SECONDS`: the
  submission never happened (or is too old to matter); the row goes, and with it its work unit if the unit
  has no other job;
* the cluster cannot answer, or the row is recent (its sbatch may still be running): the row stays, and the
  unit reports PENDING until a later open resolves it.

Every store change of one resolution is ONE `replace_jobs` call, safe to repeat and to race with another
process resolving the same rows.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Sequence

from xm_slurm.api import SlurmJob, WorkUnit, XManagerAPI
from xm_slurm.errors import MetadataError, SchedulerError, TransportError, ValidationError, XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.handles import PendingJob, SlurmLaunchedJob, retried_job
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import SUBMISSION_GRACE_SECONDS
from xm_slurm.scheduler.submit import find_submission
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)

#: Token look-ups (one squeue + one sacct each) in flight at once per resolution.
MAX_CONCURRENT_LOOKUPS = 4


@dataclasses.dataclass
class Resolution:
    """What one resolution did: adopted jobs per work unit, work units deleted, rows left pending."""

    adopted: dict[int, list[SlurmLaunchedJob]] = dataclasses.field(default_factory=dict)
    deleted_units: list[int] = dataclasses.field(default_factory=list)
    dropped_rows: int = 0
    unresolved: int = 0
    #: The work units (as now stored) that still hold pending rows.
    remaining: list[WorkUnit] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.adopted or self.dropped_rows)


def pending_rows(work_units: Sequence[WorkUnit]) -> list[tuple[int, SlurmJob, PendingJob]]:
    """`(wid, row, pending)` of every pending row of these work units."""
    out = []
    for wu in work_units:
        for job in wu.jobs:
            pending = PendingJob.parse(job.slurm_job_id)
            if pending is not None:
                out.append((wu.wid, job, pending))
    return out


class _Unknown:
    """The cluster could not say whether a token was submitted."""


async def resolve_pending(
    client: XManagerAPI,
    experiment_id: int,
    work_units: Sequence[WorkUnit],
    connections: ClusterConnections,
    *,
    grace: float = SUBMISSION_GRACE_SECONDS,
    now: float | None = None,
) -> Resolution:
    """Resolve the pending rows of `work_units` (as stored); see the module docstring."""
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValidationError(f"grace={grace!r} must be a number of seconds >= 0")
    result = Resolution()
    rows = pending_rows(work_units)
    if not rows:
        return result
    now = time.time() if now is None else now
    groups: dict[tuple[str, str], list[tuple[int, SlurmJob, PendingJob]]] = collections.defaultdict(list)
    for wid, job, pending in rows:
        groups[(job.slurm_ssh_config, pending.token)].append((wid, job, pending))
    slots = asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS)

    async def look(ssh: SlurmSSHConfig, token: str) -> SlurmJobId | _Unknown | None:
        try:
            async with slots:
                return await find_submission(connections.transport(ssh), token)
        except (SchedulerError, TransportError) as e:
            log.warning("cannot tell whether submission %s reached Slurm (%s): it stays pending", token, e)
            return _Unknown()

    keys = list(groups)
    configs = {ssh_json: SlurmSSHConfig.from_json(ssh_json) for ssh_json, _ in keys}
    answers = await asyncio.gather(*(look(configs[ssh_json], token) for ssh_json, token in keys))
    remove: list[tuple[int, str]] = []
    insert: list[tuple[int, SlurmJob]] = []
    emptied: set[int] = set()
    for key, answer in zip(keys, answers, strict=True):
        members = groups[key]
        if isinstance(answer, _Unknown):
            result.unresolved += len(members)
        elif answer is None:
            for wid, job, pending in members:
                if now - pending.created < grace:
                    result.unresolved += 1  # its sbatch may still be on its way
                    continue
                remove.append((wid, job.slurm_job_id))
                emptied.add(wid)
                result.dropped_rows += 1
        else:
            log.warning("submission %s reached Slurm as job %s: recording it", key[1], answer)
            for wid, job, pending in members:
                handle = SlurmLaunchedJob(
                    name=job.name,
                    job_id=pending.resolve(answer),
                    ssh=configs[key[0]],
                    experiment_id=experiment_id,
                    retry_of=retried_job(job),
                )
                remove.append((wid, job.slurm_job_id))
                insert.append((wid, handle.to_record()))
                result.adopted.setdefault(wid, []).append(handle)
    if not remove:
        result.remaining = [wu for wu in work_units if any(wid == wu.wid for wid, _, _ in rows)]
        return result
    try:
        await client.areplace_jobs(
            experiment_id, remove=remove, insert=insert, delete_empty_units=sorted(emptied)
        )
    except MetadataError as e:
        log.warning("could not record the resolved submissions of experiment %d: %s", experiment_id, e)
        pending_wids = {wid for wid, _, _ in rows}
        return Resolution(unresolved=len(rows), remaining=[wu for wu in work_units if wu.wid in pending_wids])
    gone = set(remove)
    for wu in work_units:
        kept = [j for j in wu.jobs if (wu.wid, j.slurm_job_id) not in gone]
        kept += [job for wid, job in insert if wid == wu.wid]
        if not kept and wu.wid in emptied:
            result.deleted_units.append(wu.wid)
        elif any(PendingJob.parse(j.slurm_job_id) is not None for j in kept):
            result.remaining.append(dataclasses.replace(wu, jobs=tuple(kept)))
    return result


@dataclasses.dataclass(frozen=True)
class Settlement:
    """What became of a submission whose sbatch failed: the job Slurm has under its token (to adopt), or
    its pending rows removed (nothing was submitted), or neither (`unknown` says why it cannot be told)."""

    found: SlurmJobId | None = None
    removed: bool = False
    unknown: str = ""


async def settle_failed_submission(
    client: XManagerAPI,
    experiment_id: int,
    connections: ClusterConnections,
    ssh: SlurmSSHConfig,
    token: str,
    pending: Sequence[tuple[int, SlurmJob]],
    *,
    new_units: Sequence[int] = (),
) -> Settlement:
    """After a submission with `token` failed: the job, if the token did reach Slurm after all; else, when
    the cluster says no job has it, the pending rows are removed, with the `new_units` they alone made. When
    the cluster cannot say, or the removal fails, the rows stay for a later resolution."""
    try:
        found = await find_submission(connections.transport(ssh), token)
    except (SchedulerError, TransportError, ValidationError) as e:
        log.warning("cannot tell whether submission %s reached Slurm (%s): it stays pending", token, e)
        return Settlement(unknown=f"the cluster could not be asked whether it has the job: {e}")
    if found is not None:
        log.warning("submission %s failed but job %s exists with its token: adopting it", token, found)
        return Settlement(found=found)
    try:
        await client.areplace_jobs(
            experiment_id,
            remove=[(wid, row.slurm_job_id) for wid, row in pending],
            delete_empty_units=sorted(new_units),
        )
    except XmSlurmError as e:
        log.warning("could not remove the pending rows of submission %s: %s", token, e)
        return Settlement(unknown=f"Slurm has no such job, but the store could not be updated: {e}")
    return Settlement(removed=True)


def unsubmitted_error(
    error: BaseException, settlement: Settlement, experiment_id: int, wids: Sequence[int]
) -> BaseException:
    """The error a launch or retry reports when its sbatch failed and no job was adopted: what happened,
    whether a job may exist, and what is safe to do next; the real cause chained."""
    units = _units(wids)
    if settlement.removed:
        text = (
            f"submitting {units} of experiment {experiment_id} failed: {error}. Nothing was submitted (no "
            "Slurm job carries the submission's token) and nothing was recorded: it is safe to launch again"
        )
    else:
        text = (
            f"submitting {units} of experiment {experiment_id} failed: {error}. The job MAY have reached "
            f"Slurm ({settlement.unknown}); the submission stays recorded as pending. Do not launch it "
            f"again without identity=: reopen the experiment (xm_slurm.get_experiment({experiment_id}) or "
            f"`xm-slurm show {experiment_id}`) once the cluster answers, which adopts the job if it exists "
            "or drops the record if it does not"
        )
    return _chained(error, text)


def unrecorded_error(
    error: BaseException, job: SlurmJobId, cancelled: bool, experiment_id: int, wids: Sequence[int]
) -> BaseException:
    """The error when job `job` was submitted but recording it failed, so the launch cancelled it."""
    fate = (
        "it has been cancelled"
        if cancelled
        else f"cancelling it failed too: cancel it yourself (scancel {job.base})"
    )
    text = (
        f"job {job} ({_units(wids)} of experiment {experiment_id}) was submitted, but recording it in the "
        f"metadata store failed: {error}. So that no unrecorded job runs, {fate}; its pending record "
        "resolves to the cancelled job when the experiment is reopened. Launch it again once the store answers"
    )
    return _chained(error, text)


def _units(wids: Sequence[int]) -> str:
    ordered = sorted(set(wids))
    if len(ordered) == 1:
        return f"work unit {ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"work units {ordered[0]}-{ordered[-1]}"
    return "work units " + ", ".join(map(str, ordered))


def _chained(error: BaseException, text: str) -> BaseException:
    cls = type(error) if isinstance(error, XmSlurmError) else XmSlurmError
    try:
        out: BaseException = cls(text)
    except TypeError:  # an error class with another signature
        out = XmSlurmError(text)
    out.__cause__ = error
    return out
