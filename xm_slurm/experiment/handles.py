"""A launched Slurm job as a work unit sees it: name, id, cluster (SSH config) and where its log is.

This is also what the metadata store keeps (`api.SlurmJob(name, slurm_job_id, slurm_ssh_config)`), so a
handle rebuilt by `get_experiment(xid)` in another process can read states, logs and cancel. The log's
folder is the cluster's state folder (resolved on the cluster, see `scheduler.state_root`) plus the
experiment id; the file name follows the sbatch `--output` patterns of the rendering layer.
"""

from __future__ import annotations

import dataclasses

from xmanager import xm

from xm_slurm.api import SlurmJob
from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import experiment_dir
from xm_slurm.ssh_config import SlurmSSHConfig


def log_name(job_id: SlurmJobId) -> str:
    """`slurm-%j.out` (a job, or every component of a job group) or `slurm-%A_%a.out` (an array task)."""
    if job_id.array_task is not None:
        return f"slurm-{job_id.job_id}_{job_id.array_task}.out"
    return f"slurm-{job_id.job_id}.out"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmLaunchedJob:
    """One launched Slurm job of a work unit: its name, id and cluster (`launched_jobs` shows it as an
    `xm.LaunchedJob` whose `address` is the Slurm job id)."""

    name: str
    job_id: SlurmJobId
    ssh: SlurmSSHConfig
    experiment_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, SlurmJobId) or not isinstance(self.ssh, SlurmSSHConfig):
            raise ValidationError(f"SlurmLaunchedJob {self.name!r} needs a SlurmJobId and a SlurmSSHConfig")

    def to_launched_job(self, state_root: str | None = None) -> xm.LaunchedJob:
        logs = None if state_root is None else self.log_path(state_root)
        return xm.LaunchedJob(name=self.name, address=str(self.job_id), logs=logs)

    def log_path(self, state_root: str) -> str:
        return f"{experiment_dir(state_root, self.experiment_id)}/{log_name(self.job_id)}"

    def to_record(self) -> SlurmJob:
        return SlurmJob(
            name=self.name, slurm_job_id=self.job_id.to_string(), slurm_ssh_config=self.ssh.to_json()
        )

    @classmethod
    def from_record(cls, record: SlurmJob, experiment_id: int) -> SlurmLaunchedJob:
        return cls(
            name=record.name,
            job_id=SlurmJobId.parse(record.slurm_job_id),
            ssh=SlurmSSHConfig.from_json(record.slurm_ssh_config),
            experiment_id=experiment_id,
        )
