"""`CountingTransport`: wraps a real transport and counts the commands it runs, by program name.

For tests and benchmarks ("one sacct per poll"): it changes nothing about what runs.
"""

from __future__ import annotations

import collections

from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    command_name,
    join_command,
)


class CountingTransport(Transport):
    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()
        self.commands: list[str] = []

    def __repr__(self) -> str:
        return f"CountingTransport({self.inner!r})"

    def _count(self, command: Command) -> None:
        self.counts[command_name(command)] += 1
        self.commands.append(join_command(command))

    def reset(self) -> None:
        self.counts.clear()
        self.commands.clear()

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> CommandResult:
        self._count(command)
        return await self.inner.run(command, input=input, check=check, timeout=timeout, idempotent=idempotent)

    async def start(self, command: Command) -> StreamingProcess:
        self._count(command)
        return await self.inner.start(command)

    async def read_text(self, path: str) -> str:
        self.counts["<read_text>"] += 1
        return await self.inner.read_text(path)

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        self.counts["<write_text>"] += 1
        await self.inner.write_text(path, data, mode=mode)

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        self.counts["<mkdir>"] += 1
        await self.inner.mkdir(path, mode=mode, parents=parents)

    async def stat(self, path: str) -> FileStat:
        self.counts["<stat>"] += 1
        return await self.inner.stat(path)

    async def exists(self, path: str) -> bool:
        return await self.inner.exists(path)

    async def close(self) -> None:
        await self.inner.close()
