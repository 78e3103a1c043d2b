"""Fixtures of the CLI tests: a private metadata store per test (the CLI subprocesses inherit it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from xm_slurm.api import settings


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """XM_SLURM_STATE_DIR in tmp_path, for this process and every `xm-slurm` subprocess of the test."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    for name in (
        "XM_SLURM_API_BACKEND",
        "XM_SLURM_EXPERIMENT_ID",
        "XM_SLURM_WORK_UNIT_ID",
        "XM_SLURM_DRY_RUN",
    ):
        monkeypatch.delenv(name, raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()
