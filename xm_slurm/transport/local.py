"""`LocalTransport`: the library runs on the login node itself (asyncio subprocesses + local files)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from xm_slurm.errors import RemoteCommandError
from xm_slurm.transport.base import (
    Command,
    CommandResult,
    FileStat,
    StreamingProcess,
    Transport,
    join_command,
)


def _local_path(path: str) -> str:
    return os.path.expanduser(path) if path.startswith("~") else os.path.join(os.path.expanduser("~"), path)


class _LocalProcess(StreamingProcess):
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    async def lines(self) -> AsyncIterator[str]:
        assert self._process.stdout is not None
        async for raw in self._process.stdout:
            yield raw.decode("utf-8", errors="replace").rstrip("\n")

    async def close_stdin(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.close()

    async def aclose(self) -> None:
        await self.close_stdin()
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


class LocalTransport(Transport):
    """Commands run through `/bin/sh -c` (like sshd runs them through the login shell); files are local."""

    def __init__(self, *, max_concurrency: int = 32) -> None:
        self._limit = asyncio.Semaphore(max_concurrency)
        self._home = os.path.expanduser("~")  # commands start in the home directory, as over ssh

    def __repr__(self) -> str:
        return "LocalTransport()"

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
        async with self._limit:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                line,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._home,
                start_new_session=True,  # a timeout kills the whole group, not only the shell
            )
            try:
                out, err = await asyncio.wait_for(
                    process.communicate(None if input is None else input.encode()), timeout
                )
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                await process.wait()
                raise RemoteCommandError(
                    f"command {line!r} timed out after {timeout} s", command=line, exit_status=None
                ) from None
        # A signal death is reported like a shell does it: 128 + signal number.
        code = process.returncode if process.returncode is not None else -1
        status = code if code >= 0 else 128 - code
        result = CommandResult(line, status, out.decode(errors="replace"), err.decode(errors="replace"))
        return result.check() if check else result

    async def start(self, command: Command) -> StreamingProcess:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            join_command(command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=self._home,
        )
        return _LocalProcess(process)

    async def read_text(self, path: str) -> str:
        return await asyncio.to_thread(self._read, _local_path(path))

    @staticmethod
    def _read(path: str) -> str:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def write_text(self, path: str, data: str, *, mode: int = 0o600) -> None:
        await asyncio.to_thread(self._write, _local_path(path), data, mode)

    @staticmethod
    def _write(path: str, data: str, mode: int) -> None:
        tmp = f"{path}.tmp-{secrets.token_hex(6)}"
        # O_EXCL + mode at creation: the content is never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.chmod(tmp, mode)  # the umask may have removed bits we asked for
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def mkdir(self, path: str, *, mode: int = 0o700, parents: bool = True) -> None:
        await asyncio.to_thread(self._mkdir, _local_path(path), mode, parents)

    @staticmethod
    def _mkdir(path: str, mode: int, parents: bool) -> None:
        # os.makedirs gives created parents the default mode; we want them as private as the leaf.
        missing = []
        current = os.path.abspath(path)
        while parents and not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing or [path]):
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise
                if directory != path:
                    continue  # created concurrently by someone else: leave its mode alone
            os.chmod(directory, mode)

    async def stat(self, path: str) -> FileStat:
        st = await asyncio.to_thread(os.stat, _local_path(path))
        return FileStat(st.st_size, st.st_mode, st.st_mtime, st.st_uid, st.st_gid)

    async def close(self) -> None:
        return None
