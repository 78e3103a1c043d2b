"""What a launch script sees when it fails (issue 18, point 5), on the real local cluster: an error in the
body of `async with create_experiment(...)` submits nothing more and names what was submitted; our errors
print the script's lines and our message, not pages of asyncio frames."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from experiment_fixtures import cluster_literal, executor, run_script
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm import api

pytestmark = pytest.mark.cluster


def _job(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, name: str) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sleep", "60"])
    return xm.Job(executable=image, executor=executor(cluster), name=name)


def _jobs_named(name: str) -> list[str]:
    """Every job of that name slurmctld knows (pending, running or ended: MinJobAge keeps them listed)."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--name", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted({line.split("_")[0] for line in out.stdout.split()})


def _cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=False)


async def test_a_forgotten_await_submits_nothing_and_says_so(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    name = f"forgot-{uuid.uuid4().hex[:8]}"
    experiment = xm_slurm.create_experiment("forgotten await")
    with pytest.raises(AttributeError) as raised:
        async with experiment:
            wu = experiment.add(_job(local_cluster, cluster, name))  # forgot `await`
            print(wu.work_unit_id)  # type: ignore[attr-defined]  # a task has no work_unit_id: raises
    assert _jobs_named(name) == []
    notes = getattr(raised.value, "__notes__", [])
    assert notes == [
        f"xm_slurm experiment {experiment.experiment_id}: nothing was submitted before this error; "
        "1 add still in progress was cancelled and submitted nothing more"
    ]


async def test_a_body_error_keeps_the_submitted_unit_names_it_and_cancels_the_queued_sweep(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    name = f"body-{uuid.uuid4().hex[:8]}"
    job = _job(local_cluster, cluster, name)
    experiment = xm_slurm.create_experiment("body error after one add")
    with pytest.raises(RuntimeError, match="the body failed") as raised:
        async with experiment:
            first = await experiment.add(job)
            experiment.add(job, args=[{"args": {"i": i}} for i in range(3)])  # queued, not awaited
            raise RuntimeError("the body failed")
    [submitted] = [str(j.job_id) for j in first.slurm_jobs]
    try:
        assert _jobs_named(name) == [submitted]
        xid = experiment.experiment_id
        assert raised.value.__notes__ == [
            f"xm_slurm experiment {xid}: submitted before this error and left to run: work unit 1 (Slurm job "
            f"{submitted}); `xm-slurm cancel {xid}` stops them; 1 add still in progress was cancelled and "
            "submitted nothing more"
        ]
        assert [wu.wid for wu in api.client().get_experiment(xid).work_units] == [1]
    finally:
        _cancel([submitted])


def _wrong_known_hosts(tmp_path: Path, lc: LocalCluster) -> str:
    """A known_hosts file naming another key for the cluster's address: a changed host key."""
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = tmp_path / "known_hosts"
    path.write_text(
        f"[{lc.ssh_host}]:{lc.ssh_port} {' '.join(key.with_suffix('.pub').read_text().split()[:2])}\n"
    )
    return str(path)


_SCRIPT = """
import asyncio, dataclasses, datetime as dt, sys
from xmanager import xm
import xm_slurm

cluster = {cluster}
cluster = dataclasses.replace(cluster, ssh=dataclasses.replace(cluster.ssh, known_hosts=sys.argv[1]))
job = xm.Job(
    executable=xm_slurm.RemoteImage(image={image!r}, entrypoint=["true"]),
    executor=xm_slurm.Slurm(requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=1)),
)
{body}
"""

_ASYNC_BODY = """
async def main():
    async with xm_slurm.create_experiment("short traceback") as experiment:
        await experiment.add(job)

asyncio.run(main())
"""

_SYNC_BODY = """
with xm_slurm.create_experiment("short traceback, with") as experiment:
    experiment.add(job)
"""


@pytest.mark.parametrize("body", [_ASYNC_BODY, _SYNC_BODY], ids=["async-with", "with"])
def test_a_typical_error_prints_in_a_few_lines_without_asyncio_frames(
    local_cluster: LocalCluster, tmp_path: Path, body: str
) -> None:
    script = tmp_path / "launch.py"
    script.write_text(
        _SCRIPT.format(cluster=cluster_literal(local_cluster), image=local_cluster.image, body=body)
    )
    known_hosts = _wrong_known_hosts(tmp_path, local_cluster)
    done = subprocess.run(
        [sys.executable, str(script), known_hosts], capture_output=True, text=True, timeout=120, check=False
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1, done.stderr
    [error] = [line for line in lines if line.startswith("xm_slurm.errors.")]
    assert error.startswith("xm_slurm.errors.HostKeyError: launching WorkUnit("), done.stderr
    assert "ssh-keyscan" in error
    frames = [line.strip().split('"')[1] for line in lines if line.startswith('  File "')]
    assert frames and set(frames) == {str(script)}, done.stderr  # no asyncio, concurrent.futures, xm_slurm
    assert "The above exception" not in done.stderr and "During handling" not in done.stderr
    assert len(lines) <= 10, done.stderr  # 90 lines before (asyncssh's chain, asyncio.run's frames)

    full = subprocess.run(
        [sys.executable, str(script), known_hosts],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "XM_SLURM_TRACEBACK": "full"},
    )
    assert "The above exception" in full.stderr and "xm_slurm/transport/" in full.stderr, full.stderr


def test_other_errors_print_as_python_prints_them(local_cluster: LocalCluster) -> None:
    done = run_script("import xm_slurm\nxm_slurm.create_experiment('x')\nraise KeyError('mine')")
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):"), done.stderr
    assert done.stderr.splitlines()[-1] == "KeyError: 'mine'"
