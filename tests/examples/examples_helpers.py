"""Run an example's launch.py as its header says (in a fresh process, with .local-cluster/env.sh's variables),
with a private metadata store and shared folder per test, and read what it recorded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_cluster import LocalCluster, parse_env_file

from xm_slurm import api
from xm_slurm.api import settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


class ExampleEnv:
    def __init__(self, env: dict[str, str], state: Path, shared: Path) -> None:
        self.env = env
        self.state = state
        self.shared = shared

    def command(self, example: str, *args: str) -> list[str]:
        return [sys.executable, str(EXAMPLES / example / "launch.py"), *args]

    def run(self, example: str, *args: str, timeout: float = 300) -> str:
        """Run the example to its end; returns its output (stdout + stderr) and fails on a non-zero exit."""
        result = subprocess.run(
            self.command(example, *args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{example} exited with {result.returncode}:\n{output}"
        return output

    def popen(self, example: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(example, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=REPO,
        )

    def stored(self, xid: int) -> api.Experiment:
        """The experiment as the example's metadata store holds it."""
        return api.client().get_experiment(xid)


def experiment_id(output: str) -> int:
    match = re.search(r"^experiment (\d+)", output, re.MULTILINE)
    assert match, f"no 'experiment N' line in:\n{output}"
    return int(match.group(1))


@pytest.fixture
def example_env(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ExampleEnv]:
    del local_cluster  # up, and its env.sh written
    state = tmp_path / "state"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    tmp_path.chmod(0o755)  # the jobs' containers mount folders under it
    env = {**os.environ, **parse_env_file(REPO / ".local-cluster" / "env.sh")}
    env.update({"XM_SLURM_STATE_DIR": str(state), "XM_EXAMPLES_SHARED_DIR": str(shared)})
    for name in (
        "XM_SLURM_API_BACKEND",
        "XM_SLURM_EXPERIMENT_ID",
        "XM_SLURM_WORK_UNIT_ID",
        "CONTAINERS_CONF",
    ):
        env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    # This process reads the same store as the example wrote.
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(state))
    settings.clear_cache()
    yield ExampleEnv(env, state, shared)
    settings.clear_cache()
