"""Status at scale, counted at the transport: one squeue per cluster per poll round however many work units
ask or wait (plus one sacct only for jobs squeue no longer lists: none here)."""

from __future__ import annotations

import asyncio

import pytest
from local_cluster import LocalCluster
from scale_helpers import busybox_job, held_gate, scancel

import xm_slurm
from xm_slurm.dependencies import afterok

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

TRACKED = 1000


async def test_one_status_command_per_tick_for_many_tracked_jobs(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    gate = held_gate()  # keeps the whole sweep pending (one job record) while we count
    try:
        async with xm_slurm.create_experiment("scale status", transport_factory=counting) as experiment:
            units = await experiment.add(
                busybox_job(local_cluster, cluster),
                args=[xm_slurm.JobArgs(args=[i]) for i in range(TRACKED)],
                dependency=afterok(gate),
            )
            ids = [j.job_id for u in units for j in u.slurm_jobs]
            assert len(ids) == TRACKED
            # 1,000 work units asking for their status at once: ONE squeue (the controller lists them all,
            # so no sacct).
            before = counting.count("squeue"), counting.count("sacct")
            statuses = await asyncio.gather(*(u.get_status() for u in units))
            assert (counting.count("squeue"), counting.count("sacct")) == (before[0] + 1, before[1])
            assert {s.status.label for s in statuses} == {"pending"}
            # 1,000 work units waiting: ONE poll loop, one squeue per round that asked the cluster.
            watcher = experiment.connections.watcher(cluster.ssh)
            before, polls, reused = (
                (counting.count("squeue"), counting.count("sacct")),
                watcher.polls,
                watcher.reused,
            )
            waits = [asyncio.ensure_future(watcher.wait([j])) for j in ids]
            while watcher.polls + watcher.reused < polls + reused + 4:  # noqa: ASYNC110  (four rounds)
                await asyncio.sleep(0.05)
            asked = watcher.polls - polls
            assert asked >= 1
            assert (counting.count("squeue") - before[0], counting.count("sacct") - before[1]) == (asked, 0)
            scancel(gate, *{j.job_id for j in ids})
            finals = await asyncio.wait_for(asyncio.gather(*waits), 120)
            assert {s.state.value for f in finals for s in f.values()} == {"CANCELLED"}
    finally:
        scancel(gate)
