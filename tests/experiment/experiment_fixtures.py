"""Experiment-test helpers (a module name unique across the test folders, safe to import from tests)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from xmanager import xm

import xm_slurm
from xm_slurm.api import settings
from xm_slurm.transport import SSHTransport, Transport

REPO = Path(__file__).resolve().parents[2]

# The odd-value corpus of the rendering tests (imported from its file, not copied).
_spec = importlib.util.spec_from_file_location(
    "rendering_test_helpers", REPO / "tests/rendering/render_helpers.py"
)
assert _spec is not None and _spec.loader is not None
_rendering_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rendering_helpers)
ODD_VALUES: list[str] = _rendering_helpers.ODD_VALUES

# Prints one JSON line: argv, the work unit id and every ODD*/XM_SLURM_* env var (ASCII-escaped: one line).
DUMP = (
    "import json, os, sys; "
    "env = {k: v for k, v in os.environ.items() if k.startswith(('ODD', 'XM_SLURM_', 'SLURM_STEP_NODELIST')) and k != 'XM_SLURM_PAYLOAD'}; "
    "print('XMDUMP ' + json.dumps({'argv': sys.argv[1:], 'env': env}))"
)


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SQLite store per test (the remote state folder stays the cluster's default)."""
    monkeypatch.setenv("XM_SLURM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("XM_SLURM_API_BACKEND", raising=False)
    monkeypatch.delenv("XM_SLURM_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("XM_SLURM_WORK_UNIT_ID", raising=False)
    settings.clear_cache()
    yield tmp_path / "state"
    settings.clear_cache()


def ssh_config(lc: LocalCluster) -> xm_slurm.SlurmSSHConfig:
    return xm_slurm.SlurmSSHConfig(
        host=lc.ssh_host,
        port=lc.ssh_port,
        user=lc.ssh_user,
        client_keys=(lc.ssh_key,),
        known_hosts=lc.known_hosts,
        config_files=(),
    )


def make_cluster(lc: LocalCluster, name: str = "local") -> xm_slurm.SlurmClusterConfig:
    return xm_slurm.SlurmClusterConfig(
        name=name, ssh=ssh_config(lc), runtime=xm_slurm.ContainerRuntime.PODMAN, partition=lc.partition
    )


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> xm_slurm.SlurmClusterConfig:
    return make_cluster(local_cluster)


def executor(cluster: xm_slurm.SlurmClusterConfig, **kw: Any) -> xm_slurm.Slurm:
    return xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5), **kw
    )


def python_job(
    lc: LocalCluster, cluster: xm_slurm.SlurmClusterConfig, code: str = DUMP, **job_kw: Any
) -> xm.Job:
    image = xm_slurm.RemoteImage(image=lc.python_image, entrypoint=["python3", "-c", code])
    return xm.Job(executable=image, executor=job_kw.pop("executor", None) or executor(cluster), **job_kw)


@pytest.fixture
def python_executor(cluster: xm_slurm.SlurmClusterConfig) -> xm_slurm.Slurm:
    return executor(cluster)


class Counting:
    """A transport factory whose transports count the commands they run."""

    def __init__(self) -> None:
        self.transports: list[CountingTransport] = []

    def __call__(self, config: xm_slurm.SlurmSSHConfig) -> Transport:
        transport = CountingTransport(SSHTransport(config))
        self.transports.append(transport)
        return transport

    def count(self, program: str) -> int:
        return sum(t.counts[program] for t in self.transports)


@pytest.fixture
def counting() -> Counting:
    return Counting()


async def dumps(wu: Any) -> list[dict[str, Any]]:
    """The XMDUMP records a work unit's jobs printed."""
    return [
        json.loads(line.split("XMDUMP ", 1)[1]) async for line in wu.logs(num_lines=1000) if "XMDUMP " in line
    ]


def run_script(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Python launch script in a fresh interpreter (a new process, as a user would)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


def cluster_literal(lc: LocalCluster) -> str:
    """Python source building the same cluster config, for launch scripts run in subprocesses."""
    return (
        "xm_slurm.SlurmClusterConfig(name='local', runtime=xm_slurm.ContainerRuntime.PODMAN, "
        f"partition={lc.partition!r}, ssh=xm_slurm.SlurmSSHConfig(host={lc.ssh_host!r}, port={lc.ssh_port}, "
        f"user={lc.ssh_user!r}, client_keys=({lc.ssh_key!r},), known_hosts={lc.known_hosts!r}, config_files=()))"
    )


def quote_all(values: Sequence[str]) -> str:
    return " ".join(shlex.quote(v) for v in values)


def gate() -> str:
    """A held job to depend on: whatever depends on it stays pending (and visible) until `release`."""
    out = subprocess.run(
        ["sbatch", "--parsable", "--hold", "--output=/dev/null", "--time=1", "--wrap", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split(";")[0]


def release(job_id: str) -> None:
    scontrol("release", job_id)
