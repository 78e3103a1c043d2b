"""What only the SSH transport does: auth and host-key errors, key pinning, ssh config, reconnection."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import asyncssh
import pytest
from local_cluster import LocalCluster
from transport_test_helpers import ssh_config_for

from xm_slurm.errors import AuthenticationError, ConnectionLostError, HostKeyError
from xm_slurm.ssh_config import PublicKey
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster


def server_key(cluster: LocalCluster) -> PublicKey:
    line = Path(cluster.known_hosts).read_text().split("\n")[0]
    return PublicKey.from_openssh(line.split(None, 1)[1])


async def test_wrong_client_key_is_authentication_error(local_cluster: LocalCluster, tmp_path: Path) -> None:
    wrong = tmp_path / "id_wrong"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(wrong))
    async with SSHTransport(ssh_config_for(local_cluster, client_keys=(str(wrong),))) as transport:
        with pytest.raises(AuthenticationError) as info:
            await transport.run("true")
    assert "refused authentication" in str(info.value) and str(wrong) in str(info.value)


async def test_unknown_host_key_is_host_key_error(local_cluster: LocalCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    async with SSHTransport(ssh_config_for(local_cluster, known_hosts=str(empty))) as transport:
        with pytest.raises(HostKeyError) as info:
            await transport.run("true")
    message = str(info.value)
    assert local_cluster.ssh_host in message and f"ssh-keyscan -p {local_cluster.ssh_port}" in message
    assert "host_public_key" in message and "SHA256:" in message  # shows what the server presented


async def test_pinned_host_key_accepted_and_changed_key_refused(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")  # the pin alone must be enough
    pinned = ssh_config_for(local_cluster, known_hosts=str(empty), host_public_key=server_key(local_cluster))
    async with SSHTransport(pinned) as transport:
        assert (await transport.run("echo pinned")).stdout == "pinned\n"

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    # Even with a known_hosts that trusts the real key, a different pin is refused.
    changed = ssh_config_for(local_cluster, host_public_key=PublicKey.from_openssh(other))
    async with SSHTransport(changed) as transport:
        with pytest.raises(HostKeyError, match="does not match the pinned host_public_key"):
            await transport.run("true")


async def test_openssh_config_alias(
    local_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host xm-test-alias\n"
        f"  HostName {local_cluster.ssh_host}\n"
        f"  Port {local_cluster.ssh_port}\n"
        f"  User {local_cluster.ssh_user_nonroot}\n"
        f"  IdentityFile {local_cluster.ssh_key}\n"
        f"  UserKnownHostsFile {local_cluster.known_hosts}\n"
    )
    monkeypatch.setenv("XM_SLURM_SSH_CONFIG", str(config))
    from xm_slurm.ssh_config import SlurmSSHConfig

    async with SSHTransport(SlurmSSHConfig(host="xm-test-alias")) as transport:
        assert (await transport.run("id -un")).stdout.strip() == local_cluster.ssh_user_nonroot
    # An explicit user overrides the file.
    async with SSHTransport(SlurmSSHConfig(host="xm-test-alias", user=local_cluster.ssh_user)) as transport:
        assert (await transport.run("id -un")).stdout.strip() == local_cluster.ssh_user


async def test_nonroot_user_files_are_private(local_cluster: LocalCluster) -> None:
    config = ssh_config_for(local_cluster, user=local_cluster.ssh_user_nonroot)
    async with SSHTransport(config) as transport:
        uid = int((await transport.run("id -u")).stdout)
        await transport.mkdir("~/.xm-transport-test/state")
        await transport.write_text("~/.xm-transport-test/state/s.sh", "echo hi\n")
        st = await transport.stat("~/.xm-transport-test/state/s.sh")
        assert (st.uid, st.permissions) == (uid, 0o600)
        assert (await transport.stat("~/.xm-transport-test")).permissions == 0o700
        await transport.run("rm -rf ~/.xm-transport-test")


async def test_reconnects_after_connection_is_closed_underneath(local_cluster: LocalCluster) -> None:
    async with SSHTransport(ssh_config_for(local_cluster)) as transport:
        assert (await transport.run("echo one")).stdout == "one\n"
        assert transport.connects == 1
        # Kill our own sshd session process: the server drops the connection for real.
        with pytest.raises(ConnectionLostError, match="not retried"):
            await transport.run("kill $PPID; sleep 5")  # not idempotent: never silently re-run
        assert (await transport.run("echo two")).stdout == "two\n"  # a new call reconnects
        assert transport.connects == 2

        # An idempotent command in flight when the connection drops is retried transparently.
        killer = asyncio.create_task(transport.run("sleep 0.5; kill $PPID", check=False, idempotent=False))
        slow_read = transport.run("sleep 1; echo survived", idempotent=True)
        assert (await slow_read).stdout == "survived\n"
        with pytest.raises(ConnectionLostError):
            await killer
        assert transport.connects == 3
        assert await transport.exists("/")  # SFTP reopened on the new connection


async def test_unreachable_port_is_connection_error(local_cluster: LocalCluster) -> None:
    async with SSHTransport(ssh_config_for(local_cluster, port=1), max_retries=0) as transport:
        with pytest.raises(ConnectionLostError, match="could not connect"):
            await transport.run("true")


async def test_black_holed_port_times_out_with_a_message(local_cluster: LocalCluster) -> None:
    # A socket that listens (the kernel completes the TCP handshake) but never speaks: an SSH server that
    # hangs, or a firewall that accepts and drops.
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        port = hole.getsockname()[1]
        config = ssh_config_for(local_cluster, port=port)
        async with SSHTransport(config, connect_timeout=1.5, max_retries=0) as transport:
            started = time.monotonic()
            with pytest.raises(ConnectionLostError) as info:
                await transport.run("true")
            elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "timed out after 1.5 s" in message, message
    assert "sshd" in message and f"ssh -p {port} 127.0.0.1" in message, message  # what to check
    assert isinstance(info.value.__cause__, TimeoutError)
    assert elapsed < 10, f"the connect timeout bounds the wait; it took {elapsed:.1f} s"


async def test_pinned_rsa_key_when_server_offers_ed25519_is_host_key_error(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    # The local sshd has only an ed25519 host key; pin an RSA key generated here.
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    pinned = ssh_config_for(local_cluster, host_public_key=PublicKey.from_openssh(rsa))
    async with SSHTransport(pinned, max_retries=0) as transport:
        with pytest.raises(HostKeyError) as info:
            await transport.run("true")
    message = str(info.value)
    host, port = local_cluster.ssh_host, local_cluster.ssh_port
    assert f"{host}:{port}" in message and "ssh-rsa" in message, message
    assert "ssh-rsa is not among the host key algorithms" in message, message
    assert "presents ssh-ed25519 SHA256:" in message, message
    assert f"ssh-keyscan -p {port} {host}" in message, message
    assert info.value.__cause__ is not None  # what the connection really said (a reset) is kept
