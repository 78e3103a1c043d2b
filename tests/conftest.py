"""Session-wide test fixtures: the local Slurm cluster. Areas add their own conftest.py in their folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_cluster import LocalCluster, ensure_local_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def local_cluster() -> LocalCluster:
    """The running local cluster; brought up on first use. Fails (never skips) if bring-up fails."""
    return ensure_local_cluster(REPO_ROOT)


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
