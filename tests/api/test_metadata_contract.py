"""The contract every metadata backend keeps: the same tests run against SQLite and the real REST server."""

from __future__ import annotations

import asyncio
import inspect
import uuid

import pytest
import sqlalchemy as sa
from metadata_fixtures import Backend, hold_write_lock

from xm_slurm.api import (
    Artifact,
    ConfigArtifact,
    ConflictError,
    ExperimentPatch,
    ExperimentUnitPatch,
    SlurmJob,
    WorkUnitPatch,
    XManagerAPI,
)
from xm_slurm.api import operation as ops
from xm_slurm.errors import MetadataError, NotFoundError, ValidationError
from xm_slurm.ssh_config import SlurmSSHConfig


def _job(job_id: str, name: str = "train") -> SlurmJob:
    return SlurmJob(name=name, slurm_job_id=job_id, slurm_ssh_config={"host": "login", "port": 22})


def _unique(prefix: str) -> str:
    # The REST server's database is shared by the session; unique titles keep tests apart.
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_insert_and_get_experiment(api: XManagerAPI) -> None:
    title = _unique("exp")
    xid = api.insert_experiment(ExperimentPatch(title=title, description="d", note="n", tags={"a", "b"}))
    exp = api.get_experiment(xid)
    assert (exp.xid, exp.title, exp.description, exp.note) == (xid, title, "d", "n")
    assert exp.tags == {"a", "b"}
    assert exp.work_units == () and exp.artifacts == () and exp.config_artifacts == ()
    assert exp.created_at is not None and exp.created_at.endswith("+00:00")


def test_update_leaves_none_fields_unchanged(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="t", description="d", note="n", tags={"a"}))
    api.update_experiment(xid, ExperimentPatch(note="new note"))
    exp = api.get_experiment(xid)
    assert (exp.title, exp.description, exp.note, exp.tags) == ("t", "d", "new note", {"a"})
    api.update_experiment(xid, ExperimentPatch(tags=frozenset({"x", "y"})))
    assert api.get_experiment(xid).tags == {"x", "y"}
    api.update_experiment(xid, ExperimentPatch(tags=frozenset()))
    assert api.get_experiment(xid).tags == frozenset()


def test_missing_experiment_is_not_found(api: XManagerAPI) -> None:
    missing = 10**9
    with pytest.raises(NotFoundError, match=str(missing)):
        api.get_experiment(missing)
    with pytest.raises(NotFoundError):
        api.update_experiment(missing, ExperimentPatch(title="x"))
    with pytest.raises(NotFoundError):
        api.insert_work_unit(missing, WorkUnitPatch(wid=1))
    with pytest.raises(NotFoundError):
        api.insert_experiment_artifact(missing, Artifact(name="a", uri="u"))
    with pytest.raises(NotFoundError):
        api.delete_experiment(missing)


def test_delete_experiment_cascades(api: XManagerAPI, backend: Backend) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="doomed", tags={"t"}))
    api.insert_work_units(xid, [WorkUnitPatch(wid=1), WorkUnitPatch(wid=2)])
    api.insert_job(xid, 1, _job("11"))
    api.insert_work_unit_artifact(xid, 1, Artifact(name="ckpt", uri="file:///c"))
    api.insert_experiment_artifact(xid, Artifact(name="wandb", uri="https://w"))
    api.insert_experiment_config_artifact(xid, ConfigArtifact(name="PYTHON", uri="print(1)"))
    api.delete_experiment(xid)
    with pytest.raises(NotFoundError):
        api.get_experiment(xid)
    engine = sa.create_engine(backend.db_url)  # the database itself, whichever it is
    try:
        with engine.connect() as db:
            for table in (
                "experiment_tags",
                "experiment_artifacts",
                "experiment_config_artifacts",
                "work_units",
            ):
                query = sa.text(f"SELECT count(*) FROM {table} WHERE experiment_id = :xid")
                assert db.execute(query, {"xid": xid}).scalar() == 0
            orphans = db.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM jobs WHERE work_unit_id NOT IN (SELECT id FROM work_units)) +"
                    " (SELECT count(*) FROM work_unit_artifacts"
                    " WHERE work_unit_id NOT IN (SELECT id FROM work_units))"
                )
            ).scalar()
            assert orphans == 0
    finally:
        engine.dispose()


