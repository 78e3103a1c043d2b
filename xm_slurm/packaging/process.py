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


def _descendants(pid: int) -> list[int]:
    """All processes below `pid`, from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                # The command name (field 2) may hold spaces and parens: split after its last ')'.
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _in_namespaces(namespaces: set[str]) -> list[int]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return [int(e) for e in entries if e.isdigit() and _pid_namespace(e) in namespaces]


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """Stop the tool as Ctrl-C would, then kill whatever it leaves behind.

    `podman build` exits on SIGINT but leaves the process of a running `RUN` step alive (it is
    reparented to init). So the processes below it, and the container PID namespaces they run
    in, are noted first, and whatever still lives there afterwards is killed.
    """
    below = _descendants(proc.pid)
    ours = _pid_namespace(os.getpid())
    namespaces = {ns for ns in map(_pid_namespace, below) if ns is not None and ns != ours}
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), 15.0)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    for pid in {*below, *_in_namespaces(namespaces)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


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
