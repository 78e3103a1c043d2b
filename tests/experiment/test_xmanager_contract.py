"""The XManager contract launch scripts for xmanager-slurm 0.4.x rely on (../shared/compat-04x.md items 4-9),
one test per item, against the real local cluster where it submits."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import uuid

import pytest
from experiment_fixtures import executor
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm import api

pytestmark = pytest.mark.cluster


def _job(lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, name: str, *command: str) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.image, entrypoint=list(command or ("true",)))
    return xm.Job(executable=image, executor=executor(cluster), name=name)


def _jobs_named(name: str) -> list[str]:
    """slurmctld's view (sacct lags right after a submission)."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--name", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[0] if out.split() else ""


async def _wait_for_state(job_id: str, prefix: str) -> str:
    for _ in range(100):  # sacct lags squeue by up to a few seconds on this cluster
        state = _sacct_state(job_id)
        if state.startswith(prefix):
            return state
        await asyncio.sleep(0.2)
    return _sacct_state(job_id)


async def test_work_units_is_a_method_and_a_mapping_and_experiment_title(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async with xm_slurm.create_experiment("contract title") as experiment:
        wu = await experiment.add(_job(local_cluster, cluster, "contract-map"))
        assert experiment.work_units() == {1: wu}
        assert experiment.work_units[1] is wu
        assert experiment.experiment_title == "contract title"


async def test_plain_stop_call_cancels_the_job(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async with xm_slurm.create_experiment("contract stop") as experiment:
        wu = await experiment.add(_job(local_cluster, cluster, "contract-stop", "sleep", "300"))
        [job] = wu.slurm_jobs
        assert wu.stop() is not None  # a plain call, as XManager's: nothing awaited here
    # The experiment waited for the cancellation it scheduled.
    assert (await _wait_for_state(str(job.job_id), "CANCELLED")).startswith("CANCELLED")


async def test_plain_stop_on_a_reopened_experiment_cancels_the_job(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async with xm_slurm.create_experiment("contract stop reopened") as experiment:
        wu = await experiment.add(_job(local_cluster, cluster, "contract-stop2", "sleep", "300"))
        xid = experiment.experiment_id
    reopened = xm_slurm.get_experiment(xid)
    try:
        assert await reopened.work_units()[wu.work_unit_id].stop() is True
    finally:
        await reopened.aclose()
    assert (await _wait_for_state(str(wu.slurm_jobs[0].job_id), "CANCELLED")).startswith("CANCELLED")


async def test_wait_until_complete_resolves_to_the_unit_and_aux_is_not_a_coroutine_function(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async with xm_slurm.create_experiment("contract wait") as experiment:
        wus = await experiment.add(
            _job(local_cluster, cluster, "contract-wait"), args=[{"args": {"i": i}} for i in range(3)]
        )
        done = [await f for f in asyncio.as_completed([wu.wait_until_complete() for wu in wus])]
        assert sorted(w.work_unit_id for w in done) == [1, 2, 3]
        assert all(w is wus[w.work_unit_id - 1] for w in done)
        aux = await experiment.add(
            _job(local_cluster, cluster, "contract-aux"), role=xm.AuxiliaryUnitRole(termination_delay_secs=0)
        )
        assert not inspect.iscoroutinefunction(type(aux).wait_until_complete)
        assert await aux.wait_until_complete() is aux


def test_current_experiment_and_work_unit_are_none_outside_a_job() -> None:
    assert xm_slurm.get_current_experiment() is None
    assert xm_slurm.get_current_work_unit() is None


async def test_get_experiment_is_an_async_context_manager_with_live_units(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    job = _job(local_cluster, cluster, "contract-reopen")
    async with xm_slurm.create_experiment("contract reopen") as experiment:
        first = await experiment.add(job)
        xid = experiment.experiment_id
    async with contextlib.AsyncExitStack() as stack:
        reopened = await stack.enter_async_context(xm_slurm.get_experiment(xid))
        [unit] = reopened.work_units().values()
        assert (await unit.wait_until_complete()) is unit
        assert [str(j.job_id) for j in unit.slurm_jobs] == [str(first.slurm_jobs[0].job_id)]
        second = await reopened.add(job)
        assert second.work_unit_id == 2
    assert [wu.wid for wu in api.client().get_experiment(xid).work_units] == [1, 2]


async def test_identity_on_a_sweep_names_each_trial_and_a_readd_submits_nothing(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    name = f"contract-sweep-{uuid.uuid4().hex[:8]}"
    job = _job(local_cluster, cluster, name)
    trials = [{"args": {"i": i}} for i in range(3)]
    async with xm_slurm.create_experiment("contract sweep identity") as experiment:
        first = await experiment.add(job, args=trials, identity="sweep")
        assert [wu.identity for wu in first] == ["sweep/0", "sweep/1", "sweep/2"]
        again = await experiment.add(job, args=trials, identity="sweep")
        assert again == first
        xid = experiment.experiment_id
    # From another process's point of view too: the store holds the three, and a re-add there submits
    # nothing; a longer sweep launches only its new trial.
    async with xm_slurm.get_experiment(xid) as reopened:
        again = await reopened.add(job, args=[*trials, {"args": {"i": 3}}], identity="sweep")
        assert [wu.work_unit_id for wu in again[:3]] == [wu.work_unit_id for wu in first]
        assert again[3].identity == "sweep/3" and again[3].work_unit_id == 4
    stored = api.client().get_experiment(xid)
    assert [(wu.wid, wu.identity, len(wu.jobs)) for wu in stored.work_units] == [
        (1, "sweep/0", 1),
        (2, "sweep/1", 1),
        (3, "sweep/2", 1),
        (4, "sweep/3", 1),
    ]


def test_experiment_module_exports_the_experiment_names() -> None:
    from xm_slurm import experiment

    for name in (
        "SlurmExperiment",
        "SlurmExperimentUnit",
        "SlurmWorkUnit",
        "SlurmAuxiliaryUnit",
        "create_experiment",
        "get_experiment",
        "get_current_experiment",
        "get_current_work_unit",
        "JobArgs",
    ):
        assert getattr(experiment, name) is getattr(xm_slurm, name), name


async def test_an_error_in_the_body_cancels_adds_not_yet_submitted(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    """XManager waits for every add on exit; we do not submit what a failed body left behind (e.g. a sweep
    added without `await` before the body raised)."""
    name = f"contract-cancel-{uuid.uuid4().hex[:8]}"
    job = _job(local_cluster, cluster, name)
    experiment = xm_slurm.create_experiment("contract body error")
    with pytest.raises(RuntimeError, match="the body failed"):
        async with experiment:
            first = await experiment.add(job)  # submitted before the error: it stays
            experiment.add(job, args=[{"args": {"i": i}} for i in range(3)])  # not awaited
            raise RuntimeError("the body failed")
    assert _jobs_named(name) == [str(first.slurm_jobs[0].job_id)], (
        "the sweep added without await was submitted"
    )
    stored = api.client().get_experiment(experiment.experiment_id)
    assert [wu.wid for wu in stored.work_units] == [1]
