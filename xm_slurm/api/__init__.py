"""The metadata store (SPEC §2): experiments, work units, Slurm jobs and artifacts.

`client()` returns the backend named by `XM_SLURM_API_BACKEND` (`sqlite`, the default, or `rest`). Every client
offers the synchronous methods of `XManagerAPI` and their `a`-prefixed async twins (`await c.ainsert_job(...)`),
which never block the event loop. See docs/metadata.md.
"""

from __future__ import annotations

from xm_slurm.api.base import ConflictError, XManagerAPI
from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
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
    "SlurmJob",
    "WorkUnit",
    "WorkUnitPatch",
    "XManagerAPI",
    "client",
]
