"""A retried job keeps its dependency, re-pointed at the retries (xm_slurm/experiment/retry_dependencies.py):
the rules alone, then whole retries on the fake Slurm (tests/fakes) with a real SQLite store. The fake does not
run dependencies; it records the `--dependency` each sbatch got (the command line's, which wins), and the test
moves the jobs as Slurm would (a failed trial; its dependents CANCELLED, as `DependencyNeverSatisfied` does)."""

from __future__ import annotations

import datetime as dt
import functools
import operator
from typing import Any

import pytest
from counting_transport import CountingTransport
from fake_slurm import FakeSlurm
from xmanager import xm

import xm_slurm
from xm_slurm.dependencies import afterok
from xm_slurm.errors import ValidationError, XmSlurmError
from xm_slurm.experiment.retry_dependencies import Dependency, Lineage, script_dependency, with_dependency
from xm_slurm.experiment.retrying import retry_failed
from xm_slurm.job_ids import SlurmJobId

J = SlurmJobId.parse
TRIALS = 6
BAD = 4  # the trial that fails on purpose


# --- the rules ---


def sweep_lineage(base: int = 100, retries: tuple[tuple[str, str], ...] = ()) -> Lineage:
    """Array `base` of TRIALS tasks and a plain job 200, then each (old, new) retry."""
    rows: list[tuple[SlurmJobId, SlurmJobId | None]] = [(J(f"{base}_{i}"), None) for i in range(TRIALS)]
    rows += [(J("200"), None)] + [(J(new), J(old)) for old, new in retries]
    return Lineage(rows)


def repointed(value: str, lineage: Lineage, task: int | None = None) -> str:
    return Dependency.parse(value).per_task(lineage, task)[0]


def test_afterok_on_a_whole_array_waits_for_every_current_attempt() -> None:
    lineage = sweep_lineage(retries=(("100_4", "110_4"),))
    assert repointed("afterok:100", lineage) == "afterok:100_0:100_1:100_2:100_3:110:100_5"
    assert repointed("afterok:100", sweep_lineage()) == "afterok:100"  # nothing retried: unchanged
    assert repointed("afterok:100_4:100_5", lineage) == "afterok:110_4:100_5"
    assert repointed("afterok:100_0,afterok:100_4", lineage) == "afterok:100_0,afterok:110_4"
    # Ids of no recorded job (another experiment's) and kinds that need no success are re-pointed alike.
    assert repointed("afterany:100_4?afternotok:999", lineage) == "afterany:110_4?afternotok:999"
    assert repointed("after:100_4+5:200,singleton", lineage) == "after:110_4+5:200,singleton"


def test_aftercorr_task_i_waits_for_the_array_that_now_runs_trial_i() -> None:
    lineage = sweep_lineage(retries=(("100_4", "110_4"), ("100_1", "120_1")))
    assert repointed("aftercorr:100", lineage, task=4) == "aftercorr:110"
    assert repointed("aftercorr:100", lineage, task=1) == "aftercorr:120"
    assert repointed("aftercorr:100", lineage, task=2) == "aftercorr:100"
    _, targets = Dependency.parse("aftercorr:100").per_task(lineage, 4)
    assert targets == [("aftercorr", J("110_4"))]  # checked task by task, not the whole array


def test_a_chain_of_retries_points_at_the_newest_attempt() -> None:
    lineage = sweep_lineage(retries=(("100_4", "110_4"), ("110_4", "130_4"), ("200", "201"), ("201", "202")))
    assert repointed("afterok:100", lineage) == "afterok:100_0:100_1:100_2:100_3:130:100_5"
    assert repointed("afterok:100_0:100_1:100_2:100_3:110:100_5", lineage) == (
        "afterok:100_0:100_1:100_2:100_3:130:100_5"
    )  # what the first retry's copy says, retried again
    assert repointed("afterok:200", lineage) == "afterok:202"
    assert repointed("aftercorr:110", lineage, task=4) == "aftercorr:130"


def test_a_job_group_retried_whole_is_depended_on_whole() -> None:
    lineage = Lineage(
        [(J("300+0"), None), (J("300+1"), None), (J("310+0"), J("300+0")), (J("310+1"), J("300+1"))]
    )
    assert repointed("afterok:300", lineage) == "afterok:310"


