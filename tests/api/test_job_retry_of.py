"""Retry lineage is data: `SlurmJob.retry_of` (the Slurm job id of the job of the same unit a retry replaces)
round-trips through both backends; a job's name is only a name, whatever it holds; rows an older version
wrote (`<name> [retry of <id>]` as the name) keep their lineage: revision 0006 moves it into the field, and
an older server's answer or older client's request is read the same way (a read-side fallback)."""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from metadata_fixtures import Server, start_server, stop_server

from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch, XManagerAPI, codec
from xm_slurm.api.rest import RestClient
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage import sqlite_url
from xm_slurm.errors import ValidationError

SSH = '{"host": "login", "port": 22}'
PENDING = "pending:xms-0123456789abcdef01234567:1700000000"


def _job(job_id: str, name: str = "train", retry_of: str | None = None) -> SlurmJob:
    return SlurmJob(name=name, slurm_job_id=job_id, slurm_ssh_config=SSH, retry_of=retry_of)


def _rows(api: XManagerAPI, xid: int, wid: int = 1) -> list[tuple[str, str, str | None]]:
    return [(j.name, j.slurm_job_id, j.retry_of) for j in api.get_work_unit(xid, wid).jobs]


async def test_retry_of_round_trips_through_every_call(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="lineage"))
    api.insert_work_units(xid, [WorkUnitPatch(wid=1), WorkUnitPatch(wid=2)])
    api.insert_job(xid, 1, _job("5_3"))
    api.insert_jobs(xid, [(1, _job("9_3", retry_of="5_3")), (2, _job("6+1"))])
    # A retry of the retry, recorded as the launcher records it: a pending row, then the real one.
    await api.areplace_jobs(xid, insert=[(1, _job(f"{PENDING}_3", retry_of="9_3"))])
    assert _rows(api, xid)[-1] == ("train", f"{PENDING}_3", "9_3")
    await api.areplace_jobs(
        xid,
        remove=[(1, f"{PENDING}_3")],
        insert=[(1, _job("12_3", retry_of="9_3")), (2, _job("13+1", "eval", "6+1"))],
    )
    assert _rows(api, xid) == [("train", "5_3", None), ("train", "9_3", "5_3"), ("train", "12_3", "9_3")]
    assert _rows(api, xid, 2) == [("train", "6+1", None), ("eval", "13+1", "6+1")]
    experiment = await api.aget_experiment(xid)
    assert [j.retry_of for j in experiment.work_units[0].jobs] == [None, "5_3", "9_3"]
    api.insert_job(xid, 1, _job("12_3", retry_of="9_3"))  # the same job again: a no-op
    assert len(_rows(api, xid)) == 3


def test_a_name_holding_the_old_mark_is_not_a_retry(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="literal"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1))
    api.insert_jobs(xid, [(1, _job("5")), (1, _job("7", name="train [retry of 5]"))])
    api.replace_jobs(xid, insert=[(1, _job("8_1", name="eval [retry of 6_1]"))])
    assert _rows(api, xid) == [
        ("train", "5", None),
        ("train [retry of 5]", "7", None),
        ("eval [retry of 6_1]", "8_1", None),
    ]


