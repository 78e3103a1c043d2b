"""The REST backend: the routes of SPEC §2 over httpx, for a team's shared server (`xm-slurm server run`).

Each method builds one call (route, body) after checking its arguments with the models' rules, so a bad
value never leaves the process; `rest_session.RestSession` sends it (TLS, bounded retries, idempotency keys,
errors mapped to the library's exceptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from xm_slurm.api import codec, models
from xm_slurm.api.base import DEFAULT_LIST_LIMIT, XManagerAPI
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
from xm_slurm.api.rest_session import RETRY_STATUS, Call, RestSession
from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.text_rules import MAX_LINE, check_line, check_name

__all__ = ["RETRY_STATUS", "RestClient"]


def _id(xid: int) -> int:
    return models.require_id(xid, "an experiment id (xid)")


def _wid(wid: int) -> int:
    return models.require_id(wid, "a work unit id (wid)")


def _q(name: str) -> str:
    # Checked first: `..` would travel as is, and httpx would resolve `/artifact/..` to the experiment.
    return quote(check_name(name, "name"), safe="")


def _check(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what} must be a {cls.__name__}, got {value!r:.200}")


class RestClient(RestSession, XManagerAPI):
    """`XManagerAPI` over the REST routes: `RestClient(base_url, token, ca_bundle=..., timeout=...)`."""

    # -- the calls (one table, used by the sync methods and their async twins) ----------------------------
    @staticmethod
    def _get_experiment(xid: int) -> Call:
        return Call("GET", f"/experiment/{_id(xid)}")

    @staticmethod
    def _insert_experiment(patch: ExperimentPatch) -> Call:
        _check(patch, ExperimentPatch, "insert_experiment's argument")
        return Call("PUT", "/experiment", codec.experiment_patch_to_json(patch))

    @staticmethod
    def _update_experiment(xid: int, patch: ExperimentPatch) -> Call:
        _check(patch, ExperimentPatch, "update_experiment's patch")
        return Call("PATCH", f"/experiment/{_id(xid)}", codec.experiment_patch_to_json(patch))

    @staticmethod
    def _list_experiments(title_contains: str | None, tag: str | None, limit: int, offset: int) -> Call:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if title_contains is not None:
            check_line(title_contains, "title_contains", MAX_LINE)
        if tag is not None:
            check_line(tag, "tag", MAX_LINE)
        if title_contains:
            params["title_contains"] = title_contains
        if tag is not None:
            params["tag"] = tag
        return Call("GET", "/experiment", params=params)

    @staticmethod
    def _insert_work_units(xid: int, patches: Sequence[WorkUnitPatch]) -> Call:
        for p in patches:
            _check(p, WorkUnitPatch, "a work unit to insert")
        return Call("PUT", f"/experiment/{_id(xid)}/wus", [codec.unit_patch_to_json(p) for p in patches])

    @staticmethod
    def _insert_jobs(xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> Call:
        pairs = models.jobs_of(jobs)
        body = [{"wid": wid, "job": codec.job_to_json(job)} for wid, job in pairs]
        return Call("PUT", f"/experiment/{_id(xid)}/jobs", body)

    @staticmethod
    def _replace_jobs(
        xid: int,
        work_units: Sequence[WorkUnitPatch],
        remove: Sequence[tuple[int, str]],
        insert: Sequence[tuple[int, SlurmJob]],
        delete_empty_units: Sequence[int],
    ) -> Call:
        for p in work_units:
            _check(p, WorkUnitPatch, "a work unit to insert")
        body = {
            "work_units": [codec.unit_patch_to_json(p) for p in work_units],
            "remove": [{"wid": wid, "slurm_job_id": jid} for wid, jid in models.job_refs_of(remove)],
            "insert": [{"wid": wid, "job": codec.job_to_json(job)} for wid, job in models.jobs_of(insert)],
            "delete_empty_units": models.wids_of(delete_empty_units, "delete_empty_units"),
        }
        return Call("PATCH", f"/experiment/{_id(xid)}/jobs", body)

    # -- experiments ------------------------------------------------------------------------------------
    def get_experiment(self, xid: int) -> Experiment:
        return codec.experiment_from_json(self._call(self._get_experiment(xid)))

    async def aget_experiment(self, xid: int) -> Experiment:
        return codec.experiment_from_json(await self._acall(self._get_experiment(xid)))

    def insert_experiment(self, experiment: ExperimentPatch) -> int:
        return int(self._call(self._insert_experiment(experiment))["xid"])

    async def ainsert_experiment(self, experiment: ExperimentPatch) -> int:
        return int((await self._acall(self._insert_experiment(experiment)))["xid"])

    def update_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        self._call(self._update_experiment(xid, experiment_patch))

    async def aupdate_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        await self._acall(self._update_experiment(xid, experiment_patch))

    def delete_experiment(self, xid: int) -> None:
        self._call(Call("DELETE", f"/experiment/{_id(xid)}"))

    async def adelete_experiment(self, xid: int) -> None:
        await self._acall(Call("DELETE", f"/experiment/{_id(xid)}"))

    def list_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        data = self._call(self._list_experiments(title_contains, tag, limit, offset))
        return [codec.summary_from_json(d) for d in data]

    async def alist_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        data = await self._acall(self._list_experiments(title_contains, tag, limit, offset))
        return [codec.summary_from_json(d) for d in data]

    # -- work units -------------------------------------------------------------------------------------
    def insert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        _check(work_unit, WorkUnitPatch, "the work unit to insert")
        self._call(Call("PUT", f"/experiment/{_id(xid)}/wu", codec.unit_patch_to_json(work_unit)))

    async def ainsert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        _check(work_unit, WorkUnitPatch, "the work unit to insert")
        await self._acall(Call("PUT", f"/experiment/{_id(xid)}/wu", codec.unit_patch_to_json(work_unit)))

    def insert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        self._call(self._insert_work_units(xid, work_units))

    async def ainsert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        await self._acall(self._insert_work_units(xid, work_units))

    @staticmethod
    def _reserve_work_unit_ids(xid: int, count: int) -> Call:
        body = {"count": models.require_reserve_count(count)}
        return Call("POST", f"/experiment/{_id(xid)}/wu/reserve", body)

    @staticmethod
    def _first_reserved(data: Any) -> int:
        first = data.get("first") if isinstance(data, dict) else None
        if not isinstance(first, int) or isinstance(first, bool):
            raise MetadataError(f"malformed answer to a work unit id reservation: {data!r:.200}")
        return first

    def reserve_work_unit_ids(self, xid: int, count: int) -> int:
        return self._first_reserved(self._call(self._reserve_work_unit_ids(xid, count)))

    async def areserve_work_unit_ids(self, xid: int, count: int) -> int:
        return self._first_reserved(await self._acall(self._reserve_work_unit_ids(xid, count)))

    def _update_work_unit(self, xid: int, wid: int, patch: ExperimentUnitPatch) -> Call:
        _check(patch, ExperimentUnitPatch, "update_work_unit's patch")
        body = {"identity": patch.identity, "args": patch.args}
        return Call("PATCH", f"/experiment/{_id(xid)}/wu/{_wid(wid)}", body)

    def update_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        self._call(self._update_work_unit(xid, wid, experiment_unit_patch))

    async def aupdate_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        await self._acall(self._update_work_unit(xid, wid, experiment_unit_patch))

    def get_work_unit(self, xid: int, wid: int) -> WorkUnit:
        return codec.work_unit_from_json(self._call(Call("GET", f"/experiment/{_id(xid)}/wu/{_wid(wid)}")))

    async def aget_work_unit(self, xid: int, wid: int) -> WorkUnit:
        data = await self._acall(Call("GET", f"/experiment/{_id(xid)}/wu/{_wid(wid)}"))
        return codec.work_unit_from_json(data)

    @staticmethod
    def _find_work_unit(xid: int, identity: str) -> Call:
        check_line(identity, "find_work_unit: identity", MAX_LINE)
        if not identity:
            raise ValidationError("find_work_unit needs a non-empty identity")
        return Call("GET", f"/experiment/{_id(xid)}/wu", params={"identity": identity})

    def find_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        found = self._call(self._find_work_unit(xid, identity))
        return codec.work_unit_from_json(found[0]) if found else None

    async def afind_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        found = await self._acall(self._find_work_unit(xid, identity))
        return codec.work_unit_from_json(found[0]) if found else None

    def _insert_job(self, xid: int, wid: int, job: SlurmJob) -> Call:
        _check(job, SlurmJob, "the job")
        return Call("PUT", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/job", codec.job_to_json(job))

    def insert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        self._call(self._insert_job(xid, wid, slurm_job))

    async def ainsert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        await self._acall(self._insert_job(xid, wid, slurm_job))

    def insert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        self._call(self._insert_jobs(xid, jobs))

    async def ainsert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        await self._acall(self._insert_jobs(xid, jobs))

    def replace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        self._call(self._replace_jobs(xid, work_units, remove, insert, delete_empty_units))

    async def areplace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        await self._acall(self._replace_jobs(xid, work_units, remove, insert, delete_empty_units))

    # -- artifacts --------------------------------------------------------------------------------------
    @staticmethod
    def _put_artifact(path: str, artifact: Artifact | ConfigArtifact, cls: type) -> Call:
        _check(artifact, cls, "the artifact")
        return Call("PUT", path, codec.artifact_to_json(artifact))

    def insert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact", artifact, Artifact))

    async def ainsert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        path = f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact"
        await self._acall(self._put_artifact(path, artifact, Artifact))

    def delete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        self._call(Call("DELETE", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact/{_q(name)}"))

    async def adelete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        await self._acall(Call("DELETE", f"/experiment/{_id(xid)}/wu/{_wid(wid)}/artifact/{_q(name)}"))

    def insert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/artifact", artifact, Artifact))

    async def ainsert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        await self._acall(self._put_artifact(f"/experiment/{_id(xid)}/artifact", artifact, Artifact))

    def delete_experiment_artifact(self, xid: int, name: str) -> None:
        self._call(Call("DELETE", f"/experiment/{_id(xid)}/artifact/{_q(name)}"))

    async def adelete_experiment_artifact(self, xid: int, name: str) -> None:
        await self._acall(Call("DELETE", f"/experiment/{_id(xid)}/artifact/{_q(name)}"))

    def insert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        self._call(self._put_artifact(f"/experiment/{_id(xid)}/config", config_artifact, ConfigArtifact))

    async def ainsert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        path = f"/experiment/{_id(xid)}/config"
        await self._acall(self._put_artifact(path, config_artifact, ConfigArtifact))

    def delete_experiment_config_artifact(self, xid: int, name: str) -> None:
        self._call(Call("DELETE", f"/experiment/{_id(xid)}/config/{_q(name)}"))

    async def adelete_experiment_config_artifact(self, xid: int, name: str) -> None:
        await self._acall(Call("DELETE", f"/experiment/{_id(xid)}/config/{_q(name)}"))
