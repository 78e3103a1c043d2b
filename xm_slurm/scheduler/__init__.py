"""Layer 4: Slurm over a transport: submit, job states (batched squeue, then sacct), watch, cancel, logs."""

from __future__ import annotations

from xm_slurm.paths import experiment_dir
from xm_slurm.scheduler.logs import follow, tail
from xm_slurm.scheduler.states import (
    SUBMISSION_GRACE_SECONDS,
    merge_rows,
    parse_sacct,
    parse_squeue,
    resolve,
    sacct_commands,
    squeue_commands,
    uncovered,
)
from xm_slurm.scheduler.status_query import StatusRows, get_job_states, query_rows
from xm_slurm.scheduler.submit import cancel, state_root, submit
from xm_slurm.scheduler.watcher import JobWatcher

__all__ = [
    "SUBMISSION_GRACE_SECONDS",
    "JobWatcher",
    "StatusRows",
    "cancel",
    "experiment_dir",
    "follow",
    "get_job_states",
    "merge_rows",
    "parse_sacct",
    "parse_squeue",
    "query_rows",
    "resolve",
    "sacct_commands",
    "squeue_commands",
    "state_root",
    "submit",
    "tail",
    "uncovered",
]
