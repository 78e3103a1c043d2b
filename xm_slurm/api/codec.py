"""Models <-> JSON-able dicts: the wire format of the REST backend and server (docs/metadata.md)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from xm_slurm.api.models import (
    Artifact,
    ConfigArtifact,
    Experiment,
    ExperimentPatch,
    ExperimentSummary,
    ExperimentUnitPatch,
    ExperimentUnitRole,
    SlurmJob,
    WorkUnit,
    WorkUnitPatch,
    from_store,
    legacy_retry_lineage,
)
from xm_slurm.errors import MetadataError

_M = TypeVar("_M")


def experiment_patch_to_json(patch: ExperimentPatch) -> dict[str, Any]:
    return {
        "title": patch.title,
        "description": patch.description,
        "note": patch.note,
        "tags": None if patch.tags is None else sorted(patch.tags),
    }


def unit_patch_to_json(patch: WorkUnitPatch) -> dict[str, Any]:
    """A unit to insert. `role` is sent only for an auxiliary unit: a server older than the role refuses the
    field (so an auxiliary unit is never stored as a work unit), and takes every work unit as before."""
    data: dict[str, Any] = {"wid": patch.wid, "identity": patch.identity, "args": patch.args}
    if patch.role is not ExperimentUnitRole.WORK_UNIT:
        data["role"] = patch.role.value
    return data


def unit_update_to_json(patch: ExperimentUnitPatch) -> dict[str, Any]:
    """A unit's change (its fields left None are unchanged; `role` is sent only when it changes)."""
    data: dict[str, Any] = {"identity": patch.identity, "args": patch.args}
    if patch.role is not None:
        data["role"] = patch.role.value
    return data


def job_to_json(job: SlurmJob) -> dict[str, Any]:
    """A job in a server's answer: `retry_of` always present (null: not a retry)."""
    return {
        "name": job.name,
        "slurm_job_id": job.slurm_job_id,
        "slurm_ssh_config": job.slurm_ssh_config,
        "retry_of": job.retry_of,
    }


def _job_answer(job: SlurmJob) -> dict[str, Any]:
    """A job in a server's answer with its last known state (`api.job_states`; nulls: never recorded)."""
    seen = job.state_seen_at
    return {
        **job_to_json(job),
        "state": job.state,
        "state_reason": job.state_reason,
        "exit_code": job.exit_code,
        "state_seen_at": None if seen is None else seen.isoformat(),
    }


def _job_state(d: Mapping[str, Any]) -> dict[str, Any]:
    """The state fields of a job in an answer (absent: a server older than them)."""
    state, reason, code, seen = (d.get(k) for k in ("state", "state_reason", "exit_code", "state_seen_at"))
    ok = all(v is None or isinstance(v, str) for v in (state, reason, seen))
    if not ok or not (code is None or (isinstance(code, int) and not isinstance(code, bool))):
        raise MetadataError(f"malformed job state in the server's answer: {dict(d)!r:.200}")
    try:
        seen_at = None if seen is None else dt.datetime.fromisoformat(seen)
    except ValueError as e:
        raise MetadataError(f"malformed job state in the server's answer: state_seen_at={seen!r:.100}") from e
    return {"state": state, "state_reason": reason, "exit_code": code, "state_seen_at": seen_at}


def job_request_to_json(job: SlurmJob) -> dict[str, Any]:
    """A job in a request. `retry_of` is sent for a retry, or when the name holds the old retry mark (so the
    server does not read it as one); otherwise it is left out, and a server older than the field (which
    refuses it) takes the job as before. An absent key means "read the name as older clients wrote it"."""
    data = job_to_json(job)
    if job.retry_of is None and legacy_retry_lineage(job.name)[1] is None:
        del data["retry_of"]
    return data


def artifact_to_json(artifact: Artifact | ConfigArtifact) -> dict[str, Any]:
    return {"name": artifact.name, "uri": artifact.uri}


def work_unit_to_json(wu: WorkUnit) -> dict[str, Any]:
    return {
        "wid": wu.wid,
        "identity": wu.identity,
        "args": wu.args,
        "role": wu.role.value,
        "jobs": [_job_answer(j) for j in wu.jobs],
        "artifacts": [artifact_to_json(a) for a in wu.artifacts],
    }


def experiment_to_json(experiment: Experiment) -> dict[str, Any]:
    return {
        "xid": experiment.xid,
        "title": experiment.title,
        "description": experiment.description,
        "note": experiment.note,
        "tags": sorted(experiment.tags),
        "work_units": [work_unit_to_json(wu) for wu in experiment.work_units],
        "artifacts": [artifact_to_json(a) for a in experiment.artifacts],
        "config_artifacts": [artifact_to_json(a) for a in experiment.config_artifacts],
        "created_at": experiment.created_at,
    }


