"""Experiments: `created_by`, the name of the server token that created the experiment (the dashboard
shows it). NULL for experiments created before this revision and for those written to a SQLite store
directly (no token involved).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite adds it in place, without copying the table.
    op.add_column("experiments", sa.Column("created_by", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("created_by")
