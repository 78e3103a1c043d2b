"""Submitting collected adds and recording them: the only place the experiment layer calls sbatch.

Order of effects for one batch (documented in docs/experiments.md):
  1. plan (group into arrays / job groups) and render every script: any bad value fails the whole batch
     before anything touches the cluster or the store;
  2. `sbatch` each submission (concurrently; a refused one fails only its own work units);
  3. record the new work units (one `insert_work_units`) and their jobs (one `insert_jobs`);
     if recording fails, the jobs just submitted are cancelled, so nothing runs that the store does not know.

`Collector` runs the job generators of one `experiment.add` (one per trial) and submits what they add in as
few batches as possible: it waits until every generator has finished or is waiting for its own adds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from xm_slurm.api import ConflictError, SlurmJob, XManagerAPI
from xm_slurm.errors import SubmissionError, XmSlurmError
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.planning import PendingAdd, Submission, plan
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.rendering import JobScriptRequest, render_job_script
from xm_slurm.scheduler import cancel, submit

log = logging.getLogger(__name__)


def _job_ids(submission: Submission, job_id: SlurmJobId) -> list[list[SlurmJobId]]:
    """The ids of each add's jobs: array task i, hetjob component k, or the job itself."""
    if submission.array:
        return [[job_id.task(i)] for i in range(len(submission.adds))]
    if len(submission.components) > 1:
        return [[job_id.component(k) for k in range(len(submission.components))]]
    return [[job_id]]


class Launcher:
    def __init__(self, client: XManagerAPI, experiment_id: int, connections: ClusterConnections) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.connections = connections
        self.sbatch_calls = 0

    async def _render(self, submissions: Sequence[Submission]) -> list[tuple[Submission, str, str]]:
        roots = {}
        for ssh in {s.cluster.ssh for s in submissions}:
            roots[ssh] = await self.connections.state_root(ssh)
        out = []
        for s in submissions:
            request = JobScriptRequest(
                cluster=s.cluster,
                jobs=s.components,
                trials=s.trials,
                experiment_id=self.experiment_id,
                job_name=s.job_name,
                state_dir=roots[s.cluster.ssh],
                dependency=s.dependency,
                array=s.array,
            )
            out.append((s, render_job_script(request), request.experiment_dir))
        return out

    async def submit(self, adds: Sequence[PendingAdd]) -> None:
        """Submit and record `adds`; each add's future gets None or the error that stopped it."""
        try:
            rendered = await self._render(plan(adds))
        except BaseException as e:
            _fail(adds, e)
            return
        results = await asyncio.gather(*(self._sbatch(s, text, folder) for s, text, folder in rendered))
        submitted: list[tuple[PendingAdd, list[SlurmLaunchedJob]]] = []
        for (s, _, _), result in zip(rendered, results, strict=True):
            if isinstance(result, BaseException):
                _fail(s.adds, result)
                continue
            now = time.time()
            watcher = self.connections.watcher(s.cluster.ssh)
            for add, ids in zip(s.adds, _job_ids(s, result), strict=True):
                handles = []
                for (name, _), jid in zip(add.members, ids, strict=True):
                    watcher.register(jid, submitted_at=now)
                    handles.append(
                        SlurmLaunchedJob(
                            name=name, job_id=jid, ssh=s.cluster.ssh, experiment_id=self.experiment_id
                        )
                    )
                submitted.append((add, handles))
        if submitted:
            await self._record(submitted)

    async def _sbatch(self, s: Submission, text: str, folder: str) -> SlurmJobId | BaseException:
        transport = self.connections.transport(s.cluster.ssh)
        name = f"{s.job_name}-wu{s.adds[0].work_unit_id}-{time.time_ns():x}.sh"
        self.sbatch_calls += 1
        try:
            return await submit(transport, text, directory=folder, name=name)
        except Exception as e:
            log.error("submitting %s failed: %s", name, e)
            return e

    async def _record(self, submitted: list[tuple[PendingAdd, list[SlurmLaunchedJob]]]) -> None:
        new_units: dict[int, Any] = {}
        for add, _ in submitted:
            if not add.unit.recorded:
                new_units.setdefault(add.work_unit_id, add.unit)
        patches = [unit.to_patch() for unit in new_units.values()]
        jobs: list[tuple[int, SlurmJob]] = [
            (add.work_unit_id, handle.to_record()) for add, handles in submitted for handle in handles
        ]
        try:
            if patches:
                await self.client.ainsert_work_units(self.experiment_id, patches)
            await self.client.ainsert_jobs(self.experiment_id, jobs)
        except BaseException as e:
            # The store does not know these jobs: cancel them rather than leave untracked work running.
            await self.cancel([h for _, handles in submitted for h in handles])
            if isinstance(e, ConflictError):
                e = ConflictError(
                    f"{e} (another launch recorded the same work unit id or identity in experiment "
                    f"{self.experiment_id} at the same time; the jobs just submitted were cancelled)"
                )
            _fail([add for add, _ in submitted], e)
            return
        for unit in new_units.values():
            unit.recorded = True
        for add, handles in submitted:
            add.unit.launched(handles)
            if not add.future.done():
                add.future.set_result(None)

    async def cancel(self, handles: Sequence[SlurmLaunchedJob]) -> None:
        by_cluster: dict[Any, list[SlurmJobId]] = collections.defaultdict(list)
        for h in handles:
            by_cluster[h.ssh].append(h.job_id)
        for ssh, ids in by_cluster.items():
            try:
                await cancel(self.connections.transport(ssh), ids)
            except XmSlurmError as e:
                log.error("could not cancel jobs %s on %s: %s", [str(i) for i in ids], ssh, e)


