"""CLI-test helpers (a module name unique across the test folders): run `xm-slurm` as a user would."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm


def xm_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m xm_slurm.cli ARGS` in a new process (the store is the test's: XM_SLURM_STATE_DIR is set)."""
    return subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def sh_job(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, script: str, **job_kw: Any) -> xm.Job:
    """A busybox job running `sh -c script`."""
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sh", "-c", script])
    return xm.Job(executable=image, executor=executor, **job_kw)


async def launch(
    jobs: Sequence[xm.Job],
    title: str,
    *,
    tags: Sequence[str] = (),
    dependency: Any = None,
) -> tuple[int, list[str]]:
    """A new experiment with one work unit per job; returns its id and the Slurm job ids."""
    async with xm_slurm.create_experiment(title) as experiment:
        for tag in tags:
            experiment.context.annotations.tags.add(tag)
        units = [await experiment.add(job, dependency=dependency) for job in jobs]
        ids = [wu.launched_jobs[0].address for wu in units]
        return experiment.experiment_id, ids


def sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,State", "-j", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        if jid == job_id:
            return state.split()[0] if state.split() else ""
    return ""


def squeue_ids() -> set[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())
