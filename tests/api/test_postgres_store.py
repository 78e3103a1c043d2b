"""The store on PostgreSQL (the tests' own server, scripts/local-postgres): the same migrations as SQLite,
up and down, leave the tables the library describes; ids use their full 64-bit range."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from local_postgres import LocalPostgres
from metadata_fixtures import Server, run_cli

from xm_slurm.api import ExperimentPatch, WorkUnitPatch
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage.schema import metadata
from xm_slurm.text_rules import MAX_ID


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata) if "alembic_version" not in repr(d)]


def test_migrations_run_up_and_down_on_postgresql(local_postgres: LocalPostgres) -> None:
    client = SqlClient.open(local_postgres.new_database())
    try:
        assert client.engine.dialect.name == "postgresql"
        assert engines.current_revision(client.engine) == engines.head_revision()
        assert _differences(client.engine) == []  # types, keys and defaults as schema.py says
        with client.engine.begin() as conn:
            command.downgrade(engines.alembic_config(conn), "base")
        assert engines.current_revision(client.engine) is None
        engines.upgrade(client.engine)
        assert _differences(client.engine) == []
    finally:
        client.close()


def test_ids_use_64_bits_on_postgresql(local_postgres: LocalPostgres) -> None:
    # Revision 0009: PostgreSQL's INTEGER is 32 bits; an xid or wid above 2**31 - 1 failed before it.
    client = SqlClient.open(local_postgres.new_database())
    try:
        xid = client.insert_experiment(ExperimentPatch(title="big ids"))
        with client.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE experiments SET id = :big WHERE id = :xid"), {"big": MAX_ID, "xid": xid}
            )
        client.insert_work_units(MAX_ID, [WorkUnitPatch(wid=2**40)])
        assert client.reserve_work_unit_ids(MAX_ID, 3) == 2**40 + 1
        assert [u.wid for u in client.get_experiment(MAX_ID).work_units] == [2**40]
    finally:
        client.close()


def test_server_commands_refuse_a_password_in_the_url(local_postgres: LocalPostgres) -> None:
    url = local_postgres.new_database().replace("@", ":s3cret-pw@", 1)
    for words in (["token", "create", "--name", "x"], ["run", "--port", "1"]):
        done = run_cli("server", *words, "--db", url)
        assert done.returncode != 0
        assert "~/.pgpass" in done.stderr and "s3cret-pw" not in done.stderr + done.stdout


def test_server_token_commands_on_postgresql(
    local_postgres: LocalPostgres, rest_server_postgres: Server
) -> None:
    # rest_server_postgres itself is `xm-slurm server run --db postgresql+psycopg://...` with a token made by
    # `server token create --db ...`; the token works, and `token list` on the same URL shows it.
    answer = httpx.get(
        f"{rest_server_postgres.base_url}/api/experiment",
        headers={"Authorization": f"Bearer {rest_server_postgres.token}"},
    )
    assert answer.status_code == 200
    listed = run_cli("server", "token", "list", "--db", rest_server_postgres.db_url)
    assert listed.returncode == 0 and " tests " in listed.stdout
