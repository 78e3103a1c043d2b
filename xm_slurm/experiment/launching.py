"""Submitting collected adds and recording them: the only place the experiment layer calls sbatch.

Order of effects for one batch (documented in docs/experiments.md):
  1. plan (group into arrays / job groups) and render every script: any bad value fails the whole batch
     before anything touches the cluster or the store;
  2. per submission (concurrently; a refused one fails only its own work units), with a fresh submission
     token: record its new work units and one PENDING row per job (`pending:<token>:...`) in ONE
     `replace_jobs` call, then `sbatch` it with that token, then swap the pending rows for the real ids in
     ONE more call. A launch process killed at any point thus leaves either nothing or rows that name the
     token, which the next open of the experiment resolves (`recovery.resolve_pending`). When sbatch fails,
     the token is looked up (an ambiguous failure may still have submitted): a job found is adopted,
     otherwise the pending rows and the units they alone made are deleted. When the swap fails, the job
     just submitted is cancelled (the pending rows stay and resolve to the cancelled job).

`Collector` runs the job generators of one `experiment.add` (one per trial) and submits what they add in as
few batches as possible: it waits until every generator has finished or is waiting for its own adds.

Scale (docs/scale.md): each cluster's `MaxArraySize` is read once per launcher (`scontrol show config`) and
caps every array (`Launcher.max_array_size` may lower it further); the chunks of a throttled sweep are
submitted one after another, each waiting (`afterany`) for the previous one. `retry_failed` resubmits the
failed trials of work units from their scripts on the cluster and appends the new jobs to the same units.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from xm_slurm.api import XManagerAPI
from xm_slurm.dependencies import SlurmDependency, afterany
from xm_slurm.errors import (
    SubmissionError,
    ValidationError,
    XmSlurmError,
)
from xm_slurm.experiment.connections import ClusterConnections, TransportFactory
from xm_slurm.experiment.dry_run import DryRunTransport
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.planning import PendingAdd, Submission, plan
from xm_slurm.experiment.preflight import ids_of, preflight
from xm_slurm.experiment.provenance_record import ProvenanceRecorder
from xm_slurm.experiment.retrying import current_jobs, retry_failed
from xm_slurm.experiment.submission import Member, submit_recorded
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.packaging.cluster_auth import upload_registry_auth
from xm_slurm.rendering import JobScriptRequest, render_job_script
from xm_slurm.rendering.run_identity import RunIdentity
from xm_slurm.scheduler import cancel
from xm_slurm.scheduler.limits import ClusterLimits, cached_limits
from xm_slurm.scheduler.preflight import unknown_job_ids
from xm_slurm.scheduler.submit import (
    sbatch_script,
    upload_script,
)
from xm_slurm.ssh_config import SlurmSSHConfig

log = logging.getLogger(__name__)

#: At most this many sbatch calls in flight at once (slurmctld serialises them anyway).
MAX_CONCURRENT_SBATCH = 8


def members(s: Submission) -> list[list[Member]]:
    """Each add's job rows: array task i, hetjob component k, or the whole job (shapes, no real id yet)."""
    stand_in = SlurmJobId(1)
    if s.array:
        shapes = [[stand_in.task(i)] for i in range(len(s.adds))]
    elif len(s.components) > 1:
        shapes = [[stand_in.component(k) for k in range(len(s.components))]]
    else:
        shapes = [[stand_in]]
    return [
        [
            Member(add.work_unit_id, name, shape)
            for (name, _), shape in zip(add.members, add_shapes, strict=True)
        ]
        for add, add_shapes in zip(s.adds, shapes, strict=True)
    ]


