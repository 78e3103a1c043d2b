"""The store's id (`api.store_info`): cluster folders named by store, so two stores never share one.

`store_id`: 12 random hex digits, made here once. `legacy_max_xid`: the newest experiment the store held
before (their cluster folders are named by the xid alone, and stay so).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    conn = op.get_bind()
    newest = conn.execute(sa.text("SELECT MAX(id) FROM experiments")).scalar()
    op.bulk_insert(
        table,
        [
            {"key": "store_id", "value": secrets.token_hex(6)},
            {"key": "legacy_max_xid", "value": str(int(newest or 0))},
        ],
    )


def downgrade() -> None:
    op.drop_table("store_info")
