"""What a launch says when it fails after its sbatch may have run (issue 21, finding 6): what happened to the
job and what is safe to do next, with the real cause chained. Before the fix the first said only "could not
connect", and a REST outage surfaced as "cannot reach the metadata server (DELETE ...)" from closing the
experiment, hiding that a job was submitted and cancelled."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from reliability_helpers import RestServer, cluster_config, executor, jobs_named
from xmanager import xm

import xm_slurm
from xm_slurm.api import client
from xm_slurm.errors import ConnectionLostError, XmSlurmError
from xm_slurm.transport import SSHTransport
from xm_slurm.transport.base import Command, CommandResult, command_name

pytestmark = pytest.mark.cluster


def _states(name: str) -> list[str]:
    """The states slurmctld holds for jobs of this name (sacct lags a cancellation by seconds)."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--name", name, "-o", "%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def _settled_states(name: str, timeout: float = 30.0) -> list[str]:
    """`_states` once no job is COMPLETING: scancel of a running job passes through it (for ~0.1 s here)."""
    deadline = time.monotonic() + timeout
    while "COMPLETING" in (states := _states(name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return states


def _scancel(name: str) -> None:
    ids = jobs_named(name)
    if ids:
        subprocess.run(["scancel", *ids], check=False)


class UnreachableAfterSbatch(CountingTransport):
    """The real SSH transport until sbatch has run on the cluster; then the answer is lost and the cluster
    stays unreachable for this launch, so nobody can ask Slurm whether the job exists."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig) -> None:
        super().__init__(SSHTransport(config))
        self.cut = False

    async def run(self, command: Command, **kw: Any) -> CommandResult:
        if self.cut:
            raise ConnectionLostError("connection to the test cluster lost (cut by the test)")
        result = await super().run(command, **kw)
        if command_name(command) == "sbatch":
            self.cut = True
            raise ConnectionLostError("connection to the test cluster lost (cut by the test)")
        return result


async def test_sbatch_that_may_have_run_says_so_and_how_to_resolve(local_cluster: LocalCluster) -> None:
    name = f"rel-maybe-{uuid.uuid4().hex[:10]}"
    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["sleep", "60"])
    job = xm.Job(executable=image, executor=executor(cluster_config(local_cluster)), name=name)
    experiment = xm_slurm.create_experiment(name, transport_factory=UnreachableAfterSbatch)
    try:
        with pytest.raises(XmSlurmError) as caught:
            async with experiment:
                await experiment.add(job)
        text = str(caught.value)
        xid = experiment.experiment_id
        assert "MAY have reached Slurm" in text and f"get_experiment({xid})" in text, text
        assert isinstance(caught.value.__cause__, XmSlurmError), "the real cause is chained"
        # It did reach Slurm; the store kept the pending record (the experiment was not deleted), and
        # reopening it with the cluster reachable adopts the job.
        [submitted] = jobs_named(name)
        [stored] = client().get_experiment(xid).work_units
        assert stored.jobs[0].slurm_job_id.startswith("pending:")
        reopened = xm_slurm.get_experiment(xid)
        try:
            assert [str(j.job_id) for j in reopened.work_units[1].slurm_jobs] == [submitted]
        finally:
            await reopened.aclose()
    finally:
        _scancel(name)


async def test_store_outage_after_sbatch_says_the_job_was_submitted_and_cancelled(
    local_cluster: LocalCluster, rest_server: RestServer
) -> None:
    name = f"rel-outage-{uuid.uuid4().hex[:10]}"

    class StopServerAfterSbatch(CountingTransport):
        def __init__(self, config: xm_slurm.SlurmSSHConfig) -> None:
            super().__init__(SSHTransport(config))

        async def run(self, command: Command, **kw: Any) -> CommandResult:
            result = await super().run(command, **kw)
            if command_name(command) == "sbatch":
                rest_server.current.kill()  # and no spare takes over: the store is down for good
                rest_server.current.wait()
            return result

    image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["sleep", "60"])
    job = xm.Job(executable=image, executor=executor(cluster_config(local_cluster)), name=name)
    experiment = xm_slurm.create_experiment(name, transport_factory=StopServerAfterSbatch)
    try:
        with pytest.raises(XmSlurmError) as caught:
            async with experiment:
                await experiment.add(job)
        text = str(caught.value)
        [submitted] = sorted({jid.split("_")[0] for jid in jobs_named(name)})
        assert f"job {submitted}" in text and "was submitted" in text and "has been cancelled" in text, text
        assert "DELETE" not in text, "closing the experiment hid the launch's error"
        assert caught.value.__cause__ is not None
        assert _settled_states(name) == ["CANCELLED"]
    finally:
        _scancel(name)
