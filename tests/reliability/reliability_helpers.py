"""Fault injection for the reliability tests: real processes, real signals (module name unique across tests)."""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

# Launch scripts in subprocesses import this module with only its own folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from counting_transport import CountingTransport
from local_cluster import LocalCluster

import xm_slurm
from xm_slurm.transport import SSHTransport
from xm_slurm.transport.base import Command, CommandResult, command_name, join_command

REPO = Path(__file__).resolve().parents[2]
TOKEN_RE = re.compile(r"xms-[0-9a-f]{24}")


def ssh_config(lc: LocalCluster) -> xm_slurm.SlurmSSHConfig:
    return xm_slurm.SlurmSSHConfig(
        host=lc.ssh_host,
        port=lc.ssh_port,
        user=lc.ssh_user,
        client_keys=(lc.ssh_key,),
        known_hosts=lc.known_hosts,
        config_files=(),
    )


def cluster_config(lc: LocalCluster, name: str = "local") -> xm_slurm.SlurmClusterConfig:
    return xm_slurm.SlurmClusterConfig(
        name=name, ssh=ssh_config(lc), runtime=xm_slurm.ContainerRuntime.PODMAN, partition=lc.partition
    )


def executor(cluster: xm_slurm.SlurmClusterConfig) -> xm_slurm.Slurm:
    return xm_slurm.Slurm(
        requirements=xm_slurm.JobRequirements(CPU=1, cluster=cluster), time=dt.timedelta(minutes=5)
    )


# --- finding processes through /proc (never by name) --------------------------------------------------


def _socket_inodes(local_port: int, remote_port: int) -> set[str]:
    """Inodes of the TCP sockets whose local port is `local_port` and peer port `remote_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                ):
                    inodes.add(inode)
    return inodes


def pids_holding(inodes: set[str]) -> set[int]:
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    pids.add(int(entry))
                    break
        except OSError:
            continue
    return pids


def sshd_pids_of(conn: asyncssh.SSHClientConnection, server_port: int) -> set[int]:
    """The server-side sshd processes of OUR connection: those holding the socket whose peer is our port."""
    local_port = conn.get_extra_info("sockname")[1]
    pids = pids_holding(_socket_inodes(server_port, local_port)) - {os.getpid()}
    assert pids, f"no sshd process holds the server end of our connection (client port {local_port})"
    for pid in pids:
        exe = os.readlink(f"/proc/{pid}/exe")
        assert exe.endswith("/sshd"), f"pid {pid} holding our connection runs {exe}, not sshd"
    return pids


def processes_with(text: str, program: str) -> list[int]:
    """Pids whose argv[0] ends with `program` and whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace").endswith(program) and text.encode() in b" ".join(argv):
            found.append(int(entry))
    return found


def comment_jobs(token: str) -> list[str]:
    """Every job (any state slurmctld still holds) whose comment carries `token`."""
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i|%k"], capture_output=True, text=True, check=True
    ).stdout
    return [row.split("|")[0] for row in out.splitlines() if token in row]


def jobs_named(name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "--name", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


class Inotify:
    """inotify(7) through ctypes: wait for a file to be created in a folder, with no polling."""

    IN_CREATE = 0x100
    IN_MOVED_TO = 0x80

    def __init__(self, folder: str, *, moved: bool = False) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_CLOEXEC)
        assert self.fd >= 0, f"inotify_init1 failed: errno {ctypes.get_errno()}"
        mask = self.IN_CREATE | (self.IN_MOVED_TO if moved else 0)
        wd = self._libc.inotify_add_watch(self.fd, folder.encode(), mask)
        assert wd >= 0, f"inotify_add_watch({folder}) failed: errno {ctypes.get_errno()}"

    def wait_for(self, name: str, timeout: float) -> bool:
        return self.wait_for_match(lambda created: created == name, timeout)

    def wait_for_match(self, match: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                return False
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                created = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if match(created):
                    return True
        return False

    def close(self) -> None:
        os.close(self.fd)


class ConnectionKiller(CountingTransport):
    """The real SSH transport; during the first `sbatch`, it SIGKILLs the server-side sshd processes of this
    transport's connection at the moment the remote shell opens sbatch's answer file (seen with inotify: the
    server is this machine), so the connection surely dies between sbatch and its answer.

    With `block_answer_file`, a directory is put where the answer file would go, so the answer cannot be
    recorded either and submit has to find the job by its token."""

    def __init__(self, config: xm_slurm.SlurmSSHConfig, *, block_answer_file: bool = False) -> None:
        super().__init__(SSHTransport(config))
        self.ssh: SSHTransport = self.inner  # type: ignore[assignment]
        self.block = block_answer_file
        self.kills = 0
        self.tokens: list[str] = []

    async def run(self, command: Command, **kw: Any) -> CommandResult:
        line = join_command(command)
        if command_name(command) != "sbatch":
            return await super().run(command, **kw)
        token = TOKEN_RE.search(line)
        assert token is not None, f"sbatch without a submission token: {line}"
        self.tokens.append(token.group())
        if self.kills:
            return await super().run(command, **kw)
        out = re.search(r">(\S+)\.sbatch-out", line)
        assert out is not None, f"sbatch's answer is not recorded in a file: {line}"
        folder, name = os.path.split(out.group(1) + ".sbatch-out")
        if self.block:
            os.mkdir(out.group(1) + ".sbatch-rc.tmp")
        conn = self.ssh._conn
        assert conn is not None, "the launch should have opened the connection before sbatch"
        sshd = sshd_pids_of(conn, self.ssh.config.port or 22)
        watch = Inotify(folder)

        def kill_when_created() -> bool:
            # In this thread, not the event loop: the kill must not wait for the loop to wake up.
            if not watch.wait_for(name, 30):
                return False
            for pid in sshd:
                os.kill(pid, signal.SIGKILL)
            return True

        try:
            task = asyncio.ensure_future(super().run(command, **kw))
            killed = await asyncio.to_thread(kill_when_created)
        finally:
            watch.close()
        assert killed, f"{name} never appeared in {folder}"
        self.kills += 1
        return await task


# --- a REST server of our own, restartable in a few milliseconds ------------------------------------------

_WARM_SERVER = """
import sys
import uvicorn
from xm_slurm.api.sql import SqlClient
from xm_slurm.api.server.app import create_app
app = create_app(SqlClient.open(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # imported and ready: bind only when told, so a restart takes milliseconds
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestServer:
    """`xm_slurm.api.server` in subprocesses: one serving, one warm spare that binds when the first dies."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.restarts = 0
        self.current = self._spawn()
        self._go(self.current)
        self.spare: subprocess.Popen[str] | None = self._spawn()

    def _spawn(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WARM_SERVER, self.db_url, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def _go(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while True:  # the port accepts connections once uvicorn has bound it
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert proc.poll() is None, "the REST server exited"
                assert time.monotonic() < deadline, "the REST server did not start listening"
                time.sleep(0.01)

    def kill_and_restart(self) -> None:
        """SIGKILL the serving process (requests in flight are lost), then let the spare bind the port; it
        returns at once (the spare is still binding), so the client's next request may find nothing."""
        assert self.spare is not None, "one restart per server"
        self.current.kill()
        self.current.wait()
        self.current, self.spare = self.spare, None
        assert self.current.stdin is not None
        self.current.stdin.write("go\n")
        self.current.stdin.flush()
        self.restarts += 1

    def close(self) -> None:
        for proc in (self.current, self.spare):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.kill()
            proc.wait()
