"""A changed or unknown SSH host key is refused with a clear message; nothing is trusted on first use."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import asyncssh
import pytest
from local_cluster import LocalCluster
from reliability_helpers import ssh_config

import xm_slurm
from xm_slurm.errors import HostKeyError
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster


def _other_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


async def _refused(config: xm_slurm.SlurmSSHConfig) -> str:
    transport = SSHTransport(config)
    try:
        with pytest.raises(HostKeyError) as raised:
            await transport.run("true")
        assert transport.connects == 0
        return str(raised.value)
    finally:
        await transport.close()


async def test_changed_host_key_in_known_hosts_is_refused(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    key = _other_key().export_public_key("openssh").decode().strip()
    known.write_text(f"[{local_cluster.ssh_host}]:{local_cluster.ssh_port} {key}\n")
    config = dataclasses.replace(ssh_config(local_cluster), known_hosts=str(known))
    message = await _refused(config)
    assert "could not be verified" in message and str(known) in message and "ssh-keyscan" in message, message
    assert (await asyncio.to_thread(known.read_text)).count("\n") == 1, (
        "the new key must not be added to known_hosts"
    )


async def test_unknown_host_is_refused_not_trusted_on_first_use(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    config = dataclasses.replace(ssh_config(local_cluster), known_hosts=str(known))
    message = await _refused(config)
    assert "unknown or its key changed" in message, message
    assert known.read_text() == ""


async def test_pinned_key_mismatch_is_refused_and_the_right_pin_works(local_cluster: LocalCluster) -> None:
    alg, data = _other_key().export_public_key("openssh").decode().split()[:2]
    wrong = dataclasses.replace(
        ssh_config(local_cluster), known_hosts=None, host_public_key=xm_slurm.PublicKey(alg, data)
    )
    message = await _refused(wrong)
    assert "does not match the pinned host_public_key" in message, message
    line = (await asyncio.to_thread(Path(local_cluster.known_hosts).read_text)).split()
    right = dataclasses.replace(
        ssh_config(local_cluster), known_hosts=None, host_public_key=xm_slurm.PublicKey(line[1], line[2])
    )
    transport = SSHTransport(right)
    try:
        assert (await transport.run("echo ok")).stdout.strip() == "ok"
    finally:
        await transport.close()
