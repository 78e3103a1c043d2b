"""Faults of the metadata side: the REST server dies during a launch; the launch process itself is killed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from reliability_helpers import (
    Inotify,
    RestServer,
    cluster_config,
    executor,
    free_port,
    jobs_named,
    ssh_config,
)
from xmanager import xm

import xm_slurm
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch, client, settings
from xm_slurm.errors import SubmissionError
from xm_slurm.experiment.handles import PendingJob
from xm_slurm.paths import REMOTE_STATE_DIR_COMMAND, experiment_dir
from xm_slurm.scheduler.submit import new_submission_token, submit
from xm_slurm.status import SlurmWorkUnitStatusEnum as S
from xm_slurm.transport import SSHTransport
from xm_slurm.transport.base import Command, CommandResult, command_name

pytestmark = pytest.mark.cluster


class KillServerAfterSbatch(CountingTransport):
    """The real SSH transport; when sbatch has answered, the REST server is SIGKILLed and restarted, so the
    store writes that follow (work units, jobs) meet a dead, then a starting server."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig, server: RestServer) -> None:
        super().__init__(SSHTransport(config))
        self.server = server

    async def run(self, command: Command, **kw: Any) -> CommandResult:
        result = await super().run(command, **kw)
        if command_name(command) == "sbatch" and self.server.restarts == 0:
            self.server.kill_and_restart()
        return result


@pytest.mark.parametrize("server_db", ["sqlite", "postgres"])
async def test_rest_server_killed_and_restarted_during_launch(
    local_cluster: LocalCluster, rest_server: RestServer
) -> None:
    cluster = cluster_config(local_cluster)
    name = f"rel-rest-{uuid.uuid4().hex[:10]}"
    transports: list[KillServerAfterSbatch] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> KillServerAfterSbatch:
        transports.append(KillServerAfterSbatch(config, rest_server))
        return transports[-1]

    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["true"])
    job = xm.Job(executable=image, executor=executor(cluster), name=name)
    async with xm_slurm.create_experiment(name, transport_factory=factory) as experiment:
        units = await experiment.add(job, args=[{"args": {"trial": i}} for i in range(5)])
        xid = experiment.experiment_id
    assert rest_server.restarts == 1
    [transport] = transports
    assert transport.counts["sbatch"] == 1
    [array] = {j.job_id.base for u in units for j in u.slurm_jobs}
    settings.clear_cache()
    stored = client().get_experiment(xid)  # read back through the restarted server
    assert [wu.wid for wu in stored.work_units] == [1, 2, 3, 4, 5]
    assert [[j.slurm_job_id for j in wu.jobs] for wu in stored.work_units] == [
        [f"{array}_{i}"] for i in range(5)
    ]
    assert {jid.split("_")[0] for jid in jobs_named(name)} == {str(array)}


# --- the launch process is SIGKILLed between an sbatch and its record -----------------------------------

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
    cluster = cluster_config(lc)
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=["sleep", "60"])
    job = xm.Job(executable=image, executor=executor(cluster), name={name!r})
    async with xm_slurm.create_experiment({name!r}) as experiment:
        print(json.dumps({{"xid": experiment.experiment_id}}), flush=True)
        for i in range(6):
            await experiment.add(job, args={{"args": {{"i": i}}}}, identity=f"unit-{{i}}")

