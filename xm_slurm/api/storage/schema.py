"""The tables (SQLAlchemy core). Changing them means adding an Alembic revision under `migrations/versions`."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
#: Experiment, work unit and job ids: up to 2**63 - 1 (PostgreSQL: BIGINT since revision 0009; SQLite's
#: INTEGER is 64 bits and must stay INTEGER for its rowid primary keys).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("description", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Revision 0004: the highest work unit id handed out by `reserve_work_unit_ids` (0: none yet).
    sa.Column("wid_reserved", sa.BigInteger, nullable=False, server_default="0"),
    # Revision 0010: the name of the server token that created it (NULL: before 0010, or no server).
    sa.Column("created_by", sa.Text, nullable=True),
    sqlite_autoincrement=True,  # an xid is never reused after a delete
)

experiment_tags = sa.Table(
    "experiment_tags",
    metadata,
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.Text, primary_key=True),
)

work_units = sa.Table(
    "work_units",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("wid", ID, nullable=False),
    sa.Column("identity", sa.Text, nullable=False, server_default=""),
    sa.Column("args", sa.Text),
    # Revision 0005: ExperimentUnitRole's name (WORK_UNIT or AUX_UNIT).
    sa.Column("role", sa.String(16), nullable=False, server_default="WORK_UNIT"),
    sa.UniqueConstraint("experiment_id", "wid", name="uq_work_units_wid"),
)
# A non-empty identity names one work unit per experiment (idempotent launches).
sa.Index(
    "uq_work_units_identity",
    work_units.c.experiment_id,
    work_units.c.identity,
    unique=True,
    sqlite_where=work_units.c.identity != "",
    postgresql_where=work_units.c.identity != "",
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("work_unit_id", ID, sa.ForeignKey("work_units.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("slurm_job_id", sa.Text, nullable=False),
    sa.Column("slurm_ssh_config", sa.Text, nullable=False),
    # Revision 0006: the Slurm job id of the job of the same unit this one retries (NULL: not a retry).
    sa.Column("retry_of", sa.Text, nullable=True),
    # Revision 0011: the last known state a poller recorded (`api.job_states`; NULL: never recorded).
    sa.Column("state", sa.String(32), nullable=True),
    sa.Column("state_reason", sa.Text, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("state_seen_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("work_unit_id", "name", "slurm_job_id", name="uq_jobs"),
)

work_unit_artifacts = sa.Table(
    "work_unit_artifacts",
    metadata,
    sa.Column("work_unit_id", ID, sa.ForeignKey("work_units.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
)

experiment_artifacts = sa.Table(
    "experiment_artifacts",
    metadata,
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
)

experiment_config_artifacts = sa.Table(
    "experiment_config_artifacts",
    metadata,
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
)

# Revision 0008: which store this is (`api.store_info`): `store_id`, `legacy_max_xid`.
store_info = sa.Table(
    "store_info",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# -- server side (revision 0002) ---------------------------------------------------------------------------

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),  # never the token itself
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),  # revision 0003; NULL: never
    sa.Column("scope", sa.String(16), nullable=False, server_default="read-write"),  # or "read-only"
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
