"""A unit's role (work unit or auxiliary unit) is data in the store, on both backends, and rows from before
the role column (an auxiliary unit marked inside its args JSON) read as auxiliary units with their args."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from metadata_fixtures import Server, start_server, stop_server

from xm_slurm.api import (
    ConflictError,
    ExperimentPatch,
    ExperimentUnitPatch,
    ExperimentUnitRole,
    WorkUnitPatch,
    XManagerAPI,
    codec,
)
from xm_slurm.api.rest import RestClient
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage import sqlite_url
from xm_slurm.errors import ValidationError

AUX, WORK = ExperimentUnitRole.AUX_UNIT, ExperimentUnitRole.WORK_UNIT
OLD_MARK = "__xm_slurm_role__"  # how revisions before 0005 marked an auxiliary unit


async def test_an_auxiliary_unit_role_round_trips(api: XManagerAPI) -> None:
    xid = api.insert_experiment(ExperimentPatch(title="roles"))
    api.insert_work_units(
        xid,
        [WorkUnitPatch(wid=1, args='{"lr": 1}'), WorkUnitPatch(wid=2, identity="tb", args="{}", role=AUX)],
    )
    await api.ainsert_work_units(xid, [WorkUnitPatch(wid=3, args='{"port": 6006}', role="AUX_UNIT")])  # type: ignore[arg-type]
    stored = {wu.wid: wu for wu in api.get_experiment(xid).work_units}
    assert {wid: wu.role for wid, wu in stored.items()} == {1: WORK, 2: AUX, 3: AUX}
    assert (stored[2].args, stored[3].args) == ("{}", '{"port": 6006}')  # args as given, nothing wrapped
    assert api.get_work_unit(xid, 3).role is AUX
    found = await api.afind_work_unit(xid, "tb")
    assert found is not None and found.role is AUX

    api.insert_work_unit(xid, WorkUnitPatch(wid=2, identity="tb", args="{}", role=AUX))  # the same: a no-op
    with pytest.raises(ConflictError, match=r"work unit 2 .*already exists"):
        api.insert_work_unit(xid, WorkUnitPatch(wid=2, identity="tb", args="{}"))  # other role: other content

    api.update_work_unit(xid, 3, ExperimentUnitPatch(args='{"port": 6007}'))  # role left None: unchanged
    assert api.get_work_unit(xid, 3).role is AUX
    api.update_work_unit(xid, 3, ExperimentUnitPatch(role=WORK))
    assert (api.get_work_unit(xid, 3).role, api.get_work_unit(xid, 3).args) == (WORK, '{"port": 6007}')

    api.replace_jobs(xid, work_units=[WorkUnitPatch(wid=4, role=AUX)])
    assert api.get_work_unit(xid, 4).role is AUX


def test_a_bad_role_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(
        ValidationError, match=r"WorkUnitPatch.role must be ExperimentUnitRole.WORK_UNIT or .*'BOSS'"
    ):
        WorkUnitPatch(wid=1, role="BOSS")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"ExperimentUnitPatch\.role"):
        ExperimentUnitPatch(role=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"WorkUnitPatch\.role"):
        WorkUnitPatch(wid=1, role=None)  # type: ignore[arg-type]


def test_a_client_without_the_role_field_records_work_units(rest_server: Server) -> None:
    """A request body of a client older than the role (no `role` key) is accepted: a work unit."""
    api = RestClient(rest_server.base_url, rest_server.token)
    xid = api.insert_experiment(ExperimentPatch(title="old client"))
    answer = httpx.put(
        f"{rest_server.base_url}/api/experiment/{xid}/wu",
        json={"wid": 1, "identity": "", "args": "{}"},
        headers={"Authorization": f"Bearer {rest_server.token}"},
    )
    assert answer.status_code == 200, answer.text
    assert api.get_work_unit(xid, 1).role is WORK
    refused = httpx.put(
        f"{rest_server.base_url}/api/experiment/{xid}/wu",
        json={"wid": 2, "role": "BOSS"},
        headers={"Authorization": f"Bearer {rest_server.token}"},
    )
    assert refused.status_code == 422 and "role" in refused.text


def test_a_server_without_the_role_field_is_read_as_before() -> None:
    """An answer of a server older than the role carries an auxiliary unit in the old form."""
    old = {"wid": 2, "identity": "", "args": json.dumps({OLD_MARK: "AUX_UNIT", "args": {"port": 6006}})}
    unit = codec.work_unit_from_json(old)
    assert (unit.role, unit.args) == (AUX, '{"port": 6006}')
    plain = codec.work_unit_from_json({"wid": 1, "args": '{"note": "__xm_slurm_role__ in a value"}'})
    assert (plain.role, plain.args) == (WORK, '{"note": "__xm_slurm_role__ in a value"}')


# -- revision 0005 on stores written before it -----------------------------------------------------------

OLD_ROWS = [
    # (wid, args as revisions before 0005 stored them)
    (1, '{"lr": 0.1}'),
    (2, json.dumps({OLD_MARK: "AUX_UNIT", "args": {"port": 6006, "name": "tensorbörd"}}, ensure_ascii=False)),
    (3, json.dumps({OLD_MARK: "AUX_UNIT", "args": {}})),
    (4, '{"note": "__xm_slurm_role__ is only mentioned"}'),
    (5, "not json __xm_slurm_role__"),
    (6, None),
]


def _store_at_0004(path: pathlib.Path) -> None:
    old = engines.create_engine(sqlite_url(path))
    engines.upgrade(old, "0004")
    with old.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO experiments (id, title, created_at) VALUES (1, 'old', '2026-12-01')")
        )
        for wid, args in OLD_ROWS:
            conn.execute(
                sa.text(
                    "INSERT INTO work_units (experiment_id, wid, identity, args) VALUES (1, :wid, '', :args)"
                ),
                {"wid": wid, "args": args},
            )
        conn.execute(
            sa.text(
                "INSERT INTO jobs (work_unit_id, name, slurm_job_id, slurm_ssh_config) "
                "SELECT id, 'tb', '77', '{}' FROM work_units WHERE wid = 2"
            )
        )
    old.dispose()


def _assert_migrated(api: XManagerAPI) -> None:
    units = {wu.wid: wu for wu in api.get_experiment(1).work_units}
    assert {wid: wu.role for wid, wu in units.items()} == {1: WORK, 2: AUX, 3: AUX, 4: WORK, 5: WORK, 6: WORK}
    assert json.loads(units[2].args or "") == {"port": 6006, "name": "tensorbörd"}
    assert units[2].args == '{"port": 6006, "name": "tensorbörd"}'  # as the experiment layer encodes args
    assert units[3].args == "{}"
    untouched = {wid: args for wid, args in OLD_ROWS if wid not in (2, 3)}
    assert {wid: units[wid].args for wid in untouched} == untouched
    assert [j.slurm_job_id for j in units[2].jobs] == ["77"]  # the column was added in place: jobs kept


def test_old_rows_read_as_auxiliary_units_after_the_migration_sqlite(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite3"
    _store_at_0004(path)
    client = SqlClient.open(sqlite_url(path))
    try:
        assert engines.current_revision(client.engine) == engines.head_revision()
        _assert_migrated(client)
    finally:
        client.close()


def test_old_rows_read_as_auxiliary_units_after_the_migration_rest(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    _store_at_0004(folder / "server.sqlite3")  # the file start_server's server opens (and migrates)
    server = start_server(folder)
    try:
        _assert_migrated(RestClient(server.base_url, server.token))
    finally:
        stop_server(server)


def test_the_migration_goes_down_to_the_old_form_and_up_again(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite3"
    _store_at_0004(path)
    engine = engines.create_engine(sqlite_url(path))
    engines.upgrade(engine, "0005")
    with engine.begin() as conn:
        command.downgrade(engines.alembic_config(conn), "0004")
    with engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("work_units")]
        args = dict(conn.execute(sa.text("SELECT wid, args FROM work_units")).all())
    assert "role" not in columns
    assert json.loads(args[2]) == {OLD_MARK: "AUX_UNIT", "args": {"port": 6006, "name": "tensorbörd"}}
    engine.dispose()
    client = SqlClient.open(sqlite_url(path))
    try:
        _assert_migrated(client)
    finally:
        client.close()
