"""`SSHTransport`: one asyncssh connection per cluster, shared by every call and task.

* The connection (and its one SFTP session) opens lazily under a lock, so concurrent first calls share it.
* A semaphore keeps open channels below sshd's `MaxSessions` (10 by default: 1 for SFTP + `max_sessions`
  for commands and streams); extra calls wait their turn instead of failing.
* A lost connection is reopened on the next call. A call that failed because the connection (or only its SFTP
  session) dropped is retried on a new one, `max_retries` times with backoff, only when that is safe: file
  reads, stats, mkdir, the write (a whole file to a fresh temporary name, then renamed over the target, so a
  repeat only writes it again), commands marked `idempotent=True` (sacct, squeue, scancel), and any command
  whose channel never opened. Never `sbatch`.
* The connection goes to the first endpoint of the config that answers (`ssh_connect`: failover on a refused
  or silent endpoint, never on a wrong host key or a refused login). A server that asks for keyboard-interactive
  (a second factor) is logged in to once per machine and session by a session holder (`ssh_session`), whose
  socket this process and the next ones use; prompts are answered by the config's `prompt_handler`, else on
  the terminal, else refused with an error saying what to do (`ssh_auth`).
* Host keys are always verified (see `xm_slurm.ssh_config`). No asyncssh or socket error escapes: each becomes
  an `xm_slurm.errors.TransportError` (`ConnectionLostError`, `HostKeyError`, ...) naming the host, the
  operation and what is safe to do next, with the real error chained as its cause. File operations keep the
  `Transport` contract's `FileNotFoundError` / `PermissionError` (cause chained too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncssh

from xm_slurm.errors import (
    ConnectionLostError,
    RemoteCommandError,
    TransportError,
    ValidationError,
)
from xm_slurm.ssh_config import SlurmSSHConfig
from xm_slurm.transport import ssh_session
from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    join_command,
)
from xm_slurm.transport.ssh_auth import PROMPT_TIMEOUT, SecondFactorWanted, make_answerer
from xm_slurm.transport.ssh_connect import connect
from xm_slurm.transport.ssh_parts import (
    COMMAND_HINT,
    FILE_HINT,
    LOST,
    Lost,
    NotSent,
    SSHProcess,
    address_of,
    real_cause,
    reason_of,
    returncode_of,
    sftp_path,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SSHTransport(Transport):
    """The transport over SSH. `connect_timeout`: seconds one endpoint has to finish the SSH handshake (TCP,
    key exchange, host key), then the next endpoint is tried, or the call fails with a `ConnectionLostError`
    saying so; the login after it gets as long again, plus `prompt_timeout` per keyboard-interactive answer.
    `max_retries`: how many times a safe call is repeated after its connection was lost. `persist`: seconds
    a session holder outlives its last client (None: `XM_SLURM_SSH_PERSIST`, else 600; 0: none, each
    process answers its own prompts)."""

    def __init__(
        self,
        config: SlurmSSHConfig,
        *,
        max_sessions: int = 8,
        connect_timeout: float = 15.0,
        max_retries: int = 3,
        keepalive_interval: float = 30.0,
        prompt_timeout: float = PROMPT_TIMEOUT,
        persist: float | None = None,
    ) -> None:
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, (int, float))
            or not (0 < connect_timeout < float("inf"))
        ):
            raise ValidationError(f"connect_timeout={connect_timeout!r} must be a positive number of seconds")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValidationError(f"max_retries={max_retries!r} must be an integer >= 0")
        self.config = config
        self._prompt_timeout = prompt_timeout
        self._persist = ssh_session.persist_seconds() if persist is None else persist
        self.via_session = False  # the connection goes through a session holder (for tests and logs)
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
        """This machine's session of the cluster if one is held, else a login of our own; a server that
        asks for a second factor gets a session holder (unless `persist` is 0)."""
        if self._persist > 0 and (conn := await ssh_session.attach(self.config)) is not None:
            self.via_session = True
            return conn
        answer = make_answerer(self.config, timeout=self._prompt_timeout)
        try:
            conn = await connect(
                self.config,
                timeout=self._connect_timeout,
                answer=None if self._persist > 0 else answer,
                keepalive=self._keepalive,
                prompt_timeout=self._prompt_timeout,
            )
            self.via_session = False
            return conn
        except SecondFactorWanted as wanted:
            conn = await ssh_session.start(
                self.config,
                answer,
                first=wanted.endpoint,
                connect_timeout=self._connect_timeout,
                prompt_timeout=self._prompt_timeout,
                persist=self._persist,
            )
            self.via_session = True
            return conn

    def _address(self) -> str:
        """Where the connection goes, for messages."""
        if len(self.config.endpoints) == 1:
            return address_of(self.config.endpoints[0])
        return self.config.destination

    async def _sftp_client(self, conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
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

    async def _forget_sftp(self, sftp: asyncssh.SFTPClient | None) -> None:
        async with self._lock:
            if sftp is not None and self._sftp is sftp:
                self._sftp = None
        if sftp is not None:
            sftp.exit()

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]], *, retry_safe: bool) -> T:
        """Run `op`; after a lost connection, reconnect and run it again (bounded, with backoff) when it
        is safe (`retry_safe`, or it never reached the server)."""
        attempt = 0
        while True:
            try:
                conn = await self._connection()
            except ConnectionLostError as e:
                if attempt == 0 or self._closed:
                    raise  # this call never reached the server: `_open` said why
                attempt += 1  # reconnecting after a loss failed: that counts as a try too
                if attempt > self._max_retries:
                    raise ConnectionLostError(self._lost_message(what, e, attempt, safe=True)) from e
                await self._backoff(attempt, e)
                continue
            try:
                return await op()
            except (NotSent, Lost, *LOST) as e:
                if isinstance(e, Lost) and not e.whole:
                    await self._forget_sftp(e.sftp)  # only the SFTP session died: keep the connection
                else:
                    await self._forget(conn)
                attempt += 1
                safe = retry_safe or isinstance(e, NotSent)
                if not safe or attempt > self._max_retries:
                    raise ConnectionLostError(
                        self._lost_message(what, e, attempt, safe=safe)
                    ) from real_cause(e)
                await self._backoff(attempt, e)

    async def _backoff(self, attempt: int, error: BaseException) -> None:
        log.info(
            "connection to %s lost (%s); reconnecting", self.config.destination, reason_of(real_cause(error))
        )
        await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))

    def _lost_message(self, what: str, error: BaseException, attempts: int, *, safe: bool) -> str:
        where = f"connection to {self._address()} lost during {what}"
        if not safe:
            return (
                f"{where}: {reason_of(real_cause(error))} (not retried: it may have run already; check on the "
                "cluster before running it again)"
            )
        return (
            f"{where} ({attempts} attempts): {reason_of(real_cause(error))}. The operation is safe to repeat: "
            "retry it (or relaunch) once the cluster is reachable"
        )

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
                    raise NotSent(str(e)) from e
                except asyncssh.TimeoutError as e:
                    raise RemoteCommandError(
                        f"command {line!r} on {self.config.destination} timed out after {timeout} s",
                        command=line,
                        exit_status=None,
                    ) from e
                except (asyncssh.Error, OSError) as e:
                    raise self._classify(conn, None, f"`{line[:200]}`", e, hint=COMMAND_HINT) from e
            status = returncode_of(result)
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
                raise NotSent(str(e)) from e
            except (asyncssh.Error, OSError) as e:
                self._channels.release()
                raise self._classify(conn, None, f"`{line[:200]}`", e, hint=COMMAND_HINT) from e
            except BaseException:
                self._channels.release()
                raise
            return SSHProcess(process, self._channels.release, where=self._address(), what=f"`{line[:200]}`")

        return await self._retrying(f"`{line[:200]}`", once, retry_safe=False)

    def _classify(
        self,
        conn: asyncssh.SSHClientConnection,
        sftp: asyncssh.SFTPClient | None,
        what: str,
        e: BaseException,
        *,
        hint: str,
    ) -> Exception:
        """An asyncssh or socket error of one call: a lost connection or SFTP session (for `_retrying`),
        else a `TransportError` saying what failed where."""
        if conn.is_closed() or isinstance(e, LOST):
            return Lost(e, whole=True)
        if isinstance(e, (asyncssh.SFTPNoConnection, asyncssh.SFTPConnectionLost)):
            return Lost(e, whole=False, sftp=sftp)
        return TransportError(
            f"{what} on {self._address()} failed: {reason_of(e)}. The connection is up: {hint}"
        )

    # --- files (SFTP) ---

    async def _file_op(self, what: str, op: Callable[[asyncssh.SFTPClient], Awaitable[T]]) -> T:
        async def once() -> T:
            conn = await self._connection()
            sftp: asyncssh.SFTPClient | None = None
            try:
                sftp = await self._sftp_client(conn)
                return await op(sftp)
            except asyncssh.SFTPNoSuchFile as e:
                raise FileNotFoundError(f"{what}: no such file on {self._address()}: {e.reason}") from e
            except asyncssh.SFTPPermissionDenied as e:
                raise PermissionError(f"{what}: permission denied on {self._address()}: {e.reason}") from e
            except asyncssh.ChannelOpenError as e:
                raise NotSent(str(e)) from e
            except (asyncssh.Error, OSError) as e:
                raise self._classify(conn, sftp, what, e, hint=FILE_HINT) from e

        # Every file operation here is idempotent (the write is a whole file, to a temporary name and then
        # renamed), so repeating one after a lost connection is safe.
        return await self._retrying(what, once, retry_safe=True)

    async def read_text(self, path: str) -> str:
        async def op(sftp: asyncssh.SFTPClient) -> str:
            async with sftp.open(sftp_path(path), "r", encoding="utf-8", errors="replace") as f:
                return str(await f.read())

        return await self._file_op(f"read {path}", op)

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        target = sftp_path(path)
        left_behind: list[str] = []  # temporary files of attempts cut before they could remove them

        async def op(sftp: asyncssh.SFTPClient) -> None:
            for stale in left_behind:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sftp.remove(stale), 10)
            left_behind.clear()
            # A fresh name per attempt: the one of a cut attempt may still exist (O_EXCL would refuse it).
            tmp = posixpath.join(
                posixpath.dirname(target), f".{posixpath.basename(target)}.tmp-{secrets.token_hex(6)}"
            )
            flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
            try:
                # Created with `mode` (minus the server's umask), so it is never readable by others.
                async with sftp.open(tmp, flags, asyncssh.SFTPAttrs(permissions=mode), encoding="utf-8") as f:
                    await f.write(data)
                await sftp.chmod(tmp, mode)
                await sftp.posix_rename(tmp, target)
            except BaseException:
                left_behind.append(tmp)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sftp.remove(tmp), 10)
                    left_behind.remove(tmp)
                raise

        await self._file_op(f"write {path}", op)

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        target = sftp_path(path)

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
            a = await sftp.stat(sftp_path(path))
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