def summary_to_json(summary: ExperimentSummary) -> dict[str, Any]:
    return {
        "xid": summary.xid,
        "title": summary.title,
        "description": summary.description,
        "note": summary.note,
        "tags": sorted(summary.tags),
        "num_work_units": summary.num_work_units,
        "created_at": summary.created_at,
    }


def _mapping(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MetadataError(f"malformed {what} in the server's answer: expected an object, got {data!r:.200}")
    return data


_JOB_FIELDS = ("name", "slurm_job_id", "slurm_ssh_config")
_ARTIFACT_FIELDS = ("name", "uri")


def _stored(cls: type[_M], data: object, what: str, fields: tuple[str, ...]) -> _M:
    """A stored row as the server sent it: read as stored (like `operations`), not checked as a write."""
    d = _mapping(data, what)
    values = {f: d[f] for f in fields}
    for field, value in values.items():
        if not isinstance(value, str):
            raise MetadataError(f"malformed {what} in the server's answer: {field}={value!r:.100}")
    return from_store(cls, **values)


#: How an auxiliary unit was marked before the store had a role: `{LEGACY_ROLE_KEY: "AUX_UNIT", "args": ...}`
#: as its args. The SQL store's revision 0005 rewrote such rows; a server older than it still sends them.
LEGACY_ROLE_KEY = "__xm_slurm_role__"


def _role_and_args(d: Mapping[str, Any]) -> tuple[ExperimentUnitRole, Any]:
    args = d.get("args")
    if "role" in d:
        role = d["role"]
        return ExperimentUnitRole.__members__.get(role, ExperimentUnitRole.WORK_UNIT), args
    if isinstance(args, str) and LEGACY_ROLE_KEY in args:  # a server without the role field
        try:
            decoded = json.loads(args)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict) and decoded.get(LEGACY_ROLE_KEY) == "AUX_UNIT":
            inner = json.dumps(decoded.get("args"), default=str, ensure_ascii=False)
            return ExperimentUnitRole.AUX_UNIT, inner
    return ExperimentUnitRole.WORK_UNIT, args


def job_from_json(data: object) -> SlurmJob:
    """A job of a server's answer; one from a server older than `retry_of` (no such key) has its lineage
    read from its name (`models.legacy_retry_lineage`, a read-side fallback only)."""
    job = _stored(SlurmJob, data, "job", _JOB_FIELDS)
    d = _mapping(data, "job")
    if "retry_of" not in d:
        name, retry_of = legacy_retry_lineage(job.name)
        return from_store(SlurmJob, **{**vars(job), "name": name, "retry_of": retry_of, **_job_state(d)})
    retry_of = d["retry_of"]
    if retry_of is not None and not isinstance(retry_of, str):
        raise MetadataError(f"malformed job in the server's answer: retry_of={retry_of!r:.100}")
    return from_store(SlurmJob, **{**vars(job), "retry_of": retry_of, **_job_state(d)})


def work_unit_from_json(data: object) -> WorkUnit:
    d = _mapping(data, "work unit")
    try:
        role, args = _role_and_args(d)
        return WorkUnit(
            wid=d["wid"],
            identity=d.get("identity") or "",
            args=args,
            role=role,
            jobs=tuple(job_from_json(j) for j in d.get("jobs", ())),
            artifacts=tuple(
                _stored(Artifact, a, "artifact", _ARTIFACT_FIELDS) for a in d.get("artifacts", ())
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MetadataError(f"malformed work unit in the server's answer: {e}") from e


def experiment_from_json(data: object) -> Experiment:
    d = _mapping(data, "experiment")
    try:
        return Experiment(
            xid=d["xid"],
            title=d.get("title") or "",
            description=d.get("description"),
            note=d.get("note"),
            tags=frozenset(d.get("tags", ())),
            work_units=tuple(work_unit_from_json(w) for w in d.get("work_units", ())),
            artifacts=tuple(
                _stored(Artifact, a, "artifact", _ARTIFACT_FIELDS) for a in d.get("artifacts", ())
            ),
            config_artifacts=tuple(
                _stored(ConfigArtifact, a, "config artifact", _ARTIFACT_FIELDS)
                for a in d.get("config_artifacts", ())
            ),
            created_at=d.get("created_at"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MetadataError(f"malformed experiment in the server's answer: {e}") from e


def summary_from_json(data: object) -> ExperimentSummary:
    d = _mapping(data, "experiment summary")
    try:
        return ExperimentSummary(
            xid=d["xid"],
            title=d.get("title") or "",
            description=d.get("description"),
            note=d.get("note"),
            tags=frozenset(d.get("tags", ())),
            num_work_units=d.get("num_work_units", 0),
            created_at=d.get("created_at"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MetadataError(f"malformed experiment summary in the server's answer: {e}") from e