def test_work_units_and_jobs(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="wus"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1, identity="first", args='{"seed": 0}'))
    api.insert_work_units(
        xid, [WorkUnitPatch(wid=2, args='{"lr": 1}'), WorkUnitPatch(wid=3, args='{"lr": 2}')]
    )
    ssh = SlurmSSHConfig(host="login.example.org", port=2222, user="me")
    api.insert_job(xid, 1, SlurmJob(name="j1", slurm_job_id="100", slurm_ssh_config=ssh))
    api.insert_jobs(xid, [(2, _job("101_0")), (3, _job("101_1"))])
    exp = api.get_experiment(xid)
    assert [wu.wid for wu in exp.work_units] == [1, 2, 3]
    first = exp.work_units[0]
    assert (first.identity, first.args) == ("first", '{"seed": 0}')
    assert [j.slurm_job_id for j in first.jobs] == ["100"]
    assert first.jobs[0].ssh_config_dict()["endpoints"] == [["login.example.org", 2222]]
    assert exp.work_units[2].jobs == (_job("101_1"),)
    assert api.get_work_unit(xid, 2).jobs == (_job("101_0"),)
    with pytest.raises(NotFoundError):
        api.get_work_unit(xid, 99)
    with pytest.raises(NotFoundError):
        api.insert_job(xid, 99, _job("1"))


def test_repeated_writes_do_not_duplicate(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="idempotent"))
    for _ in range(2):
        api.insert_work_unit(xid, WorkUnitPatch(wid=1, identity="i", args="a"))
        api.insert_job(xid, 1, _job("7"))
        api.insert_jobs(xid, [(1, _job("8")), (1, _job("8"))])
        api.insert_work_unit_artifact(xid, 1, Artifact(name="x", uri="u"))
    wu = api.get_work_unit(xid, 1)
    assert [j.slurm_job_id for j in wu.jobs] == ["7", "8"]
    assert wu.artifacts == (Artifact(name="x", uri="u"),)


def test_duplicate_wid_or_identity_is_a_clear_conflict(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="conflicts"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1, identity="a", args="x"))
    with pytest.raises(ConflictError, match=r"work unit 1 .*already exists"):
        api.insert_work_unit(xid, WorkUnitPatch(wid=1, identity="a", args="other"))
    with pytest.raises(ConflictError, match="identity 'a' is already work unit 1"):
        api.insert_work_unit(xid, WorkUnitPatch(wid=2, identity="a"))
    # A batch is all or nothing: wid 3 is not stored because wid 1 clashes.
    with pytest.raises(ConflictError):
        api.insert_work_units(xid, [WorkUnitPatch(wid=3), WorkUnitPatch(wid=1, args="clash")])
    with pytest.raises(ConflictError, match="twice"):
        api.insert_work_units(xid, [WorkUnitPatch(wid=4), WorkUnitPatch(wid=4)])
    assert [wu.wid for wu in api.get_experiment(xid).work_units] == [1]
    # Empty identities never clash.
    api.insert_work_units(xid, [WorkUnitPatch(wid=5), WorkUnitPatch(wid=6)])


def test_find_and_update_work_unit(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="find"))
    api.insert_work_units(xid, [WorkUnitPatch(wid=1, identity="alpha"), WorkUnitPatch(wid=2)])
    found = api.find_work_unit(xid, "alpha")
    assert found is not None and found.wid == 1
    assert api.find_work_unit(xid, "beta") is None
    api.update_work_unit(xid, 2, ExperimentUnitPatch(identity="beta"))
    api.update_work_unit(xid, 2, ExperimentUnitPatch(args="new"))
    beta = api.find_work_unit(xid, "beta")
    assert beta is not None and (beta.wid, beta.args) == (2, "new")
    with pytest.raises(ConflictError):
        api.update_work_unit(xid, 2, ExperimentUnitPatch(identity="alpha"))
    with pytest.raises(NotFoundError):
        api.find_work_unit(10**9, "alpha")


