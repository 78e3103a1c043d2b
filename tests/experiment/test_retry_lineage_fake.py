"""Retry lineage on the fake Slurm (tests/fakes), with a real store on both backends (a SQLite file and the
real REST server): a retry keeps the job's name and records the job it retries (`retry_of`); a retry of a
retry records the chain and only the newest attempt is current, in this process and in one that reopens the
experiment; a name that reads like an old retry mark is only a name."""

from __future__ import annotations

import datetime as dt
from typing import Any

import store_backends
from counting_transport import CountingTransport
from fake_slurm import FakeSlurm
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.status import SlurmWorkUnitStatusEnum as WU

# Fixtures: every test that takes `backend` runs on the SQLite file and on the real REST server.
backend = store_backends.backend
server = store_backends.server


def job_on(fake: FakeSlurm, name: str) -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=fake.cluster("fake")),
        time=dt.timedelta(minutes=5),
    )
    image = xm_slurm.RemoteImage(image="registry.invalid/team/train:1", entrypoint=["python", "-m", "train"])
    return xm.Job(executable=image, executor=executor, name=name)


def factory(fake: FakeSlurm) -> Any:
    fakes = FakeSlurm.factory(fake)
    return lambda config: CountingTransport(fakes(config))


def stored(xid: int, wid: int) -> list[tuple[str, str, str | None]]:
    return [(j.name, j.slurm_job_id, j.retry_of) for j in api.client().get_work_unit(xid, wid).jobs]


async def test_a_retry_of_a_retry_records_the_chain_and_the_newest_is_current(backend: str) -> None:
    fake = FakeSlurm()
    async with xm_slurm.create_experiment("chain", transport_factory=factory(fake)) as experiment:
        xid = experiment.experiment_id
        units = await experiment.add(job_on(fake, "train"), args=[{"args": {"lr": 1}}, {"args": {"lr": 2}}])
        flaky = units[1]
        first = flaky.slurm_jobs[0].job_id
        fake.finish(str(units[0].slurm_jobs[0].job_id), "COMPLETED")
        attempts = [first]
        for _ in range(2):  # fail, retry; the retry fails, retry it
            fake.finish(str(attempts[-1]), "FAILED", exit_code=3)
            assert await experiment.retry_failed(units) == [flaky]
            [current] = flaky.slurm_jobs
            assert (current.name, current.retry_of) == ("train", attempts[-1])
            attempts.append(current.job_id)
        assert [str(j.job_id) for j in units[0].slurm_jobs] == [f"{first.job_id}_0"]  # untouched
        fake.finish(str(attempts[-1]), "COMPLETED")
    a, b, c = (str(j) for j in attempts)
    assert len({a, b, c}) == 3 and a.endswith("_1") and b.endswith("_1") and c.endswith("_1")
    assert stored(xid, flaky.work_unit_id) == [("train", a, None), ("train", b, a), ("train", c, b)]

    reopened = xm_slurm.get_experiment(xid, transport_factory=factory(fake))
    try:
        again = reopened.work_units[flaky.work_unit_id]
        assert [(str(j.job_id), str(j.retry_of)) for j in again.slurm_jobs] == [(c, b)]
        assert [j.name for j in again.launched_jobs] == ["train"]
        assert (await again.get_status()).status is WU.COMPLETED  # the newest attempt's, not the failed ones'
        assert await reopened.retry_failed() == []
    finally:
        await reopened.aclose()


async def test_a_name_that_reads_like_an_old_retry_mark_is_only_a_name(backend: str) -> None:
    fake = FakeSlurm()
    async with xm_slurm.create_experiment("literal", transport_factory=factory(fake)) as experiment:
        xid = experiment.experiment_id
        unit = await experiment.add(job_on(fake, "train"))
        [first] = unit.slurm_jobs
        # A second job of the same unit whose name holds the old mark with the first job's id.
        await unit.add(job_on(fake, f"eval [retry of {first.job_id}]"))
        assert [j.retry_of for j in unit.slurm_jobs] == [None, None]
    rows = stored(xid, unit.work_unit_id)
    assert [(name, retry_of) for name, _, retry_of in rows] == [
        ("train", None),
        (f"eval [retry of {first.job_id}]", None),
    ]
    reopened = xm_slurm.get_experiment(xid, transport_factory=factory(fake))
    try:
        again = reopened.work_units[unit.work_unit_id]
        # Both jobs are current: before the field, the second one's name made the first one "replaced".
        assert [str(j.job_id) for j in again.slurm_jobs] == [job_id for _, job_id, _ in rows]
        assert [j.name for j in again.slurm_jobs] == ["train", f"eval [retry of {first.job_id}]"]
    finally:
        await reopened.aclose()
