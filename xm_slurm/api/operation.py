"""The store's operations, each written once for every backend.

An operation function checks its arguments with the models' rules (a bad value never reaches a database
and never leaves the process) and returns an `Operation`: what the SQL backend runs in one transaction
(`sql`, a function of `storage.operations`) and the REST call that does the same on the server (`call`),
with how to read the server's answer (`decode`). `XManagerAPI` turns each function into a synchronous
method and an `a`-prefixed async method; a backend only says how to run an `Operation`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

from xm_slurm.api import codec, job_states, models
from xm_slurm.api.job_states import JobStateRecord
from xm_slurm.api.models import (
    DEFAULT_LIST_LIMIT,
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
from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.text_rules import MAX_LINE, check_line, check_name

if TYPE_CHECKING:
    import sqlalchemy as sa

    from xm_slurm.api.storage import job_states as storage_states
    from xm_slurm.api.storage import operations as storage
else:

    class _Storage:
        """`storage.operations`, imported when first used: a REST client never loads SQLAlchemy."""

        def __init__(self, module: str = "xm_slurm.api.storage.operations") -> None:
            self._module = module

        def __getattr__(self, name: str) -> Any:
            return getattr(importlib.import_module(self._module), name)

    storage = _Storage()
    storage_states = _Storage("xm_slurm.api.storage.job_states")

R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Call:
    """One REST request: `method` and `path` below `{base_url}/api`, a JSON body, query parameters."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


@dataclasses.dataclass(frozen=True)
class Operation(Generic[R]):
    """One store operation with checked arguments, for any backend (see the module docstring)."""

    sql: Callable[[sa.Connection], R]
    call: Call
    decode: Callable[[Any], R]

    @property
    def write(self) -> bool:
        """Whether it changes the store (SQL: a write transaction; REST: a write with an idempotency key)."""
        return self.call.is_write


def _write(sql: Callable[[sa.Connection], None], call: Call) -> Operation[None]:
    return Operation(sql, call, _nothing)


def _nothing(_answer: Any) -> None:
    return None


def _xid(xid: int) -> int:
    return models.require_id(xid, "an experiment id (xid)")


def _wid(wid: int) -> int:
    return models.require_id(wid, "a work unit id (wid)")


def _q(name: str) -> str:
    # Checked first: `..` would travel as is, and httpx would resolve `/artifact/..` to the experiment.
    return quote(check_name(name, "name"), safe="")


def _check(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what} must be a {cls.__name__}, got {value!r:.200}")


def _int_field(field: str, what: str) -> Callable[[Any], int]:
    def decode(answer: Any) -> int:
        value = answer.get(field) if isinstance(answer, dict) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise MetadataError(f"malformed answer to {what}: {answer!r:.200}")
        return value

    return decode


# -- experiments -----------------------------------------------------------------------------------------


def get_experiment(xid: int) -> Operation[Experiment]:
    """The experiment with its work units, jobs and artifacts; `NotFoundError` if there is none."""
    xid = _xid(xid)
    call = Call("GET", f"/experiment/{xid}")
    return Operation(lambda c: storage.get_experiment(c, xid), call, codec.experiment_from_json)


def insert_experiment(experiment: ExperimentPatch) -> Operation[int]:
    """Create an experiment and return its id (xid)."""
    _check(experiment, ExperimentPatch, "insert_experiment's argument")
    call = Call("PUT", "/experiment", codec.experiment_patch_to_json(experiment))
    sql = lambda c: storage.insert_experiment(c, experiment)  # noqa: E731 - one line, read with its call
    return Operation(sql, call, _int_field("xid", "an experiment insert"))


def update_experiment(xid: int, experiment_patch: ExperimentPatch) -> Operation[None]:
    """Change the fields of the patch that are not None (tags are replaced as a whole)."""
    xid = _xid(xid)
    _check(experiment_patch, ExperimentPatch, "update_experiment's patch")
    call = Call("PATCH", f"/experiment/{xid}", codec.experiment_patch_to_json(experiment_patch))
    return _write(lambda c: storage.update_experiment(c, xid, experiment_patch), call)


def delete_experiment(xid: int) -> Operation[None]:
    """Delete the experiment with everything it holds."""
    xid = _xid(xid)
    return _write(lambda c: storage.delete_experiment(c, xid), Call("DELETE", f"/experiment/{xid}"))


def list_experiments(
    *,
    title_contains: str | None = None,
    tag: str | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
    offset: int = 0,
    include_empty: bool = True,
) -> Operation[list[ExperimentSummary]]:
    """Experiments, newest first, optionally filtered by a title substring and/or a tag; with
    `include_empty=False`, only those that hold at least one work unit (filtered in the query)."""
    models.require_page(limit, offset)
    models.require_bool(include_empty, "include_empty")
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if title_contains is not None:
        check_line(title_contains, "title_contains", MAX_LINE)
        if title_contains:
            params["title_contains"] = title_contains
    if tag is not None:
        params["tag"] = check_line(tag, "tag", MAX_LINE)
    if not include_empty:  # sent only when set: a server without the filter answers as before
        params["include_empty"] = "false"
    return Operation(
        lambda c: storage.list_experiments(
            c, title_contains=title_contains, tag=tag, limit=limit, offset=offset, include_empty=include_empty
        ),
        Call("GET", "/experiment", params=params),
        lambda answer: [codec.summary_from_json(d) for d in answer],
    )


