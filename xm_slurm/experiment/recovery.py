"""Resolving pending submissions: job rows recorded before their sbatch by a launch that did not finish.

The launcher records every submission before it runs sbatch, as pending rows holding the submission token
(`handles.PendingJob`), and swaps them for the real ids afterwards. A launch process killed in between leaves
the pending rows; whoever opens the experiment next resolves them here:

* the token is in squeue or sacct (`scheduler.submit.find_submission`): the job exists, its real ids replace
  the pending rows (adopted);
* the cluster answers that no job has the token, and the row is older than `PENDING_GRACE_SECONDS`: the
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
from xm_slurm.experiment.handles import PendingJob, SlurmLaunchedJob
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.submit import find_submission
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)

#: A pending row the cluster does not know is dropped only once it is this old (seconds): longer than one
#: `submit` can take (3 attempts, each waiting up to 30 s for a lost answer), so a launch still running in
#: another process is not undone. Clocks of the machines involved are assumed to agree within a minute.
PENDING_GRACE_SECONDS = 120.0
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
    grace: float = PENDING_GRACE_SECONDS,
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
                )
                remove.append((wid, job.slurm_job_id))
                insert.append((wid, handle.to_record()))
                result.adopted.setdefault(wid, []).append(handle)
    if not remove:
        result.remaining = [wu for wu in work_units if any(wid == wu.wid for wid, _, _ in rows)]
        return result
    try:
        # The synchronous call in a thread: no per-event-loop HTTP client is left behind.
        await asyncio.to_thread(
            lambda: client.replace_jobs(
                experiment_id, remove=remove, insert=insert, delete_empty_units=sorted(emptied)
            )
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


async def settle_failed_submission(
    client: XManagerAPI,
    experiment_id: int,
    connections: ClusterConnections,
    ssh: SlurmSSHConfig,
    token: str,
    pending: Sequence[tuple[int, SlurmJob]],
    *,
    new_units: Sequence[int] = (),
) -> tuple[SlurmJobId | None, bool]:
    """After a submission with `token` failed: `(job, removed)`.

    The job, if the token did reach Slurm after all (to be adopted); else, when the cluster says no job has
    it, the pending rows are removed, with the `new_units` they alone made (`removed` True). When the cluster
    cannot say, or the removal fails, the rows stay for a later resolution (`removed` False).
    """
    try:
        found = await find_submission(connections.transport(ssh), token)
    except (SchedulerError, TransportError, ValidationError) as e:
        log.warning("cannot tell whether submission %s reached Slurm (%s): it stays pending", token, e)
        return None, False
    if found is not None:
        log.warning("submission %s failed but job %s exists with its token: adopting it", token, found)
        return found, False
    try:
        await client.areplace_jobs(
            experiment_id,
            remove=[(wid, row.slurm_job_id) for wid, row in pending],
            delete_empty_units=sorted(new_units),
        )
    except XmSlurmError as e:
        log.warning("could not remove the pending rows of submission %s: %s", token, e)
        return None, False
    return None, True
