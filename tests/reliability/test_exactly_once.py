"""Exactly-once submission: the SSH connection is killed (server-side sshd of OUR connection, found through
/proc) while sbatch runs; submit reconnects, recovers the answer or finds the job by its token, never
submits twice."""

from __future__ import annotations

import uuid

import pytest
from local_cluster import LocalCluster
from reliability_helpers import (
    ConnectionKiller,
    cluster_config,
    comment_jobs,
    executor,
    jobs_named,
    ssh_config,
)
from xmanager import xm

import xm_slurm
from xm_slurm.api import client
from xm_slurm.scheduler import cancel, submit
from xm_slurm.scheduler.submit import find_submission, new_submission_token
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster


def _script(name: str) -> str:
    return f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output=/dev/null\n#SBATCH --time=1\nsleep 30\n"


@pytest.mark.parametrize("block", [False, True], ids=["answer-recorded", "answer-lost-found-by-token"])
async def test_connection_killed_during_sbatch_submits_once(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory, block: bool
) -> None:
    name = f"rel-once-{uuid.uuid4().hex[:10]}"
    transport = ConnectionKiller(ssh_config(local_cluster), block_answer_file=block)
    folder = str(tmp_path_factory.mktemp("once"))
    try:
        await transport.run("true")  # open the connection, so there is a server process to kill
        job = await submit(transport, _script(name), directory=folder, name=f"{name}.sh", answer_wait=2)
        assert transport.kills == 1
        assert transport.ssh.connects == 2, "submit should have reconnected after the kill"
        assert transport.counts["sbatch"] == 1, "the job was adopted, not submitted again"
        # How it was found: the recorded answer, or (when that could not be written) squeue by token.
        assert transport.counts["timeout"] == 1
        assert transport.counts["squeue"] == (1 if block else 0)
        assert jobs_named(name) == [str(job)]
        [token] = transport.tokens
        assert comment_jobs(token) == [str(job)]
        assert await find_submission(transport, token) == job
    finally:
        for jid in jobs_named(name):
            await cancel(transport, [jid])
        await transport.close()


async def test_find_submission_sees_finished_and_unknown_tokens(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    transport = SSHTransport(ssh_config(local_cluster))
    folder = str(tmp_path_factory.mktemp("find"))
    try:
        token = new_submission_token()
        script = "#!/bin/bash\n#SBATCH --output=/dev/null\ntrue\n"
        job = await submit(transport, script, directory=folder, name="done.sh", token=token)
        assert await find_submission(transport, token) == job
        assert await find_submission(transport, new_submission_token()) is None
    finally:
        await transport.close()


async def test_sweep_launch_survives_killed_connection(local_cluster: LocalCluster) -> None:
    """A 6-trial sweep: the connection dies while its one sbatch runs. The launch completes, one job array,
    every work unit recorded once with its task."""
    cluster = cluster_config(local_cluster)
    name = f"rel-sweep-{uuid.uuid4().hex[:10]}"
    killers: list[ConnectionKiller] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> ConnectionKiller:
        killers.append(ConnectionKiller(config))
        return killers[-1]

    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["sh", "-c", "sleep 1"])
    job = xm.Job(executable=image, executor=executor(cluster), name=name)
    async with xm_slurm.create_experiment(name, transport_factory=factory) as experiment:
        units = await experiment.add(job, args=[{"args": {"trial": i}} for i in range(6)])
        xid = experiment.experiment_id
    [killer] = killers
    assert killer.kills == 1 and killer.counts["sbatch"] == 1
    array_ids = {str(jid) for u in units for j in u.slurm_jobs for jid in [j.job_id.base]}
    assert len(array_ids) == 1
    assert {str(j.job_id) for u in units for j in u.slurm_jobs} == {
        f"{next(iter(array_ids))}_{i}" for i in range(6)
    }
    stored = client().get_experiment(xid)
    assert sorted(wu.wid for wu in stored.work_units) == [1, 2, 3, 4, 5, 6]
    assert all(len(wu.jobs) == 1 for wu in stored.work_units)
    assert sorted(wu.jobs[0].slurm_job_id for wu in stored.work_units) == sorted(
        f"{next(iter(array_ids))}_{i}" for i in range(6)
    )
    owners = {jid.split("_")[0] for jid in jobs_named(name)}
    assert owners == array_ids, f"duplicate submission: {owners}"
