"""Smoke tests of the local cluster itself, through the real stack with plain asyncssh:

ssh (host key verified) -> sftp upload -> sbatch -> slurmd -> `exec podman run --init` -> job log -> sacct,
as root (rootful podman) and as the unprivileged user (rootless podman). They prove that the environment the
library's own cluster tests rely on works, independent of xm_slurm's transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest
from local_cluster import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

POLL_S = 0.2
JOB_TIMEOUT_S = 120.0
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout: float = JOB_TIMEOUT_S) -> None:
    """Polls `check` every POLL_S seconds until it returns True; fails naming `what` after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def connect(
    cluster: LocalCluster, user: str, known_hosts: str | None = None
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    async with asyncssh.connect(
        cluster.ssh_host,
        port=cluster.ssh_port,
        username=user,
        client_keys=[cluster.ssh_key],
        known_hosts=known_hosts or cluster.known_hosts,
        config=None,  # ignore ~/.ssh/config: the test must not depend on the developer's setup
        agent_path=None,
    ) as connection:
        yield connection


@pytest.fixture(params=["root", "nonroot"])
async def conn(
    request: pytest.FixtureRequest, local_cluster: LocalCluster
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    user = local_cluster.ssh_user if request.param == "root" else local_cluster.ssh_user_nonroot
    async with connect(local_cluster, user) as connection:
        yield connection


@pytest.fixture
async def name() -> str:
    """Unique job and container name for one test."""
    return f"xm-smoke-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def remote_dir(conn: asyncssh.SSHClientConnection, name: str) -> AsyncIterator[str]:
    """A fresh directory on the cluster owned by the connected user; removed afterwards, and whatever a
    failed test left running under `name` (job, container) is cleaned up too."""
    result = await conn.run("mktemp -d /tmp/xm-smoke-XXXXXXXX", check=True)
    assert isinstance(result.stdout, str)
    path = result.stdout.strip()
    yield path
    await conn.run(
        f"scancel --name={name}; podman rm -f -t 0 --ignore {name} >/dev/null; rm -rf {shlex.quote(path)}"
    )


async def submit(conn: asyncssh.SSHClientConnection, directory: str, name: str, script: str) -> str:
    path = f"{directory}/{name}.sh"
    async with conn.start_sftp_client() as sftp, sftp.open(path, "w") as remote:
        await remote.write(script)
    result = await conn.run(
        f"sbatch --parsable --chdir={shlex.quote(directory)} {shlex.quote(path)}", check=True
    )
    assert isinstance(result.stdout, str)
    job_id = result.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"unexpected sbatch output {result.stdout!r}"
    return job_id


async def job_state(conn: asyncssh.SSHClientConnection, job_id: str) -> str | None:
    """The job's state word from sacct, or None while sacct does not know the job yet (it lags sbatch)."""
    result = await conn.run(f"sacct -j {job_id} -X -n -P --format=JobID,State", check=True)
    assert isinstance(result.stdout, str)
    for line in result.stdout.splitlines():
        row_id, _, state = line.partition("|")
        if row_id == job_id and state:
            return state.split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return None


async def wait_terminal(conn: asyncssh.SSHClientConnection, job_id: str) -> str:
    final: list[str] = []

    async def done() -> bool:
        state = await job_state(conn, job_id)
        if state in TERMINAL_STATES:
            final.append(state)
            return True
        return False

    await wait_for(f"job {job_id} to finish according to sacct", done)
    return final[0]


async def read_remote(conn: asyncssh.SSHClientConnection, path: str) -> str:
    async with conn.start_sftp_client() as sftp:
        if not await sftp.exists(path):
            return ""
        async with sftp.open(path, "r") as remote:
            data = await remote.read()
    assert isinstance(data, str)
    return data


def job_script(directory: str, name: str, image: str, partition: str, container_cmd: str) -> str:
    # Not `exec podman run --init`: scancel signals every process of the job at once (SIGCONT, then
    # SIGTERM), including the `runc kill` helper podman spawns to forward the SIGCONT; in about half the
    # runs here the container then survived the job. Stopping the container by name from a TERM trap
    # (a process the signal did not hit) removed it every time; --rm makes conmon clean it up.
    return f"""#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --partition={partition}
#SBATCH --output={directory}/{name}-%j.log
#SBATCH --time=10
echo "host-side job=$SLURM_JOB_ID"
podman run --rm -q --init --name {name} -e SLURM_JOB_ID {image} sh -c {shlex.quote(container_cmd)} &
child=$!
trap 'podman stop -t 2 {name} >/dev/null 2>&1; wait $child' TERM INT
wait $child
"""


async def test_containerised_job_completes_and_logs(
    conn: asyncssh.SSHClientConnection, remote_dir: str, name: str, local_cluster: LocalCluster
) -> None:
    token = uuid.uuid4().hex
    script = job_script(
        remote_dir,
        name,
        local_cluster.image,
        local_cluster.partition,
        f'echo "in-container {token} job=$SLURM_JOB_ID"',
    )
    job_id = await submit(conn, remote_dir, name, script)

    assert await wait_terminal(conn, job_id) == "COMPLETED"
    log = await read_remote(conn, f"{remote_dir}/{name}-{job_id}.log")
    assert f"host-side job={job_id}" in log
    assert f"in-container {token} job={job_id}" in log


async def test_scancel_of_running_container_leaves_no_container(
    conn: asyncssh.SSHClientConnection, remote_dir: str, name: str, local_cluster: LocalCluster
) -> None:
    token = uuid.uuid4().hex
    script = job_script(
        remote_dir,
        name,
        local_cluster.image,
        local_cluster.partition,
        f'echo "ready {token}"; exec sleep 600',
    )
    job_id = await submit(conn, remote_dir, name, script)
    log_path = f"{remote_dir}/{name}-{job_id}.log"
    # Rootless containers are only visible to their owner, and the connection is that owner.
    ps_cmd = (
        f"podman ps -a --filter {shlex.quote(f'name=^{name}$')} --format '{{{{.Names}}}} {{{{.Status}}}}'"
    )

    async def container_runs() -> bool:
        if f"ready {token}" not in await read_remote(conn, log_path):
            return False
        result = await conn.run(ps_cmd, check=True)
        return isinstance(result.stdout, str) and result.stdout.startswith(f"{name} Up")

    await wait_for(f"container {name} of job {job_id} to run", container_runs)
    # squeue, not sacct: sacct may still say PENDING for a job that runs (its accounting lags).
    squeue = await conn.run(f"squeue -h -j {job_id} -o %T", check=True)
    assert squeue.stdout == "RUNNING\n"

    await conn.run(f"scancel {job_id}", check=True)

    async def container_gone() -> bool:
        result = await conn.run(ps_cmd, check=True)
        return result.stdout == ""

    await wait_for(f"container {name} to be removed after scancel {job_id}", container_gone)
    assert await wait_terminal(conn, job_id) == "CANCELLED"


async def test_unknown_host_key_is_rejected(local_cluster: LocalCluster, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(local_cluster, local_cluster.ssh_user, known_hosts=str(empty)):
            pass


async def test_wrong_host_key_is_rejected(local_cluster: LocalCluster, tmp_path: Path) -> None:
    # The right host names, but a different key: what a man-in-the-middle would present.
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = tmp_path / "wrong_known_hosts"
    port = local_cluster.ssh_port
    wrong.write_text(f"[{local_cluster.ssh_host}]:{port},[localhost]:{port} {other_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(local_cluster, local_cluster.ssh_user, known_hosts=str(wrong)):
            pass


def test_private_key_is_readable_by_its_owner_only(local_cluster: LocalCluster) -> None:
    mode = stat.S_IMODE(os.stat(local_cluster.ssh_key).st_mode)
    assert mode == 0o600, f"{local_cluster.ssh_key} has mode {oct(mode)}"
