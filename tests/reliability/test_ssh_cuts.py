"""SSH connections cut for real (a TCP proxy between the client and the local sshd) while files move over SFTP.

A cut during a write, a read or a launch's script upload is retried on a new connection (the write is a
temporary file + rename, so repeating it is safe); a cut that persists, or one during a streamed command,
ends in a `ConnectionLostError` that names the host and the operation, chains the real cause, and never lets
an asyncssh or socket type escape.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from counting_transport import CountingTransport
from local_cluster import LocalCluster
from reliability_helpers import executor, jobs_named
from tcp_cut_proxy import CutProxy
from xmanager import xm

import xm_slurm
from xm_slurm.errors import ConnectionLostError
from xm_slurm.transport import SSHTransport

pytestmark = pytest.mark.cluster

BIG = 4_000_000  # characters: large enough that SFTP sends it in many packets


def proxied_ssh_config(lc: LocalCluster, proxy: CutProxy) -> xm_slurm.SlurmSSHConfig:
    """The local cluster's sshd reached through `proxy`; its host key pinned (known_hosts names port 2222)."""
    line = Path(lc.known_hosts).read_text().split("\n")[0]
    return xm_slurm.SlurmSSHConfig(
        host="127.0.0.1",
        port=proxy.port,
        user=lc.ssh_user,
        client_keys=(lc.ssh_key,),
        host_public_key=xm_slurm.PublicKey.from_openssh(line.split(None, 1)[1]),
        config_files=(),
    )


