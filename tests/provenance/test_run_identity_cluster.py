"""One run identity per work unit on the real local cluster: a job requeued by its exit code sees the same
XM_SLURM_RUN_ID (and, with W&B on, the same WANDB_RUN_ID and WANDB_RESUME=allow) with XM_SLURM_ATTEMPT 1
then 2, read from inside the job; a retry of a failed unit starts a new identity, `retry --resume` keeps it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from experiment_fixtures import executor, python_job
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.status import SlurmWorkUnitStatusEnum

pytestmark = pytest.mark.cluster

# Prints what the job was told, then asks for a requeue (exit 42) on its first attempt when REQUEUE is set,
# fails (exit 3) when FAIL is set, else ends well.
PROGRAM = (
    "import json, os, sys; "
    "keys = ['XM_SLURM_RUN_ID', 'XM_SLURM_ATTEMPT', 'WANDB_RUN_ID', 'WANDB_RESUME', 'SLURM_JOB_ID']; "
    "print('RUNID ' + json.dumps({k: os.environ.get(k) for k in keys}), flush=True); "
    "attempt = os.environ['XM_SLURM_ATTEMPT']; "
    "sys.exit(42 if os.environ.get('REQUEUE') and attempt == '1' else 3 if os.environ.get('FAIL') else 0)"
)


async def ended(wu: Any) -> None:
    """Wait for the unit's current job to end; it is meant to fail."""
    with contextlib.suppress(xm.ExperimentUnitFailedError):
        await wu.wait_until_complete()


async def seen(wu: Any) -> list[dict[str, str | None]]:
    return [
        json.loads(line.split("RUNID ", 1)[1]) async for line in wu.logs(num_lines=1000) if "RUNID " in line
    ]


async def test_a_requeued_job_keeps_its_run_id_and_counts_its_attempts(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    requeueing = python_job(
        local_cluster,
        cluster,
        code=PROGRAM,
        executor=executor(cluster, requeue_max_attempts=2),
        env_vars={"REQUEUE": "1"},
    )
    async with xm_slurm.create_experiment("run identity") as experiment:
        experiment.tracking = xm_slurm.RunTracking(wandb=True)
        xid = experiment.experiment_id
        wu, other = await experiment.add(requeueing, args=[{"args": ["a"]}, {"args": ["b"]}])
        await asyncio.gather(wu.wait_until_complete(), other.wait_until_complete())
        assert (await wu.get_status()).status is SlurmWorkUnitStatusEnum.COMPLETED
        attempts = await seen(wu)
    namespace = next(
        a.uri for a in api.client().get_experiment(xid).artifacts if a.name == "xm_slurm.run_namespace"
    )
    run_id = f"xm-{namespace}-{xid}-{wu.work_unit_id}"
    assert [a["XM_SLURM_ATTEMPT"] for a in attempts] == ["1", "2"], attempts
    assert {a["XM_SLURM_RUN_ID"] for a in attempts} == {run_id}
    assert {a["WANDB_RUN_ID"] for a in attempts} == {run_id}
    assert {a["WANDB_RESUME"] for a in attempts} == {"allow"}
    assert len({a["SLURM_JOB_ID"] for a in attempts}) == 1  # one Slurm job, restarted
    [other_first, _] = await seen(other)
    assert other_first["XM_SLURM_RUN_ID"] == f"xm-{namespace}-{xid}-{other.work_unit_id}" != run_id


async def test_a_retry_starts_a_new_run_identity_unless_it_resumes(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    failing = python_job(local_cluster, cluster, code=PROGRAM, env_vars={"FAIL": "1"})
    async with xm_slurm.create_experiment("run identity retry") as experiment:
        xid = experiment.experiment_id
        wu = await experiment.add(failing)
        await ended(wu)
        [original] = await seen(wu)
        assert await experiment.retry_failed([wu]) == [wu]
        await ended(wu)
        fresh = (await seen(wu))[-1]
        assert await experiment.retry_failed([wu], resume=True) == [wu]
        await ended(wu)
        resumed = (await seen(wu))[-1]
    namespace = next(
        a.uri for a in api.client().get_experiment(xid).artifacts if a.name == "xm_slurm.run_namespace"
    )
    base = f"xm-{namespace}-{xid}-{wu.work_unit_id}"
    assert original["XM_SLURM_RUN_ID"] == base and original["WANDB_RUN_ID"] is None  # W&B not asked for
    assert fresh["XM_SLURM_RUN_ID"] == f"{base}-r1" and fresh["XM_SLURM_ATTEMPT"] == "1"
    assert resumed["XM_SLURM_RUN_ID"] == f"{base}-r1" and resumed["XM_SLURM_ATTEMPT"] == "1"
    assert len({original["SLURM_JOB_ID"], fresh["SLURM_JOB_ID"], resumed["SLURM_JOB_ID"]}) == 3