def _fail(adds: Sequence[PendingAdd], error: BaseException) -> None:
    for add in adds:
        if not add.future.done():
            add.future.set_exception(error)
        # Retrieved here so that asyncio does not warn when nobody awaits the add itself.
        add.future.exception()


class Collector:
    """Runs the generators of one `experiment.add` and batches the jobs they add."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.pending: list[PendingAdd] = []
        self._per_unit: collections.Counter[int] = collections.Counter()
        self._changed = asyncio.Event()

    def enqueue(self, add: PendingAdd) -> asyncio.Future[None]:
        self.pending.append(add)
        self._per_unit[id(add.unit)] += 1
        self._changed.set()
        return add.future

    async def run(
        self, calls: Sequence[tuple[Any, Callable[[], Awaitable[Any]]]]
    ) -> dict[int, BaseException]:
        """Run each unit's generator; returns {id(unit): error} of the units that failed."""
        tasks: dict[asyncio.Future[Any], Any] = {asyncio.ensure_future(call()): unit for unit, call in calls}
        failed: dict[int, BaseException] = {}
        while True:
            for _ in range(3):  # let every generator run up to its next real wait
                await asyncio.sleep(0)
            running = [t for t in tasks if not t.done()]
            if any(self._per_unit[id(tasks[t])] == 0 for t in running):
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait([*running, changed], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                continue
            for task, unit in tasks.items():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    failed.setdefault(id(unit), task.exception())  # type: ignore[arg-type]
            batch = [a for a in self.pending if id(a.unit) not in failed]
            dropped = [a for a in self.pending if id(a.unit) in failed]
            self.pending = []
            self._per_unit.clear()
            for add in dropped:
                add.future.cancel()
            if batch:
                await self.launcher.submit(batch)
                for add in batch:
                    if add.future.exception() is not None:
                        failed.setdefault(id(add.unit), add.future.exception())  # type: ignore[arg-type]
            elif not running:
                break
        for task, unit in tasks.items():
            if task.cancelled():
                failed.setdefault(id(unit), asyncio.CancelledError())
            elif task.exception() is not None:
                failed.setdefault(id(unit), task.exception())  # type: ignore[arg-type]
        return failed


async def stop_quietly(launcher: Launcher, handles: Sequence[SlurmLaunchedJob]) -> None:
    with contextlib.suppress(Exception):
        await launcher.cancel(handles)


__all__ = ["Collector", "Launcher", "SubmissionError", "stop_quietly"]
