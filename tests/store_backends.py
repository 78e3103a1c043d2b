"""Run a test on both store backends: the test's SQLite file (`store`, tests/conftest.py) or the real REST
server. Import the two fixtures into a test module: `from store_backends import backend, server`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from xm_slurm.api import settings

sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
from metadata_fixtures import Server, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("store-server"))
    yield started
    stop_server(started)


@pytest.fixture(params=["sqlite", "rest"])
def backend(request: pytest.FixtureRequest, store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The store every client of the test uses: the test's SQLite file, or the REST server."""
    if request.param == "rest":
        started: Server = request.getfixturevalue("server")
        monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
        monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", started.base_url)
        monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", started.token)
    settings.clear_cache()
    yield request.param
    settings.clear_cache()
