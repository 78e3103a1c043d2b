"""Launch scripts as users write them (`xm_slurm.create_experiment`, `experiment.add` of jobs and sweeps,
dependencies) against the real local cluster (Podman, the python image)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from experiment_fixtures import ODD_VALUES, Counting, dumps, gate, python_job, release, scontrol
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.dependencies import afterok
from xm_slurm.status import SlurmWorkUnitStatusEnum

pytestmark = pytest.mark.cluster

COMPLETED = SlurmWorkUnitStatusEnum.COMPLETED


async def test_single_job_and_odd_value_sweep_is_one_array(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting: Counting
) -> None:
    job = python_job(local_cluster, cluster, args=["--fixed", "x y"])
    async with xm_slurm.create_experiment("odd values", transport_factory=counting) as experiment:
        env = {f"ODD_{i}": v for i, v in enumerate(ODD_VALUES)}
        single = await experiment.add(job, args={"args": ODD_VALUES, "env_vars": env})
        assert counting.count("sbatch") == 1
        trials = [
            xm_slurm.JobArgs(args=[value, f"#{i}"], env_vars={"ODD": value, "ODD_INDEX": str(i)})
            for i, value in enumerate(ODD_VALUES)
        ]
        sweep = await experiment.add(job, args=trials)
        assert counting.count("sbatch") == 2  # the whole sweep is ONE sbatch
        assert len(sweep) == len(ODD_VALUES) >= 25
        assert [wu.work_unit_id for wu in sweep] == list(range(2, 2 + len(ODD_VALUES)))
        array_ids = {j.job_id.job_id for wu in sweep for j in wu.slurm_jobs}
        assert len(array_ids) == 1
        assert [j.job_id.array_task for wu in sweep for j in wu.slurm_jobs] == list(range(len(ODD_VALUES)))
        await asyncio.gather(*(wu.wait_until_complete() for wu in [single, *sweep]))

        [record] = await dumps(single)
        assert record["argv"] == ["--fixed", "x y", *ODD_VALUES]
        assert {k: v for k, v in record["env"].items() if k.startswith("ODD_")} == env
        assert record["env"]["XM_SLURM_WORK_UNIT_ID"] == "1"
        for i, wu in enumerate(sweep):
            [record] = await dumps(wu)
            assert record["argv"] == ["--fixed", "x y", ODD_VALUES[i], f"#{i}"], i
            assert record["env"]["ODD"] == ODD_VALUES[i]
            assert record["env"]["ODD_INDEX"] == str(i)
            assert record["env"]["XM_SLURM_WORK_UNIT_ID"] == str(wu.work_unit_id)
            assert record["env"]["XM_SLURM_EXPERIMENT_ID"] == str(experiment.experiment_id)
        statuses = await asyncio.gather(*(wu.get_status() for wu in [single, *sweep]))
        assert {s.status for s in statuses} == {COMPLETED}
        xid = experiment.experiment_id
    stored = api.client().get_experiment(xid)
    assert [wu.wid for wu in stored.work_units] == list(range(1, 2 + len(ODD_VALUES)))
    assert stored.work_units[1].jobs[0].slurm_job_id.endswith("_0")


async def test_afterok_chain_and_aftercorr_array_pair(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting: Counting
) -> None:
    held = gate()  # the chains wait on it, so their dependencies stay visible until it is released
    async with xm_slurm.create_experiment("deps", transport_factory=counting) as experiment:
        first = await experiment.add(python_job(local_cluster, cluster), dependency=afterok(held))
        second = await experiment.add(python_job(local_cluster, cluster), dependency=first.after_completed())
        sweep_a = await experiment.add(
            python_job(local_cluster, cluster),
            args=[{"args": [i]} for i in range(3)],
            dependency=afterok(held),
        )
        sweep_b = await experiment.add(
            python_job(local_cluster, cluster),
            args=[{"args": [i]} for i in range(3)],
            dependency=[wu.after_completed() for wu in sweep_a],
        )
        assert counting.count("sbatch") == 4
        [first_job], [second_job] = first.slurm_jobs, second.slurm_jobs
        a_base = sweep_a[0].slurm_jobs[0].job_id.job_id
        b_base = sweep_b[0].slurm_jobs[0].job_id.job_id
        assert f"Dependency=afterok:{first_job.job_id}" in scontrol("show", "job", str(second_job.job_id))
        assert f"Dependency=aftercorr:{a_base}_*" in scontrol("show", "job", str(b_base))
        release(held)
        await asyncio.gather(*(wu.wait_until_complete() for wu in [first, second, *sweep_a, *sweep_b]))
        for i, wu in enumerate(sweep_b):
            [record] = await dumps(wu)
            assert record["argv"] == [str(i)]


async def test_job_group_is_one_heterogeneous_job_and_stop_cancels_it(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting: Counting
) -> None:
    # The single-node test cluster cannot start a hetjob (and a pending one blocks the queue): keep it
    # waiting on a held job, check it, then stop it.
    held = gate()
    group = xm.JobGroup(learner=python_job(local_cluster, cluster), actor=python_job(local_cluster, cluster))
    async with xm_slurm.create_experiment("group", transport_factory=counting) as experiment:
        wu = await experiment.add(group, args={"actor": {"args": ["--actor"]}}, dependency=afterok(held))
        assert counting.count("sbatch") == 1
        jobs = wu.slurm_jobs
        assert [j.name for j in jobs] == ["learner", "actor"]
        assert [str(j.job_id) for j in jobs] == [f"{jobs[0].job_id.job_id}+0", f"{jobs[0].job_id.job_id}+1"]
        assert "HetJobOffset=1" in scontrol("show", "job", str(jobs[0].job_id.job_id))
        await wu.stop()
        with pytest.raises(xm.ExperimentUnitNotCompletedError):
            await wu.wait_until_complete()
        assert (await wu.get_status()).status is SlurmWorkUnitStatusEnum.CANCELLED
    subprocess.run(["scancel", held], check=True)  # noqa: ASYNC221


async def test_job_group_runs_both_components_to_completion(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, counting: Counting
) -> None:
    group = xm.JobGroup(learner=python_job(local_cluster, cluster), actor=python_job(local_cluster, cluster))
    async with xm_slurm.create_experiment("group runs", transport_factory=counting) as experiment:
        wu = await experiment.add(group, args={"actor": {"args": ["--actor", "a b"]}})
        assert counting.count("sbatch") == 1
        await wu.wait_until_complete()
        assert (await wu.get_status()).status is COMPLETED
        records = await dumps(wu)
        # One record per component, in one heterogeneous job: the learner without args, the actor with its own.
        assert sorted(r["argv"] for r in records) == [[], ["--actor", "a b"]]
        assert {r["env"]["XM_SLURM_WORK_UNIT_ID"] for r in records} == {str(wu.work_unit_id)}
        nodes = {r["env"].get("SLURM_STEP_NODELIST") for r in records}
        assert len(nodes) == 2  # Slurm places each hetjob component on its own node


async def test_generator_and_auxiliary_unit(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async def make_job(work_unit: xm_slurm.SlurmWorkUnit, *, seed: int) -> None:
        assert xm_slurm.get_current_experiment() is work_unit.experiment
        await work_unit.add(python_job(local_cluster, cluster, name="train", args={"seed": seed}))
        work_unit.add(python_job(local_cluster, cluster, name="eval", args={"seed": seed, "eval": True}))

    aux = xm.AuxiliaryUnitJob(python_job(local_cluster, cluster, name="monitor"), termination_delay_secs=0)
    async with xm_slurm.create_experiment("generators") as experiment:
        wu = await experiment.add(make_job, args={"seed": 7})
        aux_unit = await experiment.add(aux)
        sweep = await experiment.add(make_job, args=[xm_slurm.JobArgs(seed=s) for s in (1, 2)])  # type: ignore[typeddict-unknown-key]
        assert isinstance(aux_unit, xm_slurm.SlurmAuxiliaryUnit)
        assert list(experiment.work_units) == [1, 3, 4]
        assert list(experiment.auxiliary_units) == [2]
        assert [j.name for j in wu.slurm_jobs] == ["train", "eval"]
        await asyncio.gather(*(u.wait_until_complete() for u in [wu, aux_unit, *sweep]))
        argv = sorted(tuple(r["argv"]) for r in await dumps(wu))
        assert argv == [("--seed=7",), ("--seed=7", "--eval")]
        # The sweep's generators were batched: their "train" jobs are tasks of one array.
        trains = [j for u in sweep for j in u.slurm_jobs if j.name == "train"]
        assert len({j.job_id.job_id for j in trains}) == 1
        xid = experiment.experiment_id
    stored = api.client().get_experiment(xid)
    assert stored.work_units[1].role is api.ExperimentUnitRole.AUX_UNIT  # the role is data, not in args


async def test_failure_and_stop(local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig) -> None:
    async with xm_slurm.create_experiment("failures") as experiment:
        failing = await experiment.add(python_job(local_cluster, cluster, code="import sys; sys.exit(3)"))
        sleeper = await experiment.add(
            python_job(local_cluster, cluster, code="import time; time.sleep(600)")
        )
        with pytest.raises(xm.ExperimentUnitFailedError, match="exit code 3"):
            await failing.wait_until_complete()
        # Polled: the state lives on the cluster.
        while (await sleeper.get_status()).status is not SlurmWorkUnitStatusEnum.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.3)
        await sleeper.stop()
        with pytest.raises(xm.ExperimentUnitNotCompletedError):
            await sleeper.wait_until_complete()
        assert (await sleeper.get_status()).status is SlurmWorkUnitStatusEnum.CANCELLED
        for cid in _containers_of(str(sleeper.slurm_jobs[0].job_id)):  # see test_stop_removes_the_container
            subprocess.run(["podman", "rm", "-f", cid], capture_output=True, check=False)  # noqa: ASYNC221


async def test_stop_removes_the_container(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    async with xm_slurm.create_experiment("stop") as experiment:
        sleeper = await experiment.add(
            python_job(local_cluster, cluster, code="import time; time.sleep(120)")
        )
        [job] = sleeper.slurm_jobs
        try:
            # Polled: the container starts a moment after the job does.
            while not _containers_of(str(job.job_id)):  # noqa: ASYNC110
                await asyncio.sleep(0.3)
            await sleeper.stop()
            with pytest.raises(xm.ExperimentUnitNotCompletedError):
                await sleeper.wait_until_complete()
            for _ in range(50):  # --rm removes the container right after the program is killed
                if not _containers_of(str(job.job_id)):
                    break
                await asyncio.sleep(0.2)
            assert _containers_of(str(job.job_id)) == []
        finally:
            for cid in _containers_of(str(job.job_id)):  # do not leave it running for the next tests
                subprocess.run(["podman", "rm", "-f", cid], capture_output=True, check=False)  # noqa: ASYNC221


def _containers_of(job_id: str) -> list[str]:
    ids = subprocess.run(
        ["podman", "ps", "-a", "-q"], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for cid in ids:
        env = subprocess.run(
            ["podman", "inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", cid],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        if f"SLURM_JOB_ID={job_id}" in env:
            found.append(cid)
    return found
