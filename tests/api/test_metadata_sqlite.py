"""The SQLite backend and backend selection: env vars, private files, migrations, several writer processes."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import sqlite3
import stat

import pytest
import sqlalchemy as sa

import xm_slurm.api
from xm_slurm.api import ExperimentPatch, SlurmJob, WorkUnitPatch
from xm_slurm.api.rest import RestClient
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage import sqlite_url
from xm_slurm.errors import ConfigurationError


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- backend selection -----------------------------------------------------------------------------------


def test_default_backend_is_sqlite_in_the_state_dir(state_dir: pathlib.Path) -> None:
    client = xm_slurm.api.client()
    assert isinstance(client, SqlClient)
    assert client.engine.url.database == str((state_dir / "db.sqlite3").resolve())
    assert xm_slurm.api.client() is client  # cached


def test_client_is_cached_per_settings(state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = xm_slurm.api.client()
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(state_dir / "other"))
    second = xm_slurm.api.client()
    assert second is not first
    assert (state_dir / "other" / "db.sqlite3").exists()


def test_unknown_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "mongodb")
    with pytest.raises(ConfigurationError, match=r"XM_SLURM_API_BACKEND='mongodb'.*sqlite, rest"):
        xm_slurm.api.client()


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({"XM_SLURM_REST_API_TOKEN": "xms_secret-value-1"}, "XM_SLURM_REST_API_BASE_URL"),
        ({"XM_SLURM_REST_API_BASE_URL": "http://127.0.0.1:1"}, "XM_SLURM_REST_API_TOKEN"),
    ],
)
def test_rest_backend_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, present: dict[str, str], missing: str
) -> None:
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=missing) as caught:
        xm_slurm.api.client()
    assert "xms_secret-value-1" not in str(caught.value)


def test_rest_backend_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "REST")
    monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", "https://xm.example.org/")
    monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", "xms_secret-value-2")
    client = xm_slurm.api.client()
    assert isinstance(client, RestClient) and client.base_url == "https://xm.example.org"
    assert "xms_secret-value-2" not in repr(client)


def test_bad_ca_bundle_and_base_url_are_clear_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigurationError, match="XM_SLURM_REST_API_CA_BUNDLE"):
        RestClient("https://xm.example.org", "t", ca_bundle=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="XM_SLURM_REST_API_BASE_URL"):
        RestClient("xm.example.org", "t")


# -- private files ---------------------------------------------------------------------------------------


def test_state_folder_and_database_are_private(state_dir: pathlib.Path) -> None:
    client = xm_slurm.api.client()
    client.insert_experiment(ExperimentPatch(title="private"))
    assert _mode(state_dir) == 0o700
    for name in ("db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm"):
        assert _mode(state_dir / name) == 0o600, name


def test_looser_modes_of_an_existing_database_are_tightened(state_dir: pathlib.Path) -> None:
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)
    db = state_dir / "db.sqlite3"
    db.touch()
    os.chmod(db, 0o644)
    xm_slurm.api.client()
    assert _mode(db) == 0o600
    assert _mode(state_dir) == 0o700  # our own state folder


# -- migrations ------------------------------------------------------------------------------------------


def test_old_database_is_upgraded_in_place(tmp_path: pathlib.Path) -> None:
    url = sqlite_url(tmp_path / "old.sqlite3")
    old = engines.create_engine(url)
    engines.upgrade(old, "0001")
    assert engines.current_revision(old) == "0001"
    with old.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO experiments (title, created_at) VALUES ('from 0001', '2024-01-01')")
        )
        conn.execute(sa.text("INSERT INTO work_units (experiment_id, wid, identity) VALUES (1, 1, 'old')"))
    old.dispose()

    client = SqlClient.open(url)
    assert engines.current_revision(client.engine) == engines.head_revision() == "0011"
    exp = client.get_experiment(1)
    assert exp.title == "from 0001" and exp.work_units[0].identity == "old"
    with client.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        reserved = [c["name"] for c in sa.inspect(conn).get_columns("experiments")]
    assert {"api_tokens", "idempotency_keys"} <= tables
    assert "wid_reserved" in reserved
    assert client.reserve_work_unit_ids(1, 1) == 2  # past the unit recorded before the upgrade
    client.close()


def test_opening_a_current_database_changes_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqlClient.open(sqlite_url(path)).close()

    def schema_version() -> int:
        db = sqlite3.connect(path)
        try:
            return int(db.execute("PRAGMA schema_version").fetchone()[0])
        finally:
            db.close()

    before = schema_version()
    client = SqlClient.open(sqlite_url(path))
    assert engines.current_revision(client.engine) == engines.head_revision()
    assert schema_version() == before
    client.close()


# -- several launch processes ----------------------------------------------------------------------------

PROCESSES = 4
EXPERIMENTS_PER_PROCESS = 3
UNITS_PER_EXPERIMENT = 15


def _launch(index: int, state: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    os.environ["XM_SLURM_STATE_DIR"] = state
    barrier.wait()  # everyone opens the fresh file (and migrates it) at once
    client = xm_slurm.api.client()
    for e in range(EXPERIMENTS_PER_PROCESS):
        xid = client.insert_experiment(ExperimentPatch(title=f"p{index}-e{e}", tags={f"p{index}"}))
        for wid in range(1, UNITS_PER_EXPERIMENT + 1):  # one by one: many small write transactions
            client.insert_work_unit(xid, WorkUnitPatch(wid=wid, identity=f"{index}-{e}-{wid}"))
        client.insert_jobs(
            xid,
            [(wid, SlurmJob(name="j", slurm_job_id=f"{xid}_{wid}", slurm_ssh_config="{}")) for wid in (1, 2)],
        )


def test_several_processes_write_at_once(state_dir: pathlib.Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    processes = [ctx.Process(target=_launch, args=(i, str(state_dir), barrier)) for i in range(PROCESSES)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * PROCESSES  # no "database is locked", no migration race

    client = xm_slurm.api.client()
    summaries = client.list_experiments(limit=1000)
    assert len(summaries) == PROCESSES * EXPERIMENTS_PER_PROCESS
    assert all(s.num_work_units == UNITS_PER_EXPERIMENT for s in summaries)
    assert sorted(s.title for s in summaries) == sorted(
        f"p{i}-e{e}" for i in range(PROCESSES) for e in range(EXPERIMENTS_PER_PROCESS)
    )
    assert all(len(client.get_work_unit(s.xid, 1).jobs) == 1 for s in summaries)
