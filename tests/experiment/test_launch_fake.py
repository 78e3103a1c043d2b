"""Launch, retry and recovery of the experiment layer, fast: against FakeSlurm (tests/fakes, a fake cluster that
answers like the captured Slurm output) with a real SQLite store per test, through the public surface only
(`create_experiment`, `get_experiment`, `add`, `retry_failed`, `resolve_pending_submissions`, the store's
client). sbatch is counted through the counting wrapper. The same behaviours run against the real cluster in
tests/reliability and tests/scale; these need no cluster."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from counting_transport import CountingTransport
from fake_slurm import FakeSlurm
from xmanager import xm

import xm_slurm
from xm_slurm import api
from xm_slurm.errors import MetadataError, NotFoundError, SubmissionError, XmSlurmError
from xm_slurm.status import SlurmWorkUnitStatusEnum as WU

PENDING = "pending:"  # how the store spells a submission recorded before its sbatch (docs/reliability.md)


class Counted:
    """The transport factory of an experiment under test: each fake behind a counting wrapper."""

    def __init__(self, *fakes: FakeSlurm) -> None:
        self.fakes = FakeSlurm.factory(*fakes)
        self.transports: list[CountingTransport] = []

    def __call__(self, config: xm_slurm.SlurmSSHConfig) -> CountingTransport:
        self.transports.append(CountingTransport(self.fakes(config)))
        return self.transports[-1]

    def count(self, program: str) -> int:
        return sum(t.counts[program] for t in self.transports)


def job_on(fake: FakeSlurm, name: str = "train") -> xm.Job:
    executor = xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=fake.cluster(fake.config.host.split(".")[0])),
        time=dt.timedelta(minutes=5),
    )
    image = xm_slurm.RemoteImage(image="registry.invalid/team/train:1", entrypoint=["python", "-m", "train"])
    return xm.Job(executable=image, executor=executor, name=name)


def trials(n: int) -> list[dict[str, Any]]:
    return [{"args": {"lr": 10.0**-i}} for i in range(n)]


def stored(xid: int) -> dict[int, list[str]]:
    """The store's job ids per work unit ({} once the experiment is gone)."""
    try:
        record = api.client().get_experiment(xid)
    except NotFoundError:
        return {}
    return {wu.wid: [job.slurm_job_id for job in wu.jobs] for wu in record.work_units}


