"""Work units and auxiliary units of a `SlurmExperiment`.

Everything that needs the cluster is a coroutine here (XManager's own `get_status()` and `stop()` are
synchronous, but they would block the event loop on SSH round trips):

    status = await wu.get_status()          # SlurmWorkUnitStatus (an xm.ExperimentUnitStatus)
    await wu.wait_until_complete()          # raises xm.ExperimentUnitFailedError / NotCompletedError
    await wu.stop()
    async for line in wu.logs(num_lines=10, follow=True): ...
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from xmanager import xm

from xm_slurm import scheduler
from xm_slurm.api import ExperimentUnitRole, WorkUnitPatch
from xm_slurm.dependencies import (
    SlurmDependency,
    after,
    afterany,
    afternotok,
    afterok,
)
from xm_slurm.errors import ValidationError
from xm_slurm.experiment.batch import current_batch
from xm_slurm.experiment.connections import ClusterConnections
from xm_slurm.experiment.context import ExperimentContext, WorkUnitContext
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.planning import PendingAdd, apply_args, encode_args, make_pending
from xm_slurm.job_ids import SlurmJobId
from xm_slurm.scheduler import tail
from xm_slurm.scheduler.logs import interleave
from xm_slurm.status import SlurmJobStatus, SlurmWorkUnitStatus

if TYPE_CHECKING:
    import datetime as dt


def _unused_create_task(_: Any) -> Any:  # xm.ExperimentUnit wants one; our add() does not use it
    raise NotImplementedError


class UnitHost(Protocol):
    """What a unit needs of its experiment (`SlurmExperiment` is one)."""

    connections: ClusterConnections

    @property
    def experiment_id(self) -> int: ...

    @property
    def context(self) -> ExperimentContext: ...

    def submit_alone(self, pending: PendingAdd) -> asyncio.Future[None]: ...

    def cancel_soon(self, jobs: Sequence[SlurmLaunchedJob]) -> Any: ...


class SlurmExperimentUnit(xm.ExperimentUnit):
    """Common part of work units and auxiliary units: jobs, status, logs, stop, dependencies."""

    def __init__(
        self,
        experiment: UnitHost,
        unit_id: int,
        role: xm.ExperimentUnitRole,
        args: Any,
        identity: str = "",
        *,
        jobs: tuple[SlurmLaunchedJob, ...] = (),
        artifacts: Mapping[str, str] | None = None,
        recorded: bool = False,
    ) -> None:
        super().__init__(cast("xm.Experiment", experiment), _unused_create_task, args, role, identity)
        self._host = experiment
        self._unit_id = unit_id
        self._jobs: list[SlurmLaunchedJob] = list(jobs)
        self._context = experiment.context.work_unit(unit_id, artifacts)
        self.recorded = recorded
        self.launch_error: BaseException | None = None

    # --- identity and records ---

    @property
    def unit_id(self) -> int:
        return self._unit_id

    @property
    def role(self) -> xm.ExperimentUnitRole:
        return self._role

    @property
    def experiment_unit_name(self) -> str:
        return f"{self.experiment_id}_{self._unit_id}"

    @property
    def context(self) -> WorkUnitContext:
        return self._context

    @property
    def launched_jobs(self) -> list[xm.LaunchedJob]:
        return [job.to_launched_job() for job in self._jobs]

    @property
    def slurm_jobs(self) -> list[SlurmLaunchedJob]:
        return list(self._jobs)

    def to_patch(self) -> WorkUnitPatch:
        args = self._args if self._args is not None else {}
        aux = isinstance(self._role, xm.AuxiliaryUnitRole)
        role = ExperimentUnitRole.AUX_UNIT if aux else ExperimentUnitRole.WORK_UNIT
        return WorkUnitPatch(wid=self._unit_id, identity=self._identity, args=encode_args(args), role=role)

    def launched(self, handles: Sequence[SlurmLaunchedJob], *, recorded: bool = True) -> None:
        """Jobs submitted for this unit (`recorded`: the store holds the unit now)."""
        self._jobs.extend(handles)
        self.recorded = self.recorded or recorded

    def launch_failed(self, error: BaseException) -> None:
        """The unit's launch failed: its status is FAILED and waiting for it raises, naming `error`."""
        self.launch_error = error

    def retried(self, old: SlurmLaunchedJob, new: SlurmLaunchedJob) -> None:
        """Job `old` was resubmitted as `new`, which replaces it in the unit's jobs."""
        self._jobs = [new if j is old else j for j in self._jobs]

    # --- adding jobs ---

    def add(
        self,
        job: xm.JobType,
        args: Mapping[str, Any] | None = None,
        *,
        dependency: SlurmDependency | None = None,
        identity: str = "",
    ) -> asyncio.Future[Any]:
        """Add a job, job group or generator to this unit; returns a future done once it is submitted."""
        del identity  # the unit's identity was settled when the unit was created
        if callable(job) and not isinstance(job, (xm.Job, xm.JobGroup)):
            if not (inspect.iscoroutinefunction(job) or inspect.iscoroutinefunction(job.__call__)):
                raise ValidationError(
                    f"job generator {job!r} must be an async function: async def gen(work_unit, **args)"
                )
            return asyncio.ensure_future(job(self, **(args or {})))
        if not isinstance(job, (xm.Job, xm.JobGroup)):
            raise ValidationError(
                f"cannot add {job!r}: use an xm.Job, an xm.JobGroup or an async job generator"
            )
        job = apply_args(job, args)
        batch = current_batch.get()
        slot = None if batch is None else batch.slots.get(self)
        if batch is None or slot is None:  # an add outside the `experiment.add` that made this unit
            return self._host.submit_alone(make_pending(self, self._unit_id, 0, job, dependency))
        pending = make_pending(self, self._unit_id, slot.trial_index, job, dependency or slot.dependency)
        return batch.enqueue(pending)

    # --- dependencies on this unit ---

    def _dependency_ids(self) -> list[str]:
        if not self._jobs:
            raise ValidationError(
                f"{self} has no launched job yet: await experiment.add(...) before depending on it"
            )
        ids: list[str] = []
        for job in self._jobs:
            jid = job.job_id.base if job.job_id.het_offset is not None else job.job_id
            if str(jid) not in ids:
                ids.append(str(jid))
        return ids

    def after_started(self, *, time: dt.timedelta | None = None) -> SlurmDependency:
        return after(*self._dependency_ids(), time=time)

    def after_finished(self) -> SlurmDependency:
        return afterany(*self._dependency_ids())

    def after_completed(self) -> SlurmDependency:
        return afterok(*self._dependency_ids())

    def after_failed(self) -> SlurmDependency:
        return afternotok(*self._dependency_ids())

    # --- status, waiting, stopping, logs ---

    def _by_cluster(self) -> dict[Any, list[SlurmJobId]]:
        out: dict[Any, list[SlurmJobId]] = {}
        for job in self._jobs:
            out.setdefault(job.ssh, []).append(job.job_id)
        return out

    async def get_status(self) -> SlurmWorkUnitStatus:
        """The unit's status now (one batched sacct per cluster, shared with concurrent callers)."""
        if self.launch_error is not None:
            return SlurmWorkUnitStatus.from_state(
                _failed_state(), message=f"launch failed: {self.launch_error}"
            )
        statuses: list[SlurmJobStatus] = []
        connections = self._host.connections
        for ssh, ids in self._by_cluster().items():
            answers = await connections.statuses(ssh, ids)
            statuses += [answers[i] for i in ids if i in answers]
        return SlurmWorkUnitStatus(statuses)

    async def _final_status(self) -> SlurmWorkUnitStatus:
        connections = self._host.connections
        results = await asyncio.gather(
            *(connections.watcher(ssh).wait(ids) for ssh, ids in self._by_cluster().items())
        )
        return SlurmWorkUnitStatus([s for r in results for s in r.values()])

    async def _wait_until_complete(self) -> None:
        # XManager's hook: its `wait_until_complete()` awaits this and resolves to the unit itself (for a
        # work unit through `xm.WorkUnitCompletedAwaitable`, for an auxiliary unit as a plain coroutine).
        if self.launch_error is not None:
            raise xm.ExperimentUnitError(
                f"{self} could not be launched: {self.launch_error}"
            ) from self.launch_error
        status = await self._final_status()
        wu = self if isinstance(self, xm.WorkUnit) else None
        if status.is_failed:
            raise xm.ExperimentUnitFailedError(f"{self} failed: {status.message}", work_unit=wu)
        if not status.is_completed:
            raise xm.ExperimentUnitNotCompletedError(
                f"{self} was {status.status.label}: {status.message}", work_unit=wu
            )

    def stop(
        self,
        *,
        mark_as_failed: bool = False,
        mark_as_completed: bool = False,
        message: str | None = None,
    ) -> Awaitable[bool]:
        """Cancel every job of the unit (scancel; the container stops with it).

        As XManager's `stop`, a plain call: it schedules the cancellation and returns at once (the
        experiment waits for it when it exits). Await the result to wait for the scancel itself; it is
        True when every job was cancelled."""
        del mark_as_failed, mark_as_completed, message  # Slurm records the final state itself
        return self._host.cancel_soon(list(self._jobs))

    async def logs(
        self,
        *,
        num_lines: int = 10,
        block_size: int = 1024,
        wait: bool = True,
        follow: bool = False,
        raw: bool = False,
    ) -> AsyncIterator[str]:
        """The last `num_lines` lines of each job's log; with `follow=True`, then new lines until the jobs
        end. With several logs (several jobs), lines are prefixed `[job name] ` and interleaved.

        wait: a log with nothing in it yet (the job is pending) is waited for until its first line or the
          job's end (a job cancelled while pending writes none); False: what is there now, maybe nothing.
        raw: the text as written (newlines kept, no prefixes) in pieces of at most `block_size` characters
          instead of lines (0.4.8's `raw=`)."""
        _check_log_options(block_size=block_size, wait=wait, follow=follow, raw=raw)
        if raw:
            async for piece in _pieces(self.logs(num_lines=num_lines, wait=wait, follow=follow), block_size):
                yield piece
            return
        files: dict[tuple[Any, str], list[str]] = {}
        connections = self._host.connections
        for job in self._jobs:
            path = job.log_path(
                await connections.state_root(job.ssh), await connections.store_id_for(job.experiment_id)
            )
            names = files.setdefault((job.ssh, path), [])
            if job.name not in names:
                names.append(job.name)
        labelled = len(files) > 1
        if not follow:
            for (ssh, path), names in files.items():
                prefix = f"[{'+'.join(names)}] " if labelled else ""
                lines = await tail(connections.transport(ssh), path, num_lines)
                if not lines and wait:
                    await self._log_started(ssh, path)
                    lines = await tail(connections.transport(ssh), path, num_lines)
                for line in lines:
                    yield prefix + line
            return

        async def lines_of(ssh: Any, path: str, prefix: str) -> AsyncIterator[str]:
            ids = [j.job_id for j in self._jobs if j.ssh == ssh]
            until = connections.watcher(ssh).wait(ids)
            async for line in scheduler.follow(
                connections.transport(ssh), path, num_lines=num_lines, until=until
            ):
                yield prefix + line

        streams = [
            lines_of(ssh, path, f"[{'+'.join(names)}] " if labelled else "")
            for (ssh, path), names in files.items()
        ]
        async for line in interleave(streams):
            yield line

    async def _log_started(self, ssh: Any, path: str) -> None:
        """Until the log has a line or every job of this unit on `ssh` has ended (one follow channel)."""
        connections = self._host.connections
        ids = [j.job_id for j in self._jobs if j.ssh == ssh]
        lines = scheduler.follow(
            connections.transport(ssh), path, num_lines=1, until=connections.watcher(ssh).wait(ids)
        )
        try:
            async for _ in lines:
                break
        finally:
            await lines.aclose()  # type: ignore[attr-defined]  # an async generator

    def __repr__(self) -> str:
        return f"{type(self).__name__}(experiment_id={self.experiment_id}, id={self._unit_id})"


