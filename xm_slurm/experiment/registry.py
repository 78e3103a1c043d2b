"""The units of one experiment: those this process made and those the metadata store records.

`UnitRegistry` rebuilds units from stored records (with live job handles), keeps the records whose job rows
are still pending (recorded before an sbatch whose launch did not finish) and settles them, and finds units
by identity, here or in the store.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from xmanager import xm

from xm_slurm.api import ConflictError, ExperimentUnitRole, WorkUnit, XManagerAPI
from xm_slurm.errors import NotFoundError, XmSlurmError
from xm_slurm.experiment.handles import SlurmLaunchedJob, is_pending
from xm_slurm.experiment.recovery import Resolution, resolve_pending
from xm_slurm.experiment.retrying import current_jobs
from xm_slurm.experiment.units import (
    SlurmAuxiliaryUnit,
    SlurmExperimentUnit,
    SlurmWorkUnit,
    UnitHost,
)
from xm_slurm.scheduler.states import SUBMISSION_GRACE_SECONDS

#: How often one identity add looks again after concurrent launches recorded and dropped its unit.
IDENTITY_ATTEMPTS = 5

U = TypeVar("U")


class UnitMap(dict[int, U]):
    """Units by id, a dict that calling returns (XManager's `work_units` is a property, 0.4.x's a method)."""

    def __call__(self) -> UnitMap[U]:
        return self


class UnitRegistry:
    """Units by id (work and auxiliary units share one id sequence)."""

    def __init__(self, host: UnitHost, client: XManagerAPI) -> None:
        self._host = host
        self._client = client
        self._units: dict[int, SlurmExperimentUnit] = {}
        #: Stored records that hold pending rows: `resolve_pending` settles them.
        self.pending_records: dict[int, WorkUnit] = {}

    def __iter__(self) -> Iterator[SlurmExperimentUnit]:
        return iter([u for _, u in sorted(self._units.items())])

    def get(self, unit_id: int) -> SlurmExperimentUnit | None:
        return self._units.get(unit_id)

    def forget(self, unit_id: int) -> None:
        self._units.pop(unit_id, None)
        self.pending_records.pop(unit_id, None)

    def new(self, role: xm.ExperimentUnitRole, args: Any, identity: str, unit_id: int) -> SlurmExperimentUnit:
        cls = SlurmAuxiliaryUnit if isinstance(role, xm.AuxiliaryUnitRole) else SlurmWorkUnit
        unit = cls(self._host, unit_id, role, args, identity)
        self._units[unit_id] = unit
        return unit

    def adopt(self, record: WorkUnit) -> SlurmExperimentUnit:
        """The unit a stored record describes, with handles for its real jobs."""
        try:
            args = json.loads(record.args) if record.args else None
        except ValueError:
            args = record.args
        role: xm.ExperimentUnitRole = xm.WorkUnitRole()
        cls: type[SlurmExperimentUnit] = SlurmWorkUnit
        if record.role is ExperimentUnitRole.AUX_UNIT:
            role, cls = xm.AuxiliaryUnitRole(termination_delay_secs=0), SlurmAuxiliaryUnit
        # A retried job is superseded by its retry (whose stored `retry_of` names it): report the newest
        # attempt only (rows of older versions read with their lineage, see api.models). Pending rows have no
        # Slurm id yet: they get no handle (the unit reports PENDING) until they are resolved.
        xid = self._host.experiment_id
        real = [SlurmLaunchedJob.from_record(j, xid) for j in record.jobs if not is_pending(j)]
        if len(real) < len(record.jobs):
            self.pending_records[record.wid] = record
        else:
            self.pending_records.pop(record.wid, None)
        unit = cls(
            self._host,
            record.wid,
            role,
            args,
            record.identity,
            jobs=tuple(current_jobs(real)),
            artifacts={a.name: a.uri for a in record.artifacts},
            recorded=True,
        )
        self._units[record.wid] = unit
        return unit

    async def resolve_pending(self, grace: float = SUBMISSION_GRACE_SECONDS) -> Resolution:
        """Settle the pending records (see `recovery.resolve_pending`) and update the units."""
        if not self.pending_records:
            return Resolution()
        result = await resolve_pending(
            self._client,
            self._host.experiment_id,
            list(self.pending_records.values()),
            self._host.connections,
            grace=grace,
        )
        for wid, handles in result.adopted.items():
            if (unit := self._units.get(wid)) is not None:
                unit.launched(handles)
        for wid in result.deleted_units:
            self._units.pop(wid, None)
        self.pending_records = {wu.wid: wu for wu in result.remaining}
        return result

    async def find_all(self, identities: Sequence[str]) -> dict[str, SlurmExperimentUnit]:
        """The units these identities name, here or in the store (one store read)."""
        wanted = set(identities)
        out = {u.identity: u for u in self._units.values() if u.identity in wanted and u.recorded}
        missing = wanted - set(out)
        xid = self._host.experiment_id
        records: list[WorkUnit] = []
        if len(missing) == 1:
            record = await self._client.afind_work_unit(xid, next(iter(missing)))
            records = [] if record is None else [record]
        elif missing:
            records = [
                wu for wu in (await self._client.aget_experiment(xid)).work_units if wu.identity in missing
            ]
        for record in records:
            out[record.identity] = self.adopt(record)
        return out

    async def settled(self, unit: SlurmExperimentUnit) -> SlurmExperimentUnit | None:
        """`unit` once none of its jobs is pending any more (another launch recorded it before its sbatch):
        waits for that launch to finish, or resolves what a killed one left (adopting a job Slurm has,
        dropping rows Slurm never got once they are older than the grace). None if the unit was dropped."""
        delay = 0.1
        deadline = time.monotonic() + SUBMISSION_GRACE_SECONDS + 60.0
        xid = self._host.experiment_id
        while unit.unit_id in self.pending_records:
            result = await self.resolve_pending()
            if unit.unit_id in result.deleted_units:
                return None
            if unit.unit_id not in self.pending_records:
                break
            try:  # the launch that wrote the rows may have finished meanwhile
                self.adopt(await self._client.aget_work_unit(xid, unit.unit_id))
            except NotFoundError:
                self.forget(unit.unit_id)
                return None
            if unit.unit_id not in self.pending_records:
                break
            if time.monotonic() > deadline:
                raise XmSlurmError(
                    f"work unit {unit.unit_id} (identity {unit.identity!r}) of experiment {xid} holds a "
                    "submission whose fate the cluster cannot tell yet (it may still be submitted by "
                    "another launch); nothing new was submitted: add it again later, or reopen the "
                    "experiment to resolve it"
                )
            # Another process's launch, or the grace of a killed one: polling the store is the only way
            # to see either end.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return self._units.get(unit.unit_id, unit)

    async def by_identity(
        self,
        identities: list[str],
        launch: Callable[[list[int]], Awaitable[list[SlurmExperimentUnit]]],
    ) -> list[SlurmExperimentUnit]:
        """The unit of each identity: the existing one once its submission is settled, else a new one
        (`launch(indices)` launches the missing ones together, as one array for a sweep).

        Another process may record one of these identities between our look-up and our record: the store's
        unique identity then refuses our record before its sbatch (ConflictError), and we look again."""
        found: dict[int, SlurmExperimentUnit] = {}
        xid = self._host.experiment_id
        for _ in range(IDENTITY_ATTEMPTS):
            existing = await self.find_all([x for i, x in enumerate(identities) if i not in found])
            for i, identity in enumerate(identities):
                if i not in found and (unit := existing.get(identity)) is not None:
                    settled = await self.settled(unit)
                    if settled is not None:  # else: never submitted and dropped: launch it ourselves
                        found[i] = settled
            missing = [i for i in range(len(identities)) if i not in found]
            if not missing:
                return [found[i] for i in range(len(identities))]
            try:
                found.update(zip(missing, await launch(missing), strict=True))
            except ConflictError:
                # Ours were never recorded nor submitted: they go, and the next round finds theirs.
                wanted = set(identities)
                for unit in [u for u in self._units.values() if u.identity in wanted and not u.recorded]:
                    self.forget(unit.unit_id)
                if not any([await self._client.afind_work_unit(xid, identities[i]) for i in missing]):
                    raise
        raise XmSlurmError(
            f"identity {identities[0]!r} of experiment {xid}: its work unit was recorded and dropped "
            f"{IDENTITY_ATTEMPTS} times by concurrent launches; add it again"
        )