class Launcher:
    def __init__(self, client: XManagerAPI, experiment_id: int, connections: ClusterConnections) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.connections = connections
        connections.record_states(experiment_id)  # the job states its watchers see go to the store
        #: Lowers every cluster's MaxArraySize for this launcher's sweeps (None: the cluster's own limit).
        self.max_array_size: int | None = None
        self._limits: dict[SlurmSSHConfig, asyncio.Task[ClusterLimits]] = {}
        #: Records the experiment's provenance and picks its run identity (docs/provenance.md).
        self.provenance = ProvenanceRecorder(client, experiment_id)
        self._sbatch_slots = asyncio.Semaphore(MAX_CONCURRENT_SBATCH)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._dependency_checks: dict[
            tuple[SlurmSSHConfig, SlurmJobId], asyncio.Task[list[SlurmJobId] | None]
        ] = {}

    def prefetch(self, ssh: SlurmSSHConfig) -> asyncio.Task[ClusterLimits]:
        """Start asking the cluster's limits (once), so that the answer is on its way while adds are collected."""
        task = self._limits.get(ssh)
        if task is None or (task.done() and task.exception() is not None):
            task = self._limits[ssh] = asyncio.ensure_future(cached_limits(self.connections.transport(ssh)))
            # Retrieved by `limits()`; this keeps a failure of a read nobody awaited out of asyncio's log.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def check_dependency(self, ssh: SlurmSSHConfig, dependency: SlurmDependency | None) -> None:
        """Start asking whether the cluster knows the jobs `dependency` names (once per id), so that the
        answer is on its way while the adds are collected, planned and rendered."""
        self._check_ids(ssh, ids_of(dependency))

    def _check_ids(self, ssh: SlurmSSHConfig, ids: Sequence[SlurmJobId]) -> None:
        transport = self.connections.transport(ssh)
        watcher = self.connections.watcher(ssh)  # jobs this process submitted or saw need no question
        new = [i for i in ids if (ssh, i) not in self._dependency_checks and not watcher.knows(i)]
        if not new or isinstance(transport, DryRunTransport):
            return
        task = asyncio.ensure_future(unknown_job_ids(transport, new))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        for job_id in new:
            self._dependency_checks[(ssh, job_id)] = task

    async def unknown_ids(self, ssh: SlurmSSHConfig, ids: Sequence[SlurmJobId]) -> list[SlurmJobId] | None:
        """The ids among `ids` the cluster does not know (the checks `check_dependency` started); None if
        it cannot tell."""
        self._check_ids(ssh, ids)
        unknown: set[SlurmJobId] = set()
        watcher = self.connections.watcher(ssh)
        for task in {self._dependency_checks.get((ssh, i)) for i in ids if not watcher.knows(i)}:
            answer = None if task is None else await asyncio.shield(task)  # None: no check (a dry run)
            if answer is None:
                return None
            unknown.update(answer)
        return [i for i in ids if i in unknown]

    async def limits(self, ssh: SlurmSSHConfig) -> ClusterLimits:
        """The cluster's limits (asked once per cluster; capped by `max_array_size`)."""
        task = self.prefetch(ssh)
        cap = self.max_array_size
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValidationError(f"max_array_size={cap!r} must be None or an integer >= 1")
        return (await asyncio.shield(task)).capped(cap)

    async def _render(
        self, submissions: Sequence[Submission], run: RunIdentity | None = None
    ) -> list[tuple[Submission, str, str]]:
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
                names=[name for name, _ in s.adds[0].members] if len(s.components) > 1 else (),
                debug=os.environ.get("XM_SLURM_DEBUG") == "1",  # the launching shell's, as for the CLI
                run=run,
                store_id=await self.connections.store_id_for(self.experiment_id),
            )
            out.append((s, render_job_script(request), request.experiment_dir))
        return out

    def submit_soon(self, adds: Sequence[PendingAdd]) -> asyncio.Task[None]:
        """`submit` as a task that `drain` waits for, even when whoever started it is cancelled."""
        task = asyncio.ensure_future(self.submit(adds))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def drain(self) -> None:
        """Wait for every submission in flight (their own errors reach their adds, not the caller)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def submit(self, adds: Sequence[PendingAdd]) -> None:
        """Submit and record `adds`; each add's future gets None or the error that stopped it."""
        try:
            limits = {}
            for ssh in {a.cluster.ssh for a in adds}:
                limits[ssh] = await self.limits(ssh)
            submissions = plan(adds, lambda cluster: limits[cluster.ssh].max_array_size)
            # read-only, before any write
            await preflight(submissions, self.limits, self.connections, self.unknown_ids)
            # Provenance artifacts are written before any sbatch; the run identity goes into the scripts.
            rendered = await self._render(submissions, await self.provenance.prepare(submissions))
            # Registry logins reach the cluster as private files (never in a script or command line);
            # an upload failure fails the batch before any sbatch.
            for s, _, folder in rendered:
                executables = [c.executable for c in s.components]
                await upload_registry_auth(self.connections.transport(s.cluster.ssh), folder, executables)
        except BaseException as e:
            _fail(adds, e)
            return
        results = await self._submit_all(rendered)
        for (s, _, _), result in zip(rendered, results, strict=True):
            if isinstance(result, BaseException):
                _fail(s.adds, result)
                continue
            now = time.time()
            watcher = self.connections.watcher(s.cluster.ssh)
            for add, add_members in zip(s.adds, members(s), strict=True):
                handles = [
                    SlurmLaunchedJob(
                        name=m.name,
                        job_id=m.shape.same_member_in(result),
                        ssh=s.cluster.ssh,
                        experiment_id=self.experiment_id,
                    )
                    for m in add_members
                ]
                for handle in handles:
                    watcher.register(handle.job_id, submitted_at=now)
                add.unit.launched(handles, recorded=True)
                if not add.future.done():
                    add.future.set_result(None)

    async def _submit_all(
        self, rendered: list[tuple[Submission, str, str]]
    ) -> list[SlurmJobId | BaseException]:
        """sbatch every submission; the chunks of one throttled sweep in order, everything else at once."""
        results: dict[int, SlurmJobId | BaseException] = {}
        submissions = {s for s, _, _ in rendered}

        async def chain(head: int) -> None:
            i: int | None = head
            previous: SlurmJobId | BaseException | None = None
            while i is not None:
                s, text, folder = rendered[i]
                if isinstance(previous, BaseException):
                    results[i] = previous  # an earlier chunk was refused: do not run the rest unthrottled
                else:
                    results[i] = previous = await self._sbatch(s, text, folder, previous)
                i = next((k for k, (t, _, _) in enumerate(rendered) if t.after is s), None)

        heads = [i for i, (s, _, _) in enumerate(rendered) if s.after is None or s.after not in submissions]
        await asyncio.gather(*(chain(i) for i in heads))
        return [results[i] for i in range(len(rendered))]

    async def _sbatch(
        self, s: Submission, text: str, folder: str, after: SlurmJobId | None = None
    ) -> SlurmJobId | BaseException:
        """Submit `s` through the one submission path: the job id, or the error that stopped it."""
        transport = self.connections.transport(s.cluster.ssh)
        name = f"{s.job_name}-wu{s.adds[0].work_unit_id}-{time.time_ns():x}.sh"
        sbatch_args: list[str] = []
        if after is not None:
            # On the command line, --dependency replaces the script's own: give both.
            wait = afterany(str(after))
            dependency = wait if s.dependency is None else s.dependency & wait
            sbatch_args.append(f"--dependency={dependency.to_dependency_str()}")
        new_units = [a.unit for a in s.adds if not a.unit.recorded]

        def kept() -> None:
            for unit in new_units:
                unit.launched([], recorded=True)  # the store keeps the unit (pending) until a resolution

        async with self._sbatch_slots:
            # The script goes up while the pending rows are written (sbatch waits for both): a script
            # whose rows could not be written is never submitted, it only stays in the folder.
            upload = asyncio.ensure_future(upload_script(transport, text, directory=folder, name=name))

            async def sbatch(token: str) -> SlurmJobId:
                return await sbatch_script(transport, await upload, sbatch_args=sbatch_args, token=token)

            try:
                return await submit_recorded(
                    self.client,
                    self.experiment_id,
                    self.connections,
                    s.cluster.ssh,
                    [m for add_members in members(s) for m in add_members],
                    sbatch,
                    new_units=[u.to_patch() for u in new_units],
                    kept=kept,
                )
            except Exception as e:
                return e
            finally:
                if not upload.done():
                    upload.cancel()
                with contextlib.suppress(BaseException):
                    await upload

    async def cancel(self, handles: Sequence[SlurmLaunchedJob]) -> bool:
        """scancel these jobs; False if some could not be cancelled (logged)."""
        by_cluster: dict[Any, list[SlurmJobId]] = collections.defaultdict(list)
        for h in handles:
            by_cluster[h.ssh].append(h.job_id)
        done = True
        for ssh, ids in by_cluster.items():
            try:
                await cancel(self.connections.transport(ssh), ids)
            except XmSlurmError as e:
                log.error("could not cancel jobs %s on %s: %s", [str(i) for i in ids], ssh, e)
                done = False
        return done

    async def retry_failed(
        self, units: Sequence[Any], *, include_cancelled: bool = False, resume: bool = False
    ) -> list[Any]:
        """Resubmit the failed jobs of these units (and only those); returns the units that were retried
        (see `xm_slurm.experiment.retrying`; `resume`: keep their run identity)."""
        return await retry_failed(self, units, include_cancelled=include_cancelled, resume=resume)


def cancel_in_thread(
    client: XManagerAPI,
    experiment_id: int,
    factory: TransportFactory | None,
    jobs: Sequence[SlurmLaunchedJob],
) -> concurrent.futures.Future[bool]:
    """scancel `jobs` in a worker thread, on connections of its own (for a caller whose event loop may end
    right after the call); the interpreter waits for it before it exits."""

    async def once() -> bool:
        connections = ClusterConnections(factory)
        try:
            return await Launcher(client, experiment_id, connections).cancel(jobs)
        finally:
            await connections.aclose()

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xm-slurm-stop")
    future = pool.submit(asyncio.run, once())
    pool.shutdown(wait=False)
    return future


def _wids(s: Submission) -> list[int]:
    return [a.work_unit_id for a in s.adds]


def _fail(adds: Sequence[PendingAdd], error: BaseException) -> None:
    for add in adds:
        if not add.future.done():
            add.future.set_exception(error)
        # Retrieved here so that asyncio does not warn when nobody awaits the add itself.
        add.future.exception()


__all__ = [
    "Launcher",
    "SubmissionError",
    "current_jobs",
]
