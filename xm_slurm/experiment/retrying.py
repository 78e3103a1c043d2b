"""Retrying the failed jobs of work units: their scripts resubmitted, recorded like any submission.

Each failed array task runs again under its index from its original script (one sbatch per script,
`--array=<failed ids>`, see `scheduler.resubmit`); a failed job or job group is resubmitted whole. The new
jobs are recorded on the same work units under the same names, with the Slurm id of the job each one
retries as data (`api.SlurmJob.retry_of`), and replace the old ones in the units' status (`current_jobs`).

A retry follows the launcher's order of effects (docs/reliability.md): pending rows holding a fresh
submission token are recorded first, then the script is resubmitted with that token, then the pending rows
are swapped for the real ids. A process killed in between leaves rows that the next open of the experiment
resolves (`recovery.resolve_pending`), so no retry job runs unrecorded.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from xm_slurm.api import XManagerAPI
from xm_slurm.errors import XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.submission import Member, submit_recorded
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering.run_identity import generation_of, with_run_generation
from xm_slurm.scheduler.resubmit import resubmit, submitted_scripts
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.status import SlurmWorkUnitStatusEnum

log = logging.getLogger(__name__)


class RetryHost(Protocol):
    """What a retry needs of the launcher."""

    client: XManagerAPI
    connections: ClusterConnections
    experiment_id: int


@dataclasses.dataclass
class _Resubmission:
    """The failed jobs that one script runs again."""

    script: str
    members: list[tuple[Any, SlurmLaunchedJob]]

    @property
    def array_tasks(self) -> list[int] | None:
        tasks = [j.job_id.array_task for _, j in self.members]
        return [t for t in tasks if t is not None] if all(t is not None for t in tasks) else None


def current_jobs(jobs: Sequence[SlurmLaunchedJob]) -> list[SlurmLaunchedJob]:
    """A unit's jobs without those a retry replaced: those another job of the unit, on the same cluster,
    names in its `retry_of`. Along a chain (a retry of a retry) only the newest attempt is left."""
    replaced = {(job.ssh, str(job.retry_of)) for job in jobs if job.retry_of is not None}
    return [j for j in jobs if (j.ssh, str(j.job_id)) not in replaced]


async def retry_failed(
    host: RetryHost, units: Sequence[Any], *, include_cancelled: bool = False, resume: bool = False
) -> list[Any]:
    """Resubmit the failed jobs of these units (and only those); returns the units that were retried.

    Each retried job starts a new run identity (`XM_SLURM_RUN_ID` ending in `-r<n>`); with `resume`, it
    keeps the one of the job it retries (W&B / MLflow continue that run)."""
    wanted = {SlurmWorkUnitStatusEnum.FAILED}
    if include_cancelled:
        wanted.add(SlurmWorkUnitStatusEnum.CANCELLED)
    by_cluster: dict[SlurmSSHConfig, list[tuple[Any, SlurmLaunchedJob]]] = collections.defaultdict(list)
    for unit in units:
        for job in current_jobs(unit.slurm_jobs):
            by_cluster[job.ssh].append((unit, job))
    retried: list[Any] = []
    for ssh, pairs in by_cluster.items():
        statuses = await host.connections.statuses(ssh, [job.job_id for _, job in pairs])
        failed = [
            (u, j) for u, j in pairs if j.job_id in statuses and statuses[j.job_id].work_unit_status in wanted
        ]
        if not failed:
            continue
        scripts = await submitted_scripts(host.connections.transport(ssh), [j.job_id for _, j in failed])
        groups: dict[str, list[tuple[Any, SlurmLaunchedJob]]] = collections.defaultdict(list)
        for unit, job in failed:
            script = scripts.get(job.job_id.job_id)
            if script is None:
                raise XmSlurmError(
                    f"cannot retry job {job.job_id} of {unit}: accounting does not show the script it "
                    "was submitted with"
                )
            groups[script].append((unit, job))
        for script, members in groups.items():
            for unit in await _retry_one(host, ssh, _Resubmission(script, members), resume):
                if unit not in retried:
                    retried.append(unit)
    return retried


def _fresh_run(script: str) -> str:
    return with_run_generation(script, generation_of(script) + 1)


async def _retry_one(host: RetryHost, ssh: SlurmSSHConfig, r: _Resubmission, resume: bool) -> list[Any]:
    """Resubmit one script's failed jobs through the one submission path; returns their units."""
    transport = host.connections.transport(ssh)
    edit = None if resume else _fresh_run

    async def sbatch(token: str) -> SlurmJobId:
        return await resubmit(transport, r.script, array_tasks=r.array_tasks, token=token, edit=edit)

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
        watcher.register(new.job_id, submitted_at=now)
        unit.retried(old, new)
        if unit not in units:
            units.append(unit)
    return units
