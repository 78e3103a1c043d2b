"""Where xm_slurm keeps its files, on this machine and on the cluster: each rule written once, here.

This machine: `local_state_dir()`, that is `$XM_SLURM_STATE_DIR`, else `~/.local/state/xm-slurm` (where
xmanager-slurm 0.4.x keeps its store; like 0.4.x, `XDG_STATE_HOME` is not read on this machine). It holds the
SQLite store (`db.sqlite3`), the cluster-limits cache (`cluster-limits/`) and the image build logs
(`build-logs/`); folders are private (0700), files too (0600).

The cluster: `REMOTE_STATE_DIR`, that is `$XM_SLURM_STATE_DIR`, else `$XDG_STATE_HOME/xm-slurm`, else
`~/.local/state/xm-slurm`, evaluated in the login user's environment there (`REMOTE_STATE_DIR_COMMAND` prints
it). Inside it one folder per experiment (`experiment_dir`): `store-<store id>/<xid as 8 digits>`, so that
two stores used from one cluster account never share one (`api.store_info`); experiments a store held
before it had an id keep the old layout, `<xid as 8 digits>` (as in 0.4.x). Each holds the sbatch scripts
and the logs: `slurm-%j.out` for a job (every component of a job group writes the leader's)
and `slurm-%A_%a.out` for an array task (`log_pattern`, `log_name`, `runtime_log_name`).

Pure: reads the environment, never a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from xm_slurm.errors import ValidationError
from xm_slurm.job_ids import SlurmJobId

STATE_DIR_VARIABLE = "XM_SLURM_STATE_DIR"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

#: The cluster's state folder as a shell expression (double-quote it): `$HOME` and the variables are the
#: login user's on the cluster, so it is evaluated there, never here.
REMOTE_STATE_DIR = "${XM_SLURM_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/xm-slurm}"
#: One command that prints the cluster's state folder (no newline).
REMOTE_STATE_DIR_COMMAND = f'printf %s "{REMOTE_STATE_DIR}"'

JOB_LOG_PATTERN = "slurm-%j.out"
STORE_DIR_PREFIX = "store-"
_STORE_ID = re.compile(r"[0-9a-f]{12}")
#: An experiment's folder name (both layouts).
EXPERIMENT_DIR_NAME = re.compile(r"\d{8}")
ARRAY_LOG_PATTERN = "slurm-%A_%a.out"


def local_state_dir() -> Path:
    """This machine's state folder (read from the environment at each call; an empty value counts as unset)."""
    configured = os.environ.get(STATE_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".local" / "state" / "xm-slurm"


def store_dir(root: str, store_id: str) -> str:
    """The folder of one store's experiments on the cluster: `<root>/store-<store id>`."""
    if not isinstance(store_id, str) or not _STORE_ID.fullmatch(store_id):
        raise ValidationError(f"store id {store_id!r} must be 12 lower-case hex digits")
    return f"{root.rstrip('/')}/{STORE_DIR_PREFIX}{store_id}"


def experiment_dir(root: str, experiment_id: int, store_id: str | None = None) -> str:
    """The experiment's folder on the cluster: `<root>/store-<store id>/<xid as 8 digits>`; without a
    store id the old layout, `<root>/<xid as 8 digits>` (0.4.x's, and experiments from before store ids)."""
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or experiment_id < 0:
        raise ValidationError(f"experiment id {experiment_id!r} must be a non-negative integer")
    parent = root.rstrip("/") if store_id is None else store_dir(root, store_id)
    return f"{parent}/{experiment_id:08d}"


def log_pattern(*, array: bool) -> str:
    """The log's file name as sbatch's `--output` pattern."""
    return ARRAY_LOG_PATTERN if array else JOB_LOG_PATTERN


def runtime_log_name(*, array: bool) -> str:
    """The same file name as a (double-quoted) shell word for the batch script, from Slurm's variables (a
    job group's batch script runs with the leader's id)."""
    if array:
        return '"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out"'
    return '"slurm-${SLURM_JOB_ID}.out"'


def component_log_name(index: int) -> str:
    """As `runtime_log_name`, for component `index` >= 1 of a job group (component 0 writes to the job's
    own log, with the batch script's messages)."""
    return f'"slurm-${{SLURM_JOB_ID}}+{index}.out"'


def log_name(job_id: SlurmJobId) -> str:
    """The log of a job, an array task or a job group component: component 0 shares the job's log (which
    also holds the batch script's own messages), each later component `N` has `slurm-<id>+N.out`."""
    if job_id.array_task is not None:
        return f"slurm-{job_id.job_id}_{job_id.array_task}.out"
    if job_id.het_offset:
        return f"slurm-{job_id.job_id}+{job_id.het_offset}.out"
    return f"slurm-{job_id.job_id}.out"


def log_path(root: str, experiment_id: int, job_id: SlurmJobId, store_id: str | None = None) -> str:
    """Where a job's log is on the cluster, given the cluster's state folder `root`."""
    return f"{experiment_dir(root, experiment_id, store_id)}/{log_name(job_id)}"
