"""The metadata store: experiments, work units, Slurm jobs and artifacts.

`client()` returns the backend named by `XM_SLURM_API_BACKEND` (`sqlite`, the default, or `rest`). Every client
offers each operation of `xm_slurm.api.operation` as a synchronous method (`c.insert_job(...)`) and an
`a`-prefixed async one (`await c.ainsert_job(...)`) that never blocks the event loop. See docs/metadata.md.
"""

from __future__ import annotations

from xm_slurm.api.base import XManagerAPI
from xm_slurm.api.job_states import JobStateRecord
from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
    ConflictError,
    Experiment,
    ExperimentPatch,
    ExperimentSummary,
    ExperimentUnit,
    ExperimentUnitPatch,
    ExperimentUnitRole,
    SlurmJob,
    WorkUnit,
    WorkUnitPatch,
)
from xm_slurm.api.settings import client

__all__ = [
    "Artifact",
    "ConfigArtifact",
    "ConflictError",
    "Experiment",
    "ExperimentPatch",
    "ExperimentSummary",
    "ExperimentUnit",
    "ExperimentUnitPatch",
    "ExperimentUnitRole",
    "JobStateRecord",
    "SlurmJob",
    "WorkUnit",
    "WorkUnitPatch",
    "XManagerAPI",
    "client",
]