def test_artifacts(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="artifacts"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1))
    odd = "run 1?#%é"  # travels in a URL path on the REST backend
    api.insert_experiment_artifact(xid, Artifact(name="wandb", uri="https://a"))
    api.insert_experiment_artifact(xid, Artifact(name="wandb", uri="https://b"))  # replaces
    api.insert_experiment_artifact(xid, Artifact(name=odd, uri="file:///x"))
    api.insert_work_unit_artifact(xid, 1, Artifact(name=odd, uri="file:///y"))
    api.insert_experiment_config_artifact(xid, ConfigArtifact(name="PYTHON", uri="x = 1"))
    api.insert_experiment_config_artifact(xid, ConfigArtifact(name="GRAPHVIZ", uri="digraph {}"))
    exp = api.get_experiment(xid)
    assert {a.name: a.uri for a in exp.artifacts} == {"wandb": "https://b", odd: "file:///x"}
    assert exp.work_units[0].artifacts == (Artifact(name=odd, uri="file:///y"),)
    assert {a.name: a.uri for a in exp.config_artifacts} == {"PYTHON": "x = 1", "GRAPHVIZ": "digraph {}"}
    api.delete_experiment_artifact(xid, odd)
    api.delete_work_unit_artifact(xid, 1, odd)
    api.delete_experiment_config_artifact(xid, "GRAPHVIZ")
    exp = api.get_experiment(xid)
    assert [a.name for a in exp.artifacts] == ["wandb"]
    assert exp.work_units[0].artifacts == ()
    assert [a.name for a in exp.config_artifacts] == ["PYTHON"]
    with pytest.raises(NotFoundError, match="nope"):
        api.delete_experiment_artifact(xid, "nope")
    with pytest.raises(NotFoundError):
        api.delete_work_unit_artifact(xid, 1, "nope")


