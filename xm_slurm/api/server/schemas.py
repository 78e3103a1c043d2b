"""Request bodies of the REST routes (pydantic): validation with clear 422 errors, and the OpenAPI schema."""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from xm_slurm.api import models
from xm_slurm.api.job_states import MAX_STATES_PER_CALL, JobStateRecord
from xm_slurm.errors import ValidationError
from xm_slurm.text_rules import MAX_ID

#: A work unit id in a body: out of range is a 422 naming the field (the models check it again).
WidField = Annotated[
    int, Field(ge=1, le=MAX_ID, description="1-based work unit id, unique in the experiment")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ExperimentPatchBody(_Body):
    title: str | None = None
    description: str | None = None
    note: str | None = None
    tags: list[str] | None = None

    def to_model(self) -> models.ExperimentPatch:
        tags = None if self.tags is None else frozenset(self.tags)
        return models.ExperimentPatch(
            title=self.title, description=self.description, note=self.note, tags=tags
        )


RoleName = Literal["WORK_UNIT", "AUX_UNIT"]


class ExperimentUnitPatchBody(_Body):
    identity: str | None = None
    args: str | None = None
    role: RoleName | None = Field(default=None, description="null or absent: unchanged")

    def to_model(self) -> models.ExperimentUnitPatch:
        role = None if self.role is None else models.ExperimentUnitRole[self.role]
        return models.ExperimentUnitPatch(identity=self.identity, args=self.args, role=role)


class WorkUnitPatchBody(_Body):
    wid: WidField
    identity: str | None = None
    args: str | None = None
    # Optional, so that clients older than the role keep working: their units are work units.
    role: RoleName = "WORK_UNIT"

    def to_model(self) -> models.WorkUnitPatch:
        return models.WorkUnitPatch(
            wid=self.wid, identity=self.identity, args=self.args, role=models.ExperimentUnitRole[self.role]
        )


class ReserveBody(_Body):
    """POST /experiment/{xid}/wu/reserve: how many fresh work unit ids to reserve."""

    count: int = Field(ge=1, le=models.MAX_RESERVE)


class ReservedBody(BaseModel):
    first: int = Field(description="the first reserved id; the range is first .. first + count - 1")


class SlurmJobBody(_Body):
    name: str
    slurm_job_id: str = Field(min_length=1)
    slurm_ssh_config: str
    retry_of: str | None = Field(
        default=None,
        description="the Slurm job id of the job of the same unit this one retries; null: not a retry; "
        "absent (clients older than the field): read from a name `<name> [retry of <id>]`",
    )

    def to_model(self) -> models.SlurmJob:
        name, retry_of = self.name, self.retry_of
        if "retry_of" not in self.model_fields_set:  # an older client: its retries carry the mark in the name
            name, retry_of = models.legacy_retry_lineage(name)
        return models.SlurmJob(
            name=name,
            slurm_job_id=self.slurm_job_id,
            slurm_ssh_config=self.slurm_ssh_config,
            retry_of=retry_of,
        )


class JobStateBody(_Body):
    slurm_job_id: str = Field(min_length=1)
    state: str = Field(description="a SlurmJobState name, e.g. RUNNING")
    reason: str | None = None
    exit_code: int | None = None
    seen_at: str = Field(description="when the poller saw it: ISO 8601 with its time zone", max_length=64)

    def to_model(self) -> JobStateRecord:
        try:
            seen_at = datetime.datetime.fromisoformat(self.seen_at)
        except ValueError:
            raise ValidationError(f"seen_at must be an ISO 8601 time, got {self.seen_at!r:.64}") from None
        return JobStateRecord(
            slurm_job_id=self.slurm_job_id,
            state=self.state,
            reason=self.reason,
            exit_code=self.exit_code,
            seen_at=seen_at,
        )


class JobStatesBody(_Body):
    """`XManagerAPI.record_job_states` (POST /experiment/{xid}/job-states)."""

    states: list[JobStateBody] = Field(max_length=MAX_STATES_PER_CALL)


class JobOfWorkUnitBody(_Body):
    wid: WidField
    job: SlurmJobBody


class JobRefBody(_Body):
    wid: WidField
    slurm_job_id: str = Field(min_length=1)


class ReplaceJobsBody(_Body):
    """`XManagerAPI.replace_jobs` in one request (PATCH /experiment/{xid}/jobs)."""

    work_units: list[WorkUnitPatchBody] = []
    remove: list[JobRefBody] = []
    insert: list[JobOfWorkUnitBody] = []
    delete_empty_units: list[WidField] = []


class ArtifactBody(_Body):
    name: str = Field(min_length=1)
    uri: str

    def to_model(self) -> models.Artifact:
        return models.Artifact(name=self.name, uri=self.uri)


class ConfigArtifactBody(_Body):
    name: Literal["GRAPHVIZ", "PYTHON"]
    uri: str

    def to_model(self) -> models.ConfigArtifact:
        return models.ConfigArtifact(name=self.name, uri=self.uri)


class XidBody(BaseModel):
    xid: int
