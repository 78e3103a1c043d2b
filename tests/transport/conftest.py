"""Transports over the real local cluster: one shared SSH connection for the session, and a local one."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import AsyncIterator

import pytest
from local_cluster import LocalCluster
from transport_test_helpers import ssh_config_for

from xm_slurm.transport import LocalTransport, SSHTransport, Transport


@pytest.fixture(scope="session")
async def ssh_transport(local_cluster: LocalCluster) -> AsyncIterator[SSHTransport]:
    async with SSHTransport(ssh_config_for(local_cluster)) as transport:
        yield transport


@pytest.fixture(scope="session")
async def local_transport() -> AsyncIterator[LocalTransport]:
    async with LocalTransport() as transport:
        yield transport


@pytest.fixture(params=["ssh", "local"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """The same contract, tested over both implementations (the local one runs on the 'login node')."""
    if request.param == "ssh":
        request.getfixturevalue("local_cluster")
    fixture: Transport = request.getfixturevalue(f"{request.param}_transport")
    return fixture


@pytest.fixture
async def remote_dir(local_transport: LocalTransport) -> AsyncIterator[str]:
    """A fresh directory on the login node (this machine), removed afterwards."""
    path = f"/tmp/xm-transport-test-{uuid.uuid4().hex[:12]}"
    yield path
    await local_transport.run(f"rm -rf {shlex.quote(path)}")
