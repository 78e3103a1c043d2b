"""Throttled sweeps (`Slurm(array_throttle=N)`) never run more than N trials, even split into several
arrays; `retry_failed` resubmits only the failed trials and appends the new jobs to the same work units."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from scale_helpers import busybox_job, held_gate, make_cluster, running_tasks, scancel

import xm_slurm
from xm_slurm.dependencies import afterok
from xm_slurm.status import SlurmWorkUnitStatusEnum as WU

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def show_job(job_id: int) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, check=True
    ).stdout


async def test_throttle_holds_across_split_arrays(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    job = busybox_job(local_cluster, cluster, "sleep 1", array_throttle=2)
    gate = held_gate()
    try:
        async with xm_slurm.create_experiment("scale throttle", transport_factory=counting) as experiment:
            experiment.launcher.max_array_size = 3  # 8 trials -> arrays of 3, 3 and 2, chained
            units = await experiment.add(
                job, args=[xm_slurm.JobArgs(args=[i]) for i in range(8)], dependency=afterok(gate)
            )
            bases = list(dict.fromkeys(u.slurm_jobs[0].job_id.job_id for u in units))
            assert len(bases) == 3 and counting.count("sbatch") == 3
            # Every array carries %2, and each later array waits for the one before (and for the gate).
            for i, base in enumerate(bases):
                shown = show_job(base)
                assert "ArrayTaskThrottle=2" in shown
                dependency = shown.split("Dependency=", 1)[1].split()[0]
                assert f"afterok:{gate}" in dependency
                if i:
                    assert f"afterany:{bases[i - 1]}" in dependency
            await asyncio.to_thread(subprocess.run, ["scontrol", "release", gate], check=True)
            ids = [j.job_id for u in units for j in u.slurm_jobs]
            watcher = experiment.connections.watcher(cluster.ssh)
            waiting = asyncio.ensure_future(watcher.wait(ids, timeout=500))
            most = 0
            while not waiting.done():  # squeue polling while the sweep runs
                most = max(most, running_tasks(bases))
                await asyncio.sleep(0.1)
            finals = await waiting
        assert all(s.work_unit_status is WU.COMPLETED for s in finals.values())
        assert 1 <= most <= 2, most
    finally:
        scancel(gate)


async def test_retry_failed_reruns_only_failed_trials(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    cluster = make_cluster(local_cluster, mounts={str(marks): "/xmmarks"})
    # A "flaky" trial fails the first time (leaving a marker) and succeeds once the marker exists.
    script = 'test "$1" != flaky || test -e /xmmarks/$2 || { touch /xmmarks/$2; exit 3; }'
    job = busybox_job(local_cluster, cluster, script)
    kinds = ["ok", "flaky", "ok", "flaky", "flaky", "ok"]
    async with xm_slurm.create_experiment("scale retry", transport_factory=counting) as experiment:
        units = await experiment.add(job, args=[xm_slurm.JobArgs(args=[k, i]) for i, k in enumerate(kinds)])
        first = {u.work_unit_id: u.slurm_jobs[0].job_id for u in units}
        watcher = experiment.connections.watcher(cluster.ssh)
        await watcher.wait(first.values(), timeout=300)
        before = [(await u.get_status()).status for u in units]
        assert before == [WU.FAILED if k == "flaky" else WU.COMPLETED for k in kinds]

        sbatch = counting.count("sbatch")
        retried = await experiment.retry_failed(units)
        assert [u.work_unit_id for u in retried] == [
            u.work_unit_id for u, k in zip(units, kinds, strict=True) if k == "flaky"
        ]
        assert counting.count("sbatch") == sbatch + 1  # one resubmission of the array's script
        new = {u.work_unit_id: u.slurm_jobs[-1].job_id for u in retried}
        assert len({j.job_id for j in new.values()}) == 1
        assert [j.array_task for j in new.values()] == [first[w].array_task for w in new]  # same indices
        await watcher.wait(new.values(), timeout=300)
        after = [(await u.get_status()).status for u in units]
        assert after == [WU.COMPLETED] * len(kinds)
        assert all(u.slurm_jobs[0].job_id == first[u.work_unit_id] for u in units if u not in retried)
        assert await experiment.retry_failed() == []  # nothing failed any more (default: every work unit)
        assert counting.count("sbatch") == sbatch + 1

    stored = {wu.wid: wu for wu in xm_slurm.api.client().get_experiment(experiment.experiment_id).work_units}
    for unit, kind in zip(units, kinds, strict=True):
        jobs = stored[unit.work_unit_id].jobs
        if kind == "flaky":
            assert [j.slurm_job_id for j in jobs] == [
                str(first[unit.work_unit_id]),
                str(new[unit.work_unit_id]),
            ]
            assert (jobs[1].name, jobs[1].retry_of) == (jobs[0].name, str(first[unit.work_unit_id]))
        else:
            assert [j.slurm_job_id for j in jobs] == [str(first[unit.work_unit_id])]
    assert sorted(p.name for p in marks.iterdir()) == ["1", "3", "4"]
    # Reloaded (as `xm-slurm show` or another process would), each unit reports its newest attempt.
    reloaded = xm_slurm.get_experiment(experiment.experiment_id)
    try:
        statuses = [(await wu.get_status()).status for wu in reloaded.work_units.values()]
    finally:
        await reloaded.aclose()
    assert statuses == [WU.COMPLETED] * len(kinds)
