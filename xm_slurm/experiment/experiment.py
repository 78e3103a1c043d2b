"""`SlurmExperiment`: XManager's `Experiment` on Slurm, and `create_experiment` / `get_experiment`.

    async with xm_slurm.create_experiment("title") as experiment:     # or `with ...` from sync code
        wu = await experiment.add(job)                                 # one work unit, one Slurm job
        wus = await experiment.add(job, args=[{"args": {...}}, ...])   # a sweep: ONE job array

`add` validates synchronously (a `ValidationError` before anything is submitted or stored), then launches in
the background: it returns an awaitable (an asyncio task; a `concurrent.futures.Future` when the experiment
was entered with a plain `with`). The experiment waits for every launch when it exits, flushes its context,
removes itself from the store if it has no work unit, and closes its connections.

Of `xm.Experiment`'s private names we only implement its three abstract hooks; `add`, the context manager
protocol, `package`, `work_units` and `context` are our own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from xmanager import xm

from xm_slurm.api import ConflictError, Experiment, ExperimentPatch, WorkUnit, XManagerAPI, client
from xm_slurm.dependencies import SlurmDependency
from xm_slurm.errors import NotFoundError, ValidationError, XmSlurmError
from xm_slurm.experiment.batch import AddBatch, Slot
from xm_slurm.experiment.connections import ClusterConnections, TransportFactory
from xm_slurm.experiment.context import ExperimentContext
from xm_slurm.experiment.handles import SlurmLaunchedJob, is_pending
from xm_slurm.experiment.launching import Launcher
from xm_slurm.experiment.planning import PendingAdd, apply_args, describe, display_args
from xm_slurm.experiment.recovery import SUBMISSION_GRACE_SECONDS, Resolution, pending_rows, resolve_pending
from xm_slurm.experiment.retrying import current_jobs
from xm_slurm.experiment.unit_ids import UnitIdReserver
from xm_slurm.experiment.units import ROLE_KEY, SlurmAuxiliaryUnit, SlurmExperimentUnit, SlurmWorkUnit
from xm_slurm.text_rules import MAX_TITLE, check_line

log = logging.getLogger(__name__)

#: How often one identity add looks again after concurrent launches recorded and dropped its unit.
_IDENTITY_ATTEMPTS = 5

_current: contextvars.ContextVar[SlurmExperiment | None] = contextvars.ContextVar(
    "xm_slurm_current_experiment", default=None
)


def _trials(args: Any) -> tuple[list[Mapping[str, Any] | None], bool]:
    if isinstance(args, (list, tuple)):
        trials: list[Mapping[str, Any] | None] = []
        for i, trial in enumerate(args):
            if trial is not None and not isinstance(trial, Mapping):
                raise ValidationError(
                    f"sweep trial #{i} is {trial!r}; each trial must be a mapping such as "
                    "xm_slurm.JobArgs(args={...}, env_vars={...})"
                )
            trials.append(trial)
        return trials, True
    if args is not None and not isinstance(args, Mapping):
        raise ValidationError(f"args={args!r} must be a mapping (one work unit) or a list of them (a sweep)")
    return [args], False


def _dependencies(dependency: Any, n: int, sweep: bool) -> list[SlurmDependency | None]:
    if isinstance(dependency, (list, tuple)):
        if not sweep:
            raise ValidationError(
                "dependency is a list, which is only for a sweep (one dependency per trial); "
                "combine dependencies with & or | instead"
            )
        if len(dependency) != n:
            raise ValidationError(
                f"dependency has {len(dependency)} entries for {n} trials; give one per trial (or one for all)"
            )
        deps = list(dependency)
    else:
        deps = [dependency] * n
    for i, dep in enumerate(deps):
        if dep is not None and not isinstance(dep, SlurmDependency):
            raise ValidationError(
                f"dependency #{i} is {dep!r}; use wu.after_completed(), xm_slurm.dependencies.afterok(...), ..."
            )
    return deps


U = TypeVar("U")


class UnitMap(dict[int, U]):
    """Units by id, a dict that calling returns (XManager's `work_units` is a property, 0.4.x's a method)."""

    def __call__(self) -> UnitMap[U]:
        return self


class SlurmExperiment(xm.Experiment):
    """An experiment whose work units run on Slurm clusters."""

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
        self.connections = ClusterConnections(transport_factory)
        self._units: dict[int, SlurmExperimentUnit] = {}
        self._next_id = 0
        self._id_lock = threading.Lock()
        self._identity_locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Future[Any]] = []
        self._sync_futures: list[concurrent.futures.Future[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: contextvars.Token[SlurmExperiment | None] | None = None
        self._context: ExperimentContext | None = None
        self._launcher: Launcher | None = None
        self._unit_ids: UnitIdReserver | None = None
        self._created = False  # entered as a new experiment (not reopened with get_experiment)
        #: Stored work units that hold pending submissions (rows recorded before an sbatch whose launch
        #: did not finish): `resolve_pending_submissions` settles them.
        self._pending_records: dict[int, WorkUnit] = {}
        if record is not None:
            self._context = ExperimentContext.from_experiment(self._client, record)
            self._launcher = Launcher(self._client, record.xid, self.connections)
            self._unit_ids = UnitIdReserver(self._client, record.xid)
            for wu in record.work_units:
                self._adopt(wu)

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
        return UnitMap((i, u) for i, u in sorted(self._units.items()) if isinstance(u, SlurmWorkUnit))

    @property
    def auxiliary_units(self) -> UnitMap[SlurmAuxiliaryUnit]:
        return UnitMap((i, u) for i, u in sorted(self._units.items()) if isinstance(u, SlurmAuxiliaryUnit))

    @property
    def work_unit_count(self) -> int:
        return len(self.work_units)

    def unit(self, unit_id: int) -> SlurmExperimentUnit:
        """A work unit or auxiliary unit by id."""
        try:
            return self._units[unit_id]
        except KeyError:
            raise XmSlurmError(f"experiment {self._xid} has no work unit {unit_id}") from None

    # --- the store's records ---

    def _adopt(self, record: Any) -> SlurmExperimentUnit:
        try:
            args = json.loads(record.args) if record.args else None
        except ValueError:
            args = record.args
        role: xm.ExperimentUnitRole = xm.WorkUnitRole()
        cls: type[SlurmExperimentUnit] = SlurmWorkUnit
        if isinstance(args, dict) and args.get(ROLE_KEY) == "AUX_UNIT":
            role, cls, args = (
                xm.AuxiliaryUnitRole(termination_delay_secs=0),
                SlurmAuxiliaryUnit,
                args.get("args"),
            )
        # A retried job is superseded by its retry: report the newest attempt only. Pending rows have no
        # Slurm id yet: they get no handle (the unit reports PENDING) until they are resolved.
        real = [SlurmLaunchedJob.from_record(j, record_xid(self)) for j in record.jobs if not is_pending(j)]
        jobs = tuple(current_jobs(real))
        if len(real) < len(record.jobs):
            self._pending_records[record.wid] = record
        else:
            self._pending_records.pop(record.wid, None)
        unit = cls(
            self,
            record.wid,
            role,
            args,
            record.identity,
            jobs=jobs,
            artifacts={a.name: a.uri for a in record.artifacts},
            recorded=True,
        )
        self._units[record.wid] = unit
        with self._id_lock:
            self._next_id = max(self._next_id, record.wid)
        return unit

    async def resolve_pending_submissions(self, *, grace: float = SUBMISSION_GRACE_SECONDS) -> Resolution:
        """Settle the submissions a killed launch left pending (docs/reliability.md): a job Slurm knows by
        the submission token is adopted; a row Slurm does not know and older than `grace` seconds is
        dropped, with its work unit if the unit has no other job. Rows stay pending if the cluster cannot
        answer. `get_experiment` and entering a reloaded experiment call this already."""
        if not self._pending_records:
            return Resolution()
        result = await resolve_pending(
            self._client,
            self.experiment_id,
            list(self._pending_records.values()),
            self.connections,
            grace=grace,
        )
        for wid, handles in result.adopted.items():
            if (unit := self._units.get(wid)) is not None:
                unit.launched(handles)
        for wid in result.deleted_units:
            self._units.pop(wid, None)
        self._pending_records = {wu.wid: wu for wu in result.remaining}
        return result

    def _new_unit(
        self, role: xm.ExperimentUnitRole, args: Any, identity: str, unit_id: int
    ) -> SlurmExperimentUnit:
        with self._id_lock:
            self._next_id = max(self._next_id, unit_id)
        cls = SlurmAuxiliaryUnit if isinstance(role, xm.AuxiliaryUnitRole) else SlurmWorkUnit
        unit = cls(self, unit_id, role, args, identity)
        self._units[unit_id] = unit
        return unit

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
        trials, sweep = _trials(args)
        deps = _dependencies(dependency, len(trials), sweep)
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
        if self._thread is not None and threading.current_thread() is not self._thread:
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
        async with self._identity_locks.setdefault(identity, asyncio.Lock()):
            units = await self._launch_identities(job, trials, deps, role, identities)
        return units if sweep else units[0]

    async def _launch_identities(
        self,
        job: Any,
        trials: list[Mapping[str, Any] | None],
        deps: list[SlurmDependency | None],
        role: xm.ExperimentUnitRole,
        identities: list[str],
    ) -> list[SlurmExperimentUnit]:
        """The unit of each identity: the existing one once its submission is settled, else a new one (the
        new ones launched together, as one array for a sweep).

        Another process may record one of these identities between our look-up and our record: the store's
        unique identity then refuses our record before its sbatch (ConflictError), and we look again."""
        found: dict[int, SlurmExperimentUnit] = {}
        for _ in range(_IDENTITY_ATTEMPTS):
            existing_units = await self._find_all([x for i, x in enumerate(identities) if i not in found])
            for i, identity in enumerate(identities):
                if i not in found and (existing := existing_units.get(identity)) is not None:
                    settled = await self._settled(existing)
                    if settled is not None:  # else: never submitted and dropped: launch it ourselves
                        found[i] = settled
            missing = [i for i in range(len(identities)) if i not in found]
            if not missing:
                return [found[i] for i in range(len(identities))]
            try:
                units = await self._launch_units(
                    job,
                    [trials[i] for i in missing],
                    [deps[i] for i in missing],
                    role,
                    [identities[i] for i in missing],
                )
            except ConflictError:
                # Ours were never recorded nor submitted: they go, and the next round finds theirs.
                wanted = set(identities)
                for wid in [w for w, u in self._units.items() if u.identity in wanted and not u.recorded]:
                    del self._units[wid]
                if not any(
                    [await self._client.afind_work_unit(self.experiment_id, identities[i]) for i in missing]
                ):
                    raise
                continue
            found.update(zip(missing, units, strict=True))
        raise XmSlurmError(
            f"identity {identities[0]!r} of experiment {self.experiment_id}: its work unit was recorded and "
            f"dropped {_IDENTITY_ATTEMPTS} times by concurrent launches; add it again"
        )

    async def _find_all(self, identities: Sequence[str]) -> dict[str, SlurmExperimentUnit]:
        """The units these identities name, here or in the store (one store read)."""
        wanted = set(identities)
        out = {u.identity: u for u in self._units.values() if u.identity in wanted and u.recorded}
        missing = wanted - set(out)
        if len(missing) == 1:
            [identity] = missing
            record = await self._client.afind_work_unit(self.experiment_id, identity)
            records = [] if record is None else [record]
        elif missing:
            stored = await self._client.aget_experiment(self.experiment_id)
            records = [wu for wu in stored.work_units if wu.identity in missing]
        else:
            records = []
        for record in records:
            out[record.identity] = self._adopt(record)
        return out

    async def _settled(self, unit: SlurmExperimentUnit) -> SlurmExperimentUnit | None:
        """`unit` once none of its jobs is pending any more (another launch recorded it before its sbatch):
        waits for that launch to finish, or resolves what a killed one left (adopting a job Slurm has,
        dropping rows Slurm never got once they are older than the grace). None if the unit was dropped."""
        delay = 0.1
        deadline = time.monotonic() + SUBMISSION_GRACE_SECONDS + 60.0
        while unit.unit_id in self._pending_records:
            result = await self.resolve_pending_submissions()
            if unit.unit_id in result.deleted_units:
                return None
            if unit.unit_id not in self._pending_records:
                break
            try:  # the launch that wrote the rows may have finished meanwhile
                self._adopt(await self._client.aget_work_unit(self.experiment_id, unit.unit_id))
            except NotFoundError:
                self._units.pop(unit.unit_id, None)
                self._pending_records.pop(unit.unit_id, None)
                return None
            if unit.unit_id not in self._pending_records:
                break
            if time.monotonic() > deadline:
                raise XmSlurmError(
                    f"work unit {unit.unit_id} (identity {unit.identity!r}) of experiment "
                    f"{self.experiment_id} holds a submission whose fate the cluster cannot tell yet "
                    "(it may still be submitted by another launch); nothing new was submitted: add it "
                    "again later, or reopen the experiment to resolve it"
                )
            # Another process's launch, or the grace of a killed one: polling the store is the only way
            # to see either end.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return self._units.get(unit.unit_id, unit)

    async def _launch_units(
        self,
        job: Any,
        trials: list[Mapping[str, Any] | None],
        deps: list[SlurmDependency | None],
        role: xm.ExperimentUnitRole,
        identities: Sequence[str],
    ) -> list[SlurmExperimentUnit]:
        batch = AddBatch(self.launcher)
        units = []
        calls = []
        first_id = await self.unit_ids.reserve(len(trials))
        for i, (trial, dep, identity) in enumerate(zip(trials, deps, identities, strict=True)):
            unit = self._new_unit(role, display_args(job, trial), identity, first_id + i)
            batch.slots[unit] = Slot(i, dep)
            units.append(unit)
            calls.append((unit, functools.partial(_run, unit, job, trial)))
        token = _current.set(self)
        try:
            failed = await batch.run(calls)
        finally:
            _current.reset(token)
        empty = [u for u in units if not u.recorded and u not in failed]
        if empty:  # a generator that added nothing still made a work unit
            await self._client.ainsert_work_units(self.experiment_id, [u.to_patch() for u in empty])
            for u in empty:
                u.launched([], recorded=True)
        errors = []
        for unit in units:
            error = failed.get(unit)
            if error is not None:
                unit.launch_error = error
                errors.append((unit, error))
                if unit.slurm_jobs:  # stop what an earlier batch of this unit submitted
                    await self.launcher.cancel(unit.slurm_jobs)
        if errors:
            unit, error = errors[0]
            more = f" ({len(errors) - 1} other units failed too)" if len(errors) > 1 else ""
            if isinstance(error, XmSlurmError):
                raise type(error)(f"launching {unit} failed: {error}{more}") from error
            raise error
        return units

    async def retry_failed(
        self, work_units: Sequence[SlurmExperimentUnit] | None = None, *, include_cancelled: bool = False
    ) -> list[SlurmExperimentUnit]:
        """Resubmit only the failed jobs of these work units (default: all of them), reusing the units.

        Returns the units that were retried; see `Launcher.retry_failed` and docs/scale.md.
        """
        units = list(work_units) if work_units is not None else list(self.work_units.values())
        return await self.launcher.retry_failed(units, include_cancelled=include_cancelled)

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

            async def once() -> bool:
                connections = ClusterConnections(self._transport_factory)
                try:
                    return await Launcher(self._client, self.experiment_id, connections).cancel(jobs)
                finally:
                    await connections.aclose()

            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xm-slurm-stop")
            future = pool.submit(asyncio.run, once())
            pool.shutdown(wait=False)
        return future if running is None else asyncio.wrap_future(future)

    def submit_alone(self, pending: PendingAdd) -> asyncio.Future[None]:
        """An add outside `experiment.add` (e.g. on a unit returned earlier): submitted on its own."""
        self._tasks.append(self.launcher.submit_soon([pending]))
        return pending.future

    # --- packaging ---

    @classmethod
    def package(cls, packageables: Sequence[xm.Packageable] = ()) -> Sequence[xm.Executable]:
        from xm_slurm.packaging import package

        return package(list(packageables))

    @classmethod
    def package_async(cls, packageable: xm.Packageable) -> Awaitable[xm.Executable]:
        from xm_slurm.packaging import package_async

        async def one() -> xm.Executable:
            return (await package_async([packageable]))[0]

        return asyncio.ensure_future(one())

    # --- lifetime ---

    async def __aenter__(self) -> SlurmExperiment:
        self._loop = asyncio.get_running_loop()
        if self._xid is None:
            self._xid = await self._client.ainsert_experiment(ExperimentPatch(title=self._title))
            self._created = True
            self._context = ExperimentContext(self._client, self._xid, title=self._title)
            self._launcher = Launcher(self._client, self._xid, self.connections)
            self._unit_ids = UnitIdReserver(self._client, self._xid)
        elif self._pending_records:  # a reloaded experiment: settle what a killed launch left first
            await self.resolve_pending_submissions()
        self._token = _current.set(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            with contextlib.suppress(ValueError):  # the token came from another context (sync entry)
                _current.reset(self._token)
            self._token = None
        first: BaseException | None = None
        while self._tasks:  # launches may add more (an add outside experiment.add)
            tasks, self._tasks = self._tasks, []
            if exc is not None:
                # Unlike XManager, which waits for every add: after an error in the body (e.g. a
                # forgotten await), adds not yet submitted are cancelled; a batch already submitting
                # finishes and records its jobs (drained below).
                for task in tasks:
                    task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException) and first is None:
                    first = result
        if self._launcher is not None:
            await self._launcher.drain()
        try:
            await self.context.flush()
            if self._created and not any(u.recorded for u in self._units.values()):
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
            raise first

    async def _delete_if_empty(self) -> None:
        """As in xmanager-slurm 0.4.x, an experiment without work units is not kept; but other processes
        may have added to it meanwhile (it is in the store from the moment it was entered), so the store,
        not this process, says whether it is empty."""
        record = await self._client.aget_experiment(self.experiment_id)
        if not record.work_units:
            await self._client.adelete_experiment(self.experiment_id)

    def __enter__(self) -> SlurmExperiment:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise XmSlurmError("inside a coroutine, use `async with` to enter the experiment")
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="xm-slurm-experiment", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.__aenter__(), loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        try:
            if exc is not None:  # as in __aexit__: adds not submitted yet are cancelled
                for future in self._sync_futures:
                    future.cancel()
            concurrent.futures.wait(self._sync_futures)
            errors = [f.exception() for f in self._sync_futures if not f.cancelled() and f.exception()]
            asyncio.run_coroutine_threadsafe(self.__aexit__(exc_type, exc, tb), loop).result()
            if errors and exc is None:
                raise errors[0]  # type: ignore[misc]
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._thread = None

    async def aclose(self) -> None:
        """Close the connections of an experiment obtained with `get_experiment` and never entered."""
        await self.connections.aclose()
        if self._context is not None:
            self._context.writes.close()

    # --- xm.Experiment's abstract hooks (our `add` does not use them) ---

    def _get_experiment_unit(self, *args: Any, **kwargs: Any) -> Awaitable[xm.ExperimentUnit]:
        raise NotImplementedError("SlurmExperiment.add finds units by identity itself")

    def _create_experiment_unit(self, *args: Any, **kwargs: Any) -> Awaitable[xm.ExperimentUnit]:
        raise NotImplementedError("SlurmExperiment.add creates units itself")

    def _should_reload_experiment_unit(self, role: xm.ExperimentUnitRole) -> bool:
        return False

    def __repr__(self) -> str:
        return f"SlurmExperiment(experiment_id={self._xid}, title={self._title!r})"


def record_xid(experiment: SlurmExperiment) -> int:
    return experiment.experiment_id


async def _run(unit: SlurmExperimentUnit, job: Any, trial: Mapping[str, Any] | None) -> None:
    if isinstance(job, (xm.Job, xm.JobGroup)):
        unit.add(job, trial)  # collected; the collector submits it with the other trials
        return
    coroutine = job(unit, **(trial or {}))
    if coroutine is not None:
        await coroutine


# --- module-level API --------------------------------------------------------------------------------


def create_experiment(
    experiment_title: str = "", *, transport_factory: TransportFactory | None = None
) -> SlurmExperiment:
    """A new experiment; it is recorded in the metadata store when entered (`async with` / `with`)."""
    if not isinstance(experiment_title, str):
        raise ValidationError(f"experiment title {experiment_title!r} must be a string")
    check_line(experiment_title, "experiment title", MAX_TITLE)
    return SlurmExperiment(title=experiment_title, transport_factory=transport_factory)


def get_experiment(
    experiment_id: int, *, transport_factory: TransportFactory | None = None
) -> SlurmExperiment:
    """The stored experiment with its work units and jobs, with live handles (status, logs, stop).

    Use it as `async with get_experiment(xid) as e:` to add more work units; otherwise `await e.aclose()`
    when done with it.
    """
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int) or experiment_id < 1:
        raise ValidationError(f"experiment id {experiment_id!r} must be an integer >= 1")
    api = client()
    record = api.get_experiment(experiment_id)
    if pending_rows(record.work_units) and _resolve_now(api, record, transport_factory):
        record = api.get_experiment(experiment_id)
    return SlurmExperiment(api=api, record=record, transport_factory=transport_factory)


def _resolve_now(api: XManagerAPI, record: Experiment, transport_factory: TransportFactory | None) -> bool:
    """Resolve the record's pending submissions (synchronously: in a worker thread with its own event loop
    and connections, so it works inside and outside a running loop). True if the store changed."""

    async def resolve() -> bool:
        connections = ClusterConnections(transport_factory)
        try:
            return (await resolve_pending(api, record.xid, record.work_units, connections)).changed
        finally:
            await connections.aclose()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xm-slurm-resolve") as pool:
        return pool.submit(asyncio.run, resolve()).result()


def _env_id(name: str) -> int | None:
    """The id in `name`, or None when it is not set (not inside an xm_slurm job)."""
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise XmSlurmError(
            f"{name}={value!r} is not an id (every job xm_slurm launches has {name}=N, N >= 1)"
        )
    return int(value)


def get_current_experiment(*, transport_factory: TransportFactory | None = None) -> SlurmExperiment | None:
    """Inside a job: its experiment (from `XM_SLURM_EXPERIMENT_ID`). In a launch script while an
    experiment is entered: that experiment. Elsewhere: None (as in xmanager-slurm 0.4.x)."""
    xid = _env_id("XM_SLURM_EXPERIMENT_ID")
    if xid is None:
        return _current.get()
    return get_experiment(xid, transport_factory=transport_factory)


def get_current_work_unit(*, transport_factory: TransportFactory | None = None) -> SlurmExperimentUnit | None:
    """Inside a job: its work unit (from `XM_SLURM_EXPERIMENT_ID` and `XM_SLURM_WORK_UNIT_ID`); else None."""
    wid = _env_id("XM_SLURM_WORK_UNIT_ID")
    if wid is None or _env_id("XM_SLURM_EXPERIMENT_ID") is None:
        return None
    experiment = get_current_experiment(transport_factory=transport_factory)
    return None if experiment is None else experiment.unit(wid)


__all__ = [
    "SlurmExperiment",
    "UnitMap",
    "create_experiment",
    "get_current_experiment",
    "get_current_work_unit",
    "get_experiment",
]
