"""A sweep larger than the cluster's array limit: split into several arrays, every work unit right.

The cluster's real MaxArraySize (1001) is read with `scontrol show config`; to keep CI short the test lowers
it for its launcher (`launcher.max_array_size`), so the same split logic runs on a smaller sweep
(XM_SCALE_TRIALS / XM_SCALE_ARRAY_CAP override; 2,500 trials at the real limit is in benchmarks/).
"""

from __future__ import annotations

import os

import pytest
from local_cluster import LocalCluster
from scale_helpers import busybox_job

import xm_slurm
from xm_slurm.status import SlurmWorkUnitStatusEnum

TRIALS = int(os.environ.get("XM_SCALE_TRIALS", "120"))
ARRAY_CAP = int(os.environ.get("XM_SCALE_ARRAY_CAP", "50"))

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


async def test_sweep_split_into_arrays_completes(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    # Trials whose index is 7 mod 10 fail (exit 3): states must land on the right work units.
    job = busybox_job(local_cluster, cluster, "test $(($1 % 10)) -ne 7 || exit 3")
    sweep = [xm_slurm.JobArgs(args=[i]) for i in range(TRIALS)]
    async with xm_slurm.create_experiment("scale split", transport_factory=counting) as experiment:
        experiment.launcher.max_array_size = ARRAY_CAP
        units = await experiment.add(job, args=sweep)
        ssh = cluster.ssh
        limits = await experiment.launcher.limits(ssh)
        assert limits.source == "scontrol" and limits.max_array_size == min(ARRAY_CAP, 1001)
        chunks = -(-TRIALS // ARRAY_CAP)
        assert counting.count("sbatch") == chunks and counting.count("scontrol") == 1
        bases = [u.slurm_jobs[0].job_id.job_id for u in units]
        for i, unit in enumerate(units):
            jid = unit.slurm_jobs[0].job_id
            assert jid.array_task == i % ARRAY_CAP  # indices restart in every array: always < MaxArraySize
            assert jid.job_id == bases[(i // ARRAY_CAP) * ARRAY_CAP]
        assert len(set(bases)) == chunks
        watcher = experiment.connections.watcher(ssh)
        squeue_before, sacct_before, polls_before = (
            counting.count("squeue"),
            counting.count("sacct"),
            watcher.polls,
        )
        finals = await watcher.wait([j.job_id for u in units for j in u.slurm_jobs], timeout=800)
        # ONE squeue per poll round, whatever the number of arrays and tasks; sacct at most once more, only
        # for tasks squeue no longer lists.
        rounds = watcher.polls - polls_before
        assert counting.count("squeue") - squeue_before == rounds
        assert counting.count("sacct") - sacct_before <= rounds
        statuses = [await u.get_status() for u in units]
        assert len(finals) == TRIALS
    for i, status in enumerate(statuses):
        expected = SlurmWorkUnitStatusEnum.FAILED if i % 10 == 7 else SlurmWorkUnitStatusEnum.COMPLETED
        assert status.status is expected, (i, status.message)
    stored = xm_slurm.api.client().get_experiment(experiment.experiment_id)
    assert [wu.wid for wu in stored.work_units] == [u.work_unit_id for u in units]
    assert all(len(wu.jobs) == 1 for wu in stored.work_units)
