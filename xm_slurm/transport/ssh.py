"""`SSHTransport`: one asyncssh connection per cluster, shared by every call and task.

* The connection (and its one SFTP session) opens lazily under a lock, so concurrent first calls share it.
* A semaphore keeps open channels below sshd's `MaxSessions` (10 by default: 1 for SFTP + `max_sessions`
  for commands and streams); extra calls wait their turn instead of failing.
* A lost connection is reopened on the next call. A call that failed because the connection dropped is retried
  (bounded, with backoff) only when that is safe: file reads/stats, mkdir, the atomic write, commands marked
  `idempotent=True` (sacct, squeue, scancel), and any command whose channel never opened. Never `sbatch`.
* Host keys are always verified (see `xm_slurm.ssh_config`); asyncssh errors become `xm_slurm.errors` types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncssh

from xm_slurm.errors import AuthenticationError, ConnectionLostError, HostKeyError, RemoteCommandError
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    join_command,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors meaning "the connection is gone"; anything else (SFTP errors, timeouts) is about the call itself.
_LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError, EOFError)


class _NotSent(Exception):
    """The channel never opened: the command did not run, so a retry is always safe."""


def _sftp_path(path: str) -> str:
    # SFTP resolves relative paths against the login directory, so `~/x` is just `x`.
    if path in ("~", "~/"):
        return "."
    return path[2:] if path.startswith("~/") else path


def _returncode(result: asyncssh.SSHCompletedProcess) -> int | None:
    if result.exit_status is not None and result.exit_status >= 0:
        return result.exit_status
    if result.exit_signal:
        name = result.exit_signal[0]
        try:
            return 128 + signal.Signals[f"SIG{name}"].value
        except KeyError:
            return 128
    return None


class _SSHProcess(StreamingProcess):
    def __init__(self, process: asyncssh.SSHClientProcess[str], release: Callable[[], None]) -> None:
        self._process = process
        self._release: Callable[[], None] | None = release

    async def lines(self) -> AsyncIterator[str]:
        while line := await self._process.stdout.readline():  # "" only at end of file
            yield line.rstrip("\n")

    async def close_stdin(self) -> None:
        with contextlib.suppress(*_LOST, OSError):
            self._process.stdin.write_eof()

    async def aclose(self) -> None:
        # Closing the channel makes sshd close the command's stdin; our streaming commands exit on that.
        self._process.close()
        with contextlib.suppress(*_LOST, OSError):
            await asyncio.wait_for(self._process.wait_closed(), 10)
        if self._release is not None:
            self._release()
            self._release = None


class SSHTransport(Transport):
    def __init__(
        self,
        config: SlurmSSHConfig,
        *,
        max_sessions: int = 8,
        connect_timeout: float = 30.0,
        max_retries: int = 3,
        keepalive_interval: float = 30.0,
    ) -> None:
        self.config = config
        self._max_retries = max_retries
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive_interval
        self._lock = asyncio.Lock()
        self._channels = asyncio.Semaphore(max_sessions)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._closed = False
        self.connects = 0  # how many connections were opened (1 unless one was lost): for tests and logs

    def __repr__(self) -> str:
        return f"SSHTransport({self.config.destination!r})"

    # --- connection ---

    def _options(self) -> dict[str, Any]:
        c = self.config
        options: dict[str, Any] = {
            "config": [p for p in c.openssh_config_files() if os.path.isfile(p)],
            "connect_timeout": self._connect_timeout,
            "keepalive_interval": self._keepalive,
            "keepalive_count_max": 3,
            "errors": "replace",
        }
        if c.port is not None:
            options["port"] = c.port
        if c.user is not None:
            options["username"] = c.user
        if c.client_keys is not None:
            options["client_keys"] = [os.path.expanduser(k) for k in c.client_keys]
        if c.host_public_key is not None:
            # Trust exactly this key for this connection: a different server key is refused.
            key = asyncssh.import_public_key(c.host_public_key.to_openssh())
            options["known_hosts"] = ([key], [], [])
        elif c.known_hosts is not None:
            options["known_hosts"] = os.path.expanduser(c.known_hosts)
        # Otherwise asyncssh uses UserKnownHostsFile or ~/.ssh/known_hosts. It is never None: that would
        # switch verification off.
        return options

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._closed:
            raise ConnectionLostError(f"the transport to {self.config.destination} was closed")
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            self._conn, self._sftp = None, None
            self._conn = await self._open()
            self.connects += 1
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        c = self.config
        try:
            return await asyncssh.connect(c.host, **self._options())
        except asyncssh.HostKeyNotVerifiable as e:
            raise HostKeyError(await self._host_key_message(e)) from None
        except asyncssh.PermissionDenied as e:
            keys = ", ".join(c.client_keys) if c.client_keys else "your default keys / ssh-agent"
            raise AuthenticationError(
                f"SSH server {c.destination} refused authentication ({e.reason}); tried {keys}. Check "
                "`user`, the IdentityFile in your ssh config or `client_keys`, and that the public key is in "
                "the server's authorized_keys"
            ) from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            raise ConnectionLostError(
                f"could not connect to {c.destination}: {e or type(e).__name__}"
            ) from None

    async def _host_key_message(self, error: asyncssh.HostKeyNotVerifiable) -> str:
        c = self.config
        port = c.port or 22
        presented = ""
        with contextlib.suppress(Exception):  # only to enrich the message; never trusted
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(c.host, c.port or (), config=self._options()["config"]), 5
            )
            if key is not None:
                presented = f" The server presented {key.get_algorithm()} {key.get_fingerprint()}."
        scan = f"ssh-keyscan -p {port} {c.host}"
        if c.host_public_key is not None:
            return (
                f"SSH host key of {c.destination} does not match the pinned host_public_key "
                f"({c.host_public_key.algorithm}).{presented} If the server's key really changed, check the "
                f"new fingerprint with the cluster's admins (`{scan}`) and update host_public_key."
            )
        where = c.known_hosts or "~/.ssh/known_hosts"
        return (
            f"SSH host key of {c.destination} could not be verified against {where} ({error.reason}): the "
            f"host is unknown or its key changed.{presented} Verify the fingerprint, then add it with "
            f"`{scan} >> {where}` (or `ssh {c.host}` once), or pin it with "
            "SlurmSSHConfig(host_public_key=PublicKey(algorithm, key))."
        )

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        if self._sftp is not None and self._sftp_conn is conn:
            return self._sftp
        async with self._lock:
            if self._sftp is None or self._sftp_conn is not conn:
                self._sftp = await conn.start_sftp_client()
                self._sftp_conn = conn
            return self._sftp

    async def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        async with self._lock:
            if self._conn is conn:
                self._conn, self._sftp = None, None
        conn.abort()

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]], *, retry_safe: bool) -> T:
        attempt = 0
        while True:
            conn = await self._connection()
            try:
                return await op()
            except (_NotSent, *_LOST) as e:
                await self._forget(conn)
                attempt += 1
                safe = retry_safe or isinstance(e, _NotSent)
                if not safe or attempt > self._max_retries:
                    raise ConnectionLostError(
                        f"connection to {self.config.destination} lost during {what}"
                        + ("" if safe else " (not retried: it may have run already)")
                        + f": {e or type(e).__name__}"
                    ) from None
                log.info("connection to %s lost (%s); reconnecting", self.config.destination, e)
                await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))

    # --- commands ---

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        line = join_command(command)

        async def once() -> CommandResult:
            conn = await self._connection()
            async with self._channels:
                try:
                    result = await conn.run(line, input=input, check=False, timeout=timeout)
                except asyncssh.ChannelOpenError as e:
                    raise _NotSent(str(e)) from None
                except asyncssh.TimeoutError:
                    raise RemoteCommandError(
                        f"command {line!r} on {self.config.destination} timed out after {timeout} s",
                        command=line,
                        exit_status=None,
                    ) from None
            status = _returncode(result)
            if status is None:  # the channel closed without an exit status: the connection went away
                raise asyncssh.ConnectionLost(f"no exit status for {line!r}")
            return CommandResult(line, status, str(result.stdout or ""), str(result.stderr or ""))

        result = await self._retrying(f"`{line[:200]}`", once, retry_safe=idempotent)
        return result.check() if check else result

    async def start(self, command: Command) -> StreamingProcess:
        line = join_command(command)

        async def once() -> StreamingProcess:
            conn = await self._connection()
            await self._channels.acquire()
            try:
                process = await conn.create_process(line)
            except asyncssh.ChannelOpenError as e:
                self._channels.release()
                raise _NotSent(str(e)) from None
            except BaseException:
                self._channels.release()
                raise
            return _SSHProcess(process, self._channels.release)

        return await self._retrying(f"`{line[:200]}`", once, retry_safe=False)

    # --- files (SFTP) ---

    async def _file_op(self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        async def once() -> T:
            sftp = await self._sftp_client()
            try:
                return await op(sftp)
            except asyncssh.SFTPNoSuchFile as e:
                raise FileNotFoundError(
                    f"{what}: no such file on {self.config.destination}: {e.reason}"
                ) from None
            except asyncssh.SFTPPermissionDenied as e:
                raise PermissionError(
                    f"{what}: permission denied on {self.config.destination}: {e.reason}"
                ) from None

        # Every file operation here is idempotent (the write is temp + rename), so retrying is safe.
        return await self._retrying(what, once, retry_safe=True)

    async def read_text(self, path: str) -> str:
        async def op(sftp: asyncssh.SFTPClient) -> str:
            async with sftp.open(_sftp_path(path), "r", encoding="utf-8", errors="replace") as f:
                return str(await f.read())

        return await self._file_op(f"read {path}", op)

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        target = _sftp_path(path)
        tmp = posixpath.join(
            posixpath.dirname(target), f".{posixpath.basename(target)}.tmp-{secrets.token_hex(6)}"
        )

        async def op(sftp: asyncssh.SFTPClient) -> None:
            flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            try:
                # Created with `mode` (minus the server's umask), so it is never readable by others.
                async with sftp.open(tmp, flags, asyncssh.SFTPAttrs(permissions=mode), encoding="utf-8") as f:
                    await f.write(data)
                await sftp.chmod(tmp, mode)
                await sftp.posix_rename(tmp, target)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(tmp)
                raise

        await self._file_op(f"write {path}", op)

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        target = _sftp_path(path)

        async def op(sftp: asyncssh.SFTPClient) -> None:
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            if parents:
                await sftp.makedirs(target, attrs, exist_ok=True)
            elif not await sftp.isdir(target):
                await sftp.mkdir(target, attrs)
            await sftp.chmod(target, mode)

        await self._file_op(f"mkdir {path}", op)

    async def stat(self, path: str) -> FileStat:
        async def op(sftp: asyncssh.SFTPClient) -> FileStat:
            a = await sftp.stat(_sftp_path(path))
            return FileStat(a.size or 0, a.permissions or 0, float(a.mtime or 0), a.uid, a.gid)

        return await self._file_op(f"stat {path}", op)

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
