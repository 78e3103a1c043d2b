"""End-to-end packaging: real builds (podman), the real registries and the real local cluster.

Reuses the experiment tests' fixtures (a private metadata store per test, the local cluster's config)
and the packaging tests' helpers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("experiment", "packaging"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from experiment_fixtures import cluster, store  # noqa: E402

__all__ = ["cluster", "store"]


@pytest.fixture(autouse=True)
def build_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Podman builds (deterministic cache output), generated Dockerfiles under tmp, no stray login."""
    monkeypatch.setenv("XM_DOCKER_CLIENT", "podman")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    return dict(os.environ)


@pytest.fixture
def unique() -> Iterator[str]:
    """A name for this test's images; their local copies are removed afterwards."""
    name = f"xm-e2e-{uuid.uuid4().hex[:10]}"
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