@pytest.mark.parametrize(
    "value", ["afterok:1,afterany:2?afterok:3", "afterok", "later:12", "afterok:12_[1-3]", "afterok:x"]
)
def test_a_dependency_that_cannot_be_read_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="dependency"):
        Dependency.parse(value)


def test_the_script_directive_is_read_and_rewritten() -> None:
    script = "#!/usr/bin/env bash\n#SBATCH --job-name=x\n#SBATCH --dependency=afterok:1\necho hi\n#SBATCH --dependency=no\n"
    assert script_dependency(script) == "afterok:1"  # only directives before the first command count
    changed = with_dependency(script, "afterok:2")
    assert script_dependency(changed) == "afterok:2" and changed.count("--dependency=") == 2
    assert changed.endswith("echo hi\n#SBATCH --dependency=no\n")
    assert script_dependency(with_dependency(script, None)) is None
    assert script_dependency(with_dependency("#!/bin/sh\ntrue\n", "afterany:3")) == "afterany:3"


# --- whole retries on the fake Slurm ---


def job_on(fake: FakeSlurm, name: str) -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=fake.cluster("fake")),
        time=dt.timedelta(minutes=5),
    )
    image = xm_slurm.RemoteImage(image="registry.invalid/team/train:1", entrypoint=["python", "-m", name])
    return xm.Job(executable=image, executor=executor, name=name)


def factory(fake: FakeSlurm) -> Any:
    fakes = FakeSlurm.factory(fake)
    return lambda config: CountingTransport(fakes(config))


class Sweep:
    """A 6-trial sweep, an eval waiting (afterok) on all trials, and a per-trial sweep (aftercorr)."""

    def __init__(self, fake: FakeSlurm, experiment: Any) -> None:
        self.fake, self.experiment = fake, experiment

    async def launch(self) -> None:
        self.trials = await self.experiment.add(
            job_on(self.fake, "train"), args=[{"args": {"i": i}} for i in range(TRIALS)]
        )
        self.a = self.trials[0].slurm_jobs[0].job_id.base
        deps = functools.reduce(operator.and_, [u.after_completed() for u in self.trials])
        self.eval = await self.experiment.add(job_on(self.fake, "eval"), dependency=deps)
        self.whole = await self.experiment.add(job_on(self.fake, "report"), dependency=afterok(str(self.a)))
        self.corr = await self.experiment.add(
            job_on(self.fake, "score"),
            args=[{"args": {"i": i}} for i in range(TRIALS)],
            dependency=[u.after_completed() for u in self.trials],
        )
        assert self.fake.jobs[self.corr[0].slurm_jobs[0].job_id.job_id].dependency == f"aftercorr:{self.a}"

    def fail_trial(self, job: SlurmJobId) -> None:
        """Trial BAD's job fails; Slurm cancels what waited on it (the evals, score task BAD)."""
        self.fake.finish(str(job), "FAILED", exit_code=3)
        for unit in (self.eval, self.whole, self.corr[BAD]):
            self.fake.finish(str(unit.slurm_jobs[-1].job_id), "CANCELLED")

    def submitted(self, unit: Any) -> Any:
        return self.fake.jobs[unit.slurm_jobs[-1].job_id.job_id]


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


import store_backends  # noqa: E402

# Fixtures: every test that takes `backend` runs on the SQLite file and on the real REST server.
backend = store_backends.backend
server = store_backends.server