def _check_log_options(*, block_size: object, **flags: object) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValidationError(f"block_size={block_size!r} must be an integer >= 1 (characters per piece)")
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValidationError(f"{name}={value!r} must be True or False")


async def _pieces(lines: AsyncIterator[str], size: int) -> AsyncIterator[str]:
    """The lines as text (newline-terminated), in pieces of at most `size` characters."""
    async for line in lines:
        text = line + "\n"
        for start in range(0, len(text), size):
            yield text[start : start + size]


def _failed_state() -> Any:
    from xm_slurm.status import SlurmWorkUnitStatusEnum

    return SlurmWorkUnitStatusEnum.FAILED


class SlurmWorkUnit(SlurmExperimentUnit, xm.WorkUnit):
    """A work unit: `work_unit_id` (1-based, per experiment), `identity`, jobs, status, logs."""

    @property
    def work_unit_id(self) -> int:
        return self._unit_id

    def __str__(self) -> str:
        return f"WorkUnit(experiment_id={self.experiment_id}, work_unit_id={self._unit_id})"


class SlurmAuxiliaryUnit(SlurmExperimentUnit, xm.AuxiliaryUnit):
    """An auxiliary unit (e.g. a parameter controller or TensorBoard); not counted as a work unit."""

    @property
    def auxiliary_unit_id(self) -> int:
        return self._unit_id

    def __str__(self) -> str:
        return f"AuxiliaryUnit(experiment_id={self.experiment_id}, id={self._unit_id})"
