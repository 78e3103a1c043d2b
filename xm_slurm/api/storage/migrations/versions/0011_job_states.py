"""Jobs: the last known state a poller with write access recorded (`api.job_states`): `state` (a
`SlurmJobState` name), `state_reason`, `exit_code` and `state_seen_at` (UTC). NULL: never recorded.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place, without copying the table.
    op.add_column("jobs", sa.Column("state", sa.String(32), nullable=True))
    op.add_column("jobs", sa.Column("state_reason", sa.Text, nullable=True))
    op.add_column("jobs", sa.Column("exit_code", sa.Integer, nullable=True))
    op.add_column("jobs", sa.Column("state_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in ("state_seen_at", "exit_code", "state_reason", "state"):
            batch.drop_column(column)
