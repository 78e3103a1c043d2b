"""The transport protocol: run commands and move files on a cluster's login node.

Like httpx's transport base, this is the one seam between the scheduler layer and the machine it talks to.
`SSHTransport` (asyncssh) and `LocalTransport` (the library runs on the login node) implement it; the dry run
of `xm-slurm preview` (`xm_slurm.experiment.dry_run`) answers it without a cluster.

A command is an argv (quoted word by word) or a shell line. The scheduler's shell lines are `ShellLine`s,
which say what they do, so that whoever answers commands without a shell (the dry run, a test fake) never
has to read shell text.

Paths are absolute, or relative to the login user's home; a leading `~/` means the home directory.
"""

from __future__ import annotations

import abc
import dataclasses
import shlex
import stat as stat_module
import types
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType

from xm_slurm.errors import RemoteCommandError

Command = str | Sequence[str]


class ShellLine(str):
    """A shell command line that says what it is: transports run it like any string.

    `kind` names what the line does (the scheduler's: "state_root", "sbatch", "sbatch_answer",
    "submission_lookup", "tail", "follow", "limits"); `argv` holds the words of the program it is built
    around (`sbatch --parsable ... <script>`, `tail -n 10 -- <log>`), without the shell around them;
    `files` the other paths it reads or writes, by role (the sbatch wrapper's "out", "err" and "rc" answer
    files). A string made from one (`line.replace(...)`) is a plain `str` again: it says nothing.
    """

    kind: str
    argv: tuple[str, ...]
    files: Mapping[str, str]

    def __new__(
        cls, line: str, *, kind: str, argv: Sequence[str] = (), files: Mapping[str, str] | None = None
    ) -> ShellLine:
        self = super().__new__(cls, line)
        self.kind = kind
        self.argv = tuple(str(word) for word in argv)
        self.files = types.MappingProxyType(dict(files or {}))
        return self

    def __reduce__(self) -> tuple[object, ...]:
        return _shell_line, (str(self), self.kind, self.argv, dict(self.files))


def _shell_line(line: str, kind: str, argv: Sequence[str], files: Mapping[str, str]) -> ShellLine:
    return ShellLine(line, kind=kind, argv=argv, files=files)


def join_command(command: Command) -> str:
    """A shell command line: a string is used as is; an argv is quoted word by word with `shlex.quote`."""
    if isinstance(command, str):
        return command
    return " ".join(shlex.quote(str(word)) for word in command)


def command_name(command: Command) -> str:
    """The program a command runs (`sacct`, `sbatch`, ...), for counting and messages: a `ShellLine`'s
    own program when it names one, else the first word that is not a `VAR=value` prefix."""
    if isinstance(command, ShellLine) and command.argv:
        return command.argv[0].rsplit("/", 1)[-1]
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if len(words) > 2 and words[0] == "umask" and words[1].endswith(";"):
        words = words[2:]  # `umask 077; sbatch ...` (the scheduler's sbatch wrapper) runs sbatch
    for word in words:
        if "=" in word and not word.startswith(("/", "=")):  # skip `VAR=value` prefixes
            continue
        return word.rsplit("/", 1)[-1]
    return ""


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Raise `RemoteCommandError` (command, exit status, stderr) unless the command succeeded."""
        if self.exit_status != 0:
            raise RemoteCommandError(
                f"command {self.command!r} exited with status {self.exit_status}: "
                f"{self.stderr.strip()[-2000:] or '(no stderr)'}",
                command=self.command,
                exit_status=self.exit_status,
                stdout=self.stdout,
                stderr=self.stderr,
            )
        return self


@dataclasses.dataclass(frozen=True)
class FileStat:
    size: int
    mode: int  # full st_mode; `permissions` gives the 0o777 bits
    mtime: float
    uid: int | None = None
    gid: int | None = None

    @property
    def permissions(self) -> int:
        return stat_module.S_IMODE(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat_module.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat_module.S_ISREG(self.mode)


class StreamingProcess(abc.ABC):
    """A long-running command whose stdout is read line by line (e.g. `tail -F`)."""

    @abc.abstractmethod
    def lines(self) -> AsyncIterator[str]:
        """Stdout lines (without the newline) until the command exits."""

    @abc.abstractmethod
    async def close_stdin(self) -> None:
        """Send end-of-file to the command's stdin."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the command (if still running) and release its channel. Idempotent."""

    async def __aenter__(self) -> StreamingProcess:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class FixedLines(StreamingProcess):
    """A "process" whose output is known already (e.g. a dry run's empty log, a fake cluster's log)."""

    def __init__(self, lines: Sequence[str] = ()) -> None:
        self._lines = list(lines)

    async def lines(self) -> AsyncIterator[str]:
        for line in self._lines:
            yield line

    async def close_stdin(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Transport(abc.ABC):
    """Run commands and read/write files on one cluster. Safe to share between concurrent tasks."""

    @abc.abstractmethod
    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        """Run a command to completion.

        `check`: raise `RemoteCommandError` on a non-zero exit. `timeout`: seconds, then `RemoteCommandError`
        with `exit_status=None`. `idempotent`: the command may safely run twice (e.g. `sacct`, never `sbatch`),
        so a transport may retry it after a lost connection.
        """

    @abc.abstractmethod
    async def start(self, command: Command) -> StreamingProcess:
        """Start a command and stream its stdout (for following logs)."""

    @abc.abstractmethod
    async def read_text(self, path: str) -> str: ...

    @abc.abstractmethod
    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        """Write atomically (temporary file + rename) with exactly `mode` permissions."""

    @abc.abstractmethod
    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        """Create a directory (and missing parents); an existing one is fine. The leaf gets exactly `mode`."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileStat:
        """Raise `FileNotFoundError` when the path does not exist."""

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except FileNotFoundError:
            return False
        return True

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