@pytest.mark.parametrize(
    ("retry_of", "message"),
    [
        (f"{PENDING}_3", r"retry_of='pending:.*must be None or the Slurm job id"),
        ("five", r"retry_of='five' must be None or the Slurm job id"),
        (" 5", r"retry_of=' 5' must be None"),
        ("5\n6", r"SlurmJob.retry_of"),
        ("9_3", r"retry_of='9_3' names the job itself"),
    ],
)
def test_a_bad_retry_of_is_refused_before_anything_is_sent(retry_of: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _job("9_3", retry_of=retry_of)


def test_retry_of_takes_an_int_and_is_sent_only_when_it_says_something() -> None:
    assert _job("9", retry_of=5).retry_of == "5"  # type: ignore[arg-type]
    assert "retry_of" not in codec.job_request_to_json(_job("9"))  # an older server takes it as before
    assert codec.job_request_to_json(_job("9", retry_of="5"))["retry_of"] == "5"
    # A name holding the old mark is sent with an explicit null, so that no server reads it as a retry.
    assert codec.job_request_to_json(_job("9", name="a [retry of 5]"))["retry_of"] is None
    assert codec.job_to_json(_job("9"))["retry_of"] is None  # answers always carry the field


def test_an_older_servers_answer_keeps_its_lineage() -> None:
    """A server older than the field sends retries under their old names and no `retry_of` key."""
    old = {
        "wid": 1,
        "jobs": [
            {"name": "train", "slurm_job_id": "5_3", "slurm_ssh_config": SSH},
            {"name": "train [retry of 5_3]", "slurm_job_id": "9_3", "slurm_ssh_config": SSH},
            {"name": "odd [retry of five]", "slurm_job_id": "10", "slurm_ssh_config": SSH},
        ],
    }
    unit = codec.work_unit_from_json(old)
    assert [(j.name, j.retry_of) for j in unit.jobs] == [
        ("train", None),
        ("train", "5_3"),
        ("odd [retry of five]", None),
    ]
    new = {
        "wid": 1,
        "jobs": [
            {"name": "train [retry of 5_3]", "slurm_job_id": "9_3", "slurm_ssh_config": SSH, "retry_of": None}
        ],
    }
    assert [(j.name, j.retry_of) for j in codec.work_unit_from_json(new).jobs] == [
        ("train [retry of 5_3]", None)
    ]


def test_an_older_clients_request_keeps_its_lineage(rest_server: Server) -> None:
    """A body without `retry_of` (a client older than the field) is read as that client wrote retries;
    with `retry_of` (even null), the name is only a name."""
    api = RestClient(rest_server.base_url, rest_server.token)
    xid = api.insert_experiment(ExperimentPatch(title="old client"))
    api.insert_work_unit(xid, WorkUnitPatch(wid=1))
    headers = {"Authorization": f"Bearer {rest_server.token}"}
    url = f"{rest_server.base_url}/api/experiment/{xid}"
    sent: list[tuple[str, dict[str, Any]]] = [
        ("/wu/1/job", {"name": "train", "slurm_job_id": "5", "slurm_ssh_config": SSH}),
        ("/wu/1/job", {"name": "train [retry of 5]", "slurm_job_id": "9", "slurm_ssh_config": SSH}),
        (
            "/wu/1/job",
            {"name": "x [retry of 9]", "slurm_job_id": "11", "slurm_ssh_config": SSH, "retry_of": None},
        ),
    ]
    for path, body in sent:
        answer = httpx.put(url + path, json=body, headers=headers)
        assert answer.status_code == 200, answer.text
    assert _rows(api, xid) == [("train", "5", None), ("train", "9", "5"), ("x [retry of 9]", "11", None)]
    refused = httpx.put(
        url + "/wu/1/job",
        json={"name": "t", "slurm_job_id": "12", "slurm_ssh_config": SSH, "retry_of": "not an id"},
        headers=headers,
    )
    assert refused.status_code == 422 and "retry_of" in refused.text


# -- revision 0006 on a store written at 0005 -----------------------------------------------------------

OLD_JOBS = [
    # (wid, name as revisions before 0006 stored it, slurm_job_id)
    (1, "train", "5_3"),
    (1, "train [retry of 5_3]", "9_3"),
    (1, "train [retry of 9_3]", "12_3"),  # a retry of the retry
    (2, "group", "6+1"),
    (2, "group [retry of 6+1]", "13+1"),
    (3, "odd [retry of five]", "7"),  # the mark, but not a retry's name: a name
    (3, "odd [retry of 7] later", "8"),
    (4, "dup", "20"),
    (4, "dup [retry of 19]", "20"),  # the plain name is taken for this id: the name stays, lineage moves
    (5, "pending", f"{PENDING}_0"),
]


def _store_at_0005(path: pathlib.Path) -> None:
    old = engines.create_engine(sqlite_url(path))
    engines.upgrade(old, "0005")
    with old.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO experiments (id, title, created_at) VALUES (1, 'old', '2026-12-01')")
        )
        for wid in sorted({wid for wid, _, _ in OLD_JOBS}):
            conn.execute(
                sa.text(
                    "INSERT INTO work_units (experiment_id, wid, identity, args) VALUES (1, :wid, '', '{}')"
                ),
                {"wid": wid},
            )
        for wid, name, job_id in OLD_JOBS:
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (work_unit_id, name, slurm_job_id, slurm_ssh_config) "
                    "SELECT id, :name, :job, :ssh FROM work_units WHERE wid = :wid"
                ),
                {"wid": wid, "name": name, "job": job_id, "ssh": SSH},
            )
        conn.execute(
            sa.text(
                "INSERT INTO work_unit_artifacts (work_unit_id, name, uri) SELECT id, 'log', 'file:///l' FROM work_units WHERE wid = 1"
            )
        )
    old.dispose()


MIGRATED = {
    1: [("train", "5_3", None), ("train", "9_3", "5_3"), ("train", "12_3", "9_3")],
    2: [("group", "6+1", None), ("group", "13+1", "6+1")],
    3: [("odd [retry of five]", "7", None), ("odd [retry of 7] later", "8", None)],
    4: [("dup", "20", None), ("dup [retry of 19]", "20", "19")],
    5: [("pending", f"{PENDING}_0", None)],
}


def _assert_migrated(api: XManagerAPI) -> None:
    experiment = api.get_experiment(1)
    assert {
        wu.wid: [(j.name, j.slurm_job_id, j.retry_of) for j in wu.jobs] for wu in experiment.work_units
    } == MIGRATED
    assert all(j.slurm_ssh_config == SSH for wu in experiment.work_units for j in wu.jobs)
    assert [(a.name, a.uri) for a in experiment.work_units[0].artifacts] == [("log", "file:///l")]


def test_revision_0006_moves_old_retry_names_into_the_field_sqlite(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite3"
    _store_at_0005(path)
    client = SqlClient.open(sqlite_url(path))
    try:
        assert engines.current_revision(client.engine) == engines.head_revision()
        _assert_migrated(client)
    finally:
        client.close()


def test_revision_0006_moves_old_retry_names_into_the_field_rest(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    _store_at_0005(folder / "server.sqlite3")  # the file start_server's server opens (and migrates)
    server = start_server(folder)
    try:
        _assert_migrated(RestClient(server.base_url, server.token))
    finally:
        stop_server(server)


def test_revision_0006_goes_down_to_the_old_names_and_up_again(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite3"
    _store_at_0005(path)
    engine = engines.create_engine(sqlite_url(path))
    engines.upgrade(engine, "0006")
    with engine.begin() as conn:
        command.downgrade(engines.alembic_config(conn), "0005")
    with engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("jobs")]
        names = sorted(conn.execute(sa.text("SELECT name, slurm_job_id FROM jobs")).all())
    assert "retry_of" not in columns
    assert names == sorted((name, job_id) for _, name, job_id in OLD_JOBS)
    engine.dispose()
    client = SqlClient.open(sqlite_url(path))
    try:
        _assert_migrated(client)
    finally:
        client.close()
