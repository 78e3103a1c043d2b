"""`xm-slurm rm`: store rows and the cluster folder (logs kept with --keep-logs), a question on a terminal,
nothing removed without one unless --yes, refused while jobs run; `rm --orphans` finds this store's folders
no experiment names and leaves other stores' alone. Against the local cluster and a temp SQLite store."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from cli_helpers import launch, sh_job, xm_cli
from local_cluster import LocalCluster
from pty_helpers import run_in_pty

import xm_slurm
from xm_slurm.api import client
from xm_slurm.cli import exit_codes
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.paths import experiment_dir

pytestmark = pytest.mark.cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiment"))
from experiment_fixtures import cluster  # noqa: E402

__all__ = ["cluster"]


def _folder(config: xm_slurm.SlurmClusterConfig, xid: int) -> Path:
    async def ask() -> str:
        connections = ClusterConnections()
        try:
            return await connections.state_root(config.ssh)
        finally:
            await connections.aclose()

    root = asyncio.run(ask())
    return Path(experiment_dir(root, xid, client().get_store_info().folder_key(xid)))


def _ended_experiment(lc: LocalCluster, config: xm_slurm.SlurmClusterConfig, title: str) -> tuple[int, Path]:
    xid, _ = asyncio.run(launch([sh_job(lc, config, "echo a"), sh_job(lc, config, "echo b")], title))
    assert xm_cli("wait", str(xid)).returncode == 0
    folder = _folder(config, xid)
    assert len(list(folder.glob("slurm-*.out"))) == 2
    assert [p for p in folder.iterdir() if not p.name.startswith("slurm-")]  # the scripts
    return xid, folder


def test_rm_removes_rows_and_folder_keeps_logs_asks_and_refuses_without_a_terminal(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    xid, folder = _ended_experiment(local_cluster, cluster, "rm keep logs")

    piped = xm_cli("rm", str(xid))  # no terminal, no --yes: nothing removed
    assert piped.returncode == exit_codes.USAGE and "pass --yes" in piped.stderr
    code, screen = run_in_pty(["rm", "latest"], columns=120, answer="n")
    assert f"Remove experiment {xid}" in screen and str(folder) in screen and code == 1, screen
    assert xm_cli("show", str(xid)).returncode == 0 and folder.is_dir()

    code, screen = run_in_pty(["rm", str(xid), "--keep-logs"], columns=120, answer="y")
    assert code == 0 and "logs kept" in screen, screen
    assert xm_cli("show", str(xid)).returncode == exit_codes.NOT_FOUND
    assert sorted(p.name.startswith("slurm-") for p in folder.iterdir()) == [True, True]  # only the logs

    xid2, folder2 = _ended_experiment(local_cluster, cluster, "rm all")
    done = xm_cli("rm", str(xid2), "--yes")
    assert done.returncode == 0, done.stderr
    assert not folder2.exists() and xm_cli("show", str(xid2)).returncode == exit_codes.NOT_FOUND


def test_rm_refuses_an_experiment_with_running_jobs(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    xid, _ = asyncio.run(launch([sh_job(local_cluster, cluster, "sleep 300")], "rm running"))
    try:
        refused = xm_cli("rm", str(xid), "--yes")
        assert refused.returncode == exit_codes.FAILURE and "cancel them first" in refused.stderr
        assert xm_cli("show", str(xid)).returncode == 0 and _folder(cluster, xid).is_dir()
    finally:
        assert xm_cli("cancel", str(xid), "--yes").returncode == 0


def test_rm_orphans_removes_only_this_stores_unnamed_folders(
    local_cluster: LocalCluster, cluster: xm_slurm.SlurmClusterConfig
) -> None:
    _, kept_folder = _ended_experiment(local_cluster, cluster, "still named")
    gone, orphan = _ended_experiment(local_cluster, cluster, "rows deleted by hand")
    client().delete_experiment(gone)  # the rows go, the folder stays: an orphan
    other_store = orphan.parent.parent / "store-0000000000aa" / orphan.name
    other_store.mkdir(parents=True, mode=0o700, exist_ok=True)  # another store's folder with the same xid

    listed = xm_cli("rm", "--orphans")  # no terminal: listed, not removed
    assert listed.returncode == exit_codes.USAGE
    assert f"orphan: {orphan} on" in listed.stdout and str(kept_folder) not in listed.stdout
    assert orphan.is_dir()

    removed = xm_cli("rm", "--orphans", "--yes")
    assert removed.returncode == 0 and "removed 1 orphaned folder(s)" in removed.stdout, removed.stderr
    assert not orphan.exists() and kept_folder.is_dir() and other_store.is_dir()
    assert xm_cli("rm", "--orphans").stdout.startswith("no orphaned folders")
    os.rmdir(other_store)
