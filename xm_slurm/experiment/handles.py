"""A launched Slurm job as a work unit sees it: name, id, cluster (SSH config) and where its log is.

This is also what the metadata store keeps (`api.SlurmJob(name, slurm_job_id, slurm_ssh_config)`), so a
handle rebuilt by `get_experiment(xid)` in another process can read states, logs and cancel. The log's
folder is the cluster's state folder (resolved on the cluster, see `scheduler.state_root`) plus the
experiment id; the file name follows the sbatch `--output` patterns of the rendering layer.

A row recorded BEFORE its sbatch (docs/reliability.md) holds no Slurm id yet but a pending id,
`pending:<submission token>:<unix seconds>[_<array task> | +<component>]`: `PendingJob` reads it, and
`SlurmLaunchedJob.from_record` refuses it (a handle always has a real job id).
"""

from __future__ import annotations

import dataclasses
import re

from xmanager import xm

from xm_slurm.api import SlurmJob
from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.paths import log_name  # one rule for log names (a group's later components log apart)
from xm_slurm.scheduler import experiment_dir
from xm_slurm.ssh_config import SlurmSSHConfig

PENDING_PREFIX = "pending:"
_PENDING = re.compile(r"pending:(xms-[0-9a-f]{24}):(\d+)(_\d+|\+\d+)?")


@dataclasses.dataclass(frozen=True)
class PendingJob:
    """A job row recorded before its sbatch: the submission token, when it was made, which member."""

    token: str
    created: int  # unix seconds
    array_task: int | None = None
    het_offset: int | None = None

    @classmethod
    def parse(cls, slurm_job_id: str) -> PendingJob | None:
        """The pending submission a stored id names, or None for a real job id."""
        m = _PENDING.fullmatch(slurm_job_id)
        if m is None:
            return None
        member = m.group(3) or ""
        return cls(
            token=m.group(1),
            created=int(m.group(2)),
            array_task=int(member[1:]) if member.startswith("_") else None,
            het_offset=int(member[1:]) if member.startswith("+") else None,
        )

    @classmethod
    def of(cls, token: str, created: float, job_id_shape: SlurmJobId) -> PendingJob:
        """The pending row of a member shaped like `job_id_shape` (its task / component; its base is unused)."""
        return cls(token, int(created), job_id_shape.array_task, job_id_shape.het_offset)

    def to_string(self) -> str:
        member = ""
        if self.array_task is not None:
            member = f"_{self.array_task}"
        elif self.het_offset is not None:
            member = f"+{self.het_offset}"
        return f"{PENDING_PREFIX}{self.token}:{self.created}{member}"

    def resolve(self, job: SlurmJobId) -> SlurmJobId:
        """This member's id in the submitted job `job`."""
        shape = SlurmJobId(1, array_task=self.array_task, het_offset=self.het_offset)
        return shape.same_member_in(job)


def is_pending(record: SlurmJob) -> bool:
    return record.slurm_job_id.startswith(PENDING_PREFIX)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmLaunchedJob:
    """One launched Slurm job of a work unit: its name, id and cluster (`launched_jobs` shows it as an
    `xm.LaunchedJob` whose `address` is the Slurm job id). `retry_of`: the job of the same unit, on the
    same cluster, that this one retries (`api.SlurmJob.retry_of`), or None."""

    name: str
    job_id: SlurmJobId
    ssh: SlurmSSHConfig
    experiment_id: int
    retry_of: SlurmJobId | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, SlurmJobId) or not isinstance(self.ssh, SlurmSSHConfig):
            raise ValidationError(f"SlurmLaunchedJob {self.name!r} needs a SlurmJobId and a SlurmSSHConfig")
        if self.retry_of is not None and not isinstance(self.retry_of, SlurmJobId):
            raise ValidationError(f"SlurmLaunchedJob {self.name!r}: retry_of must be a SlurmJobId or None")

    def to_launched_job(self, state_root: str | None = None) -> xm.LaunchedJob:
        logs = None if state_root is None else self.log_path(state_root)
        return xm.LaunchedJob(name=self.name, address=str(self.job_id), logs=logs)

    def log_path(self, state_root: str, store_id: str | None = None) -> str:
        """`store_id`: the one naming the experiment's folder (`ClusterConnections.store_id_for`)."""
        return f"{experiment_dir(state_root, self.experiment_id, store_id)}/{log_name(self.job_id)}"

    def to_record(self) -> SlurmJob:
        retry_of = None if self.retry_of is None else self.retry_of.to_string()
        return SlurmJob(
            name=self.name,
            slurm_job_id=self.job_id.to_string(),
            slurm_ssh_config=self.ssh.to_json(),
            retry_of=retry_of,
        )

    @classmethod
    def from_record(cls, record: SlurmJob, experiment_id: int) -> SlurmLaunchedJob:
        if is_pending(record):
            raise ValidationError(
                f"job {record.name!r} ({record.slurm_job_id}) is a submission not resolved yet: it has no "
                "Slurm id (resolve it with `SlurmExperiment.resolve_pending_submissions()`)"
            )
        return cls(
            name=record.name,
            job_id=SlurmJobId.parse(record.slurm_job_id),
            ssh=SlurmSSHConfig.from_json(record.slurm_ssh_config),
            experiment_id=experiment_id,
            retry_of=retried_job(record),
        )


def retried_job(record: SlurmJob) -> SlurmJobId | None:
    """The job a stored row retries, or None (also for a value written by hand that names no job: lenient
    like every read, rather than hide the unit)."""
    try:
        return None if record.retry_of is None else SlurmJobId.parse(record.retry_of)
    except ValidationError:
        return None
