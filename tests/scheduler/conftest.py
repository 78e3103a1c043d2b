"""Scheduler tests run against the real local cluster through a real SSH transport (shared) or locally."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import AsyncIterator

import pytest
from local_cluster import LocalCluster

from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.transport import LocalTransport, SSHTransport, Transport


@pytest.fixture(scope="session")
async def sched_ssh(local_cluster: LocalCluster) -> AsyncIterator[SSHTransport]:
    config = SlurmSSHConfig(
        host=local_cluster.ssh_host,
        port=local_cluster.ssh_port,
        user=local_cluster.ssh_user,
        client_keys=(local_cluster.ssh_key,),
        known_hosts=local_cluster.known_hosts,
        config_files=(),
    )
    async with SSHTransport(config) as transport:
        yield transport


@pytest.fixture
async def workdir(local_cluster: LocalCluster) -> AsyncIterator[str]:
    """A fresh state directory on the login node (this machine) for one test; removed afterwards."""
    path = f"/tmp/xm-sched-test-{uuid.uuid4().hex[:12]}"
    yield path
    await LocalTransport().run(f"rm -rf {shlex.quote(path)}")


@pytest.fixture(params=["ssh", "local"])
def any_transport(request: pytest.FixtureRequest, sched_ssh: SSHTransport) -> Transport:
    return sched_ssh if request.param == "ssh" else LocalTransport()
