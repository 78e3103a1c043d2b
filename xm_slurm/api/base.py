"""The abstract metadata client (SPEC §2): synchronous methods plus `a`-prefixed async twins.

Scripts and tools call the synchronous methods directly, as in 0.4.x. Async code (the experiment layer) awaits
the twins, which never block the event loop: by default they run the synchronous method in a worker thread;
the REST backend overrides them with native `httpx.AsyncClient` calls.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence

from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
    Experiment,
    ExperimentPatch,
    ExperimentSummary,
    ExperimentUnitPatch,
    SlurmJob,
    WorkUnit,
    WorkUnitPatch,
)
from xm_slurm.errors import MetadataError

DEFAULT_LIST_LIMIT = 100


class ConflictError(MetadataError):
    """A write clashes with what is stored: a work unit id or identity already taken with other content."""


class XManagerAPI(abc.ABC):
    """Where experiments, work units, jobs and artifacts are recorded. Every write is idempotent when repeated."""

    # -- experiments -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_experiment(self, xid: int) -> Experiment:
        """The experiment with its work units, jobs and artifacts; `NotFoundError` if there is none."""

    @abc.abstractmethod
    def insert_experiment(self, experiment: ExperimentPatch) -> int:
        """Create an experiment and return its id (xid)."""

    @abc.abstractmethod
    def update_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        """Change the fields of the patch that are not None (tags are replaced as a whole)."""

    @abc.abstractmethod
    def delete_experiment(self, xid: int) -> None:
        """Delete the experiment with everything it holds."""

    @abc.abstractmethod
    def list_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        """Experiments, newest first, optionally filtered by a title substring and/or a tag."""

    # -- work units --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        """Record work unit `work_unit.wid` (1-based, chosen by the caller). Same content again is a no-op;
        a wid or non-empty identity already used with other content raises `ConflictError`."""

    @abc.abstractmethod
    def insert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        """`insert_work_unit` for a whole sweep, all or nothing (one transaction / one request)."""

    @abc.abstractmethod
    def reserve_work_unit_ids(self, xid: int, count: int) -> int:
        """Reserve `count` (1..1,000,000) fresh work unit ids of experiment `xid` and return the first.

        The ids `first .. first + count - 1` were never returned before for this experiment and no stored
        work unit uses them, even with several processes (or server workers) reserving at once: each call
        is one write transaction that moves the experiment's high-water mark past them.
        """

    @abc.abstractmethod
    def update_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        """Change the fields of the patch that are not None."""

    @abc.abstractmethod
    def get_work_unit(self, xid: int, wid: int) -> WorkUnit:
        """One work unit; `NotFoundError` if there is none."""

    @abc.abstractmethod
    def find_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        """The work unit launched with this (non-empty) identity, or None."""

    @abc.abstractmethod
    def insert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        """Attach a Slurm job to a work unit (the same job again is a no-op)."""

    @abc.abstractmethod
    def insert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        """`insert_job` for many `(wid, job)` pairs, all or nothing (one transaction / one request)."""

    @abc.abstractmethod
    def replace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        """In ONE transaction / request, in this order: record `work_units` (as `insert_work_units`);
        remove the job rows `(wid, slurm_job_id)` of `remove` (rows or units already gone are fine); insert
        `insert` (as `insert_jobs`: a missing work unit raises `NotFoundError` and nothing changes); delete
        the work units of `delete_empty_units` that hold no job afterwards (missing ones are fine).

        The launcher records a submission before its sbatch as pending rows and swaps them for the real
        ids after it (docs/reliability.md). Repeating a call changes nothing more.
        """

    # -- artifacts ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        """Set a work unit's artifact `artifact.name` (replacing its URI if it exists)."""

    @abc.abstractmethod
    def delete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None: ...

    @abc.abstractmethod
    def insert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        """Set an experiment's artifact `artifact.name` (replacing its URI if it exists)."""

    @abc.abstractmethod
    def delete_experiment_artifact(self, xid: int, name: str) -> None: ...

    @abc.abstractmethod
    def insert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        """Set the experiment's `PYTHON` or `GRAPHVIZ` config."""

    @abc.abstractmethod
    def delete_experiment_config_artifact(self, xid: int, name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the client stays usable: they reopen on demand)."""

    # -- async twins: same arguments, never block the event loop -----------------------------------------
    async def aget_experiment(self, xid: int) -> Experiment:
        return await asyncio.to_thread(self.get_experiment, xid)

    async def ainsert_experiment(self, experiment: ExperimentPatch) -> int:
        return await asyncio.to_thread(self.insert_experiment, experiment)

    async def aupdate_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        await asyncio.to_thread(self.update_experiment, xid, experiment_patch)

    async def adelete_experiment(self, xid: int) -> None:
        await asyncio.to_thread(self.delete_experiment, xid)

    async def alist_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        return await asyncio.to_thread(
            lambda: self.list_experiments(title_contains=title_contains, tag=tag, limit=limit, offset=offset)
        )

    async def ainsert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        await asyncio.to_thread(self.insert_work_unit, xid, work_unit)

    async def ainsert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        await asyncio.to_thread(self.insert_work_units, xid, work_units)

    async def areserve_work_unit_ids(self, xid: int, count: int) -> int:
        return await asyncio.to_thread(self.reserve_work_unit_ids, xid, count)

    async def aupdate_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        await asyncio.to_thread(self.update_work_unit, xid, wid, experiment_unit_patch)

    async def aget_work_unit(self, xid: int, wid: int) -> WorkUnit:
        return await asyncio.to_thread(self.get_work_unit, xid, wid)

    async def afind_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        return await asyncio.to_thread(self.find_work_unit, xid, identity)

    async def ainsert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        await asyncio.to_thread(self.insert_job, xid, wid, slurm_job)

    async def ainsert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        await asyncio.to_thread(self.insert_jobs, xid, jobs)

    async def areplace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        await asyncio.to_thread(
            lambda: self.replace_jobs(
                xid,
                work_units=work_units,
                remove=remove,
                insert=insert,
                delete_empty_units=delete_empty_units,
            )
        )

    async def ainsert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        await asyncio.to_thread(self.insert_work_unit_artifact, xid, wid, artifact)

    async def adelete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        await asyncio.to_thread(self.delete_work_unit_artifact, xid, wid, name)

    async def ainsert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        await asyncio.to_thread(self.insert_experiment_artifact, xid, artifact)

    async def adelete_experiment_artifact(self, xid: int, name: str) -> None:
        await asyncio.to_thread(self.delete_experiment_artifact, xid, name)

    async def ainsert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        await asyncio.to_thread(self.insert_experiment_config_artifact, xid, config_artifact)

    async def adelete_experiment_config_artifact(self, xid: int, name: str) -> None:
        await asyncio.to_thread(self.delete_experiment_config_artifact, xid, name)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
