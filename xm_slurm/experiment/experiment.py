"""`SlurmExperiment`: XManager's `Experiment` on Slurm (its entry points are in `access.py`).

`add` validates synchronously (a `ValidationError` before anything is submitted or stored), then launches in
the background: it returns an awaitable (an asyncio task; a `concurrent.futures.Future` when the experiment
was entered with a plain `with`); a list of args is a sweep, ONE job array. The experiment waits for every
launch when it exits, flushes its context, removes itself from the store if it has no work unit, and closes
its connections.

It implements XManager's hooks (`_create_experiment_unit`, `_get_experiment_unit`, the units'
`_wait_until_complete`) and extends `__enter__`; it overrides on purpose what must differ (each override
says why): `add` (a list of trials is ONE job array; `dependency=`), the exit (an error in the body cancels
adds not yet submitted, and says what was), `package` (our builders, after the checks that fail fast).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any

from xmanager import xm
from xmanager.xm import core as xm_core

from xm_slurm.api import Experiment, ExperimentPatch, XManagerAPI, client
from xm_slurm.config import SlurmClusterConfig
from xm_slurm.dependencies import SlurmDependency
from xm_slurm.errors import ValidationError, XmSlurmError
from xm_slurm.experiment import progress, script_errors
from xm_slurm.experiment.batch import AddBatch, Slot, on_loop, run_trial
from xm_slurm.experiment.connections import ClusterConnections, TransportFactory
from xm_slurm.experiment.context import ExperimentContext
from xm_slurm.experiment.handles import SlurmLaunchedJob
from xm_slurm.experiment.launching import Launcher, cancel_in_thread
from xm_slurm.experiment.planning import (
    PendingAdd,
    apply_args,
    dependencies_of,
    describe,
    display_args,
    trials_of,
)
from xm_slurm.experiment.preflight import package_checked, package_one_checked
from xm_slurm.experiment.recovery import SUBMISSION_GRACE_SECONDS, Resolution
from xm_slurm.experiment.registry import UnitMap, UnitRegistry
from xm_slurm.experiment.tracking import TrackingSetting
from xm_slurm.experiment.unit_ids import UnitIdReserver
from xm_slurm.experiment.units import SlurmAuxiliaryUnit, SlurmExperimentUnit, SlurmWorkUnit
from xm_slurm.text_rules import check_line

log = logging.getLogger(__name__)

current_experiment: contextvars.ContextVar[SlurmExperiment | None] = contextvars.ContextVar(
    "xm_slurm_current_experiment", default=None
)


class SlurmExperiment(progress.Waiting, xm.Experiment):
    """An experiment whose work units run on Slurm clusters; `wait` comes from `progress.Waiting`."""

    def __init__(
        self,
        *,
        title: str = "",
        api: XManagerAPI | None = None,
        record: Experiment | None = None,
        transport_factory: TransportFactory | None = None,
    ) -> None:
        self._client = api if api is not None else client()
        self._title = title if record is None else record.title
        self._xid: int | None = None if record is None else record.xid
        self._transport_factory = transport_factory
        self.connections = ClusterConnections(transport_factory, api=self._client)
        self._units = UnitRegistry(self, self._client)
        self._identity_locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Future[Any]] = []
        self._sync_futures: list[concurrent.futures.Future[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: contextvars.Token[SlurmExperiment | None] | None = None
        self._context: ExperimentContext | None = None
        self._launcher: Launcher | None = None
        self._unit_ids: UnitIdReserver | None = None
        self._created = False  # entered as a new experiment (not reopened with get_experiment)
        self._before: set[int] = set()  # units there when entered (a body error names the later ones)
        self._cancelled = 0  # adds a body error cancelled before they were submitted
        script_errors.install_excepthook()  # an uncaught error of ours prints the script's lines, not ours
        if record is not None:
            self._context = ExperimentContext.from_experiment(self._client, record)
            self._launcher = Launcher(self._client, record.xid, self.connections)
            self._unit_ids = UnitIdReserver(self._client, record.xid)
            for wu in record.work_units:
                self._units.adopt(wu)

    tracking = TrackingSetting()  # opt-in W&B / MLflow run identity: `experiment.tracking = RunTracking(...)`
    # --- identity ---

    @property
    def experiment_id(self) -> int:
        if self._xid is None:
            raise XmSlurmError(
                "the experiment has no id yet: enter it first (async with create_experiment(...))"
            )
        return self._xid

    @property
    def context(self) -> ExperimentContext:
        if self._context is None:
            raise XmSlurmError("the experiment context exists once the experiment is entered")
        return self._context

    @property
    def launcher(self) -> Launcher:
        if self._launcher is None:
            raise XmSlurmError("the experiment is not entered")
        return self._launcher

    @property
    def unit_ids(self) -> UnitIdReserver:
        if self._unit_ids is None:
            raise XmSlurmError("the experiment is not entered")
        return self._unit_ids

    @property
    def experiment_title(self) -> str:
        return self._title

    @property
    def work_units(self) -> UnitMap[SlurmWorkUnit]:
        """`{work_unit_id: unit}`; also callable, `experiment.work_units()`, as launch scripts written for
        xmanager-slurm 0.4.x and XManager's own backends call it."""
        return UnitMap((u.unit_id, u) for u in self._units if isinstance(u, SlurmWorkUnit))

    @property
    def auxiliary_units(self) -> UnitMap[SlurmAuxiliaryUnit]:
        return UnitMap((u.unit_id, u) for u in self._units if isinstance(u, SlurmAuxiliaryUnit))

    @property
    def work_unit_count(self) -> int:
        return len(self.work_units)

    def unit(self, unit_id: int) -> SlurmExperimentUnit:
        """A work unit or auxiliary unit by id."""
        unit = self._units.get(unit_id)
        if unit is None:
            raise XmSlurmError(f"experiment {self._xid} has no work unit {unit_id}")
        return unit

    # --- the store's records ---

    async def resolve_pending_submissions(self, *, grace: float = SUBMISSION_GRACE_SECONDS) -> Resolution:
        """Settle the submissions a killed launch left pending (docs/reliability.md): a job Slurm knows by
        the submission token is adopted; a row Slurm does not know and older than `grace` seconds is
        dropped, with its work unit if the unit has no other job. Rows stay pending if the cluster cannot
        answer. `get_experiment` and entering a reloaded experiment call this already."""
        return await self._units.resolve_pending(grace)

    # --- adding work ---

    def add(
        self,
        job: xm.JobType,
        args: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        role: xm.ExperimentUnitRole | None = None,
        dependency: SlurmDependency | Sequence[SlurmDependency | None] | None = None,
        identity: str = "",
    ) -> Awaitable[Any]:
        """Add a work unit (or, with a list of args, one per trial, as ONE job array).

        Returns an awaitable of the unit (a list of units for a sweep). See the module docstring.
        """
        if self._launcher is None or self._loop is None:
            raise XmSlurmError("enter the experiment first: async with xm_slurm.create_experiment(...) as e")
        trials, sweep = trials_of(args)
        deps = dependencies_of(dependency, len(trials), sweep)
        if isinstance(job, xm.AuxiliaryUnitJob):
            role = job.role
        role = role if role is not None else xm.WorkUnitRole()
        if not isinstance(role, xm.ExperimentUnitRole):
            raise ValidationError(f"role={role!r} must be xm.WorkUnitRole() or xm.AuxiliaryUnitRole(...)")
        if not isinstance(identity, str):
            raise ValidationError(f"identity={identity!r} must be a string")
        check_line(identity, "identity")  # stored and shown by `xm-slurm show`: one line
        if isinstance(job, (xm.Job, xm.JobGroup)):
            for i, trial in enumerate(trials):  # every trial checked before anything is submitted
                where = f"trial #{i}" if sweep else "job"
                try:
                    describe(apply_args(job, trial), where)
                except ValidationError as e:
                    raise ValidationError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
        elif not callable(job):
            raise ValidationError(
                f"cannot add {job!r}: use an xm.Job, an xm.JobGroup or an async job generator"
            )
        coro = self._launch(job, trials, deps, role, identity, sweep)
        if self._loop.is_running() and not on_loop(self._loop):  # a `with` block: the loop runs in a thread
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._sync_futures.append(future)
            return future  # type: ignore[return-value]
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    async def _launch(
        self,
        job: Any,
        trials: list[Mapping[str, Any] | None],
        deps: list[SlurmDependency | None],
        role: xm.ExperimentUnitRole,
        identity: str,
        sweep: bool,
    ) -> Any:
        if not identity:
            units = await self._launch_units(job, trials, deps, role, [""] * len(trials))
            return units if sweep else units[0]
        # Trial i of a sweep added with an identity is the unit `<identity>/<i>`: re-adding the sweep
        # returns the units that exist and launches only the missing ones.
        identities = [f"{identity}/{i}" for i in range(len(trials))] if sweep else [identity]

        async def launch(missing: list[int]) -> list[SlurmExperimentUnit]:
            picked = [trials[i] for i in missing], [deps[i] for i in missing]
            return await self._launch_units(job, *picked, role, [identities[i] for i in missing])

        async with self._identity_locks.setdefault(identity, asyncio.Lock()):
            units = await self._units.by_identity(identities, launch)
        return units if sweep else units[0]

    async def _launch_units(
        self,
        job: Any,
        trials: list[Mapping[str, Any] | None],
        deps: list[SlurmDependency | None],
        role: xm.ExperimentUnitRole,
        identities: Sequence[str],
    ) -> list[SlurmExperimentUnit]:
        batch = AddBatch(self.launcher)
        new = [
            self._create_experiment_unit(display_args(job, t), role, i)
            for t, i in zip(trials, identities, strict=True)
        ]
        units = await asyncio.gather(*new)
        calls = []
        for i, (unit, trial, dep) in enumerate(zip(units, trials, deps, strict=True)):
            batch.slots[unit] = Slot(i, dep)
            calls.append((unit, functools.partial(run_trial, unit, job, trial)))
        token = current_experiment.set(self)
        try:
            failed = await batch.run(calls)
        finally:
            current_experiment.reset(token)
        empty = [u for u in units if not u.recorded and u not in failed]
        if empty:  # a generator that added nothing still made a work unit
            await self._client.ainsert_work_units(self.experiment_id, [u.to_patch() for u in empty])
            for u in empty:
                u.launched([], recorded=True)
        errors = []
        for unit in units:
            error = failed.get(unit)
            if error is not None:
                unit.launch_failed(error)
                errors.append((unit, error))
                if unit.slurm_jobs:  # stop what an earlier batch of this unit submitted
                    await self.launcher.cancel(unit.slurm_jobs)
        if errors:
            unit, error = errors[0]
            more = f" ({len(errors) - 1} other units failed too)" if len(errors) > 1 else ""
            if isinstance(error, XmSlurmError):
                raise script_errors.for_script(type(error)(f"launching {unit} failed: {error}{more}"), error)
            raise error
        return units

    async def retry_failed(
        self,
        work_units: Sequence[SlurmExperimentUnit] | None = None,
        *,
        include_cancelled: bool = False,
        resume: bool = False,
    ) -> list[SlurmExperimentUnit]:
        """Resubmit only the failed jobs of these work units (default: all of them), reusing the units.

        Returns the units that were retried; see `Launcher.retry_failed`, docs/scale.md (and, for `resume`,
        docs/provenance.md: a retry starts a new run identity unless it resumes).
        """
        units = list(work_units) if work_units is not None else list(self.work_units.values())
        return await self.launcher.retry_failed(units, include_cancelled=include_cancelled, resume=resume)

    def cancel_soon(self, jobs: Sequence[SlurmLaunchedJob]) -> Any:
        """scancel `jobs` without waiting (XManager's `unit.stop()` is a plain call); returns an awaitable
        of whether all were cancelled (a `concurrent.futures.Future` when no event loop runs here).

        In an entered experiment, on its loop: a task, awaited when the experiment exits; from another
        thread (a `with` block): sent to the experiment's loop. Otherwise (a reopened experiment nobody
        entered, whose caller's loop may end right after this call): in a worker thread with connections
        of its own, which the interpreter waits for before it exits."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is self._loop:
            task = asyncio.ensure_future(self.launcher.cancel(jobs))
            self._tasks.append(task)
            return task
        if self._loop is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.launcher.cancel(jobs), self._loop)
            self._sync_futures.append(future)
        else:
            future = cancel_in_thread(self._client, self.experiment_id, self._transport_factory, jobs)
        return future if running is None else asyncio.wrap_future(future)

    def submit_alone(self, pending: PendingAdd) -> asyncio.Future[None]:
        """An add outside `experiment.add` (e.g. on a unit returned earlier): submitted on its own."""
        self._tasks.append(self.launcher.submit_soon([pending]))
        return pending.future

    # --- packaging ---

    @classmethod
    def package(
        cls, packageables: Sequence[xm.Packageable] = (), *, clusters: Sequence[SlurmClusterConfig] = ()
    ) -> Sequence[xm.Executable]:
        """Build (or pin) the images; first, in seconds, the registries pushed to must answer and each of
        `clusters` accept our login (host key included): `preflight.package_checked`."""
        return package_checked(list(packageables), clusters)

    @classmethod
    def package_async(cls, packageable: xm.Packageable) -> Awaitable[xm.Executable]:
        return asyncio.ensure_future(package_one_checked(packageable))

    # --- lifetime ---

    async def __aenter__(self) -> SlurmExperiment:
        self._loop = asyncio.get_running_loop()
        if self._xid is None:
            self._xid = await self._client.ainsert_experiment(ExperimentPatch(title=self._title))
            self._created = True
            self._context = ExperimentContext(self._client, self._xid, title=self._title)
            self._launcher = Launcher(self._client, self._xid, self.connections)
            self._unit_ids = UnitIdReserver(self._client, self._xid)
        elif self._units.pending_records:  # a reloaded experiment: settle what a killed launch left first
            await self.resolve_pending_submissions()
        self._token = current_experiment.set(self)
        self._before = {u.unit_id for u in self._units}
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):  # the token came from another context (sync entry)
                current_experiment.reset(self._token)
            self._token = None
        first: BaseException | None = None
        while self._tasks:  # launches may add more (an add outside experiment.add)
            tasks, self._tasks = self._tasks, []
            if exc is not None:
                # Unlike XManager, which waits for every add: after an error in the body (e.g. a
                # forgotten await), adds not yet submitted are cancelled; a batch already submitting
                # finishes and records its jobs (drained below).
                self._cancelled += sum(task.cancel() for task in tasks)
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException) and first is None:
                    first = result
        if self._launcher is not None:
            await self._launcher.drain()
        if exc is not None:  # the script's reader learns what runs and what was not submitted
            script_errors.note_body_error(exc, self._xid, self._units, self._before, self._cancelled)
        try:
            await self.context.flush()
            if self._created and not any(u.recorded for u in self._units):
                await self._delete_if_empty()
        except XmSlurmError as e:
            if first is None and exc is None:
                raise
            # The launch's own error says what happened to its jobs: do not hide it behind this one.
            log.warning("closing experiment %s after a failed launch: %s", self._xid, e)
        finally:
            self.context.writes.close()
            await self.connections.aclose()
        if first is not None and exc is None:
            raise script_errors.for_script(first)

    async def _delete_if_empty(self) -> None:
        """As in xmanager-slurm 0.4.x, an experiment without work units is not kept; but other processes
        may have added to it meanwhile (it is in the store from the moment it was entered), so the store,
        not this process, says whether it is empty."""
        record = await self._client.aget_experiment(self.experiment_id)
        if not record.work_units:
            await self._client.adelete_experiment(self.experiment_id)

    # XManager's `__enter__` is what we want (a loop in a thread, running our `__aenter__`), with our
    # message where a loop already runs (its own is a bare RuntimeError). Its `__exit__` waits for its own
    # task queue only; ours also runs `__aexit__` (flush, clean up, close connections).
    def __enter__(self) -> SlurmExperiment:
        script_errors.refuse_sync_entry_in_a_loop()
        return super().__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, thread = self._loop, self._event_loop_thread
        assert loop is not None
        try:
            if exc is not None:  # as in __aexit__: adds not submitted yet are cancelled
                self._cancelled += sum(future.cancel() for future in self._sync_futures)
            concurrent.futures.wait(self._sync_futures)
            errors = [f.exception() for f in self._sync_futures if not f.cancelled() and f.exception()]
            error = asyncio.run_coroutine_threadsafe(self.__aexit__(exc_type, exc, tb), loop).exception()
            if error is not None or (errors and exc is None):
                raise script_errors.for_script(error or errors[0])  # type: ignore[arg-type]  # not the future's frames
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            xm_core._current_experiment.reset(self._current_experiment_token)

    async def aclose(self) -> None:
        """Close the connections of an experiment obtained with `get_experiment` and never entered."""
        await self.connections.aclose()
        if self._context is not None:
            self._context.writes.close()

    # --- XManager's hooks ---

    async def _create_experiment_unit(
        self, args: Any, role: xm.ExperimentUnitRole, identity: str
    ) -> SlurmExperimentUnit:
        """A new unit, its id reserved in the store (calls made together share one reservation, in order)."""
        return self._units.new(role, args, identity, await self.unit_ids.reserve(1))

    async def _get_experiment_unit(
        self, experiment_id: int, identity: str, role: xm.ExperimentUnitRole, args: Any = None
    ) -> SlurmExperimentUnit | None:
        """The unit named `identity` once its submission is settled, or None."""
        unit = (await self._units.find_all([identity])).get(identity)
        return None if unit is None else await self._units.settled(unit)

    def _should_reload_experiment_unit(self, role: xm.ExperimentUnitRole) -> bool:
        return False  # an identity is looked up by our `add` itself (`UnitRegistry.by_identity`)

    def __repr__(self) -> str:
        return f"SlurmExperiment(experiment_id={self._xid}, title={self._title!r})"


__all__ = ["SlurmExperiment"]
