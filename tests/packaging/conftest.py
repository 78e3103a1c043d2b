"""Fixtures for packaging tests: a builder over real podman whose commands are recorded, unique image names."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging_helpers import RecordingRunner

from xm_slurm.packaging.builder import ImageBuilder
from xm_slurm.packaging.client import PodmanClient
from xm_slurm.packaging.progress import ProgressReporter


@pytest.fixture
def unique() -> Iterator[str]:
    """A name for this test's images; the local copies of those images are removed afterwards."""
    name = f"xm-test-{uuid.uuid4().hex[:12]}"
    yield name
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ours = [ref for ref in listed.stdout.split() if f"/{name}/" in ref]
    if ours:
        subprocess.run(["podman", "rmi", "--force", *ours], capture_output=True, check=False)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Generated Dockerfiles and logs go under tmp_path; no stray auth file is read."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    return dict(os.environ)


@pytest.fixture
def recorder() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def progress_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def builder(
    isolated_env: dict[str, str], recorder: RecordingRunner, progress_stream: io.StringIO, tmp_path: Path
) -> ImageBuilder:
    podman = shutil.which("podman")
    assert podman is not None, "podman is part of the local cluster set-up"
    return ImageBuilder(
        PodmanClient(podman, runner=recorder, env=isolated_env),
        log_dir=tmp_path / "logs",
        reporter=ProgressReporter(progress_stream, live=False),
    )
