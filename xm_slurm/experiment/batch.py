"""One `experiment.add`: its trials' generators run together, and what they add is submitted together.

`experiment.add(job, args=[...])` makes one unit per trial and runs each trial's generator (for a plain job,
one that adds the job to its unit). The jobs the generators add are collected here and handed to the
launcher in as few batches as possible: a batch goes once every generator still running is waiting for an
add of its own (or has finished), so a sweep of plain jobs is ONE submission (one job array), and a
generator that awaits its first job before adding a second makes a second batch.

Adds find their batch through a context variable set for the generators' tasks: a unit keeps no launch
state, and an add made outside any `experiment.add` (e.g. on a unit returned earlier) is submitted alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from xmanager import xm

from xm_slurm.dependencies import SlurmDependency
from xm_slurm.experiment.launching import Launcher
from xm_slurm.experiment.planning import PendingAdd

#: The batch of the `experiment.add` whose generator is running (set in the generators' tasks only).
current_batch: contextvars.ContextVar[AddBatch | None] = contextvars.ContextVar(
    "xm_slurm_add_batch", default=None
)


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` runs this code (else the experiment was entered with `with`: its loop is a thread's)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def run_trial(unit: Any, job: Any, trial: Mapping[str, Any] | None) -> None:
    """One trial's generator (for a plain job or job group: one that adds it to the unit)."""
    if isinstance(job, (xm.Job, xm.JobGroup)):
        unit.add(job, trial)  # collected; the collector submits it with the other trials
        return
    coroutine = job(unit, **(trial or {}))
    if coroutine is not None:
        await coroutine


@dataclasses.dataclass(frozen=True)
class Slot:
    """A unit's place in its batch: its trial (the array task it gets) and its default dependency."""

    trial_index: int
    dependency: SlurmDependency | None


class AddBatch:
    """Runs the generators of one `experiment.add` and submits the jobs they add, batched."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.slots: dict[Any, Slot] = {}  # by unit (units compare by identity)
        self._pending: list[PendingAdd] = []
        self._waiting: dict[Any, int] = {}  # unit -> adds not submitted yet
        self._changed = asyncio.Event()

    def enqueue(self, add: PendingAdd) -> asyncio.Future[None]:
        self.launcher.prefetch(add.cluster.ssh)  # the first add of a cluster starts reading its limits
        self.launcher.check_dependency(add.cluster.ssh, add.dependency)  # and asking for its dependencies
        self._pending.append(add)
        self._waiting[add.unit] = self._waiting.get(add.unit, 0) + 1
        self._changed.set()
        return add.future

    async def run(
        self, calls: Sequence[tuple[Any, Callable[[], Awaitable[Any]]]]
    ) -> dict[Any, BaseException]:
        """Run each unit's generator (`calls`: (unit, generator call)); returns the units that failed."""
        token = current_batch.set(self)
        try:
            tasks: dict[asyncio.Future[Any], Any] = {}
            for i, (unit, call) in enumerate(calls):
                tasks[asyncio.ensure_future(call())] = unit
                if i % 64 == 63:
                    # Let the cluster look-up the first add started (its limits: an SSH command) make
                    # progress while the other trials are prepared, instead of after all of them.
                    await asyncio.sleep(0)
        finally:
            current_batch.reset(token)
        failed: dict[Any, BaseException] = {}
        try:
            await self._submit_rounds(tasks, failed)
        except BaseException:
            for task in tasks:
                task.cancel()
            for add in self._pending:
                add.future.cancel()
            raise
        for task, unit in tasks.items():
            if task.cancelled():
                failed.setdefault(unit, asyncio.CancelledError())
            elif task.exception() is not None:
                failed.setdefault(unit, task.exception())  # type: ignore[arg-type]
        return failed

    async def _submit_rounds(
        self, tasks: dict[asyncio.Future[Any], Any], failed: dict[Any, BaseException]
    ) -> None:
        while True:
            running = [t for t in tasks if not t.done()]
            if any(not self._waiting.get(tasks[t]) for t in running):
                # A generator is still preparing its next add: wait until something is added or one ends.
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait([*running, changed], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                continue
            for task, unit in tasks.items():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    failed.setdefault(unit, task.exception())  # type: ignore[arg-type]
            batch = [a for a in self._pending if a.unit not in failed]
            for add in self._pending:
                if add.unit in failed:
                    add.future.cancel()
            self._pending = []
            self._waiting.clear()
            if batch:
                # Shielded: once a batch is submitting, cancelling the add (an error in the experiment's
                # body) lets it finish and record what it submitted, never leaves it half done.
                await asyncio.shield(self.launcher.submit_soon(batch))
                for add in batch:
                    if not add.future.cancelled() and add.future.exception() is not None:
                        failed.setdefault(add.unit, add.future.exception())  # type: ignore[arg-type]
            elif not running:
                return
