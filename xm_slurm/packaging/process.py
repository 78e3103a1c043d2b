"""Run one local command as an asyncio subprocess, keeping its log.

Output (stdout and stderr merged, in order) goes line by line to a log file and to a bounded
in-memory tail, so a failure can show its last lines without holding a whole build log in
memory. A cancelled run kills its process. `ProcessRunner` is the seam tests wrap to see every
argv we spawn (the real runner stays underneath).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from xm_slurm.errors import PackagingError

TAIL_LINES = 60


@dataclasses.dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    tail: tuple[str, ...]  # the last lines of output
    log_path: Path | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return "\n".join(self.tail)


class ProcessRunner(Protocol):
    async def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> ProcessResult: ...


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """Stop a process group politely, then firmly."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except asyncio.TimeoutError:
            continue


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run `argv` (no shell) to completion; never raises for a non-zero exit, only when it cannot start."""
    argv = tuple(argv)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            # Its own process group, so cancelling also stops the children it starts.
            start_new_session=True,
        )
    except FileNotFoundError:
        raise PackagingError(f"cannot run {argv[0]!r}: not found on PATH") from None
    log = log_path.open("wb") if log_path is not None else None
    try:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            if log is not None:
                log.write(raw)
                log.flush()
            line = raw.decode(errors="replace").rstrip("\r\n")
            # Progress bars redraw with \r; keep what is visible last.
            line = line.rsplit("\r", 1)[-1]
            tail.append(line)
            if on_line is not None:
                on_line(line)
        returncode = await proc.wait()
    except BaseException:
        await asyncio.shield(_terminate(proc))
        raise
    finally:
        if log is not None:
            log.close()
    return ProcessResult(argv=argv, returncode=returncode, tail=tuple(tail), log_path=log_path)
