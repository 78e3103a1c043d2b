"""`CountingTransport`: test instrumentation that wraps a transport and counts the commands it runs.

For tests and benchmarks ("one sacct per poll", "one sbatch per sweep"): it changes nothing about what
runs. Commands are counted by program (`xm_slurm.transport.command_name`); file operations as
`<read_text>`, `<write_text>`, `<mkdir>` and `<stat>`. Subclasses override `run` to inject faults.

Importable from every test folder (tests/conftest.py puts tests/fakes on sys.path); not part of the library.
"""

from __future__ import annotations

import collections

from xm_slurm.transport import (
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
        # `inner` is the attribute name the library's per-account caches look through
        # (scheduler.local_state.transport_key), so a wrapped transport shares the caches of its account.
        self.inner = inner
        self.counts: collections.Counter[str] = collections.Counter()
        self.commands: list[str] = []

    def __repr__(self) -> str:
        return f"CountingTransport({self.inner!r})"

    def _count(self, command: Command) -> None:
        self.counts[command_name(command)] += 1
        self.commands.append(join_command(command))

    def count(self, program: str) -> int:
        return self.counts[program]

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
