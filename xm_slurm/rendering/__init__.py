"""Rendering layer: sbatch scripts from Jinja templates (pure functions, no I/O)."""

from __future__ import annotations

from xm_slurm.rendering.payload import BOOTSTRAP, PAYLOAD_VAR
from xm_slurm.rendering.request import JobComponent, JobScriptRequest, Trial
from xm_slurm.rendering.script import render_job_script

__all__ = ["BOOTSTRAP", "PAYLOAD_VAR", "JobComponent", "JobScriptRequest", "Trial", "render_job_script"]
