"""Reliability tests: faults injected for real. Tests marked `disruptive` stop shared daemons of the local
cluster (slurmctld, slurmdbd); they run LAST in the session, one at a time, and only when that is safe (see
`disruption.py`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from xm_slurm.api import settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "disruptive: stops a shared daemon of the local cluster; ordered last in the session and run serially",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Called with the whole session's items: move every disruptive test to the end (stable order otherwise),
    # so they run after every other test of this session has finished with the shared cluster.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SQLite store per test."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    for var in ("XM_SLURM_API_BACKEND", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"):
        monkeypatch.delenv(var, raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()


@pytest.fixture
def server_db(request: pytest.FixtureRequest) -> str:
    """The database behind `rest_server`: "sqlite", or "postgres" for a test parametrised with
    `server_db` or with `backend="rest-postgres"`."""
    callspec = getattr(request.node, "callspec", None)
    return (
        "postgres" if callspec is not None and callspec.params.get("backend") == "rest-postgres" else "sqlite"
    )


@pytest.fixture
def rest_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, server_db: str
) -> Iterator[Any]:
    """A real REST server (uvicorn in a subprocess, with a warm spare) on its own SQLite file (or a fresh
    database of the tests' PostgreSQL server), and this process's store pointed at it with a valid token."""
    from reliability_helpers import RestServer

    from xm_slurm.api.server.tokens import create_token
    from xm_slurm.api.sql import SqlClient
    from xm_slurm.api.storage.engine import sqlite_url

    if server_db == "postgres":
        url = request.getfixturevalue("local_postgres").new_database()
    else:
        url = sqlite_url(str(tmp_path / "server.sqlite3"))
    admin = SqlClient.open(url)
    token = create_token(admin, "reliability")
    admin.close()
    server = RestServer(url)
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
    monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", server.url)
    monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", token)
    settings.clear_cache()
    try:
        yield server
    finally:
        settings.clear_cache()
        server.close()