# -- work units ------------------------------------------------------------------------------------------


def insert_work_unit(xid: int, work_unit: WorkUnitPatch) -> Operation[None]:
    """Record work unit `work_unit.wid` (1-based, chosen by the caller). Same content again is a no-op;
    a wid or non-empty identity already used with other content raises `ConflictError`."""
    xid = _xid(xid)
    _check(work_unit, WorkUnitPatch, "the work unit to insert")
    call = Call("PUT", f"/experiment/{xid}/wu", codec.unit_patch_to_json(work_unit))
    return _write(lambda c: storage.insert_work_units(c, xid, [work_unit]), call)


def insert_work_units(xid: int, work_units: Sequence[WorkUnitPatch]) -> Operation[None]:
    """`insert_work_unit` for a whole sweep, all or nothing (one transaction / one request)."""
    xid = _xid(xid)
    patches = list(work_units)
    for p in patches:
        _check(p, WorkUnitPatch, "a work unit to insert")
    call = Call("PUT", f"/experiment/{xid}/wus", [codec.unit_patch_to_json(p) for p in patches])
    return _write(lambda c: storage.insert_work_units(c, xid, patches), call)


def reserve_work_unit_ids(xid: int, count: int) -> Operation[int]:
    """Reserve `count` (1..1,000,000) fresh work unit ids of experiment `xid` and return the first.

    The ids `first .. first + count - 1` were never returned before for this experiment and no stored
    work unit uses them, even with several processes (or server workers) reserving at once: each call
    is one write transaction that moves the experiment's high-water mark past them.
    """
    xid = _xid(xid)
    count = models.require_reserve_count(count)
    call = Call("POST", f"/experiment/{xid}/wu/reserve", {"count": count})
    sql = lambda c: storage.reserve_work_unit_ids(c, xid, count)  # noqa: E731 - one line, read with its call
    return Operation(sql, call, _int_field("first", "a work unit id reservation"))


