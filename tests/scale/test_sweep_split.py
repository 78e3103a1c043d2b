"""A 2,500-trial sweep, larger than the cluster's array limit, run to the end: split into several arrays,
every work unit's final state right.

The split happens at the cluster's real `MaxArraySize` (1001 on the local cluster, read by the test with
`scontrol show config`): 2,500 trials are arrays of 1001, 1001 and 498 tasks. Every trial is a real busybox
container run by Podman through the rendered sbatch script. On the 2-core test machine a trial costs about
0.3-0.4 s of CPU (Slurm about 0.05 s, `srun` a little, Podman the rest), so the sweep is CPU-bound at about
5 trials/s and the test takes 7-8 minutes on a quiet machine; it asserts no wall-clock time.

For a quick local run: `XM_SCALE_TRIALS=120 XM_SCALE_ARRAY_CAP=50` (the cap lowers the launcher's array size,
`launcher.max_array_size`, so that the same split logic runs on a small sweep).
"""

from __future__ import annotations

import collections
import os
import subprocess

import pytest
from local_cluster import LocalCluster
from scale_helpers import busybox_job

import xm_slurm
from xm_slurm.status import SlurmWorkUnitStatusEnum

TRIALS = int(os.environ.get("XM_SCALE_TRIALS", "2500"))
ARRAY_CAP = int(os.environ["XM_SCALE_ARRAY_CAP"]) if os.environ.get("XM_SCALE_ARRAY_CAP") else None
FAIL_CODE = 3

# Generous: a loaded CI machine may take several times as long as a quiet one; a stuck trial still ends at
# its 5-minute time limit, so the watcher's own timeout (below) is only a backstop.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3000)]


def fails(trial: int) -> bool:
    return trial % 10 == 7


def cluster_max_array_size() -> int:
    """The controller's own MaxArraySize, asked without the library (the cluster runs on this machine)."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    raise AssertionError("scontrol show config lists no MaxArraySize")


async def test_sweep_split_into_arrays_completes(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting
) -> None:
    cap = cluster_max_array_size() if ARRAY_CAP is None else min(ARRAY_CAP, cluster_max_array_size())
    chunks = -(-TRIALS // cap)
    assert chunks >= 2, f"{TRIALS} trials fit in one array of {cap}: nothing would be split"
    # Trials whose index is 7 mod 10 fail with exit code 3: states must land on the right work units.
    # priority=1 (the lowest): jobs of tests running beside this one on the same cluster take the next free
    # slot instead of queueing behind the whole sweep (in CI, which runs one test at a time, it changes nothing).
    job = busybox_job(local_cluster, cluster, f"test $(($1 % 10)) -ne 7 || exit {FAIL_CODE}", priority=1)
    sweep = [xm_slurm.JobArgs(args=[i]) for i in range(TRIALS)]
    async with xm_slurm.create_experiment("scale split", transport_factory=counting) as experiment:
        if ARRAY_CAP is not None:
            experiment.launcher.max_array_size = ARRAY_CAP
        units = await experiment.add(job, args=sweep)
        ssh = cluster.ssh
        limits = await experiment.launcher.limits(ssh)
        assert limits.source == "scontrol" and limits.max_array_size == cap
        assert counting.count("sbatch") == chunks and counting.count("scontrol") == 1
        first = units[0].work_unit_id
        assert [u.work_unit_id for u in units] == list(range(first, first + TRIALS))  # trial order
        ids = [u.slurm_jobs[0].job_id for u in units]
        assert all(len(u.slurm_jobs) == 1 for u in units)
        bases = [jid.job_id for jid in ids]
        for i, jid in enumerate(ids):
            assert jid.array_task == i % cap  # indices restart in every array: always < MaxArraySize
            assert jid.job_id == bases[(i // cap) * cap]
        # Consecutive trials per array, full arrays first: 2,500 at 1001 is 1001 + 1001 + 498.
        sizes = list(collections.Counter(bases).values())
        assert sizes == [cap] * (chunks - 1) + [TRIALS - cap * (chunks - 1)]
        watcher = experiment.connections.watcher(ssh)
        squeue_before, sacct_before, polls_before = (
            counting.count("squeue"),
            counting.count("sacct"),
            watcher.polls,
        )
        finals = await watcher.wait(ids, timeout=2700)
        # ONE squeue per poll round, whatever the number of arrays and tasks; sacct at most once more, only
        # for tasks squeue no longer lists.
        rounds = watcher.polls - polls_before
        assert rounds >= 1
        assert counting.count("squeue") - squeue_before == rounds
        assert counting.count("sacct") - sacct_before <= rounds
        statuses = [await u.get_status() for u in units]
    assert len(finals) == TRIALS
    wrong = []
    for i, (jid, status) in enumerate(zip(ids, statuses, strict=True)):
        expected = SlurmWorkUnitStatusEnum.FAILED if fails(i) else SlurmWorkUnitStatusEnum.COMPLETED
        code = FAIL_CODE if fails(i) else 0
        if status.status is not expected or finals[jid].exit_code != code:
            wrong.append((i, str(jid), status.status.label, finals[jid].exit_code, status.message))
    assert not wrong, f"{len(wrong)} of {TRIALS} work units in the wrong state, e.g. {wrong[:5]}"
    assert 0 < sum(map(fails, range(TRIALS))) < TRIALS  # both outcomes are really exercised
    stored = xm_slurm.api.client().get_experiment(experiment.experiment_id)
    assert [wu.wid for wu in stored.work_units] == [u.work_unit_id for u in units]
    assert all(len(wu.jobs) == 1 for wu in stored.work_units)
