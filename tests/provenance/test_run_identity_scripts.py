"""Rendered job scripts carry the run identity for every runtime and shape, and a retried copy (with its
generation line) is still valid bash that forwards the generation into the container."""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rendering"))
from render_helpers import cluster_config, request

from xm_slurm.config import ContainerRuntime
from xm_slurm.rendering import Trial, render_job_script
from xm_slurm.rendering.payload import read_task_table
from xm_slurm.rendering.run_identity import RunIdentity, generation_of, with_run_generation

RUN = RunIdentity(namespace="0a1b2c3d", wandb=True)
SHAPES = {
    "single": {},
    "array": {"trials": [Trial(work_unit_id=5), Trial(work_unit_id=6)], "array": True},
    "group": {"components": 2},
}


def entrypoints(script: str) -> list[str]:
    table = re.search(r"^xm_tasks='\n(.*?)\n'", script, re.MULTILINE | re.DOTALL)
    if table is not None:
        return [base64.b64decode(p).decode() for _, p in read_task_table(table.group(1))]
    return [
        base64.b64decode(p).decode() for p in re.findall(r"^xm_payload_\d+='([^']*)'", script, re.MULTILINE)
    ]


@pytest.mark.parametrize("runtime", [ContainerRuntime.PODMAN, ContainerRuntime.APPTAINER])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_task_has_its_run_id_and_a_retried_copy_stays_valid(
    runtime: ContainerRuntime, shape: str, tmp_path: Path
) -> None:
    req = dataclasses.replace(request(cluster_config(runtime), **SHAPES[shape]), run=RUN)  # type: ignore[arg-type]
    script = render_job_script(req)
    tasks = entrypoints(script)
    wids = [t.work_unit_id for t in req.trials] * (2 if shape == "group" else 1)
    assert len(tasks) == len(wids)
    for wid, task in zip(wids, tasks, strict=True):
        assert f'export XM_SLURM_RUN_ID="xm-0a1b2c3d-42-{wid}${{XM_SLURM_RUN_GENERATION:+' in task
        assert 'export XM_SLURM_ATTEMPT="$((${SLURM_RESTART_COUNT:-0} + 1))"' in task
    if runtime is ContainerRuntime.PODMAN:  # the generation reaches the container in every step
        assert script.count("--env=XM_SLURM_RUN_GENERATION") == len(req.jobs)
    else:
        assert script.count("|XM_SLURM_RUN_GENERATION") == len(req.jobs)
    retried = with_run_generation(script, generation_of(script) + 1)
    assert generation_of(retried) == 1
    directives_end = max(i for i, line in enumerate(retried.splitlines()) if line.startswith("#SBATCH"))
    assert retried.splitlines().index("export XM_SLURM_RUN_GENERATION=1") > directives_end
    path = tmp_path / "retried.sh"
    path.write_text(retried)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, check=False).returncode == 0


def test_without_a_run_identity_nothing_is_added() -> None:
    script = render_job_script(request(cluster_config()))
    assert all("XM_SLURM_RUN_ID" not in t for t in entrypoints(script))