asyncio.run(main())
"""


async def _stop_and_close(experiment: xm_slurm.SlurmExperiment) -> None:
    try:
        for unit in experiment.work_units.values():
            assert len((await unit.get_status()).jobs) == 1  # the adopted job has a Slurm state
            await unit.stop()
    finally:
        await experiment.aclose()


def _state_root() -> str:
    return subprocess.run(
        ["bash", "-lc", REMOTE_STATE_DIR_COMMAND],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "XM_SLURM_STATE_DIR"},
    ).stdout


def test_launch_killed_between_sbatch_and_record_leaves_no_unknown_job(
    local_cluster: LocalCluster, store: Path
) -> None:
    name = f"rel-kill-{uuid.uuid4().hex[:10]}"
    repo = Path(__file__).resolve().parents[2]
    code = LAUNCH.format(
        helpers=str(Path(__file__).resolve().parent),
        env=str(repo / ".local-cluster" / "env.sh"),
        name=name,
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "tests")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        xid = json.loads(proc.stdout.readline())["xid"]
        folder = experiment_dir(_state_root(), xid, client().get_store_info().folder_key(xid))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        watch = Inotify(folder, moved=True)
        try:
            # The third unit's sbatch starts (its answer file is opened): freeze the launch process there, let
            # sbatch finish on the cluster (its answer file is in place), then kill the launch process.
            mine = f"{name}-wu3-"
            assert watch.wait_for_match(lambda f: f.startswith(mine) and f.endswith(".sbatch-out"), 120)
            os.kill(proc.pid, signal.SIGSTOP)
            assert watch.wait_for_match(lambda f: f.startswith(mine) and f.endswith(".sbatch-rc"), 60)
        finally:
            watch.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        settings.clear_cache()
        # The killed launch left unit 3 recorded with a pending row naming its submission token.
        [pending] = [j.slurm_job_id for j in client().get_work_unit(xid, 3).jobs]
        assert pending.startswith("pending:xms-"), pending
        # Opening the experiment finds the token in Slurm and records the job.
        reloaded = xm_slurm.get_experiment(xid)
        stored = client().get_experiment(xid)
        recorded = {j.slurm_job_id for wu in stored.work_units for j in wu.jobs}
        # Consistent units: each recorded unit has its (real) job.
        assert [wu.wid for wu in stored.work_units] == [1, 2, 3]
        assert all(len(wu.jobs) == 1 for wu in stored.work_units), stored.work_units
        assert not any(jid.startswith("pending:") for jid in recorded), recorded
        submitted = set(jobs_named(name))
        assert len(submitted) == 3, f"the launch submitted {sorted(submitted)} before it was killed"
        assert submitted == recorded, f"store {sorted(recorded)} != Slurm {sorted(submitted)}"
        unit = reloaded.work_units[3]
        assert [str(j.job_id) for j in unit.slurm_jobs] == [stored.work_units[2].jobs[0].slurm_job_id]
        asyncio.run(_stop_and_close(reloaded))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ids = jobs_named(name)
        if ids:
            subprocess.run(["scancel", *ids], check=False)


# --- pending rows: what a reload does with them ---------------------------------------------------------


def _row(name: str, pending: PendingJob, ssh: xm_slurm.SlurmSSHConfig) -> SlurmJob:
    return SlurmJob(name=name, slurm_job_id=pending.to_string(), slurm_ssh_config=ssh.to_json())


async def test_reload_adopts_found_drops_stale_and_keeps_recent_pending_rows(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ssh = ssh_config(local_cluster)
    transport = SSHTransport(ssh)
    folder = str(tmp_path_factory.mktemp("pending"))
    submitted = new_submission_token()
    try:
        array = await submit(
            transport,
            "#!/bin/bash\n#SBATCH --output=/dev/null\ntrue\n",
            directory=folder,
            name="pending.sh",
            sbatch_args=["--array=0-1", f"--partition={local_cluster.partition}"],
            token=submitted,
        )
    finally:
        await transport.close()
    now = time.time()
    api = client()
    xid = api.insert_experiment(ExperimentPatch(title="pending rows"))
    old, never, recent = PendingJob(submitted, int(now)), new_submission_token(), new_submission_token()
    api.replace_jobs(
        xid,
        work_units=[WorkUnitPatch(wid=w) for w in (1, 2, 3, 4, 5)],
        insert=[
            (1, _row("a", PendingJob(submitted, int(now), array_task=0), ssh)),
            (2, _row("a", PendingJob(submitted, int(now), array_task=1), ssh)),
            (3, _row("b", PendingJob(never, int(now - 3600)), ssh)),  # never submitted, long ago
            (4, SlurmJob(name="c", slurm_job_id=str(array.base), slurm_ssh_config=ssh.to_json())),
            (4, _row("d", PendingJob(never, int(now - 3600), het_offset=1), ssh)),
            (
                5,
                _row("e", PendingJob(recent, int(now)), ssh),
            ),  # never submitted, but its sbatch may be on its way
        ],
    )
    del old
    experiment = xm_slurm.get_experiment(xid)  # inside a running event loop: resolves in a worker thread
    try:
        stored = {wu.wid: [j.slurm_job_id for j in wu.jobs] for wu in api.get_experiment(xid).work_units}
        assert stored == {
            1: [f"{array.base}_0"],
            2: [f"{array.base}_1"],
            # 3: its only row was never submitted: the unit is gone
            4: [str(array.base)],  # its stale pending row went, its real job stayed
            5: [PendingJob(recent, int(now)).to_string()],
        }
        assert sorted(experiment.work_units) == [1, 2, 4, 5]
        assert [str(j.job_id) for j in experiment.work_units[2].slurm_jobs] == [f"{array.base}_1"]
        assert experiment.work_units[5].slurm_jobs == []
        assert (await experiment.work_units[5].get_status()).status is S.PENDING
        # A later open with no grace (as if the row had aged) drops the recent row too.
        result = await experiment.resolve_pending_submissions(grace=0)
        assert (result.dropped_rows, result.deleted_units, result.unresolved) == (1, [5], 0)
        assert sorted(experiment.work_units) == [1, 2, 4]
        assert [wu.wid for wu in api.get_experiment(xid).work_units] == [1, 2, 4]
    finally:
        await experiment.aclose()


async def test_reload_with_the_cluster_unreachable_keeps_pending_rows(local_cluster: LocalCluster) -> None:
    closed = dataclasses.replace(ssh_config(local_cluster), port=free_port())  # nothing listens there
    api = client()
    xid = api.insert_experiment(ExperimentPatch(title="unreachable"))
    row = _row("a", PendingJob(new_submission_token(), int(time.time() - 3600)), closed)
    api.replace_jobs(xid, work_units=[WorkUnitPatch(wid=1)], insert=[(1, row)])
    experiment = xm_slurm.get_experiment(xid)
    try:
        assert [j for wu in api.get_experiment(xid).work_units for j in wu.jobs] == [row]
        unit = experiment.work_units[1]
        assert unit.slurm_jobs == [] and (await unit.get_status()).status is S.PENDING
        result = await experiment.resolve_pending_submissions()
        assert (result.unresolved, result.dropped_rows, result.adopted) == (1, 0, {})
    finally:
        await experiment.aclose()


class SecondSbatchRefused(CountingTransport):
    """The real SSH transport; the second sbatch gets a partition no cluster has, so Slurm itself refuses it
    (the launch's pre-flight, which knows the partitions, has already passed)."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig) -> None:
        super().__init__(SSHTransport(config))

    async def run(self, command: Command, **kw: Any) -> CommandResult:
        if command_name(command) == "sbatch" and self.counts["sbatch"] == 1 and isinstance(command, str):
            command = command.replace("sbatch --parsable", "sbatch --parsable --partition=nopart-xm", 1)
        return await super().run(command, **kw)


async def test_refused_sbatch_leaves_neither_unit_nor_pending_row(local_cluster: LocalCluster) -> None:
    name = f"rel-refused-{uuid.uuid4().hex[:10]}"
    good = cluster_config(local_cluster)
    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["true"])
    experiment = xm_slurm.create_experiment(name, transport_factory=SecondSbatchRefused)
    with pytest.raises(SubmissionError, match="sbatch refused"):
        async with experiment:
            first = await experiment.add(xm.Job(executable=image, executor=executor(good), name=name))
            xid = experiment.experiment_id
            await experiment.add(xm.Job(executable=image, executor=executor(good), name=name), args=[{}, {}])
    stored = client().get_experiment(xid)
    assert [(wu.wid, [j.slurm_job_id for j in wu.jobs]) for wu in stored.work_units] == [
        (1, [str(first.slurm_jobs[0].job_id)])
    ]
