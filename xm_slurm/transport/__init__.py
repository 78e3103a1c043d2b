"""Layer 3: run commands and move files on a cluster (over SSH, or locally on the login node)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    ShellLine,
    StreamingProcess,
    Transport,
    command_name,
    join_command,
)
from xm_slurm.transport.local import LocalTransport

if TYPE_CHECKING:
    from xm_slurm.transport.ssh import SSHTransport


def __getattr__(name: str) -> Any:
    # asyncssh (~0.1 s to import) loads when the first SSH transport is made, not with the package.
    if name == "SSHTransport":
        from xm_slurm.transport.ssh import SSHTransport

        return SSHTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Command",
    "CommandResult",
    "FileStat",
    "LocalTransport",
    "SSHTransport",
    "ShellLine",
    "StreamingProcess",
    "Transport",
    "command_name",
    "join_command",
]
