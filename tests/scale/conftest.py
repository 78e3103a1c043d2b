"""Fixtures of the scale tests: a private metadata store per test, the local cluster's config, and a
transport factory that counts the commands it runs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_cluster import LocalCluster
from scale_helpers import Counting, make_cluster

import xm_slurm
from xm_slurm.api import settings


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SQLite store (and status cache) per test."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("XM_SLURM_API_BACKEND", raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> xm_slurm.SlurmClusterConfig:
    return make_cluster(local_cluster)


@pytest.fixture
def counting() -> Counting:
    return Counting()
