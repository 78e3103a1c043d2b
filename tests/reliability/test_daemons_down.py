"""slurmctld or slurmdbd down during a launch (disruptive: ordered last, run only when safe; disruption.py)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from disruption import stopped
from local_cluster import LocalCluster
from reliability_helpers import cluster_config, executor
from xmanager import xm

import xm_slurm
from xm_slurm.api import client
from xm_slurm.errors import NotFoundError, SubmissionError
from xm_slurm.status import SlurmWorkUnitStatusEnum as S

pytestmark = [pytest.mark.cluster, pytest.mark.disruptive]


def _job(lc: LocalCluster, name: str, *command: str) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=list(command))
    return xm.Job(executable=image, executor=executor(cluster_config(lc)), name=name)


async def test_slurmctld_down_bounded_retries_then_one_error_then_recovers(
    local_cluster: LocalCluster,
) -> None:
    name = f"rel-ctld-{uuid.uuid4().hex[:10]}"
    async with xm_slurm.create_experiment(name) as first:
        before = await first.add(_job(local_cluster, name, "true"))
        await before.wait_until_complete()
        with stopped("slurmctld"):
            # sacct (slurmdbd) still answers for the job launched before.
            assert (await before.get_status()).status is S.COMPLETED
            with pytest.raises(SubmissionError) as raised:
                async with xm_slurm.create_experiment(name) as refused:
                    refused_xid = refused.experiment_id
                    await refused.add(_job(local_cluster, name, "true"))
            message = str(raised.value)
            assert "after 3 attempts" in message and "Slurm controller" in message, message
        # slurmctld is back: status and launch work again.
        assert (await before.get_status()).status is S.COMPLETED
        after = await first.add(_job(local_cluster, name, "true"))
        await after.wait_until_complete()
        xid = first.experiment_id
    assert [len(wu.jobs) for wu in client().get_experiment(xid).work_units] == [1, 1]
    with pytest.raises(NotFoundError):  # nothing was recorded, so the empty experiment was removed
        client().get_experiment(refused_xid)


async def test_slurmdbd_down_status_through_squeue(local_cluster: LocalCluster) -> None:
    name = f"rel-dbd-{uuid.uuid4().hex[:10]}"
    async with xm_slurm.create_experiment(name) as experiment:
        running = await experiment.add(_job(local_cluster, name, "sleep", "300"))
        while (await running.get_status()).status is S.PENDING:
            pass
        with stopped("slurmdbd"):
            failing = await asyncio.to_thread(
                subprocess.run, ["sacct", "-n", "-X"], capture_output=True, text=True, timeout=120
            )
            assert failing.returncode != 0, "sacct should fail while slurmdbd is down"
            assert (await running.get_status()).status is S.RUNNING
            # Launching needs no slurmdbd; a short job's end is seen through squeue too.
            short = await experiment.add(_job(local_cluster, name, "true"))
            await short.wait_until_complete()
            await running.stop()
            while (await running.get_status()).status is not S.CANCELLED:
                pass
