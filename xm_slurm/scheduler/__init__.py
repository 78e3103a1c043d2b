"""Layer 4: Slurm over a transport: submit, job states (batched sacct, squeue fallback), watch, cancel, logs."""

from __future__ import annotations

from xm_slurm.scheduler.logs import follow, tail
from xm_slurm.scheduler.states import (
    DEFAULT_GRACE_SECONDS,
    get_job_states,
    parse_sacct,
    parse_squeue,
    query_rows,
    resolve,
    sacct_commands,
    squeue_commands,
)
from xm_slurm.scheduler.submit import cancel, experiment_dir, state_root, submit
from xm_slurm.scheduler.watcher import JobWatcher

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "JobWatcher",
    "cancel",
    "experiment_dir",
    "follow",
    "get_job_states",
    "parse_sacct",
    "parse_squeue",
    "query_rows",
    "resolve",
    "sacct_commands",
    "squeue_commands",
    "state_root",
    "submit",
    "tail",
]
