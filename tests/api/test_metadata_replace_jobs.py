"""`replace_jobs`: the pending-submission swap of the launcher, on every backend (SQLite and the REST server)."""

from __future__ import annotations

import asyncio

import pytest

from xm_slurm.api import ConflictError, ExperimentPatch, SlurmJob, WorkUnitPatch, XManagerAPI
from xm_slurm.errors import NotFoundError, ValidationError

PENDING = "pending:xms-0123456789abcdef01234567:1700000000"


def _job(job_id: str, name: str = "train") -> SlurmJob:
    return SlurmJob(name=name, slurm_job_id=job_id, slurm_ssh_config={"host": "login", "port": 22})


def _jobs(api: XManagerAPI, xid: int) -> dict[int, list[str]]:
    return {wu.wid: [j.slurm_job_id for j in wu.jobs] for wu in api.get_experiment(xid).work_units}


def test_units_and_pending_rows_then_real_ids(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="replace"))
    units = [WorkUnitPatch(wid=1, identity="a", args="{}"), WorkUnitPatch(wid=2, args="{}")]
    pending = [(1, _job(f"{PENDING}_0")), (2, _job(f"{PENDING}_1"))]
    for _ in range(2):  # the same call again changes nothing
        api.replace_jobs(xid, work_units=units, insert=pending)
    assert _jobs(api, xid) == {1: [f"{PENDING}_0"], 2: [f"{PENDING}_1"]}
    swap = {
        "remove": [(wid, job.slurm_job_id) for wid, job in pending],
        "insert": [(1, _job("77_0")), (2, _job("77_1"))],
    }
    for _ in range(2):
        api.replace_jobs(xid, **swap)  # type: ignore[arg-type]
    assert _jobs(api, xid) == {1: ["77_0"], 2: ["77_1"]}
    assert api.find_work_unit(xid, "a") is not None


def test_refused_submission_removes_its_rows_and_the_units_left_empty(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="refused"))
    api.replace_jobs(
        xid,
        work_units=[WorkUnitPatch(wid=1), WorkUnitPatch(wid=2)],
        insert=[(1, _job("5")), (1, _job(PENDING, "second")), (2, _job(PENDING))],
    )
    for _ in range(2):
        api.replace_jobs(xid, remove=[(1, PENDING), (2, PENDING), (9, PENDING)], delete_empty_units=[1, 2, 9])
    # Unit 1 keeps its other job (and so stays); unit 2 had only the pending row and is gone.
    assert _jobs(api, xid) == {1: ["5"]}


def test_all_or_nothing(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="atomic"))
    api.replace_jobs(xid, work_units=[WorkUnitPatch(wid=1)], insert=[(1, _job(PENDING))])
    # Inserting into a unit that does not exist fails the whole call: the removal is undone too.
    with pytest.raises(NotFoundError, match="work unit 3"):
        api.replace_jobs(xid, remove=[(1, PENDING)], insert=[(3, _job("9"))])
    assert _jobs(api, xid) == {1: [PENDING]}
    # A clashing unit fails before any job row is written.
    with pytest.raises(ConflictError):
        api.replace_jobs(xid, work_units=[WorkUnitPatch(wid=1, identity="other")], insert=[(1, _job("9"))])
    assert _jobs(api, xid) == {1: [PENDING]}
    with pytest.raises(NotFoundError):
        api.replace_jobs(10**9, remove=[(1, PENDING)])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"remove": [(0, PENDING)]},
        {"remove": [(1, "")]},
        {"remove": ["1"]},
        {"insert": [(1, "not a job")]},
        {"delete_empty_units": [0]},
        {"delete_empty_units": 3},
        {"work_units": ["wid 1"]},
    ],
)
def test_bad_arguments_are_validation_errors(api: XManagerAPI, kwargs: dict[str, object]) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="bad"))
    with pytest.raises(ValidationError):
        api.replace_jobs(xid, **kwargs)  # type: ignore[arg-type]
    assert api.get_experiment(xid).work_units == ()


async def test_async_twin(api: XManagerAPI) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="async"))
    await api.areplace_jobs(xid, work_units=[WorkUnitPatch(wid=1)], insert=[(1, _job(PENDING))])
    await asyncio.gather(
        api.areplace_jobs(xid, remove=[(1, PENDING)], insert=[(1, _job("3"))]),
        api.areplace_jobs(xid, remove=[(1, PENDING)], insert=[(1, _job("3"))]),
    )
    assert _jobs(api, xid) == {1: ["3"]}
