"""Job states recorded by whoever polls (issue 20, point 2), on the real local cluster: a sweep launched
through each store backend, waited on by `xm-slurm wait` in another process; the store then holds every
unit's final state, read back through the API alone (the REST server never talks to Slurm). A `wait` with
a read-only token records nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from metadata_fixtures import Backend, Server, run_cli
from xmanager import xm

import xm_slurm
from xm_slurm.api import settings
from xm_slurm.api.rest import RestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster, executor

__all__ = ["cluster"]
pytestmark = pytest.mark.cluster


def _wait(xid: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _cli("wait", str(xid), env=env)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xm_slurm.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


async def _sweep(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, title: str, script: str) -> int:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sh", "-c", script])
    job = xm.Job(executable=image, executor=executor(cluster), name="states")
    async with xm_slurm.create_experiment(title) as experiment:
        await experiment.add(job, args=[{"args": {"trial": t}} for t in range(3)])
        return experiment.experiment_id


async def test_wait_in_another_process_records_every_units_final_state(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, backend: Backend
) -> None:
    started = dt.datetime.now(dt.timezone.utc)
    xid = await _sweep(local_cluster, cluster, "states recorded", "sleep 1")
    waited = _wait(xid)
    assert waited.returncode == 0, waited.stderr
    settings.clear_cache()  # read afresh, as a teammate would
    units = xm_slurm.api.client().get_experiment(xid).work_units
    assert len(units) == 3
    for unit in units:
        [job] = unit.jobs
        assert (job.state, job.exit_code) == ("COMPLETED", 0), job
        assert job.state_seen_at is not None and started <= job.state_seen_at <= dt.datetime.now(
            dt.timezone.utc
        )


async def test_wait_with_a_read_only_token_records_nothing(
    local_cluster: LocalCluster,
    cluster: xm_slurm.SlurmClusterConfig,
    rest_server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
    monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", rest_server.base_url)
    monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", rest_server.token)
    settings.clear_cache()
    made = run_cli("server", "token", "create", "--name", "viewer", "--read-only", "--db", rest_server.db_url)
    assert made.returncode == 0, made.stderr
    xid = await _sweep(local_cluster, cluster, "states not recorded", "exit 4")
    waited = _wait(xid, {"XM_SLURM_REST_API_TOKEN": made.stdout.strip()})
    assert waited.returncode != 0 and "did not complete" in waited.stderr  # it waited, and saw them fail
    stored = RestClient(rest_server.base_url, rest_server.token).get_experiment(xid)
    assert [j.state for u in stored.work_units for j in u.jobs] == [None, None, None]
    # The same wait with the read-write token records the failures, exit code included.
    assert _wait(xid).returncode != 0
    stored = RestClient(rest_server.base_url, rest_server.token).get_experiment(xid)
    assert [(j.state, j.exit_code) for u in stored.work_units for j in u.jobs] == [("FAILED", 4)] * 3


async def test_a_waiting_launch_script_and_show_record_states(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, backend: Backend
) -> None:
    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["sh", "-c", "exit 5"])
    job = xm.Job(executable=image, executor=executor(cluster), name="states")
    async with xm_slurm.create_experiment("states of a launch script") as experiment:
        await experiment.add(job, args=[{"args": {"trial": 0}}])
        await experiment.wait()  # the launch script's own polling records
        xid = experiment.experiment_id
    settings.clear_cache()
    [stored] = xm_slurm.api.client().get_experiment(xid).work_units
    assert [(j.state, j.exit_code) for j in stored.jobs] == [("FAILED", 5)]
    # A job nobody has polled since it ended: `xm-slurm show` records what it sees.
    held = await _sweep(local_cluster, cluster, "states of show", "true")
    settings.clear_cache()
    assert [j.state for u in xm_slurm.api.client().get_experiment(held).work_units for j in u.jobs] != [
        "COMPLETED"
    ] * 3
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)
    while True:  # until show has seen (and recorded) all three ended
        shown = await asyncio.to_thread(_cli, "show", str(held))
        assert shown.returncode == 0, shown.stderr
        settings.clear_cache()
        states = [j.state for u in xm_slurm.api.client().get_experiment(held).work_units for j in u.jobs]
        if states == ["COMPLETED"] * 3 or dt.datetime.now(dt.timezone.utc) > deadline:
            break
    assert states == ["COMPLETED"] * 3
