"""`JobWatcher`: one poll loop per transport that batches every watched job into ONE sacct per interval.

Like submitit's InfoWatcher: callers `register` jobs (at submission) and `await wait(ids)`; a single background
task polls while anyone waits. The interval starts at `min_interval`, grows by 1.5x while nothing changes and
falls back to `min_interval` when something does, capped at `max_interval`. Jobs in a terminal state are not
asked about again. After one `sacct` failure the watcher uses `squeue` for good (accounting is off).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable

from xm_slurm.errors import StatusUnavailableError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import DEFAULT_GRACE_SECONDS, query_rows, resolve
from xm_slurm.status import SlurmJobStatus
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Waiter:
    job_ids: frozenset[SlurmJobId]
    future: asyncio.Future[dict[SlurmJobId, SlurmJobStatus]]


class JobWatcher:
    def __init__(
        self,
        transport: Transport,
        *,
        min_interval: float = 1.0,
        max_interval: float = 30.0,
        grace: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.transport = transport
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.grace = grace
        self.polls = 0  # how many poll rounds ran (each is one sacct/squeue per cluster/chunk)
        self._use_sacct = True
        self._registered: dict[SlurmJobId, float] = {}  # id -> when first seen (submission time if given)
        self._array_sizes: dict[SlurmJobId, int] = {}
        self._latest: dict[SlurmJobId, SlurmJobStatus] = {}
        self._waiters: list[_Waiter] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    def register(
        self, job_id: SlurmJobId | str, *, submitted_at: float | None = None, array_size: int | None = None
    ) -> SlurmJobId:
        """Watch a job (or array task / hetjob component). `array_size`: for an array watched as a whole."""
        jid = SlurmJobId.parse(job_id)
        self._registered.setdefault(jid, time.time() if submitted_at is None else submitted_at)
        if array_size is not None:
            self._array_sizes[jid.base] = array_size
        self._wakeup.set()
        return jid

    def latest(self, job_id: SlurmJobId | str) -> SlurmJobStatus | None:
        """The last polled status, without asking the cluster."""
        return self._latest.get(SlurmJobId.parse(job_id))

    async def poll(
        self, job_ids: Iterable[SlurmJobId | str] | None = None
    ) -> dict[SlurmJobId, SlurmJobStatus]:
        """Ask the cluster now about these (default: all registered, non-final) jobs, in one batched query."""
        if job_ids is None:
            ids = [j for j in self._registered if not self._is_final(j)]
        else:
            ids = [self.register(j) for j in job_ids]
        if not ids:
            return {}
        rows, source = await query_rows(self.transport, ids, use_sacct=self._use_sacct)
        if source == "squeue" and self._use_sacct:
            log.warning("sacct is unavailable on %r; following jobs with squeue from now on", self.transport)
            self._use_sacct = False
        self.polls += 1
        answers = resolve(
            ids,
            rows,
            source=source,
            submitted_at={j: self._registered[j] for j in ids},
            array_sizes=self._array_sizes,
            grace=self.grace,
        )
        self._latest.update(answers)
        return answers

    def _is_final(self, job_id: SlurmJobId) -> bool:
        status = self._latest.get(job_id)
        return status is not None and status.is_terminal

    async def wait(
        self, job_ids: Iterable[SlurmJobId | str], *, timeout: float | None = None
    ) -> dict[SlurmJobId, SlurmJobStatus]:
        """Until every job is in a terminal state; returns their final statuses.

        Raises `StatusUnavailableError` if a job stays unknown to the scheduler past the grace period.
        """
        ids = frozenset(self.register(j) for j in job_ids)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(ids, loop.create_future())
        self._waiters.append(waiter)
        self._check(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"JobWatcher({self.transport!r})")
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _check(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        statuses = {j: self._latest.get(j) for j in waiter.job_ids}
        lost = [s for s in statuses.values() if s is not None and s.source == "missing"]
        if lost:
            waiter.future.set_exception(
                StatusUnavailableError(
                    f"jobs {sorted(str(s.job_id) for s in lost)} are unknown to the scheduler "
                    f"{self.grace:.0f} s after they were registered (wrong cluster, or purged from accounting?)"
                )
            )
        elif all(s is not None and s.is_terminal for s in statuses.values()):
            waiter.future.set_result({j: s for j, s in statuses.items() if s is not None})

    async def _run(self) -> None:
        interval = self.min_interval
        while any(not w.future.done() for w in self._waiters):
            before = dict(self._latest)
            try:
                await self.poll()
            except StatusUnavailableError as e:
                for w in self._waiters:
                    if not w.future.done():
                        w.future.set_exception(e)
                return
            except Exception as e:  # a transient transport failure: keep polling, slower
                log.warning("polling job states on %r failed: %s", self.transport, e)
            for w in list(self._waiters):
                self._check(w)
            changed = self._latest != before
            interval = self.min_interval if changed else min(interval * 1.5, self.max_interval)
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._waiters:
            if not w.future.done():
                w.future.cancel()