def update_work_unit(xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> Operation[None]:
    """Change the fields of the patch that are not None."""
    xid, wid = _xid(xid), _wid(wid)
    _check(experiment_unit_patch, ExperimentUnitPatch, "update_work_unit's patch")
    call = Call("PATCH", f"/experiment/{xid}/wu/{wid}", codec.unit_update_to_json(experiment_unit_patch))
    return _write(lambda c: storage.update_work_unit(c, xid, wid, experiment_unit_patch), call)


def get_work_unit(xid: int, wid: int) -> Operation[WorkUnit]:
    """One work unit; `NotFoundError` if there is none."""
    xid, wid = _xid(xid), _wid(wid)
    call = Call("GET", f"/experiment/{xid}/wu/{wid}")
    return Operation(lambda c: storage.get_work_unit(c, xid, wid), call, codec.work_unit_from_json)


def find_work_unit(xid: int, identity: str) -> Operation[WorkUnit | None]:
    """The work unit launched with this (non-empty) identity, or None."""
    xid = _xid(xid)
    check_line(identity, "find_work_unit: identity", MAX_LINE)
    if not identity:
        raise ValidationError("find_work_unit needs a non-empty identity")
    return Operation(
        lambda c: storage.find_work_unit(c, xid, identity),
        Call("GET", f"/experiment/{xid}/wu", params={"identity": identity}),
        lambda found: codec.work_unit_from_json(found[0]) if found else None,
    )


def insert_job(xid: int, wid: int, slurm_job: SlurmJob) -> Operation[None]:
    """Attach a Slurm job to a work unit (the same job again is a no-op)."""
    xid, wid = _xid(xid), _wid(wid)
    _check(slurm_job, SlurmJob, "the job")
    call = Call("PUT", f"/experiment/{xid}/wu/{wid}/job", codec.job_request_to_json(slurm_job))
    return _write(lambda c: storage.insert_jobs(c, xid, [(wid, slurm_job)]), call)


def insert_jobs(xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> Operation[None]:
    """`insert_job` for many `(wid, job)` pairs, all or nothing (one transaction / one request)."""
    xid = _xid(xid)
    pairs = models.jobs_of(jobs)
    body = [{"wid": wid, "job": codec.job_request_to_json(job)} for wid, job in pairs]
    return _write(lambda c: storage.insert_jobs(c, xid, pairs), Call("PUT", f"/experiment/{xid}/jobs", body))


def replace_jobs(
    xid: int,
    *,
    work_units: Sequence[WorkUnitPatch] = (),
    remove: Sequence[tuple[int, str]] = (),
    insert: Sequence[tuple[int, SlurmJob]] = (),
    delete_empty_units: Sequence[int] = (),
) -> Operation[None]:
    """In ONE transaction / request, in this order: record `work_units` (as `insert_work_units`);
    remove the job rows `(wid, slurm_job_id)` of `remove` (rows or units already gone are fine); insert
    `insert` (as `insert_jobs`: a missing work unit raises `NotFoundError` and nothing changes); delete
    the work units of `delete_empty_units` that hold no job afterwards (missing ones are fine).

    The launcher records a submission before its sbatch as pending rows and swaps them for the real
    ids after it (docs/reliability.md). Repeating a call changes nothing more.
    """
    xid = _xid(xid)
    units = list(work_units)
    for p in units:
        _check(p, WorkUnitPatch, "a work unit to insert")
    refs = models.job_refs_of(remove)
    pairs = models.jobs_of(insert)
    wids = models.wids_of(delete_empty_units, "delete_empty_units")
    body = {
        "work_units": [codec.unit_patch_to_json(p) for p in units],
        "remove": [{"wid": wid, "slurm_job_id": jid} for wid, jid in refs],
        "insert": [{"wid": wid, "job": codec.job_request_to_json(job)} for wid, job in pairs],
        "delete_empty_units": wids,
    }
    call = Call("PATCH", f"/experiment/{xid}/jobs", body)
    return _write(lambda c: storage.replace_jobs(c, xid, units, refs, pairs, wids), call)


def record_job_states(xid: int, states: Sequence[JobStateRecord]) -> Operation[None]:
    """Record jobs' last known states (`api.job_states`), all in one transaction / request. A job the
    store already holds a later observation of keeps it; a job the experiment does not hold is skipped."""
    xid = _xid(xid)
    records = job_states.records_of(states)
    call = Call(
        "POST", f"/experiment/{xid}/job-states", {"states": [job_states.record_to_json(r) for r in records]}
    )
    return _write(lambda c: storage_states.record_job_states(c, xid, records), call)


# -- artifacts -------------------------------------------------------------------------------------------


def insert_work_unit_artifact(xid: int, wid: int, artifact: Artifact) -> Operation[None]:
    """Set a work unit's artifact `artifact.name` (replacing its URI if it exists)."""
    xid, wid = _xid(xid), _wid(wid)
    _check(artifact, Artifact, "the artifact")
    call = Call("PUT", f"/experiment/{xid}/wu/{wid}/artifact", codec.artifact_to_json(artifact))
    return _write(lambda c: storage.insert_work_unit_artifact(c, xid, wid, artifact), call)


def delete_work_unit_artifact(xid: int, wid: int, name: str) -> Operation[None]:
    """Delete a work unit's artifact; `NotFoundError` if there is none."""
    xid, wid = _xid(xid), _wid(wid)
    call = Call("DELETE", f"/experiment/{xid}/wu/{wid}/artifact/{_q(name)}")
    return _write(lambda c: storage.delete_work_unit_artifact(c, xid, wid, name), call)


def insert_experiment_artifact(xid: int, artifact: Artifact) -> Operation[None]:
    """Set an experiment's artifact `artifact.name` (replacing its URI if it exists)."""
    xid = _xid(xid)
    _check(artifact, Artifact, "the artifact")
    call = Call("PUT", f"/experiment/{xid}/artifact", codec.artifact_to_json(artifact))
    return _write(lambda c: storage.insert_experiment_artifact(c, xid, artifact), call)


def delete_experiment_artifact(xid: int, name: str) -> Operation[None]:
    """Delete an experiment's artifact; `NotFoundError` if there is none."""
    xid = _xid(xid)
    call = Call("DELETE", f"/experiment/{xid}/artifact/{_q(name)}")
    return _write(lambda c: storage.delete_experiment_artifact(c, xid, name), call)


def insert_experiment_config_artifact(xid: int, config_artifact: ConfigArtifact) -> Operation[None]:
    """Set the experiment's `PYTHON` or `GRAPHVIZ` config."""
    xid = _xid(xid)
    _check(config_artifact, ConfigArtifact, "the config artifact")
    call = Call("PUT", f"/experiment/{xid}/config", codec.artifact_to_json(config_artifact))
    return _write(lambda c: storage.insert_experiment_config_artifact(c, xid, config_artifact), call)


def delete_experiment_config_artifact(xid: int, name: str) -> Operation[None]:
    """Delete the experiment's `PYTHON` or `GRAPHVIZ` config; `NotFoundError` if there is none."""
    xid = _xid(xid)
    call = Call("DELETE", f"/experiment/{xid}/config/{_q(name)}")
    return _write(lambda c: storage.delete_experiment_config_artifact(c, xid, name), call)
