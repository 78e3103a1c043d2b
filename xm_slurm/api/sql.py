"""The SQL backend: the operations of `storage.operations` on a local database (SQLite by default).

Any SQLAlchemy URL works (the REST server uses this class too); each method is one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from xm_slurm.api import models
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
from xm_slurm.api.storage import engine as engines
from xm_slurm.api.storage import operations as ops
from xm_slurm.errors import MetadataError, ValidationError
from xm_slurm.text_rules import check_name


def _check(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what} must be a {cls.__name__}, got {value!r:.200}")


class SqlClient(XManagerAPI):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> SqlClient:
        """Open (creating and migrating if needed) `url`, by default `$XM_SLURM_STATE_DIR/db.sqlite3`."""
        return cls(engines.open_engine(url))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (SQLite: `BEGIN IMMEDIATE`, so concurrent writers queue instead of failing)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise MetadataError(f"the metadata database failed: {e.orig}") from e

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect().execution_options(**{engines.READ_ONLY: True}) as conn, conn.begin():
                yield conn
        except sa.exc.OperationalError as e:
            raise MetadataError(f"the metadata database failed: {e.orig}") from e

    def close(self) -> None:
        self.engine.dispose()

    # -- experiments ------------------------------------------------------------------------------------
    def get_experiment(self, xid: int) -> Experiment:
        with self.reading() as conn:
            return ops.get_experiment(conn, xid)

    def insert_experiment(self, experiment: ExperimentPatch) -> int:
        _check(experiment, ExperimentPatch, "insert_experiment's argument")
        with self.transaction() as conn:
            return ops.insert_experiment(conn, experiment)

    def update_experiment(self, xid: int, experiment_patch: ExperimentPatch) -> None:
        _check(experiment_patch, ExperimentPatch, "update_experiment's patch")
        with self.transaction() as conn:
            ops.update_experiment(conn, xid, experiment_patch)

    def delete_experiment(self, xid: int) -> None:
        with self.transaction() as conn:
            ops.delete_experiment(conn, xid)

    def list_experiments(
        self,
        *,
        title_contains: str | None = None,
        tag: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
        offset: int = 0,
    ) -> list[ExperimentSummary]:
        with self.reading() as conn:
            return ops.list_experiments(
                conn, title_contains=title_contains, tag=tag, limit=limit, offset=offset
            )

    # -- work units -------------------------------------------------------------------------------------
    def insert_work_unit(self, xid: int, work_unit: WorkUnitPatch) -> None:
        self.insert_work_units(xid, [work_unit])

    def insert_work_units(self, xid: int, work_units: Sequence[WorkUnitPatch]) -> None:
        for wu in work_units:
            _check(wu, WorkUnitPatch, "a work unit to insert")
        with self.transaction() as conn:
            ops.insert_work_units(conn, xid, list(work_units))

    def reserve_work_unit_ids(self, xid: int, count: int) -> int:
        models.require_id(xid, "an experiment id (xid)")
        models.require_reserve_count(count)
        with self.transaction() as conn:
            return ops.reserve_work_unit_ids(conn, xid, count)

    def update_work_unit(self, xid: int, wid: int, experiment_unit_patch: ExperimentUnitPatch) -> None:
        _check(experiment_unit_patch, ExperimentUnitPatch, "update_work_unit's patch")
        with self.transaction() as conn:
            ops.update_work_unit(conn, xid, wid, experiment_unit_patch)

    def get_work_unit(self, xid: int, wid: int) -> WorkUnit:
        with self.reading() as conn:
            return ops.get_work_unit(conn, xid, wid)

    def find_work_unit(self, xid: int, identity: str) -> WorkUnit | None:
        with self.reading() as conn:
            return ops.find_work_unit(conn, xid, identity)

    def insert_job(self, xid: int, wid: int, slurm_job: SlurmJob) -> None:
        self.insert_jobs(xid, [(wid, slurm_job)])

    def insert_jobs(self, xid: int, jobs: Sequence[tuple[int, SlurmJob]]) -> None:
        pairs = models.jobs_of(jobs)
        with self.transaction() as conn:
            ops.insert_jobs(conn, xid, pairs)

    def replace_jobs(
        self,
        xid: int,
        *,
        work_units: Sequence[WorkUnitPatch] = (),
        remove: Sequence[tuple[int, str]] = (),
        insert: Sequence[tuple[int, SlurmJob]] = (),
        delete_empty_units: Sequence[int] = (),
    ) -> None:
        for wu in work_units:
            _check(wu, WorkUnitPatch, "a work unit to insert")
        refs = models.job_refs_of(remove)
        pairs = models.jobs_of(insert)
        wids = models.wids_of(delete_empty_units, "delete_empty_units")
        with self.transaction() as conn:
            ops.replace_jobs(conn, xid, list(work_units), refs, pairs, wids)

    # -- artifacts --------------------------------------------------------------------------------------
    def insert_work_unit_artifact(self, xid: int, wid: int, artifact: Artifact) -> None:
        _check(artifact, Artifact, "the artifact")
        with self.transaction() as conn:
            ops.insert_work_unit_artifact(conn, xid, wid, artifact)

    def delete_work_unit_artifact(self, xid: int, wid: int, name: str) -> None:
        models.require_id(xid, "an experiment id (xid)")
        models.require_id(wid, "a work unit id (wid)")
        check_name(name, "name")
        with self.transaction() as conn:
            ops.delete_work_unit_artifact(conn, xid, wid, name)

    def insert_experiment_artifact(self, xid: int, artifact: Artifact) -> None:
        _check(artifact, Artifact, "the artifact")
        with self.transaction() as conn:
            ops.insert_experiment_artifact(conn, xid, artifact)

    def delete_experiment_artifact(self, xid: int, name: str) -> None:
        models.require_id(xid, "an experiment id (xid)")
        check_name(name, "name")
        with self.transaction() as conn:
            ops.delete_experiment_artifact(conn, xid, name)

    def insert_experiment_config_artifact(self, xid: int, config_artifact: ConfigArtifact) -> None:
        _check(config_artifact, ConfigArtifact, "the config artifact")
        with self.transaction() as conn:
            ops.insert_experiment_config_artifact(conn, xid, config_artifact)

    def delete_experiment_config_artifact(self, xid: int, name: str) -> None:
        models.require_id(xid, "an experiment id (xid)")
        check_name(name, "name")
        with self.transaction() as conn:
            ops.delete_experiment_config_artifact(conn, xid, name)