def test_models_validate_before_any_write() -> None:
    with pytest.raises(ValidationError, match="GRAPHVIZ, PYTHON"):
        ConfigArtifact(name="YAML", uri="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="1-based"):
        WorkUnitPatch(wid=0)
    with pytest.raises(ValidationError, match="slurm_job_id"):
        SlurmJob(name="j", slurm_job_id="", slurm_ssh_config="{}")
    with pytest.raises(ValidationError, match="tags"):
        ExperimentPatch(tags="abc")  # type: ignore[arg-type]


def test_list_experiments(api: XManagerAPI) -> None:
    marker = _unique("list")
    xids = [
        api.insert_experiment(
            ExperimentPatch(title=f"{marker} {i}", tags={"even" if i % 2 == 0 else "odd", marker})
        )
        for i in range(5)
    ]
    api.insert_work_units(xids[0], [WorkUnitPatch(wid=1), WorkUnitPatch(wid=2)])
    found = api.list_experiments(title_contains=marker)
    assert [s.xid for s in found] == xids[::-1]  # newest first
    assert found[-1].num_work_units == 2 and found[-1].tags == {"even", marker}
    assert [s.xid for s in api.list_experiments(title_contains=marker, tag="odd")] == [xids[3], xids[1]]
    assert [s.xid for s in api.list_experiments(tag=marker, limit=2, offset=1)] == [xids[3], xids[2]]
    # LIKE wildcards in the search text are literal.
    assert api.list_experiments(title_contains=marker.replace("-", "%")) == []
    with pytest.raises((ValidationError, MetadataError)):
        api.list_experiments(limit=0)


async def test_list_experiments_without_empty_ones(api: XManagerAPI) -> None:
    """`include_empty=False` leaves out experiments without work units in the query: pages stay full."""
    marker = _unique("empty")
    xids = [api.insert_experiment(ExperimentPatch(title=f"{marker} {i}", tags={marker})) for i in range(6)]
    for i in (1, 3, 4):
        api.insert_work_unit(xids[i], WorkUnitPatch(wid=1))
    held = [xids[4], xids[3], xids[1]]
    assert [s.xid for s in api.list_experiments(title_contains=marker)] == xids[::-1]  # the default: all
    assert [s.xid for s in api.list_experiments(title_contains=marker, include_empty=False)] == held
    page = api.list_experiments(tag=marker, include_empty=False, limit=2)
    assert [s.xid for s in page] == held[:2]  # two rows although the two newest are empty
    assert [s.xid for s in api.list_experiments(tag=marker, include_empty=False, limit=2, offset=2)] == held[
        2:
    ]
    found = await api.alist_experiments(title_contains=marker, include_empty=False)
    assert [(s.xid, s.num_work_units) for s in found] == [(x, 1) for x in held]
    with pytest.raises(ValidationError, match="include_empty must be True or False, got 'no'"):
        api.list_experiments(include_empty="no")  # type: ignore[arg-type]


def test_each_operation_is_one_sync_and_one_async_method() -> None:
    """The methods are generated from `operation` (one definition each), with 0.4.x's positional order."""
    names = [
        n
        for n, f in vars(ops).items()
        if inspect.isfunction(f) and f.__module__ == ops.__name__ and not n.startswith("_")
    ]
    assert len(names) == 21  # 20, and record_job_states (issue 20)
    for name in names:
        build = inspect.signature(getattr(ops, name))
        sync, async_ = getattr(XManagerAPI, name), getattr(XManagerAPI, f"a{name}")
        assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(async_)
        for method in (sync, async_):
            parameters = list(inspect.signature(method).parameters.values())
            assert parameters[0].name == "self" and parameters[1:] == list(build.parameters.values())
    positional = {
        name: [p.name for p in inspect.signature(getattr(XManagerAPI, name)).parameters.values()][1:]
        for name in ("update_work_unit", "insert_job", "delete_work_unit_artifact", "insert_experiment")
    }
    assert positional == {
        "update_work_unit": ["xid", "wid", "experiment_unit_patch"],
        "insert_job": ["xid", "wid", "slurm_job"],
        "delete_work_unit_artifact": ["xid", "wid", "name"],
        "insert_experiment": ["experiment"],
    }


async def test_async_twins(api: XManagerAPI) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="async", tags={"t"}))
    await api.ainsert_work_units(xid, [WorkUnitPatch(wid=1, identity="w"), WorkUnitPatch(wid=2)])
    await api.ainsert_jobs(xid, [(1, _job("5")), (2, _job("6"))])
    await api.ainsert_work_unit_artifact(xid, 1, Artifact(name="a", uri="u"))
    await api.aupdate_experiment(xid, ExperimentPatch(note="async note"))
    await api.ainsert_experiment_config_artifact(xid, ConfigArtifact(name="PYTHON", uri="p"))
    exp = await api.aget_experiment(xid)
    assert exp.note == "async note" and len(exp.work_units) == 2
    assert (await api.afind_work_unit(xid, "w")) == exp.work_units[0]
    assert (await api.aget_work_unit(xid, 2)).jobs == (_job("6"),)
    assert [s.xid for s in await api.alist_experiments(title_contains="async", limit=1000)][:1] == [xid]
    await api.adelete_experiment(xid)
    with pytest.raises(NotFoundError):
        await api.aget_experiment(xid)


async def test_async_calls_do_not_block_the_event_loop(api: XManagerAPI, backend: Backend) -> None:
    xid = await api.ainsert_experiment(ExperimentPatch(title="loop"))
    # Hold the database's write lock from another connection: the write below cannot finish until we let go.
    with hold_write_lock(backend):
        write = asyncio.create_task(api.aupdate_experiment(xid, ExperimentPatch(note="after the lock")))
        ran = asyncio.Event()

        async def other() -> None:
            ran.set()

        await asyncio.gather(other(), asyncio.sleep(0))
        assert ran.is_set() and not write.done()  # the loop runs other work while the write waits
    await write
    assert (await api.aget_experiment(xid)).note == "after the lock"


@pytest.mark.parametrize("bad", ["1", 0, -3, True, None])
def test_bad_ids_are_validation_errors(api: XManagerAPI, bad: object) -> None:
    with pytest.raises(ValidationError, match="experiment id"):
        api.get_experiment(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="id"):
        api.insert_job(bad, 1, _job("1"))  # type: ignore[arg-type]
