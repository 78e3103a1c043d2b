"""Session-wide test fixtures: the local Slurm cluster. Areas add their own conftest.py in their folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from local_cluster import LocalCluster, ensure_local_cluster
from local_postgres import LocalPostgres, ensure_local_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
# Test instrumentation (CountingTransport, FakeSlurm), importable from every test folder.
sys.path.insert(0, str(REPO_ROOT / "tests" / "fakes"))


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> LocalCluster:
    """The running local cluster; brought up on first use. Fails (never skips) if bring-up fails."""
    cluster = ensure_local_cluster(REPO_ROOT)
    _readers_ssh_config(cluster, tmp_path_factory.mktemp("ssh-config"))
    return cluster


@pytest.fixture(scope="session")
def local_postgres() -> LocalPostgres:
    """The tests' PostgreSQL server (scripts/local-postgres), installed and started on first use."""
    return ensure_local_postgres()


def _readers_ssh_config(cluster: LocalCluster, folder: Path) -> None:
    """A stored experiment says where its cluster is, never how to log in (docs/security.md): whoever
    reads one (get_experiment, `xm-slurm show`) takes keys and known_hosts from their own OpenSSH config.
    This one is the tests' "own machine". `Host <ip>*` is a pattern, so `xm-slurm doctor` does not take
    the cluster's address for an ssh alias."""
    if os.environ.get("XM_SLURM_SSH_CONFIG"):
        return
    path = folder / "ssh_config"
    path.write_text(
        f"Host {cluster.ssh_host}*\n"
        f"    IdentityFile {cluster.ssh_key}\n"
        f"    UserKnownHostsFile {cluster.known_hosts}\n"
    )
    os.environ["XM_SLURM_SSH_CONFIG"] = str(path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the cluster is a cluster test, so `-m "not cluster"` deselects it even if its
    # author forgot the marker.
    for item in items:
        if (
            "local_cluster" in getattr(item, "fixturenames", ())
            and item.get_closest_marker("cluster") is None
        ):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True)
def _cluster_marker_brings_up_cluster(request: pytest.FixtureRequest) -> None:
    # And the other way round: a test marked `cluster` gets the cluster up even if it does not ask for it
    # (e.g. it only reads .local-cluster/env.sh through a helper).
    if request.node.get_closest_marker("cluster") is not None:
        request.getfixturevalue("local_cluster")
