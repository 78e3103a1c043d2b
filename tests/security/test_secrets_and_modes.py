"""Secrets (the REST token, a registry password) appear in no script, command line, log or error, and state
folders are 0700 with files 0600 (or 0700 scripts) on both sides."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster
from reliability_helpers import RestServer, cluster_config, executor
from xmanager import xm

import xm_slurm
from xm_slurm.api import settings
from xm_slurm.api.server.tokens import create_token
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.storage.engine import sqlite_url
from xm_slurm.executables import ImageCredentials
from xm_slurm.status import SlurmWorkUnitStatusEnum as S

pytestmark = pytest.mark.cluster

PASSWORD = f"pw-{uuid.uuid4().hex}"
USER = "xmsecret"


@pytest.fixture
def rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = sqlite_url(str(tmp_path / "server.sqlite3"))
    token = create_token(SqlClient.open(url), "secrets")
    server = RestServer(url)
    monkeypatch.setenv("XM_SLURM_API_BACKEND", "rest")
    monkeypatch.setenv("XM_SLURM_REST_API_BASE_URL", server.url)
    monkeypatch.setenv("XM_SLURM_REST_API_TOKEN", token)
    settings.clear_cache()
    try:
        yield token
    finally:
        settings.clear_cache()
        server.close()


def _process_table() -> str:
    return subprocess.run(
        ["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True
    ).stdout


def _files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            yield Path(root, d)
        for f in files:
            yield Path(root, f)


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0


async def test_no_secret_leaks_and_state_is_private(
    local_cluster: LocalCluster, rest: str, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [rest, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    cluster = cluster_config(local_cluster)
    image = xm_slurm.RemoteImage(
        image=local_cluster.image,
        entrypoint=["sh", "-c", "sleep 2; echo done"],
        credentials=ImageCredentials(username=USER, password=PASSWORD),
    )
    job = xm.Job(executable=image, executor=executor(cluster), name=f"sec-{uuid.uuid4().hex[:8]}")
    tables = []
    async with xm_slurm.create_experiment("secrets") as experiment:
        wu = await experiment.add(job)
        while (await wu.get_status()).status is S.PENDING:
            pass
        tables.append(_process_table())  # while the job runs
        await wu.wait_until_complete()
        xid = experiment.experiment_id
        folder = Path("/") / await experiment.connections.experiment_dir(cluster.ssh, xid)
    tables.append(_process_table())
    leaks = [f"process table has secret #{i}" for t in tables for i, s in enumerate(secrets) if s in t]
    leaks += [f"log record has secret #{i}" for i, s in enumerate(secrets) if s in caplog.text]
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
    # The folder is shared by every experiment with this xid (other tests' stores): check what ours made.
    [job_id] = [str(j.job_id) for j in wu.slurm_jobs]
    ours = (job.name or "", f"slurm-{job_id}", "registry-auth")
    mine = [
        p
        for p in await asyncio.to_thread(lambda: list(_files(folder)))
        if p.name.startswith(ours) or p.parent.name == "registry-auth"
    ]
    assert len(mine) >= 5, mine  # script, sbatch answer files, log
    for path in mine:
        assert _private(path), f"{path} is {oct(stat.S_IMODE(path.lstat().st_mode))}"
        if path.is_file() and path.parent.name != "registry-auth":
            text = path.read_bytes().decode(errors="replace")
            leaks += [f"{path} has secret #{i}" for i, s in enumerate(secrets) if s in text]
    # Local side: the state folder (here it holds nothing but what the client wrote) is private.
    local = await asyncio.to_thread(lambda: [store, *_files(store)] if store.exists() else [])
    assert all(_private(p) for p in local), local
    assert not leaks, leaks


def test_local_store_is_private(store: Path) -> None:
    from xm_slurm.api import ExperimentPatch, client

    client().insert_experiment(ExperimentPatch(title="private"))
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    files = list(_files(store))
    assert any(p.name == "db.sqlite3" for p in files)
    assert all(_private(p) for p in files), {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in files}
