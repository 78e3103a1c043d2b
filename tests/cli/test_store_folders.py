"""Cluster folders are named by store: two stores used from one cluster account never share an experiment's
folder, and an experiment recorded before stores had an id still finds its logs in the old layout.
Against the local cluster (one account) with real SQLite stores."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_helpers import launch, sacct_state, sh_job, xm_cli
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm.api import client, settings
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage import schema as t
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.paths import experiment_dir

pytestmark = pytest.mark.cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster  # noqa: E402

__all__ = ["cluster"]


def _use_store(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(folder))
    settings.clear_cache()


def _cluster_root(config: xm_slurm.SlurmClusterConfig) -> str:
    async def ask() -> str:
        connections = ClusterConnections()
        try:
            return await connections.state_root(config.ssh)
        finally:
            await connections.aclose()

    return asyncio.run(ask())


def test_two_stores_on_one_account_give_their_experiments_1_different_folders(
    local_cluster: LocalCluster,
    cluster: xm_slurm.SlurmClusterConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _cluster_root(cluster)
    seen = {}
    for name in ("a", "b"):
        _use_store(tmp_path / f"store-{name}", monkeypatch)
        xid, [job_id] = asyncio.run(launch([sh_job(local_cluster, cluster, f"echo from-{name}")], name))
        assert xid == 1
        assert xm_cli("wait", "1").returncode == 0
        store_id = client().get_store_info().store_id
        seen[name] = (store_id, job_id, experiment_dir(root, 1, store_id))
        # The CLI reads this store's experiment 1 from this store's folder.
        assert xm_cli("logs", "latest").stdout.split() == [f"from-{name}"]
    (id_a, job_a, folder_a), (id_b, job_b, folder_b) = seen["a"], seen["b"]
    assert id_a != id_b and folder_a != folder_b
    assert folder_a == f"{root}/store-{id_a}/00000001"
    assert Path(folder_a, f"slurm-{job_a}.out").read_text().split() == ["from-a"]
    assert Path(folder_b, f"slurm-{job_b}.out").read_text().split() == ["from-b"]
    assert not Path(folder_a, f"slurm-{job_b}.out").exists()
    assert not Path(root, "00000001", f"slurm-{job_a}.out").exists()  # not in the old, shared layout


def _store_before_store_ids(path: Path) -> None:
    """A store as the code before revision 0008 left it: schema at 0006 (no store id)."""
    engine = engines.create_engine(engines.sqlite_url(path))
    try:
        engines.upgrade(engine, "0006")
    finally:
        engine.dispose()


def _record_old_experiment(path: Path, ssh_json: str, job_id: str) -> int:
    engine = sa.create_engine(engines.sqlite_url(path))
    try:
        with engine.begin() as conn:
            xid = conn.execute(
                sa.insert(t.experiments).values(
                    title="old layout", created_at=dt.datetime.now(dt.timezone.utc)
                )
            ).inserted_primary_key[0]
            pk = conn.execute(
                sa.insert(t.work_units).values(experiment_id=xid, wid=1, identity="", args="{}")
            ).inserted_primary_key[0]
            conn.execute(
                sa.insert(t.jobs).values(
                    work_unit_id=pk, name="old", slurm_job_id=job_id, slurm_ssh_config=ssh_json
                )
            )
    finally:
        engine.dispose()
    return int(xid)


def _sbatch_into(folder: str, line: str) -> str:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    out = subprocess.run(
        ["sbatch", "--parsable", f"--output={folder}/slurm-%j.out", "--wrap", f"echo {line}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    job_id = out.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while sacct_state(job_id) != "COMPLETED":
        assert time.monotonic() < deadline, f"job {job_id} did not complete"
        time.sleep(0.5)
    return job_id


def test_an_old_layout_experiment_still_finds_its_logs(
    local_cluster: LocalCluster,
    cluster: xm_slurm.SlurmClusterConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "old-store"
    state.mkdir(mode=0o700)
    db = state / "db.sqlite3"
    _store_before_store_ids(db)
    root = _cluster_root(cluster)
    # The experiment id it will get is the next of this new store: 1. Its folder is the old `<root>/<xid>`,
    # which other tests' old experiments 1 may share: the line is unique to this run.
    line = f"old-layout-{os.getpid()}-{time.monotonic_ns()}"
    job_id = _sbatch_into(f"{root}/00000001", line)
    xid = _record_old_experiment(db, cluster.ssh.to_json(), job_id)
    assert xid == 1

    _use_store(state, monkeypatch)
    info = client().get_store_info()  # opening the store migrated it: it has an id now
    assert info.legacy_max_xid == 1 and info.folder_key(1) is None and info.folder_key(2) == info.store_id
    logs = xm_cli("logs", str(xid))
    assert logs.returncode == 0, logs.stderr
    assert line in logs.stdout.split()
    shown = json.loads(xm_cli("show", "1", "--json").stdout)
    assert shown["work_units"][0]["jobs"][0]["state"] == "COMPLETED"

    # A new experiment of the same store goes to the new layout.
    xid2, [new_job] = asyncio.run(launch([sh_job(local_cluster, cluster, "echo new-layout")], "new"))
    assert xid2 == 2 and xm_cli("wait", "2").returncode == 0
    assert Path(experiment_dir(root, 2, info.store_id), f"slurm-{new_job}.out").read_text().split() == [
        "new-layout"
    ]
    assert xm_cli("logs", "2").stdout.split() == ["new-layout"]

    # rm of the old-layout experiment: its folder may hold another store's experiment 1 too, so only its
    # own log goes.
    other = Path(root, "00000001", f"other-store-{os.getpid()}.sh")
    other.write_text("#!/bin/sh\n")
    try:
        removed = xm_cli("rm", "1", "--yes")
        assert removed.returncode == 0, removed.stderr
        assert not Path(root, "00000001", f"slurm-{job_id}.out").exists() and other.exists()
        assert xm_cli("show", "1").returncode == 3
    finally:
        other.unlink()
