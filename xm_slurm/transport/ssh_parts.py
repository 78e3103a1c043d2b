"""Pieces of the SSH transport (`transport.ssh`): the internal failure markers, how an asyncssh error reads in a
message, SFTP paths, exit codes, and a streamed remote process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncssh

from xm_slurm.errors import ConnectionLostError, TransportError
from xm_slurm.ssh_config import Endpoint, SlurmSSHConfig
from xm_slurm.transport.base import StreamingProcess

FILE_HINT = (
    "the server refused it; check the path, its permissions and the free space or quota on the cluster"
)
COMMAND_HINT = "the server refused the command's session; its sshd log says why"

# Errors meaning "the connection is gone"; anything else (SFTP errors, timeouts) is about the call itself.
LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError, EOFError)


class NotSent(Exception):
    """The channel never opened: the command did not run, so a retry is always safe."""


class Lost(Exception):
    """A call failed because its connection (`whole`) or only its SFTP session went away."""

    def __init__(self, cause: BaseException, *, whole: bool, sftp: asyncssh.SFTPClient | None = None) -> None:
        super().__init__(str(cause))
        self.whole = whole
        self.sftp = sftp


def real_cause(error: BaseException) -> BaseException:
    """The real asyncssh or socket error behind one of the internal markers above."""
    if isinstance(error, (NotSent, Lost)) and error.__cause__ is not None:
        return error.__cause__
    return error


def reason_of(error: BaseException) -> str:
    """What an error says, with its type, never empty (a bare TimeoutError or EOFError prints as '')."""
    text = str(error.reason if isinstance(error, asyncssh.Error) else error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def sftp_path(path: str) -> str:
    # SFTP resolves relative paths against the login directory, so `~/x` is just `x`.
    if path in ("~", "~/"):
        return "."
    return path[2:] if path.startswith("~/") else path


def returncode_of(result: asyncssh.SSHCompletedProcess) -> int | None:
    if result.exit_status is not None and result.exit_status >= 0:
        return result.exit_status
    if result.exit_signal:
        name = result.exit_signal[0]
        try:
            return 128 + signal.Signals[f"SIG{name}"].value
        except KeyError:
            return 128
    return None


class SSHProcess(StreamingProcess):
    def __init__(
        self, process: asyncssh.SSHClientProcess[str], release: Callable[[], None], *, where: str, what: str
    ) -> None:
        self._process = process
        self._release: Callable[[], None] | None = release
        self._where = where  # host:port and the command, for messages
        self._what = what

    async def lines(self) -> AsyncIterator[str]:
        try:
            while line := await self._process.stdout.readline():  # "" only at end of file
                yield line.rstrip("\n")
        except (asyncssh.Error, OSError, EOFError) as e:
            then = (
                f"{reason_of(e)}. The output stops here (the command ends with its channel); start it again"
            )
            if isinstance(e, LOST):
                raise ConnectionLostError(
                    f"connection to {self._where} lost while reading the output of {self._what}: {then}"
                ) from e
            raise TransportError(f"reading the output of {self._what} on {self._where} failed: {then}") from e

    async def close_stdin(self) -> None:
        with contextlib.suppress(*LOST, OSError):
            self._process.stdin.write_eof()

    async def aclose(self) -> None:
        # Closing the channel makes sshd close the command's stdin; our streaming commands exit on that.
        self._process.close()
        with contextlib.suppress(*LOST, OSError):
            await asyncio.wait_for(self._process.wait_closed(), 10)
        if self._release is not None:
            self._release()
            self._release = None


#: The key a server presents, restricted to some algorithms (or any): only for messages, never trusted.
Probe = Callable[[Sequence[str]], Awaitable["asyncssh.SSHKey | None"]]


def address_of(endpoint: Endpoint) -> str:
    """`host:port` for messages (the port of the ssh config or 22 when the endpoint gives none)."""
    if endpoint.port:
        return f"{endpoint.hostname}:{endpoint.port}"
    return f"{endpoint.hostname} (port 22 unless your ssh config says otherwise)"


def _scan(endpoint: Endpoint) -> str:
    return f"ssh-keyscan -p {endpoint.port or 22} {endpoint.hostname}"


async def pinned_algorithm_message(c: SlurmSSHConfig, endpoint: Endpoint, probe: Probe) -> str | None:
    """Why a connection with a pinned key failed, if the server offers no key of its algorithm."""
    assert c.public_key is not None
    pinned = asyncssh.import_public_key(c.public_key.to_openssh())
    presented = await probe(())
    if presented is None:  # the server does not answer a key exchange at all: not a host-key problem
        return None
    if await probe([a.decode() for a in pinned.sig_algorithms]) is not None:
        return None  # it offers that algorithm: the failure was something else
    return (
        f"the pinned host_public_key's algorithm {c.public_key.algorithm} is not among the host key "
        f"algorithms SSH server {address_of(endpoint)} offered (it presents {presented.get_algorithm()} "
        f"{presented.get_fingerprint()}), so its key cannot match the pin. Check the pinned key: list the "
        f"server's keys with `{_scan(endpoint)}`, confirm the fingerprint with the cluster's admins and pin "
        "that key. Nothing ran on the cluster"
    )


async def host_key_message(
    c: SlurmSSHConfig, endpoint: Endpoint, probe: Probe, error: asyncssh.HostKeyNotVerifiable
) -> str:
    presented = ""
    key = await probe(())
    if key is not None:
        presented = f" The server presented {key.get_algorithm()} {key.get_fingerprint()}."
    scan = _scan(endpoint)
    who = f"{c.user}@{endpoint}" if c.user else str(endpoint)
    not_tried = (
        " The other endpoints were not tried: a wrong key is never a reason to fail over."
        if len(c.endpoints) > 1
        else ""
    )
    if c.public_key is not None:
        return (
            f"SSH host key of {who} does not match the pinned host_public_key "
            f"({c.public_key.algorithm}).{presented} If the server's key really changed, check the "
            f"new fingerprint with the cluster's admins (`{scan}`) and update host_public_key.{not_tried}"
        )
    where = c.known_hosts or "~/.ssh/known_hosts"
    return (
        f"SSH host key of {who} could not be verified against {where} ({error.reason}): the "
        f"host is unknown or its key changed.{presented} Verify the fingerprint, then add it with "
        f"`{scan} >> {where}` (or `ssh {endpoint.hostname}` once), or pin it with "
        f"SlurmSSHConfig(host_public_key=PublicKey(algorithm, key)).{not_tried}"
    )
