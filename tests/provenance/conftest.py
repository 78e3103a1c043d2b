"""Fixtures of the provenance tests: a real git repository in tmp, and the experiment tests' store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("experiment", "api", "packaging_e2e", "packaging"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from experiment_fixtures import cluster, store  # noqa: E402

from xm_slurm.experiment import provenance_git  # noqa: E402

__all__ = ["cluster", "store"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at `root` with `files` committed on branch main."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.org")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture(autouse=True)
def _forget_packaged() -> Iterator[None]:
    provenance_git.forget()
    yield
    provenance_git.forget()
