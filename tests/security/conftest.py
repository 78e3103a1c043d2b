"""Security tests: host keys, TLS, secrets, file modes, REST tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reliability"))

from xm_slurm.api import settings


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    for var in ("XM_SLURM_API_BACKEND", "XM_SLURM_EXPERIMENT_ID", "XM_SLURM_WORK_UNIT_ID"):
        monkeypatch.delenv(var, raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()
