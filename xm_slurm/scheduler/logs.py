"""Reading job logs on the cluster: the last lines, or a live follow over one channel."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Awaitable, Sequence

from xm_slurm.errors import ValidationError
from xm_slurm.transport.base import ShellLine, Transport


def _check(path: str, num_lines: int) -> None:
    if not isinstance(path, str) or not path or "\n" in path:
        raise ValidationError(f"log path {path!r} must be a non-empty path")
    if isinstance(num_lines, bool) or not isinstance(num_lines, int) or num_lines < 0:
        raise ValidationError(f"num_lines={num_lines!r} must be a non-negative integer")


async def tail(transport: Transport, path: str, num_lines: int = 100) -> list[str]:
    """The last `num_lines` lines of a log; `[]` if it does not exist yet (the job has not started)."""
    _check(path, num_lines)
    q = shlex.quote(path)
    line = f"test -e {q} || exit 0; tail -n {num_lines} -- {q}"
    argv = ["tail", "-n", str(num_lines), "--", path]
    result = await transport.run(ShellLine(line, kind="tail", argv=argv), idempotent=True)
    return result.stdout.splitlines()


def follow_command(path: str, num_lines: int) -> ShellLine:
    # `tail -F` keeps following across rotation and waits for a log that does not exist yet. It exits, after
    # one last read, once the shell ($$) is gone; the shell ends when our stdin reaches end-of-file (we close
    # it, or the channel closes). So nothing keeps running on the login node after we stop.
    line = (
        f"tail -n {num_lines} -F -s 0.5 --pid=$$ -- {shlex.quote(path)} 2>/dev/null & cat >/dev/null; exit 0"
    )
    return ShellLine(line, kind="follow", argv=["tail", "-n", str(num_lines), "-F", "--", path])


async def follow(
    transport: Transport, path: str, *, num_lines: int = 10, until: Awaitable[object] | None = None
) -> AsyncIterator[str]:
    """Yield the last `num_lines` lines, then new lines as they are written.

    Ends when `until` completes (e.g. `watcher.wait([job_id])`; the lines written before that are still
    delivered) or when the caller stops iterating. Uses one channel for the whole follow.
    """
    _check(path, num_lines)
    process = await transport.start(follow_command(path, num_lines))
    stopper: asyncio.Future[object] | None = None
    closer: asyncio.Task[None] | None = None
    owned = until is not None and not isinstance(until, asyncio.Future)
    try:
        if until is not None:
            stopper = asyncio.ensure_future(until)

            def _stop(_: object) -> None:
                nonlocal closer
                closer = asyncio.ensure_future(process.close_stdin())

            stopper.add_done_callback(_stop)
        async for line in process.lines():
            yield line
    finally:
        if stopper is not None and owned and not stopper.done():
            stopper.cancel()  # we wrapped the caller's coroutine into this task: do not leak it
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer
        await process.aclose()


async def interleave(streams: Sequence[AsyncIterator[str]]) -> AsyncIterator[str]:
    """Yield the lines of several streams as they arrive; ends when all have ended.

    A stream's error is raised once every stream has ended; stopping early closes them all.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump(stream: AsyncIterator[str]) -> None:
        try:
            async for line in stream:
                await queue.put(line)
        finally:
            await queue.put(None)

    pumps = [asyncio.ensure_future(pump(stream)) for stream in streams]
    try:
        remaining = len(pumps)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            else:
                yield item
        for p in pumps:
            await p  # surface a pump's error
    finally:
        for p in pumps:
            p.cancel()
            with contextlib.suppress(BaseException):
                await p
