"""`JobWatcher`: a cluster's one status source in this process: one poll loop, one cache of answers, and
status rounds shared by every caller.

Callers `register` jobs (at submission), ask `await poll(ids)` (a status now) or `await wait(ids)` (until
they end). A status round is one `squeue` for the jobs it asks about plus, only for those squeue no longer
lists, one `sacct` (`status_query.query_rows`); after one `sacct` failure the watcher uses `squeue` alone for
good (accounting is off).

Sharing. Every answer goes into one cache (`latest`, with when it was asked for). `poll(ids)` answers from it
when every id is final or was asked about less than `max_age` seconds ago (default `min_interval`). Otherwise
the caller joins a round: the one running, if it asks about all of its ids, else the next one, which gathers
every caller that arrives until the running round is over and then asks about all their ids at once. So
concurrent calls, however many, cost one round, and rounds never overlap.

Waiting. While anyone waits, one background task polls the registered jobs that are not final. Its interval
starts at `min_interval`, grows by 1.5x while nothing changes and falls back to `min_interval` when something
does or a job is registered (just submitted), capped at `max_interval`, with +-10% jitter so that processes
started together drift apart. Its rounds are the same rounds: a `poll` made in between spares it one.

Processes do not share answers: each process watching a cluster pays its own rounds. A file through which
they did (flock'd, per cluster account) was measured and removed: with this watcher, a launch script showing
its 8 work units' status every 5 s and `xm-slurm wait` beside it, on 60-second jobs, cost 27 status
commands without the file and 19 with it (the launch script alone: 18), in the same wall time
(benchmarks/status_sharing.py measures a second process's cost, the most any sharing could save).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping

from xm_slurm.errors import AuthenticationError, HostKeyError, StatusUnavailableError
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler.states import SUBMISSION_GRACE_SECONDS, resolve
from xm_slurm.scheduler.status_query import query_rows
from xm_slurm.status import SlurmJobStatus
from xm_slurm.transport.base import Transport

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Waiter:
    job_ids: frozenset[SlurmJobId]
    future: asyncio.Future[dict[SlurmJobId, SlurmJobStatus]]


@dataclasses.dataclass
class _Round:
    """One status round: the ids it asks about; `done` once their answers are in the cache."""

    ids: set[SlurmJobId]
    done: asyncio.Future[None]


def _retrieve(future: asyncio.Future[None]) -> None:
    # A round whose callers all went away must not log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class JobWatcher:
    def __init__(
        self,
        transport: Transport,
        *,
        min_interval: float = 1.0,
        max_interval: float = 30.0,
        grace: float = SUBMISSION_GRACE_SECONDS,
        jitter: float = 0.1,
    ) -> None:
        self.transport = transport
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.grace = grace
        self.jitter = jitter
        self.polls = 0  # rounds that asked the cluster (each: one squeue, maybe one sacct)
        self.reused = 0  # polls answered from the cache, without a command
        self._use_sacct = True
        self._fetched: dict[SlurmJobId, float] = {}  # id -> when its latest status was asked for
        self._interval = min_interval
        self._registered: dict[SlurmJobId, float] = {}  # id -> when first seen (submission time if given)
        self._array_sizes: dict[SlurmJobId, int] = {}
        self._numbers: set[int] = set()  # job numbers of what was registered
        self._latest: dict[SlurmJobId, SlurmJobStatus] = {}
        self._running: _Round | None = None
        self._next: _Round | None = None  # gathers callers while `_running` runs
        self._rounds: set[asyncio.Task[None]] = set()
        self._waiters: list[_Waiter] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        #: Called with each round's answers and when they were asked for (on the loop; must not block).
        self.listeners: list[Callable[[Mapping[SlurmJobId, SlurmJobStatus], float], None]] = []

    def register(
        self, job_id: SlurmJobId | str, *, submitted_at: float | None = None, array_size: int | None = None
    ) -> SlurmJobId:
        """Watch a job (or array task / hetjob component). `array_size`: for an array watched as a whole."""
        jid = SlurmJobId.parse(job_id)
        self._registered.setdefault(jid, time.time() if submitted_at is None else submitted_at)
        self._numbers.add(jid.job_id)
        if array_size is not None:
            self._array_sizes[jid.base] = array_size
        if jid not in self._fetched:
            self._interval = self.min_interval  # just submitted: its first changes come soon
        self._wakeup.set()
        return jid

    def knows(self, job_id: SlurmJobId) -> bool:
        """Whether this watcher was given the job (its number) to watch: a job submitted or recorded."""
        return job_id.job_id in self._numbers

    def latest(self, job_id: SlurmJobId | str) -> SlurmJobStatus | None:
        """The last polled status, without asking the cluster."""
        return self._latest.get(SlurmJobId.parse(job_id))

    async def poll(
        self, job_ids: Iterable[SlurmJobId | str] | None = None, *, max_age: float | None = None
    ) -> dict[SlurmJobId, SlurmJobStatus]:
        """The states of these (default: all registered, non-final) jobs.

        Answered from the cache when each is final or younger than `max_age` seconds (default
        `min_interval`), else by a round shared with every concurrent caller (see the module docstring).
        """
        max_age = self.min_interval if max_age is None else max_age
        if job_ids is None:
            ids = [j for j in self._registered if not self._is_final(j)]
        else:
            ids = [self.register(j) for j in job_ids]
        if not ids:
            return {}
        now = time.time()
        if all(self._is_final(j) or (j in self._latest and now - self._fetched[j] <= max_age) for j in ids):
            self.reused += 1
        else:
            await self._join_round(ids)
        return {j: self._latest[j] for j in ids}

    def _is_final(self, job_id: SlurmJobId) -> bool:
        status = self._latest.get(job_id)
        return status is not None and status.is_terminal

    async def _join_round(self, ids: list[SlurmJobId]) -> None:
        running = self._running
        if running is not None and running.ids.issuperset(ids):
            round_ = running  # asked about moments ago: its answer is as fresh as a new round's
        else:
            round_ = self._next or self._start_round()
            round_.ids.update(ids)
        await asyncio.shield(round_.done)

    def _start_round(self) -> _Round:
        round_ = self._next = _Round(set(), asyncio.get_running_loop().create_future())
        round_.done.add_done_callback(_retrieve)
        task = asyncio.create_task(self._run_round(round_), name=f"status round on {self.transport!r}")
        self._rounds.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            # Also when the task was cancelled before it began: its callers must not wait forever.
            self._rounds.discard(task)
            if not round_.done.done():
                round_.done.cancel()
            if self._running is round_:
                self._running = None
            if self._next is round_:
                self._next = None

        task.add_done_callback(finished)
        return round_

    async def _run_round(self, round_: _Round) -> None:
        if self._running is not None:  # one round at a time; this one gathers callers meanwhile
            await asyncio.wait([self._running.done])
        self._next, self._running = None, round_
        try:
            await self._ask(list(round_.ids))
        except Exception as e:  # delivered to every caller of the round
            round_.done.set_exception(e)
        else:
            round_.done.set_result(None)

    async def _ask(self, ids: list[SlurmJobId]) -> None:
        """One round for `ids`: their answers go into the cache."""
        asked_at = time.time()
        sizes = self._array_sizes
        found = await query_rows(self.transport, ids, use_sacct=self._use_sacct, array_sizes=sizes)
        if found.sacct_failure and self._use_sacct:
            log.warning(
                "sacct is unavailable on %r (%s); following jobs with squeue alone from now on",
                self.transport,
                found.sacct_failure,
            )
            self._use_sacct = False
        self.polls += 1
        self._fetched.update(dict.fromkeys(ids, asked_at))
        answers = resolve(
            ids,
            found.rows,
            submitted_at={j: self._registered[j] for j in ids if j in self._registered},
            array_sizes=sizes,
            grace=self.grace,
        )
        self._latest.update(answers)
        for listener in self.listeners:  # e.g. the experiment layer's store of job states
            try:
                listener(answers, asked_at)
            except Exception:
                log.exception("a status listener failed")

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
                # Half the interval: our own previous round is always older; one a `poll` just made is not.
                await self.poll(max_age=self._interval / 2)
            # A refused login or host key (e.g. a second factor nobody can answer here) does not heal by
            # polling again: the waiters get the error.
            except (StatusUnavailableError, AuthenticationError, HostKeyError) as e:
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
        tasks = [t for t in (self._task, *self._rounds) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in self._waiters:
            if not w.future.done():
                w.future.cancel()