async def test_one_call_retries_the_trial_then_its_dependents_pointed_at_it(fake: FakeSlurm) -> None:
    async with xm_slurm.create_experiment("deps", transport_factory=factory(fake)) as experiment:
        s = Sweep(fake, experiment)
        await s.launch()
        a = s.a.job_id
        for i in range(TRIALS):
            if i != BAD:
                fake.finish(f"{a}_{i}", "COMPLETED")
                fake.finish(str(s.corr[i].slurm_jobs[0].job_id), "COMPLETED")
        s.fail_trial(s.trials[BAD].slurm_jobs[0].job_id)

        retried = await experiment.retry_failed(include_cancelled=True)
        assert set(retried) == {s.trials[BAD], s.eval, s.whole, s.corr[BAD]}
        b = s.trials[BAD].slurm_jobs[0].job_id
        assert (b.array_task, s.trials[BAD].slurm_jobs[0].retry_of) == (BAD, J(f"{a}_{BAD}"))
        others = ":".join(f"{a}_{i}" for i in range(TRIALS) if i != BAD)
        eval_job, whole_job, corr_job = (s.submitted(u) for u in (s.eval, s.whole, s.corr[BAD]))
        assert b.job_id < min(eval_job.job_id, whole_job.job_id, corr_job.job_id)  # the trial first
        terms = [f"afterok:{a}_{i}" if i != BAD else f"afterok:{b}" for i in range(TRIALS)]
        assert eval_job.dependency == ",".join(terms)
        assert whole_job.dependency == f"afterok:{others.replace(f'{a}_5', f'{b.job_id}:{a}_5')}"
        assert (corr_job.dependency, corr_job.array_tasks) == (f"aftercorr:{b.job_id}", (BAD,))
        for job in (eval_job, whole_job, corr_job):  # the copy's directive says the same
            assert script_dependency(fake._files[job.script].data) == job.dependency

        # The retried trial fails again, its dependents are cancelled again: a retry of the retries.
        s.fail_trial(b)
        await experiment.retry_failed(include_cancelled=True)
        c = s.trials[BAD].slurm_jobs[0].job_id
        assert s.trials[BAD].slurm_jobs[0].retry_of == b
        assert s.submitted(s.eval).dependency == ",".join(t.replace(str(b), str(c)) for t in terms)
        assert s.submitted(s.whole).dependency == whole_job.dependency.replace(str(b.job_id), str(c.job_id))
        assert s.submitted(s.corr[BAD]).dependency == f"aftercorr:{c.job_id}"
        assert s.corr[BAD].slurm_jobs[0].retry_of == J(corr_job.members[0].job_id)


async def test_two_calls_retry_then_retry_cancelled(fake: FakeSlurm, backend: str) -> None:
    """`xm-slurm retry X` (the failed trial only, the cancelled jobs named) then `retry X --cancelled`."""
    async with xm_slurm.create_experiment("deps in two", transport_factory=factory(fake)) as experiment:
        s = Sweep(fake, experiment)
        await s.launch()
        s.fail_trial(s.trials[BAD].slurm_jobs[0].job_id)
        left_out: list[Any] = []
        assert await retry_failed(experiment.launcher, experiment.work_units.values(), left_out=left_out) == [
            s.trials[BAD]
        ]
        assert {u for u, _ in left_out} == {s.eval, s.whole, s.corr[BAD]}
        b = s.trials[BAD].slurm_jobs[0].job_id
    # Another process (as the CLI is) reads the lineage from the store.
    reopened = xm_slurm.get_experiment(experiment.experiment_id, transport_factory=factory(fake))
    try:
        retried = await reopened.retry_failed(include_cancelled=True)
        assert {u.work_unit_id for u in retried} == {
            s.eval.work_unit_id,
            s.whole.work_unit_id,
            s.corr[BAD].work_unit_id,
        }
        unit = reopened.work_units[s.eval.work_unit_id]
        dependency = fake.jobs[unit.slurm_jobs[-1].job_id.job_id].dependency
        assert f"afterok:{b}" in dependency.split(",") and f"afterok:{s.a}_{BAD}" not in dependency
        corr = reopened.work_units[s.corr[BAD].work_unit_id]
        assert fake.jobs[corr.slurm_jobs[-1].job_id.job_id].dependency == f"aftercorr:{b.job_id}"
    finally:
        await reopened.aclose()


async def test_a_dependency_on_a_failed_job_not_retried_is_refused_before_any_sbatch(fake: FakeSlurm) -> None:
    async with xm_slurm.create_experiment("deps refused", transport_factory=factory(fake)) as experiment:
        s = Sweep(fake, experiment)
        await s.launch()
        bad = s.trials[BAD].slurm_jobs[0].job_id
        s.fail_trial(bad)
        jobs = len(fake.jobs)
        with pytest.raises(XmSlurmError) as refused:
            await experiment.retry_failed([s.eval], include_cancelled=True)  # the eval alone
        message = str(refused.value)
        assert f"job {s.eval.slurm_jobs[0].job_id}" in message and f"job {bad}" in message
        assert f"work unit {s.trials[BAD].work_unit_id}" in message and "--cancelled" in message
        assert len(fake.jobs) == jobs and s.eval.slurm_jobs[0].retry_of is None  # nothing submitted
        # Selecting the trial too retries both, in order.
        assert set(await experiment.retry_failed([s.eval, s.trials[BAD]], include_cancelled=True)) == {
            s.eval,
            s.trials[BAD],
        }
        assert len(fake.jobs) == jobs + 2
