"""The one submission path of the experiment layer: record -> sbatch -> confirm, or settle after a failure.

Launches (`launching.Launcher`) and retries (`retrying`) both submit through `submit_recorded`; the rows it
leaves when a process dies are resolved by `recovery.resolve_pending`. Order of effects for one sbatch (a
job, a job group, one job array or a retry's resubmission):

1. a fresh submission token; in ONE store call (`replace_jobs`), the submission's new work units and one
   pending row per job member: `pending:<token>:<unix seconds>[_<task> | +<component>]`;
2. the sbatch, carrying the token (`scheduler.submit` finds a job by its token after a lost answer, so one
   token is one job at most);
3. in ONE more call, the pending rows swapped for the real ids.

A failure at 1 submits nothing. A failure at 2 is settled (`recovery.settle_failed_submission`): a job the
cluster has under the token is adopted; none -> the pending rows (and the units they alone made) go; no
answer -> the rows stay for a later resolution. A failure at 3 cancels the job (no job runs unrecorded); its
pending rows stay and resolve to the cancelled job. Every error says which of these happened.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from xm_slurm.api import ConflictError, SlurmJob, WorkUnitPatch, XManagerAPI
from xm_slurm.errors import XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.handles import PendingJob
from xm_slurm.experiment.recovery import settle_failed_submission, unrecorded_error, unsubmitted_error
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import cancel
from xm_slurm.scheduler.submit import new_submission_token
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Member:
    """One job row of a submission: its work unit, its name, and its place in the submitted job (`shape`:
    any id whose array task or het component is the member's; the whole job when it has neither). A
    retry's member names the job it retries (`retry_of`), recorded on its pending row and its real one."""

    wid: int
    name: str
    shape: SlurmJobId
    retry_of: SlurmJobId | None = None

    def row(self, ssh_json: str, slurm_job_id: str) -> tuple[int, SlurmJob]:
        retry_of = None if self.retry_of is None else self.retry_of.to_string()
        job = SlurmJob(
            name=self.name, slurm_job_id=slurm_job_id, slurm_ssh_config=ssh_json, retry_of=retry_of
        )
        return self.wid, job


async def submit_recorded(
    client: XManagerAPI,
    experiment_id: int,
    connections: ClusterConnections,
    ssh: SlurmSSHConfig,
    members: Sequence[Member],
    sbatch: Callable[[str], Awaitable[SlurmJobId]],
    *,
    new_units: Sequence[WorkUnitPatch] = (),
    kept: Callable[[], None] = lambda: None,
) -> SlurmJobId:
    """Submit one job through `sbatch(token)`, recorded before and after (see the module docstring).

    Returns the submitted job; raises an error that says what happened (nothing submitted, maybe
    submitted, or submitted and cancelled), the real cause chained. `kept` is called when the store keeps
    this submission's rows (and so its new units) after a failure, for a later resolution."""
    token = new_submission_token()
    ssh_json = ssh.to_json()
    created = time.time()
    pending = [m.row(ssh_json, PendingJob.of(token, created, m.shape).to_string()) for m in members]
    wids = sorted({m.wid for m in members})
    try:
        await client.areplace_jobs(experiment_id, work_units=list(new_units), insert=pending)
    except Exception as e:
        log.error("recording submission %s failed, so it was not submitted: %s", token, e)
        if isinstance(e, ConflictError):
            raise ConflictError(
                f"{e} (another launch recorded the same work unit id or identity in experiment "
                f"{experiment_id} at the same time; nothing was submitted)"
            ) from e
        raise
    try:
        job = await sbatch(token)
    except Exception as e:
        log.error("submission %s failed: %s", token, e)
        new = [u.wid for u in new_units]
        settlement = await settle_failed_submission(
            client, experiment_id, connections, ssh, token, pending, new_units=new
        )
        if settlement.found is None:
            if not settlement.removed:
                kept()
            raise unsubmitted_error(e, settlement, experiment_id, wids) from e
        job = settlement.found
    try:
        await client.areplace_jobs(
            experiment_id,
            remove=[(wid, row.slurm_job_id) for wid, row in pending],
            insert=[m.row(ssh_json, m.shape.same_member_in(job).to_string()) for m in members],
        )
    except BaseException as e:
        # The submission fails, so its job must not run on; the pending rows stay and resolve to it.
        kept()
        cancelled = await _cancel(connections, ssh, [job.base])
        if not isinstance(e, Exception):
            raise
        raise unrecorded_error(e, job, cancelled, experiment_id, wids) from e
    return job


async def _cancel(connections: ClusterConnections, ssh: SlurmSSHConfig, ids: list[SlurmJobId]) -> bool:
    try:
        await cancel(connections.transport(ssh), ids)
    except XmSlurmError as e:
        log.error("could not cancel jobs %s on %s: %s", [str(i) for i in ids], ssh, e)
        return False
    return True
