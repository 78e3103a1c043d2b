"""A retry is recorded like a launch: pending rows before its sbatch, real ids after; a retry whose record
cannot be completed is cancelled, and its pending rows resolve to that job on the next open."""

from __future__ import annotations

from typing import Any

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from scale_helpers import busybox_job

import xm_slurm
from xm_slurm.errors import MetadataError
from xm_slurm.experiment.handles import PendingJob
from xm_slurm.status import SlurmWorkUnitStatusEnum as WU
from xm_slurm.transport import CommandResult, SSHTransport, Transport, command_name
from xm_slurm.transport.base import Command

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ODD_FAIL = "test $(($1 % 2)) -eq 0 || exit 3"


class StoreAtSbatch(CountingTransport):
    """The real SSH transport; at each sbatch it notes the pending rows the store holds at that moment."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig) -> None:
        super().__init__(SSHTransport(config))
        self.experiment_id: int | None = None
        self.seen: list[dict[int, list[str]]] = []

    async def run(self, command: Command, **kw: Any) -> CommandResult:
        if command_name(command) == "sbatch" and self.experiment_id is not None:
            stored = xm_slurm.api.client().get_experiment(self.experiment_id)
            self.seen.append(
                {
                    wu.wid: [(j.name, j.retry_of) for j in wu.jobs if PendingJob.parse(j.slurm_job_id)]
                    for wu in stored.work_units
                }
            )
        return await super().run(command, **kw)


def stored_jobs(xid: int) -> dict[int, list[tuple[str, str, str | None]]]:
    return {
        wu.wid: [(j.name, j.slurm_job_id, j.retry_of) for j in wu.jobs]
        for wu in xm_slurm.api.client().get_experiment(xid).work_units
    }


async def test_retry_records_pending_rows_before_its_sbatch(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    transports: list[StoreAtSbatch] = []

    def factory(config: xm_slurm.SlurmSSHConfig) -> Transport:
        transports.append(StoreAtSbatch(config))
        return transports[-1]

    job = busybox_job(local_cluster, cluster, ODD_FAIL)
    async with xm_slurm.create_experiment("retry recorded", transport_factory=factory) as experiment:
        units = await experiment.add(job, args=[xm_slurm.JobArgs(args=[i]) for i in range(4)])
        watcher = experiment.connections.watcher(cluster.ssh)
        await watcher.wait([u.slurm_jobs[0].job_id for u in units], timeout=300)
        first = {u.work_unit_id: u.slurm_jobs[0] for u in units}
        [transport] = transports
        transport.experiment_id = experiment.experiment_id
        retried = await experiment.retry_failed(units)
        assert [u.work_unit_id for u in retried] == [units[1].work_unit_id, units[3].work_unit_id]
        # At the moment of the retry's sbatch, exactly the failed units held a pending retry row, under the
        # job's own name, naming the job it retries.
        [at_sbatch] = transport.seen
        failed = {units[1].work_unit_id, units[3].work_unit_id}
        for wid, pending_rows in at_sbatch.items():
            if wid in failed:
                assert pending_rows == [(first[wid].name, first[wid].job_id.to_string())], pending_rows
            else:
                assert pending_rows == [], (wid, pending_rows)
        # Afterwards the rows hold the real ids of the retry, under the same task indices.
        stored = stored_jobs(experiment.experiment_id)
        for unit in retried:
            old, [new] = first[unit.work_unit_id], unit.slurm_jobs
            assert new.job_id.array_task == old.job_id.array_task and new.job_id.job_id != old.job_id.job_id
            assert stored[unit.work_unit_id] == [
                (old.name, str(old.job_id), None),
                (old.name, str(new.job_id), str(old.job_id)),
            ]
        assert not any(PendingJob.parse(j) for rows in stored.values() for _, j, _ in rows)


async def test_retry_whose_record_fails_is_cancelled_and_resolves_on_reopen(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    job = busybox_job(local_cluster, cluster, ODD_FAIL)
    async with xm_slurm.create_experiment("retry unrecorded", transport_factory=counting) as experiment:
        units = await experiment.add(job, args=[xm_slurm.JobArgs(args=[i]) for i in range(2)])
        watcher = experiment.connections.watcher(cluster.ssh)
        await watcher.wait([u.slurm_jobs[0].job_id for u in units], timeout=300)
        client = experiment.launcher.client
        real = client.areplace_jobs

        async def swap_fails(xid: int, **kw: Any) -> None:
            if kw.get("remove"):
                raise MetadataError("store unreachable (injected by the test)")
            await real(xid, **kw)

        client.areplace_jobs = swap_fails  # type: ignore[method-assign]
        try:
            with pytest.raises(
                MetadataError, match=r"job \d+ .* was submitted, but recording it .* been cancelled"
            ):
                await experiment.retry_failed(units)
        finally:
            del client.areplace_jobs
        assert counting.count("scancel") == 1
        xid = experiment.experiment_id
    # The failed unit keeps its pending retry row; opening the experiment again adopts the cancelled job.
    old = units[1].slurm_jobs[0]
    [(name, _, retry_of)] = [
        row for row in stored_jobs(xid)[units[1].work_unit_id] if PendingJob.parse(row[1])
    ]
    assert (name, retry_of) == (old.name, str(old.job_id))
    reopened = xm_slurm.get_experiment(xid)
    try:
        rows = stored_jobs(xid)[units[1].work_unit_id]
        assert not any(PendingJob.parse(j) for _, j, _ in rows)
        [(_, adopted, _)] = [
            row for row in rows if row[2] == str(old.job_id)
        ]  # the lineage survives adoption
        retry = reopened.work_units[units[1].work_unit_id]
        assert str(retry.slurm_jobs[-1].job_id) == adopted
        await reopened.connections.watcher(cluster.ssh).wait([retry.slurm_jobs[-1].job_id], timeout=300)
        assert (await retry.get_status()).status is WU.CANCELLED
        assert (await reopened.work_units[units[0].work_unit_id].get_status()).status is WU.COMPLETED
    finally:
        await reopened.aclose()