def big_text() -> str:
    # Random (so a file from an earlier run cannot pass for this one) and not only ASCII.
    return os.urandom(BIG // 2).hex() + "é✓\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
async def test_cut_during_large_write_and_read_is_retried(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory, reset: bool
) -> None:
    folder = tmp_path_factory.mktemp("cut-write")
    path = str(folder / "big.txt")
    data = big_text()
    with CutProxy(local_cluster.ssh_host, local_cluster.ssh_port, reset=reset) as proxy:
        async with SSHTransport(proxied_ssh_config(local_cluster, proxy)) as transport:
            await transport.run("true")  # connected: the cut below hits the write, not the handshake
            proxy.cut_after(BIG // 4)
            await transport.write_text(path, data, mode=0o640)
            assert proxy.cuts == 1, "the write did not go through the cut"
            assert transport.connects == 2, "the write should have reconnected once"
            # The file on the cluster (this machine) is complete, identical, with the mode asked for, and
            # no temporary file of the cut attempt is left beside it.
            written = await asyncio.to_thread(Path(path).read_bytes)
            assert digest(written) == digest(data.encode())
            assert (os.stat(path).st_mode & 0o777) == 0o640
            assert sorted(os.listdir(folder)) == ["big.txt"]

            proxy.cut_after(300)  # a read sends few, small requests: cut after its open
            assert digest((await transport.read_text(path)).encode()) == digest(data.encode())
            assert (proxy.cuts, transport.connects) == (2, 3)
            proxy.cut_after(1)
            assert (await transport.stat(path)).size == len(data.encode())
            assert (proxy.cuts, transport.connects) == (3, 4)


async def test_cut_that_persists_gives_a_transport_error_naming_host_path_and_operation(
    local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("cut-persists")
    path = str(folder / "big.txt")
    with CutProxy(local_cluster.ssh_host, local_cluster.ssh_port) as proxy:
        config = proxied_ssh_config(local_cluster, proxy)
        async with SSHTransport(config, max_retries=2) as transport:
            await transport.run("true")
            proxy.cut_after(BIG // 4, times=3)  # every attempt (1 + 2 retries) is cut
            with pytest.raises(ConnectionLostError) as info:
                await transport.write_text(path, big_text())
            assert proxy.cuts == 3 and transport.connects == 3
    error = info.value
    message = str(error)
    assert f"127.0.0.1:{proxy.port}" in message and path in message and "write" in message
    assert "3 attempts" in message and "safe to repeat" in message
    # The real cause is chained; it is what asyncssh or the socket said, and never escapes itself.
    assert isinstance(error.__cause__, (asyncssh.Error, OSError)), repr(error.__cause__)
    assert not isinstance(error, asyncssh.Error)
    # A cut write never leaves a partial file under the real name (only the temporary of the last try).
    assert "big.txt" not in os.listdir(folder)


class UploadCutter(CountingTransport):
    """The real SSH transport through a `CutProxy`: the first sbatch script's upload is cut halfway through
    its bytes (after the SFTP open request, inside the write)."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig, proxy: CutProxy) -> None:
        super().__init__(SSHTransport(config))
        self.ssh: SSHTransport = self.inner  # type: ignore[assignment]
        self.proxy = proxy
        self.cut_during_upload = 0

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        if not path.endswith(".sh") or self.proxy.cuts:
            return await super().write_text(path, data, mode=mode)
        self.proxy.cut_after(256 + len(data.encode()) // 2)
        await super().write_text(path, data, mode=mode)
        self.cut_during_upload = self.proxy.cuts


def sacct_jobs_named(name: str, at_least: int) -> list[str]:
    """Job ids sacct holds for `name`, once it holds `at_least` (slurmdbd records a submission shortly after)."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "--starttime=now-1hour", "--name", name, "-o", "JobID"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(out) >= at_least or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


async def test_cut_during_launch_script_upload_is_retried_and_submits_once(
    local_cluster: LocalCluster,
) -> None:
    name = f"rel-cutup-{uuid.uuid4().hex[:10]}"
    transports: list[UploadCutter] = []
    with CutProxy(local_cluster.ssh_host, local_cluster.ssh_port) as proxy:
        cluster = xm_slurm.SlurmClusterConfig(
            name="local-proxied",
            ssh=proxied_ssh_config(local_cluster, proxy),
            runtime=xm_slurm.ContainerRuntime.PODMAN,
            partition=local_cluster.partition,
        )

        def factory(config: xm_slurm.SlurmSSHConfig) -> UploadCutter:
            transports.append(UploadCutter(config, proxy))
            return transports[-1]

        image = xm_slurm.RemoteImage(image=local_cluster.image, entrypoint=["true"])
        job = xm.Job(executable=image, executor=executor(cluster), name=name)
        try:
            async with xm_slurm.create_experiment(name, transport_factory=factory) as experiment:
                unit: Any = await experiment.add(job)
        finally:
            for jid in jobs_named(name)[1:]:  # a duplicate must not run on
                await asyncio.to_thread(subprocess.run, ["scancel", jid], check=False)
        [transport] = transports
        assert transport.cut_during_upload == 1, "the cut did not happen during the script upload"
        assert transport.ssh.connects == 2, "the upload should have reconnected once"
        assert transport.counts["sbatch"] == 1
    [launched] = unit.slurm_jobs
    assert jobs_named(name) == [str(launched.job_id)], "exactly one job with this name in squeue"
    assert sacct_jobs_named(name, 1) == [str(launched.job_id)], "exactly one job with this name in sacct"


async def test_cut_while_streaming_output_is_a_connection_lost_error(local_cluster: LocalCluster) -> None:
    with CutProxy(local_cluster.ssh_host, local_cluster.ssh_port) as proxy:
        async with SSHTransport(proxied_ssh_config(local_cluster, proxy)) as transport:
            lines: list[str] = []
            process = await transport.start("for i in 1 2 3 4 5 6 7 8 9; do echo $i; sleep 0.3; done")
            with pytest.raises(ConnectionLostError) as info:
                async for line in process.lines():
                    lines.append(line)
                    if line == "2":
                        proxy.cut_now()
            await process.aclose()
            assert (await transport.run("echo again")).stdout == "again\n"  # the next call reconnects
    assert lines == ["1", "2"]
    message = str(info.value)
    assert f"127.0.0.1:{proxy.port}" in message and "for i in" in message and "start it again" in message
    assert isinstance(info.value.__cause__, (asyncssh.Error, OSError))
