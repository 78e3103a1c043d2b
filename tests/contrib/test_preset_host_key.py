"""A preset's pinned host key is what the transport checks: the site record is pointed at the local cluster's
sshd and goes through the same factory (`build`) and the same SSH transport a launch uses.

With the sshd's real key pinned it connects; with the site's own key (or any other) it is refused, even
though nothing else (known_hosts is an empty file) could vouch for the server.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import asyncssh
import pytest
from local_cluster import LocalCluster

from xm_slurm.config import Endpoint, PublicKey, SlurmClusterConfig
from xm_slurm.contrib.clusters.factory import build
from xm_slurm.contrib.clusters.sites import SITES
from xm_slurm.errors import HostKeyError
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster


def _server_key(cluster: LocalCluster) -> PublicKey:
    """The sshd's real host key, from the known_hosts file the local cluster's set-up wrote."""
    line = Path(cluster.known_hosts).read_text().splitlines()[0]
    return PublicKey.from_openssh(line.split(None, 1)[1])


def _preset_at_local_sshd(
    local: LocalCluster, tmp_path: Path, name: str, key: PublicKey | None
) -> SlurmClusterConfig:
    """Site `name`'s record with its endpoints moved to the local sshd (and `key` pinned, if given), built by
    the presets' factory. Only the login's local details are added: the test key, no OpenSSH config files,
    and an empty known_hosts so that the pin alone decides."""
    site = dataclasses.replace(SITES[name], endpoints=(Endpoint(local.ssh_host, local.ssh_port),))
    if key is not None:
        site = dataclasses.replace(site, host_public_key=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a retired site's warning is not what this tests
        cluster = build(site, local.ssh_user)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = dataclasses.replace(
        cluster.ssh, client_keys=(local.ssh_key,), config_files=(), known_hosts=str(empty)
    )
    return dataclasses.replace(cluster, ssh=ssh)


@pytest.mark.parametrize("name", ["narval", "mila", "tamia"])
async def test_the_pinned_key_is_the_one_checked(
    local_cluster: LocalCluster, tmp_path: Path, name: str
) -> None:
    real = _server_key(local_cluster)
    cluster = _preset_at_local_sshd(local_cluster, tmp_path, name, real)
    assert cluster.ssh.host_public_key == real  # the factory carried the record's key to the SSH config
    async with SSHTransport(cluster.ssh) as transport:
        assert (await transport.run("echo pinned")).stdout.strip() == "pinned"


@pytest.mark.parametrize("name", ["narval", "mila", "beluga"])
async def test_the_sites_own_key_is_refused_by_another_server(
    local_cluster: LocalCluster, tmp_path: Path, name: str
) -> None:
    # The preset's real key (narval's, Mila's, ...) does not match the local sshd: refused, not trusted.
    cluster = _preset_at_local_sshd(local_cluster, tmp_path, name, None)
    assert cluster.ssh.host_public_key == SITES[name].host_public_key is not None
    transport = SSHTransport(cluster.ssh)
    try:
        with pytest.raises(HostKeyError, match="does not match the pinned host_public_key"):
            await transport.run("true")
    finally:
        await transport.close()


async def test_a_wrong_key_of_the_servers_own_algorithm_is_refused(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    real = _server_key(local_cluster)
    other = asyncssh.generate_private_key(real.algorithm).convert_to_public()
    algorithm, data = other.export_public_key("openssh").decode().split()[:2]
    cluster = _preset_at_local_sshd(local_cluster, tmp_path, "rorqual", PublicKey(algorithm, data))
    transport = SSHTransport(cluster.ssh)
    try:
        with pytest.raises(HostKeyError, match="does not match the pinned host_public_key"):
            await transport.run("true")
    finally:
        await transport.close()
