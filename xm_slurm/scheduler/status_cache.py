"""The status answers of one user's processes on one machine, shared through a file per cluster account.

`JobWatcher` (this process's one status source) asks this file before the cluster in each of its rounds, so
processes watching the same cluster (a launch script and `xm-slurm wait`, ten launch scripts) cost about the
status commands of one: benchmarks/status_sharing.py measured 18 for a launch script and `xm-slurm wait`
side by side against 40 without the file, in the same wall time. The file lives in the local state folder
(`paths.local_state_dir()`; folder 0700, files 0600):

    status-cache/<key hash>.json   {"time", "commands", "sacct_failure", "covered": [job ids],
                                    "interest": {job id: time}, "sizes": {base id: array size}, "rows": [...]}
    status-cache/<key hash>.lock   flock: one process at a time refreshes

A round first reads the file: if the answer is younger than the caller's `max_age` and covers every job it
asks about, it is used and nothing runs on the cluster. Otherwise the caller takes the lock, reads again
(another process may just have refreshed), and else runs ONE status round (`status_query.query_rows`: one
squeue, one sacct for what squeue forgot) for its own jobs plus every job other processes asked about in the
last `interest_ttl` seconds ("interest"), and writes the answer back. So at most one refresh per freshness
window serves every process. Interest is kept by exact id (array task `123_4`, not just `123`), because
whether squeue alone suffices depends on which task is asked about.

The cache only ever answers with rows Slurm printed; what a row means (lag, grace) is decided by
`states.resolve` in each process, exactly as for a fresh answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from xm_slurm.job_ids import SlurmJobId
from xm_slurm.paths import local_state_dir
from xm_slurm.scheduler.local_state import (
    ensure_private_dir,
    key_file_stem,
    read_json,
    write_private_json,
)
from xm_slurm.scheduler.states import Row
from xm_slurm.scheduler.status_query import StatusRows, query_rows
from xm_slurm.status import SlurmJobState
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)

DEFAULT_INTEREST_TTL = 300.0
LOCK_TIMEOUT = 30.0  # a refresh takes a squeue and maybe a sacct; past this, ask without the lock, not hang


def _row_to_json(row: Row) -> list[Any]:
    return [row.job_id.to_string(), row.raw_state, row.exit_code, row.signal, row.reason, row.source]


def _row_from_json(item: list[Any]) -> Row:
    job_id, raw_state, exit_code, signal, reason, *source = item  # files of older versions: no source
    state = SlurmJobState.parse(raw_state)
    return Row(SlurmJobId.parse(job_id), state, exit_code, signal, reason, raw_state, *source[:1])


def _base(job_id: SlurmJobId) -> str:
    return job_id.base.to_string()


class SharedStatusCache:
    """The status cache file of one cluster account (see the module docstring)."""

    def __init__(
        self,
        key: str,
        directory: str | os.PathLike[str] | None = None,
        *,
        interest_ttl: float = DEFAULT_INTEREST_TTL,
    ) -> None:
        self.key = key
        self._directory = Path(directory) if directory is not None else None
        self.interest_ttl = interest_ttl

    @property
    def directory(self) -> Path:
        return self._directory or local_state_dir() / "status-cache"

    def _paths(self) -> tuple[Path, Path]:
        name = key_file_stem(self.key)
        return self.directory / f"{name}.json", self.directory / f"{name}.lock"

    def _read(self) -> dict[str, Any] | None:
        data = read_json(self._paths()[0])
        return data if data is not None and data.get("key") == self.key else None

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        _, lock_path = self._paths()
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + LOCK_TIMEOUT
        try:
            while True:  # non-blocking attempts: a cancelled poll never leaves a thread holding the lock
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        log.warning(
                            "status cache %s stayed locked for %.0f s; asking anyway", lock_path, LOCK_TIMEOUT
                        )
                        break
                    await asyncio.sleep(0.02)
            yield
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _answer(data: dict[str, Any] | None, wanted: set[str], max_age: float) -> StatusRows | None:
        if data is None or time.time() - float(data.get("time", 0)) > max_age:
            return None
        if not wanted <= set(data.get("covered", ())):
            return None
        rows = [_row_from_json(item) for item in data.get("rows", ())]
        return _for(
            StatusRows(rows, tuple(data.get("commands", ())), data.get("sacct_failure")),
            wanted,
        )

    async def query(
        self,
        transport: Transport,
        job_ids: Iterable[SlurmJobId],
        *,
        max_age: float,
        use_sacct: bool = True,
        array_sizes: Mapping[SlurmJobId, int] | None = None,
    ) -> tuple[StatusRows, bool]:
        """Rows for these jobs, and whether this call asked the cluster."""
        ids = list(job_ids)
        wanted = {j.to_string() for j in ids}
        found = self._answer(self._read(), wanted, max_age)
        if found is not None:
            return found, False
        ensure_private_dir(self.directory)
        async with self._locked():
            data = self._read()
            found = self._answer(data, wanted, max_age)
            if found is not None:
                return found, False
            now = time.time()
            interest = {
                job: float(t)
                for job, t in ((data or {}).get("interest") or {}).items()
                if now - float(t) < self.interest_ttl
            }
            interest.update(dict.fromkeys(wanted, now))
            asked = [SlurmJobId.parse(job) for job in interest]
            bases = {_base(j) for j in asked}
            sizes = {b: int(n) for b, n in ((data or {}).get("sizes") or {}).items() if b in bases}
            sizes.update({_base(j): n for j, n in (array_sizes or {}).items() if _base(j) in bases})
            answer = await query_rows(
                transport,
                asked,
                use_sacct=use_sacct,
                array_sizes={SlurmJobId.parse(b): n for b, n in sizes.items()},
            )
            write_private_json(
                self._paths()[0],
                {
                    "key": self.key,
                    "time": now,
                    "commands": list(answer.commands),
                    "sacct_failure": answer.sacct_failure,
                    "covered": sorted(interest),
                    "interest": interest,
                    "sizes": sizes,
                    "rows": [_row_to_json(r) for r in answer.rows],
                },
            )
        return _for(answer, wanted), True


def _for(answer: StatusRows, wanted: set[str]) -> StatusRows:
    """The part of a shared answer about these jobs (by base id: an array's rows serve all its tasks)."""
    bases = {_base(SlurmJobId.parse(j)) for j in wanted}
    return dataclasses.replace(answer, rows=[r for r in answer.rows if _base(r.job_id) in bases])
