"""PostgreSQL: 64-bit ids. The store takes experiment and work unit ids up to 2**63 - 1 (`text_rules.MAX_ID`);
SQLite's INTEGER holds them, but the INTEGER of PostgreSQL is 32 bits, so an xid or wid above 2**31 - 1
failed there with "integer out of range" (found when the contract suite first ran on PostgreSQL). The id
columns and the columns referring to them become BIGINT. SQLite: nothing to do (its integers are 64 bits).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: (table, column): every id of an experiment, a work unit or a job, and every reference to one.
COLUMNS = (
    ("experiments", "id"),
    ("experiment_tags", "experiment_id"),
    ("work_units", "id"),
    ("work_units", "experiment_id"),
    ("work_units", "wid"),
    ("jobs", "id"),
    ("jobs", "work_unit_id"),
    ("work_unit_artifacts", "work_unit_id"),
    ("experiment_artifacts", "experiment_id"),
    ("experiment_config_artifacts", "experiment_id"),
)


def _alter(type_: type[sa.types.TypeEngine[int]]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=type_(), existing_nullable=False)


def upgrade() -> None:
    _alter(sa.BigInteger)


def downgrade() -> None:
    _alter(sa.Integer)  # fails, as it should, if a stored id no longer fits