def ids(unit: Any) -> list[str]:
    return [str(job.job_id) for job in unit.slurm_jobs]


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def broken_store(store: Path) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """(break, mend) the SQLite store: while broken, every job row it is asked to write fails (the
    database answers "no such function"), as a store whose disk fails would."""
    path = store / "db.sqlite3"

    def execute(sql: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute(sql)

    def brk() -> None:
        execute(
            "CREATE TRIGGER xm_test_break BEFORE INSERT ON jobs BEGIN SELECT xm_test_store_failure(); END"
        )

    def mend() -> None:
        execute("DROP TRIGGER IF EXISTS xm_test_break")

    yield brk, mend
    if path.exists():
        mend()


async def test_a_sweep_is_one_array_and_one_sbatch(fake: FakeSlurm) -> None:
    counted = Counted(fake)
    async with xm_slurm.create_experiment("sweep", transport_factory=counted) as experiment:
        units = await experiment.add(job_on(fake), args=trials(5))
        xid = experiment.experiment_id
    assert counted.count("sbatch") == 1
    [job] = fake.jobs.values()
    assert job.array_tasks == (0, 1, 2, 3, 4)
    assert [ids(u) for u in units] == [[f"{job.job_id}_{i}"] for i in range(5)]
    assert stored(xid) == {u.work_unit_id: ids(u) for u in units}  # real ids, no pending row left


async def test_one_add_across_two_clusters_is_one_submission_per_cluster() -> None:
    a, b = FakeSlurm("cluster-a.invalid"), FakeSlurm("cluster-b.invalid", first_job_id=5000)
    counted = Counted(a, b)
    on_a, on_b = job_on(a), job_on(b)

    async def both(unit: Any, lr: float) -> None:  # each trial runs a job on each cluster
        unit.add(on_a, args={"args": {"lr": lr}})
        unit.add(on_b, args={"args": {"lr": lr}})

    async with xm_slurm.create_experiment("two clusters", transport_factory=counted) as experiment:
        units = await experiment.add(both, args=[{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}])
    assert counted.count("sbatch") == 2
    [job_a], [job_b] = a.jobs.values(), b.jobs.values()
    assert job_a.array_tasks == job_b.array_tasks == (0, 1, 2)
    assert [sorted(ids(u)) for u in units] == [
        [f"{job_a.job_id}_{i}", f"{job_b.job_id}_{i}"] for i in range(3)
    ]


async def test_refused_sbatch_leaves_neither_unit_nor_pending_row(fake: FakeSlurm) -> None:
    counted = Counted(fake)
    experiment = xm_slurm.create_experiment("refused", transport_factory=counted)
    with pytest.raises(SubmissionError, match="sbatch refused"):
        async with experiment:
            first = await experiment.add(job_on(fake))
            xid = experiment.experiment_id
            fake.fail_next_sbatch("refuse")
            await experiment.add(job_on(fake), args=trials(2))
    assert counted.count("sbatch") == 2 and len(fake.jobs) == 1
    assert stored(xid) == {first.work_unit_id: ids(first)}


@pytest.mark.parametrize("how", ["timeout", "lost"])
async def test_an_ambiguous_sbatch_failure_whose_job_exists_is_adopted(fake: FakeSlurm, how: str) -> None:
    # "timeout": sbatch says its request timed out although slurmctld took it (found by the token in
    # squeue); "lost": the connection drops while sbatch runs (its answer read back from the answer files).
    counted = Counted(fake)
    fake.fail_next_sbatch(how)  # type: ignore[arg-type]
    async with xm_slurm.create_experiment("ambiguous", transport_factory=counted) as experiment:
        units = await experiment.add(job_on(fake), args=trials(2))
        xid = experiment.experiment_id
    assert counted.count("sbatch") == 1  # adopted, never submitted twice
    [job] = fake.jobs.values()
    assert [ids(u) for u in units] == [[f"{job.job_id}_0"], [f"{job.job_id}_1"]]
    assert stored(xid) == {u.work_unit_id: ids(u) for u in units}


async def test_a_failed_record_submits_nothing(fake: FakeSlurm, broken_store: Any) -> None:
    brk, _ = broken_store
    counted = Counted(fake)
    experiment = xm_slurm.create_experiment("unrecorded", transport_factory=counted)
    with pytest.raises(MetadataError, match="metadata database failed"):
        async with experiment:
            xid = experiment.experiment_id
            brk()
            await experiment.add(job_on(fake), args=trials(3))
    assert counted.count("sbatch") == 0 and fake.jobs == {}
    assert stored(xid) == {}


async def test_a_failed_swap_cancels_the_job_and_a_reopen_adopts_it(
    fake: FakeSlurm, broken_store: Any
) -> None:
    brk, mend = broken_store
    counted = Counted(fake)
    fake.on_sbatch = brk  # the pending rows are written; the store fails before the real ids are
    experiment = xm_slurm.create_experiment("swap fails", transport_factory=counted)
    with pytest.raises(MetadataError, match=r"job \d+ .*was submitted, but recording it .*been cancelled"):
        async with experiment:
            xid = experiment.experiment_id
            await experiment.add(job_on(fake))
    [job] = fake.jobs.values()
    assert fake.scancelled == [str(job.job_id)] and fake.state(str(job.job_id)) == ["CANCELLED"]
    [[row]] = stored(xid).values()
    assert row.startswith(PENDING)  # kept: it resolves to the cancelled job
    mend()
    reopened = xm_slurm.get_experiment(xid, transport_factory=counted)
    try:
        [unit] = reopened.work_units.values()
        assert ids(unit) == [str(job.job_id)] and stored(xid) == {unit.work_unit_id: [str(job.job_id)]}
        assert (await unit.get_status()).status is WU.CANCELLED
    finally:
        await reopened.aclose()
    assert counted.count("sbatch") == 1


async def test_a_pending_row_whose_job_exists_is_adopted_on_reopen(fake: FakeSlurm) -> None:
    counted = Counted(fake)
    fake.fail_next_sbatch("lost", stay_unreachable=True)  # submitted, then the cluster is gone
    experiment = xm_slurm.create_experiment("lost", transport_factory=counted)
    with pytest.raises(XmSlurmError, match="MAY have reached Slurm"):
        async with experiment:
            xid = experiment.experiment_id
            await experiment.add(job_on(fake), args=trials(2))
    [job] = fake.jobs.values()
    assert all(row.startswith(PENDING) for rows in stored(xid).values() for row in rows)
    fake.reconnect()
    reopened = xm_slurm.get_experiment(xid, transport_factory=counted)
    try:
        assert [ids(u) for u in reopened.work_units.values()] == [[f"{job.job_id}_0"], [f"{job.job_id}_1"]]
        assert stored(xid) == {wid: ids(u) for wid, u in reopened.work_units.items()}
    finally:
        await reopened.aclose()
    assert counted.count("sbatch") == 1


async def test_a_pending_row_slurm_lacks_is_kept_while_recent_and_dropped_after_the_grace(
    fake: FakeSlurm,
) -> None:
    counted = Counted(fake)
    fake.fail_next_sbatch("lost", submitted=False, stay_unreachable=True)  # never reached slurmctld
    experiment = xm_slurm.create_experiment("never submitted", transport_factory=counted)
    with pytest.raises(XmSlurmError, match="MAY have reached Slurm"):
        async with experiment:
            xid = experiment.experiment_id
            await experiment.add(job_on(fake))
    assert fake.jobs == {}
    fake.reconnect()
    reopened = xm_slurm.get_experiment(xid, transport_factory=counted)
    try:
        [(wid, unit)] = reopened.work_units.items()
        [row] = stored(xid)[wid]
        assert row.startswith(PENDING) and unit.slurm_jobs == []  # recent: its sbatch may be on its way
        assert (await unit.get_status()).status is WU.PENDING
        result = await reopened.resolve_pending_submissions(grace=0)
        assert (result.dropped_rows, result.deleted_units, result.unresolved) == (1, [wid], 0)
        assert dict(reopened.work_units) == {} and stored(xid) == {}
    finally:
        await reopened.aclose()
    assert counted.count("sbatch") == 1


async def test_retry_resubmits_only_the_failed_array_tasks(fake: FakeSlurm) -> None:
    counted = Counted(fake)
    async with xm_slurm.create_experiment("retry", transport_factory=counted) as experiment:
        units = await experiment.add(job_on(fake), args=trials(4))
        [first] = fake.jobs.values()
        for task in range(4):
            fake.finish(
                f"{first.job_id}_{task}", "FAILED" if task % 2 else "COMPLETED", exit_code=task % 2 * 3
            )
        retried = await experiment.retry_failed(units)
        assert [u.work_unit_id for u in retried] == [units[1].work_unit_id, units[3].work_unit_id]
        assert counted.count("sbatch") == 2  # the sweep, then ONE resubmission
        retry = fake.jobs[max(fake.jobs)]
        assert retry.array_tasks == (1, 3) and "--array=1,3" in retry.argv
        assert [ids(u) for u in units] == [
            [f"{first.job_id}_0"],
            [f"{retry.job_id}_1"],
            [f"{first.job_id}_2"],
            [f"{retry.job_id}_3"],
        ]
        assert await experiment.retry_failed(units) == []  # nothing has failed since
        assert counted.count("sbatch") == 2


async def test_adding_an_identity_again_submits_nothing(fake: FakeSlurm) -> None:
    counted = Counted(fake)
    async with xm_slurm.create_experiment("identity", transport_factory=counted) as experiment:
        unit = await experiment.add(job_on(fake), identity="seed-1")
        again = await experiment.add(job_on(fake), identity="seed-1")
        xid = experiment.experiment_id
    assert again.work_unit_id == unit.work_unit_id and ids(again) == ids(unit)
    reopened = xm_slurm.get_experiment(xid, transport_factory=counted)
    async with reopened:
        later = await reopened.add(job_on(fake), identity="seed-1")
    assert later.work_unit_id == unit.work_unit_id and ids(later) == ids(unit)
    assert counted.count("sbatch") == 1 and len(fake.jobs) == 1
    assert stored(xid) == {unit.work_unit_id: ids(unit)}
