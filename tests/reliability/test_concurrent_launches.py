"""Launches into ONE experiment from several processes at once, on both store backends (issue 21, findings 3
and 4): one identity is one work unit with one job; concurrent sweeps get distinct work units; a re-add of an
identity whose submission is pending waits for it or resolves it, never returns a unit without a job.

Before the fix (work unit ids counted per process): 8 identity re-adds submitted 8 jobs under one unit, and 8
sweeps of 20 made 20 units holding 8 jobs each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from reliability_helpers import cluster_config, executor, jobs_named, ssh_config
from xmanager import xm

import xm_slurm
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch, client
from xm_slurm.experiment.handles import PendingJob
from xm_slurm.scheduler.submit import new_submission_token, submit
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 8

# One launch process: opens the experiment, says "ready", waits for "go" on stdin (so all processes race
# for real), adds, prints the work unit ids it got.
LAUNCH = """
import asyncio, json, sys
from xmanager import xm
import xm_slurm
sys.path.insert(0, {helpers!r})
from local_cluster import load_local_cluster
from reliability_helpers import cluster_config, executor
from pathlib import Path

async def main():
    lc = load_local_cluster(Path({env!r}))
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sleep", "120"])
    job = xm.Job(executable=image, executor=executor(cluster_config(lc)), name={name!r})
    async with xm_slurm.get_experiment({xid}) as experiment:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        if {trials} == 0:
            units = [await experiment.add(job, args={{"args": {{"seed": 1}}}}, identity="solo")]
        else:
            units = await experiment.add(job, args=[{{"args": {{"p": {index}, "t": t}}}} for t in range({trials})])
        print(json.dumps([u.work_unit_id for u in units]), flush=True)

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "rest", "rest-postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store every process of a test shares: the test's SQLite file, or one REST server (on SQLite or
    on PostgreSQL: `server_db` in conftest)."""
    if request.param != "sqlite":
        request.getfixturevalue("rest_server")
    return str(request.param)


def _race(xid: int, name: str, trials: int) -> list[list[int]]:
    """Start PROCESSES launch processes, let them all add at the same moment, return each one's unit ids."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    procs = []
    for index in range(PROCESSES):
        code = LAUNCH.format(
            helpers=str(Path(__file__).resolve().parent),
            env=str(REPO / ".local-cluster" / "env.sh"),
            name=name,
            xid=xid,
            trials=trials,
            index=index,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"a launch process failed (exit {proc.returncode}): {out}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _cancel(name: str) -> None:
    ids = jobs_named(name)
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_concurrent_identity_adds_submit_one_job(local_cluster: LocalCluster, backend: str) -> None:
    name = f"rel-ident-{uuid.uuid4().hex[:10]}"
    api = client()
    xid = api.insert_experiment(ExperimentPatch(title=name))
    try:
        results = _race(xid, name, trials=0)
        assert len(jobs_named(name)) == 1, f"{PROCESSES} identity re-adds submitted {jobs_named(name)}"
        stored = api.get_experiment(xid)
        [unit] = stored.work_units
        assert unit.identity == "solo" and len(unit.jobs) == 1
        assert unit.jobs[0].slurm_job_id == jobs_named(name)[0]
        assert results == [[unit.wid]] * PROCESSES, "every process returns the one unit"
    finally:
        _cancel(name)


def test_concurrent_sweeps_get_distinct_units(local_cluster: LocalCluster, backend: str) -> None:
    name = f"rel-sweeps-{uuid.uuid4().hex[:10]}"
    trials = 20
    api = client()
    xid = api.insert_experiment(ExperimentPatch(title=name))
    try:
        results = _race(xid, name, trials=trials)
        wids = [wid for ids in results for wid in ids]
        assert len(set(wids)) == PROCESSES * trials, "two processes got the same work unit id"
        stored = api.get_experiment(xid)
        assert sorted(wu.wid for wu in stored.work_units) == sorted(wids)
        assert all(len(wu.jobs) == 1 for wu in stored.work_units), "a unit holds jobs of several sweeps"
        # One array per process, every task recorded once.
        assert len({jid.split("_")[0] for jid in jobs_named(name)}) == PROCESSES
        job_ids = [wu.jobs[0].slurm_job_id for wu in stored.work_units]
        assert len(set(job_ids)) == PROCESSES * trials
        for ids in results:  # each process's units are the tasks of one array, in order
            by_wid = {wu.wid: wu.jobs[0].slurm_job_id for wu in stored.work_units}
            bases = {by_wid[w].split("_")[0] for w in ids}
            assert len(bases) == 1
            assert [by_wid[w].split("_")[1] for w in ids] == [str(t) for t in range(trials)]
    finally:
        _cancel(name)


# --- an identity whose submission is pending (a launch in flight, or one that was killed) -----------


def _job(lc: LocalCluster, name: str) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sleep", "120"])
    return xm.Job(executable=image, executor=executor(cluster_config(lc)), name=name)


def _pending_unit(xid: int, pending: PendingJob, name: str, lc: LocalCluster) -> None:
    row = SlurmJob(name=name, slurm_job_id=pending.to_string(), slurm_ssh_config=ssh_config(lc).to_json())
    client().replace_jobs(xid, work_units=[WorkUnitPatch(wid=1, identity="solo")], insert=[(1, row)])


async def test_identity_readd_adopts_the_job_a_killed_launch_submitted(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The killed launch's sbatch reached Slurm: the re-add adopts that job and submits nothing."""
    name = f"rel-adopt-{uuid.uuid4().hex[:10]}"
    token = new_submission_token()
    transport = SSHTransport(ssh_config(local_cluster))
    try:
        script = f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output=/dev/null\nsleep 120\n"
        folder = str(tmp_path_factory.mktemp("adopt"))
        submitted = await submit(transport, script, directory=folder, name="a.sh", token=token)
    finally:
        await transport.close()
    xid = client().insert_experiment(ExperimentPatch(title=name))
    try:
        _pending_unit(xid, PendingJob(token, int(time.time())), name, local_cluster)
        async with xm_slurm.get_experiment(xid) as experiment:
            unit = await experiment.add(_job(local_cluster, name), identity="solo")
            assert [str(j.job_id) for j in unit.slurm_jobs] == [str(submitted)]
        assert jobs_named(name) == [str(submitted)], "the re-add submitted a second job"
        [stored] = client().get_experiment(xid).work_units
        assert [j.slurm_job_id for j in stored.jobs] == [str(submitted)]
    finally:
        _cancel(name)


async def test_identity_readd_waits_out_the_grace_of_a_submission_that_never_happened(
    local_cluster: LocalCluster,
) -> None:
    """A launch recorded its row and died before its sbatch: inside the grace the re-add waits (the launch
    might still submit); once the grace is over the row is dropped and the re-add submits the one job."""
    from xm_slurm.experiment.recovery import SUBMISSION_GRACE_SECONDS

    name = f"rel-grace-{uuid.uuid4().hex[:10]}"
    xid = client().insert_experiment(ExperimentPatch(title=name))
    created = int(time.time() - SUBMISSION_GRACE_SECONDS + 8)  # 8 s of grace left
    try:
        _pending_unit(xid, PendingJob(new_submission_token(), created), name, local_cluster)
        async with xm_slurm.get_experiment(xid) as experiment:
            unit = await experiment.add(_job(local_cluster, name), identity="solo")
            assert time.time() >= created + SUBMISSION_GRACE_SECONDS, "the row was dropped inside its grace"
            assert len(unit.slurm_jobs) == 1, "the re-add returned a unit without a job"
        assert jobs_named(name) == [str(unit.slurm_jobs[0].job_id)]
        [stored] = client().get_experiment(xid).work_units
        assert stored.identity == "solo"
        assert [j.slurm_job_id for j in stored.jobs] == [str(unit.slurm_jobs[0].job_id)]
    finally:
        _cancel(name)
