"""Layer 3: run commands and move files on a cluster (over SSH, or locally on the login node)."""

from __future__ import annotations

from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    command_name,
    join_command,
)
from xm_slurm.transport.counting import CountingTransport
from xm_slurm.transport.local import LocalTransport
from xm_slurm.transport.ssh import SSHTransport

__all__ = [
    "Command",
    "CommandResult",
    "CountingTransport",
    "FileStat",
    "LocalTransport",
    "SSHTransport",
    "StreamingProcess",
    "Transport",
    "command_name",
    "join_command",
]
