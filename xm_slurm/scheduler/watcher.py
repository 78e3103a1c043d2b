"""`JobWatcher`: one poll loop per transport that batches every watched job into ONE status round per interval.

Like submitit's InfoWatcher: callers `register` jobs (at submission) and `await wait(ids)`; a single background
task polls while anyone waits. The interval starts at `min_interval`, grows by 1.5x while nothing changes and
falls back to `min_interval` when something does or a job is registered (just submitted), capped at
`max_interval`, with +-10% jitter so that processes started together drift apart. Jobs in a terminal state
are not asked about again. A status round is one `squeue` for all of them plus, only for the jobs squeue no
longer lists, one `sacct` (`status_query.query_rows`). After one `sacct` failure the watcher uses `squeue`
alone for good (accounting is off).

`poll(ids)` answers from the last poll when it is younger than `min_interval` and covers the ids, so status
calls next to a running `wait` cost nothing. Answers are shared with the other processes of the same user
on this machine through `SharedStatusCache` (scheduler/budget.py) unless `share=False`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Iterable

from xm_slurm.errors import StatusUnavailableError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.budget import SharedStatusCache
from xm_slurm.scheduler.local_state import transport_key
from xm_slurm.scheduler.states import SUBMISSION_GRACE_SECONDS, resolve
from xm_slurm.scheduler.status_query import query_rows
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
        grace: float = SUBMISSION_GRACE_SECONDS,
        share: bool | SharedStatusCache = True,
        jitter: float = 0.1,
    ) -> None:
        self.transport = transport
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.grace = grace
        self.jitter = jitter
        self.polls = 0  # poll rounds that asked the cluster (each: one squeue, maybe one sacct, per cluster)
        self.reused = 0  # poll rounds answered without a command (a recent poll here or in another process)
        self.shared: SharedStatusCache | None = None
        if isinstance(share, SharedStatusCache):
            self.shared = share
        elif share and (key := transport_key(transport)) is not None:
            self.shared = SharedStatusCache(key)
        self._use_sacct = True
        self._fetched: dict[SlurmJobId, float] = {}  # id -> when its latest status was asked for
        self._interval = min_interval
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
        if jid not in self._fetched:
            self._interval = self.min_interval  # just submitted: its first changes come soon
        self._wakeup.set()
        return jid

    def latest(self, job_id: SlurmJobId | str) -> SlurmJobStatus | None:
        """The last polled status, without asking the cluster."""
        return self._latest.get(SlurmJobId.parse(job_id))

    async def poll(
        self, job_ids: Iterable[SlurmJobId | str] | None = None, *, max_age: float | None = None
    ) -> dict[SlurmJobId, SlurmJobStatus]:
        """The states of these (default: all registered, non-final) jobs, in one batched query.

        An answer younger than `max_age` seconds (default `min_interval`) is reused: from this watcher's
        last poll, else from the shared cache of this machine's processes.
        """
        max_age = self.min_interval if max_age is None else max_age
        if job_ids is None:
            ids = [j for j in self._registered if not self._is_final(j)]
        else:
            ids = [self.register(j) for j in job_ids]
        if not ids:
            return {}
        now = time.time()
        if job_ids is not None and all(
            j in self._latest and (self._is_final(j) or now - self._fetched.get(j, 0.0) <= max_age)
            for j in ids
        ):
            self.reused += 1
            return {j: self._latest[j] for j in ids}
        sizes = self._array_sizes
        if self.shared is not None:
            found, asked = await self.shared.query(
                self.transport, ids, max_age=max_age, use_sacct=self._use_sacct, array_sizes=sizes
            )
        else:
            found = await query_rows(self.transport, ids, use_sacct=self._use_sacct, array_sizes=sizes)
            asked = True
        if found.sacct_failure and self._use_sacct:
            log.warning(
                "sacct is unavailable on %r (%s); following jobs with squeue alone from now on",
                self.transport,
                found.sacct_failure,
            )
            self._use_sacct = False
        if asked:
            self.polls += 1
        else:
            self.reused += 1
        self._fetched.update(dict.fromkeys(ids, now))
        answers = resolve(
            ids,
            found.rows,
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
        self._interval = self.min_interval
        while any(not w.future.done() for w in self._waiters):
            before = dict(self._latest)
            try:
                # Half the interval: our own previous answer (in the shared cache) is always too old.
                await self.poll(max_age=self._interval / 2)
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
            self._interval = self.min_interval if changed else min(self._interval * 1.5, self.max_interval)
            pause = self._interval * random.uniform(1 - self.jitter, 1 + self.jitter)
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), pause)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for w in self._waiters:
            if not w.future.done():
                w.future.cancel()
